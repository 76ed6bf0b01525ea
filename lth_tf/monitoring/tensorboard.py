"""TensorBoard logs of an IMP run, written while it trains, under ``<experiment>/tensorboard/``.

=============  ===========  ==============================================================
run            step         what
=============  ===========  ==============================================================
``round_NN``   iteration    ``train/loss``, ``train/accuracy`` (mean over each compiled chunk
                            of iterations); ``val/loss``, ``val/accuracy`` at every evaluation,
                            and the scalars the run's callbacks report (:mod:`lth_tf.callbacks`);
                            ``test/loss``, ``test/accuracy`` where measured (the early stop and
                            the last iteration, logged at the round's end; every evaluation
                            without a validation split)
``summary``    round        ``round/percent_remaining``, ``round/test_accuracy`` (end of
                            training), ``round/early_stop_iteration``,
                            ``round/early_stop_test_accuracy``, ``round/val_loss_min``,
                            ``round/early_stop_trained`` (none of the four without a
                            validation split, ``--holdout=0``) (channel tickets also
                            ``round/channels_conv``,
                            ``round/channels_fc``, ``round/shrunk_parameters``,
                            ``round/shrunk_multiply_adds``: counts;
                            ``--prune_for=xnnpack`` also ``round/xnnpack_1x1_zeros``, a
                            fraction); the
                            image ``accuracy_vs_sparsity``; the HParams session (hyperparameters;
                            the scalars above are its metrics)
``summary``    per-mille    ``by_remaining/<field>`` for every ``round/<field>`` but
               remaining    ``percent_remaining``: the same values plotted against the
                            weights remaining, in thousandths (1000 at round 0, 108 at
                            10.8%), the x-axis of the papers' figures
``layers``     round        ``sparsity/<weight>`` (fraction pruned) and the histogram
                            ``surviving_weights/<weight>`` of the round's trained survivors
=============  ===========  ==============================================================

One unit per quantity: every accuracy (``*/accuracy``, ``round/*test_accuracy``) is a fraction
in 0..1; ``round/percent_remaining`` is in percent (100 at round 0), as its name says;
``sparsity/<weight>`` is the fraction of the weight pruned (0..1); iterations are counts.
The ``round/`` prefix keeps the per-round results apart from the per-iteration ``test/…``.

The HParams trial (session group) is the experiment directory relative to the parent of its
output directory (``runs/lenet`` -> ``runs/lenet``, a sweep member ->
``<sweep>/rewind100it-seed0``), not an absolute path: same-named experiments stay apart when
their output directories are named apart. Hyperparameters are named as their flags
(``rounds``, ``learning_rate``, ``prune_rates.fc``, ``seed``, ``control``, ``control_seed``),
so replicates (the same hyperparameters but ``seed``) can be filtered and sorted by them in
its table. Integer ones are given as their decimal strings: the protocol stores every number
as a double, which the dashboard shows as ``60.000``; a seed or a batch size is a category to
filter by anyway. The experiment's configuration lists ``model``, ``dataset``, ``rewind``,
``seed`` and ``control`` first: the dashboard shows its first five hyperparameters, and these
tell runs apart.

Every (tag, step) is written once, across kills and resumes: a run first reads back what its
event files hold and skips it, the round's events are flushed at every evaluation before the
checkpoint is saved (a resume restarts from that checkpoint, so it loses nothing), and
``summary``/``layers`` are filled from the experiment's files, which also backfills rounds that
finished before monitoring was on. The figure (drawn at ``FIGURE_DPI``, large enough to read
in the Images dashboard) is also saved as ``accuracy_vs_sparsity.png``.

A run writes them unless its :class:`lth_tf.execution.Execution` says ``tensorboard=False``
(``--notensorboard``); the monitor is one of the run's callbacks (:mod:`lth_tf.callbacks`).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from lth_tf import io
from lth_tf.callbacks import RunCallback, RunContext
from lth_tf.config import COMPILED_FIELDS, ExperimentHparams, flat_hparams
from lth_tf.experiment import ExperimentDir, RoundResult
from lth_tf.monitoring.figures import Curve, sparsity_figure
from lth_tf.steps import is_count
from lth_tf.training.loop import Chunk
from lth_tf.training.trainer import Evaluation

TENSORBOARD_DIR = "tensorboard"
SUMMARY_RUN = "summary"
LAYERS_RUN = "layers"
FIGURE_FILE = "accuracy_vs_sparsity.png"
FIGURE_TAG = "accuracy_vs_sparsity"
# The results.csv columns logged per round, each under ``SUMMARY_PREFIX`` + its name.
SUMMARY_FIELDS = (
    "percent_remaining",  # percent (100 at round 0)
    "test_accuracy",  # fraction, end of training
    "early_stop_iteration",  # iterations
    "early_stop_test_accuracy",  # fraction
    "val_loss_min",
    "early_stop_trained",  # iterations, from the round's start (its rewind point)
)
# Channel tickets' columns (counts), logged where a round has them.
CHANNEL_FIELDS = ("channels_conv", "channels_fc", "shrunk_parameters", "shrunk_multiply_adds")
# --prune_for=xnnpack's column (a fraction), logged where a round has it.
XNNPACK_FIELDS = ("xnnpack_1x1_zeros",)
SUMMARY_PREFIX = "round/"
SUMMARY_TAGS = tuple(SUMMARY_PREFIX + field for field in SUMMARY_FIELDS)
# The same scalars at step = per-mille of the weights remaining (see the table above).
BY_REMAINING_PREFIX = "by_remaining/"
# The HParams dashboard shows its first five hyperparameters: these, which tell runs apart.
HPARAMS_FIRST = ("model", "dataset", "rewind", "seed", "control")
HPARAMS_CONFIG_TAG = "_hparams_/experiment"  # what hp.hparams_config writes, at step 0
# 11 x 4.3 inches at 150 dpi: 1650 x 645 pixels, readable in the Images dashboard.
FIGURE_DPI = 150
HPARAMS_TAG = "_hparams_/session_start_info"  # what hp.hparams writes, at step 0
# Often enough to watch a round live; evaluations flush explicitly anyway.
FLUSH_SECONDS = 10
# Drawing the figure costs about half a second: redrawn after a round at most this often (and
# always when the run ends), so short rounds do not spend their time on matplotlib.
FIGURE_EVERY_SECONDS = 60.0


def tensorboard_dir(experiment: ExperimentDir) -> Path:
    return experiment.root / TENSORBOARD_DIR


def session_value(value: bool | int | float | str) -> bool | float | str:
    """A hyperparameter as the HParams session holds it: an integer as its digits.

    >>> session_value(60), session_value(0.2), session_value(True), session_value("lth")
    ('60', 0.2, True, 'lth')
    """
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def permille_remaining(percent_remaining: float) -> int:
    """The step of a round's ``by_remaining/`` scalars: thousandths of the weights remaining.

    >>> permille_remaining(100.0), permille_remaining(10.83)
    (1000, 108)
    """
    return round(percent_remaining * 10)


def round_run(pruning_round: int) -> str:
    return f"round_{pruning_round:02d}"


def trial_id(experiment: ExperimentDir) -> str:
    """The HParams trial of an experiment: its directory relative to its output dir's parent.

    >>> trial_id(ExperimentDir(Path("/data/runs/lenet")))
    'runs/lenet'
    """
    root = experiment.root.resolve()
    return "/".join(root.parts[-2:]) if len(root.parts) > 2 else root.name


def logged_tags(logdir: Path) -> set[tuple[str, int]]:
    """Every (tag, step) in a run's event files; a record cut short by a kill is ignored."""
    logged = set()
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            logged.update((value.tag, event.step) for value in event.summary.value)
    return logged


def _after_the_newest_file(logdir: Path) -> None:
    """Waits, if need be, into the second after the newest event file's: TensorBoard (and
    :func:`logged_tags`) read a run's files in name order, and a name holds the second it was
    made in and then a per-process counter that sorts as text ("10" before "9"), so two files
    of one second could be read in the wrong order (a resume's steps before the first run's).
    """
    seconds = [
        int(part)
        for path in logdir.glob("events.out.tfevents.*")
        if is_count(part := path.name.split(".")[3])
    ]
    if seconds and max(seconds) == int(time.time()):  # (a file from a clock ahead: no wait)
        time.sleep(max(seconds) + 1 - time.time())


class TensorBoardRun:
    """One TensorBoard run (a directory of event files) that writes each (tag, step) once.

    What the run's files already hold (from before a kill, or an earlier analysis) is skipped.

    >>> run = TensorBoardRun(Path("runs/e/tensorboard/round_01"))  # doctest: +SKIP
    >>> run.scalars(500, {"val/loss": 0.31, "val/accuracy": 0.89}); run.close()  # doctest: +SKIP
    """

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.logged = logged_tags(logdir)
        self._writer: EventFileWriter | None = None

    def has(self, tag: str, step: int) -> bool:
        return (tag, step) in self.logged

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        new = {tag: value for tag, value in values.items() if not self.has(tag, step)}
        if new:
            summary = summary_pb2.Summary()
            for tag, value in new.items():
                summary.value.extend(scalar_pb(tag, value).value)
            self._write(summary, step)
            self.logged.update((tag, step) for tag in new)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        if not self.has(tag, step):
            self._write(histogram_pb(tag, values), step)
            self.logged.add((tag, step))

    def png(self, tag: str, png: bytes, step: int) -> None:
        if not self.has(tag, step):
            width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
            image = tensor_util.make_tensor_proto([b"%d" % width, b"%d" % height, png])
            metadata = image_metadata.create_summary_metadata(display_name=None, description=None)
            summary = summary_pb2.Summary()
            summary.value.add(tag=tag, tensor=image, metadata=metadata)
            self._write(summary, step)
            self.logged.add((tag, step))

    def hparams(self, values: dict[str, Any], trial_id: str, metrics: Sequence[str]) -> None:
        """The HParams session of ``values`` (integers as strings, see the module's text) and
        the experiment's configuration: :data:`HPARAMS_FIRST` first, ``metrics`` its columns."""
        if not self.has(HPARAMS_CONFIG_TAG, 0):
            first = [name for name in HPARAMS_FIRST if name in values]
            ordered = first + [name for name in values if name not in HPARAMS_FIRST]
            config = hp.hparams_config_pb(
                hparams=[hp.HParam(name) for name in ordered],
                metrics=[hp.Metric(tag) for tag in metrics],
            )
            self._write(config, 0)
            self.logged.add((HPARAMS_CONFIG_TAG, 0))
        if not self.has(HPARAMS_TAG, 0):
            shown = {name: session_value(value) for name, value in values.items()}
            self._write(hp.hparams_pb(shown, trial_id=trial_id), 0)
            self.logged.add((HPARAMS_TAG, 0))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, summary: summary_pb2.Summary, step: int) -> None:
        # The events tf.summary writes, built and written in Python: no TensorFlow op per
        # summary (a tf.summary.scalar cost about 1 ms, a histogram 30 ms).
        if self._writer is None:
            # Created on first use: a run with nothing new to say gets no new, empty event file.
            _after_the_newest_file(self.logdir)
            self._writer = EventFileWriter(str(self.logdir), flush_secs=FLUSH_SECONDS)
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))


class TensorBoardMonitor(RunCallback):
    """Logs an IMP run to ``<experiment>/tensorboard/``: the run's own callback, after the
    user's, so each round's scalars hold what they report.

    >>> experiment = run_imp(hparams, "runs")  # doctest: +SKIP
    >>> # then: tensorboard --logdir runs
    """

    user_code = False  # its errors are a file's (disk full) or the tool's, not a user's

    def __init__(self) -> None:
        self._experiment: ExperimentDir | None = None
        self._title = ""
        self._runs: dict[str, TensorBoardRun] = {}
        # The round being trained and its run (opened at its first scalar, fresh or resumed).
        self._round: tuple[int, TensorBoardRun] | None = None
        self._layers_logged: set[int] = set()  # rounds whose files need no second reading
        self._figure_drawn = -math.inf  # time.monotonic() of the last drawing

    def on_run_start(self, experiment: ExperimentDir, hparams: ExperimentHparams) -> None:
        self.on_run_end()
        self._experiment = experiment
        self._title = f"{experiment.root.name}: {hparams.model.name} on {hparams.dataset.name}"
        root = tensorboard_dir(experiment)
        self._runs = {name: TensorBoardRun(root / name) for name in (SUMMARY_RUN, LAYERS_RUN)}
        self._layers_logged = set()
        # A run shorter than the interval draws its figure once, when it ends.
        self._figure_drawn = time.monotonic()
        # The session is the summary run, so its scalars are the HParams dashboard's metrics.
        # The trial is the experiment relative to its output dir's parent (see trial_id).
        shown = flat_hparams(hparams.to_dict())
        if shown.get("optimizer") == "compiled":
            # The settings the compile set read "compiled" in legends; here they are left out:
            # one string in a column would make TensorBoard filter every run's numbers as text.
            shown = {k: v for k, v in shown.items() if k not in COMPILED_FIELDS or k == "optimizer"}
        self._runs[SUMMARY_RUN].hparams(
            shown,
            trial_id(experiment),
            metrics=[SUMMARY_PREFIX + f for f in SUMMARY_FIELDS + CHANNEL_FIELDS + XNNPACK_FIELDS],
        )
        self._log_finished_rounds()

    def on_chunk(self, context: RunContext, chunk: Chunk) -> None:
        self._round_run(context.pruning_round).scalars(
            chunk.stop, {"train/loss": chunk.loss, "train/accuracy": chunk.accuracy}
        )

    def on_evaluation_recorded(self, context: RunContext, evaluation: Evaluation) -> None:
        values = {
            "val/loss": evaluation.val_loss,
            "val/accuracy": evaluation.val_accuracy,
            "test/loss": evaluation.test_loss,
            "test/accuracy": evaluation.test_accuracy,
            # What the run's other callbacks reported, under their own names.
            **evaluation.scalars,
        }
        run = self._round_run(context.pruning_round)
        # The test split is measured only where a result needs it (NaN elsewhere).
        run.scalars(
            evaluation.iteration, {tag: v for tag, v in values.items() if not math.isnan(v)}
        )
        # On disk before the checkpoint is: whatever a resume does not retrain is logged.
        run.flush()

    def on_round_end(self, context: RunContext, result: RoundResult) -> None:
        self._close_round()
        due = time.monotonic() - self._figure_drawn >= FIGURE_EVERY_SECONDS
        self._log_finished_rounds(draw_figure=due)

    def on_run_end(self) -> None:
        self._close_round()
        if self._runs:
            self._log_finished_rounds(draw_figure=True)
        for run in self._runs.values():
            run.close()
        self._runs = {}

    def _round_run(self, pruning_round: int) -> TensorBoardRun:
        if self._round is None or self._round[0] != pruning_round:
            self._close_round()
            path = tensorboard_dir(self._opened()) / round_run(pruning_round)
            self._round = (pruning_round, TensorBoardRun(path))
        return self._round[1]

    def _opened(self) -> ExperimentDir:
        if self._experiment is None:
            raise RuntimeError("TensorBoardMonitor.on_run_start() was not called")
        return self._experiment

    def _close_round(self) -> None:
        if self._round is not None:
            self._round[1].close()
            self._round = None

    def _log_finished_rounds(self, draw_figure: bool = True) -> None:
        """Summary, layers (and the figure, if asked) for every finished round not logged yet."""
        experiment = self._opened()
        # A row whose round lost its files is retrained (and logged) before it counts.
        done = experiment.completed_rounds()
        rows = [
            row
            for row in experiment.read_results()
            if row.round in done and experiment.masks(row.round).exists()
        ]
        if not rows:
            return
        summary, layers = self._runs[SUMMARY_RUN], self._runs[LAYERS_RUN]
        for row in rows:
            step = row.round
            # A round without a validation split has no early stop: its early-stop scalars are
            # absent, not zero.
            values = {
                field: float(getattr(row, field))
                for field in SUMMARY_FIELDS + CHANNEL_FIELDS + XNNPACK_FIELDS
                if getattr(row, field) is not None
            }
            summary.scalars(step, {SUMMARY_PREFIX + f: value for f, value in values.items()})
            # Against the weights remaining: the papers' x-axis.
            summary.scalars(
                permille_remaining(row.percent_remaining),
                {
                    BY_REMAINING_PREFIX + f: value
                    for f, value in values.items()
                    if f != "percent_remaining"
                },
            )
            self._log_layers(layers, step)
        last = rows[-1].round
        figure_path = experiment.root / FIGURE_FILE
        if draw_figure and (not summary.has(FIGURE_TAG, last) or not figure_path.exists()):
            self._figure_drawn = time.monotonic()
            png = sparsity_figure(
                [Curve.from_results(experiment.root.name, rows, with_final=True)],
                title=self._title,
                dpi=FIGURE_DPI,
            )
            io.write_bytes_atomic(figure_path, png)
            summary.png(FIGURE_TAG, png, last)
        summary.flush()
        layers.flush()

    def _log_layers(self, layers: TensorBoardRun, step: int) -> None:
        if step in self._layers_logged:
            return
        experiment = self._opened()
        masks = experiment.read_arrays(experiment.masks(step))
        sparsity = {f"sparsity/{name}": 1.0 - float(mask.mean()) for name, mask in masks.items()}
        layers.scalars(step, sparsity)
        histograms = {f"surviving_weights/{name}": name for name in masks}
        if not all(layers.has(tag, step) for tag in histograms):
            weights = experiment.read_weights(step)
            for tag, name in histograms.items():
                layers.histogram(tag, weights[name][masks[name] > 0], step)
        self._layers_logged.add(step)
