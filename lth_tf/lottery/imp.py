"""Iterative magnitude pruning with rewinding: the round loop, resumable at any point.

Round 0 trains the dense network. Round r prunes, per layer, the layer kind's rate of the
surviving weights (smallest magnitude first) from round r-1's trained weights, rewinds the
survivors to the rewind point (iteration 0 for LTH, iteration k for Stabilizing LTH), and trains
them from iteration k to the end T with a fresh optimizer and the schedule where it stood at k.
``--pruning=global`` ranks the weights of all pruned layers together instead; ``one_shot``
prunes round 0's weights straight to round r's sparsity; a branch (:mod:`lth_tf.lottery.branches`)
runs a control over a parent experiment.

Each round is built once (:func:`lth_tf.builder.build_run`) and trained by the one loop
(:func:`lth_tf.training.loop.train`) with its callbacks: evaluation, checkpoints, the rewind point's
snapshot, TensorBoard, the progress bar. What a round starts from is the control's
(:mod:`lth_tf.lottery.controls`).

>>> run_imp(hparams, Path("runs"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lth_tf import io, provenance
from lth_tf.builder import Run, build_run
from lth_tf.callbacks import (
    EVALUATION_COLUMNS,
    RunCallback,
    RunContext,
    call_each,
    check_callbacks,
    evaluation_scalars,
)
from lth_tf.config import (
    XNNPACK_SPARSE_FRACTION,
    ExperimentHparams,
    Resolved,
    flag_of,
)
from lth_tf.data.pipeline import check_augmentation
from lth_tf.data.sources import ImageDataset, load_dataset
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.experiment import (
    CHECKPOINT_TODO,
    DataRecord,
    ExperimentDir,
    RoundResult,
    check_experiment_name,
    open_experiment,
    parent_dir,
    read_saved,
    refuse_foreign_directory,
    settings_of_directory,
)
from lth_tf.lottery import branches
from lth_tf.lottery.controls import Control, ControlContext, get_control
from lth_tf.models import custom, resolve_steps
from lth_tf.models.registry import check_input_shape
from lth_tf.naming import experiment_root
from lth_tf.pruning.masks import counted_masks, percent_remaining
from lth_tf.pruning.shrink import multiply_adds, shrunk_architecture
from lth_tf.pruning.wrapping import PrunedModel, snapshot
from lth_tf.pruning.xnnpack import check_sparse_subgraph, one_by_one_zero_fraction
from lth_tf.training.loop import (
    Callback,
    Checkpoint,
    Diverged,
    EvaluateEvery,
    RunCallbackChunks,
    SnapshotAt,
    TrainingProgress,
    checkpoint_arrays,
    resume,
    train,
)
from lth_tf.training.optimizers import check_optimizer
from lth_tf.training.strategies import device_description
from lth_tf.training.trainer import Trainer

log = logging.getLogger("lth_tf")


def round_start(resolved: Resolved, pruning_round: int) -> int:
    """The iteration round ``pruning_round`` starts training at: 0 for the dense round, the
    rewind point k for every later one (of IMP and of every control), which then trains k -> T
    (Frankle et al. 2020; open_lth trains every level from its ``start_step``).

    >>> round_start(Resolved(1000, 100, 200, 917), 3)
    200
    """
    return 0 if pruning_round == 0 else resolved.rewind_iteration


def run_imp(
    hparams: ExperimentHparams,
    output_dir: str | Path,
    experiment_name: str | None = None,
    execution: Execution = Execution(),
    strategy: tf.distribute.Strategy | None = None,
    data: ImageDataset | None = None,
    model: Any = None,
    record: dict[str, Any] | None = None,
    callbacks: Sequence[RunCallback] = (),
) -> ExperimentDir:
    """Runs (or resumes) every round of an IMP experiment; returns its directory.

    ``data``, when given, is the dataset split as ``hparams.dataset.holdout`` says
    (:func:`lth_tf.data.sources.load_dataset`'s ``holdout``); without it, it is loaded so.
    ``model`` is the ``tf_keras.Model`` object of a ``python:`` model name (the Python API's);
    every other model is built from ``hparams.model.name``. ``record``: more fields for a new
    experiment's ``hparams.json`` (where its settings came from, e.g. ``rewind_found``).
    ``callbacks``: :class:`lth_tf.callbacks.RunCallback` instances that watch every round,
    report scalars and keep state across a resume. ``execution``: how it runs (XLA, chunk
    length, precision, data dir, progress line, TensorBoard logs).

    >>> quiet = Execution(tensorboard=False, show_progress=False)
    >>> run_imp(paper_defaults("lenet300_100"), "runs", execution=quiet)  # doctest: +SKIP
    """
    callbacks = check_callbacks(callbacks)
    if hparams.is_branch and experiment_name is None:
        raise ValueError(
            "a branch needs its experiment name (lth_tf.lottery.branches.branch_of gives it)"
        )
    if experiment_name is not None:
        check_experiment_name(experiment_name)
    root = experiment_root(output_dir, hparams, experiment_name)
    # Before the lock, so that a directory of someone else's gets no .lock file of ours.
    refuse_foreign_directory(root)
    # One writer per experiment: a second run would mix its rounds with this one's.
    with io.locked(root, "another lth_tf run"):
        removed = io.remove_leftovers(root)
        if removed:
            log.info("Removed %d temporary files left by a killed run.", len(removed))
        return _run_locked(hparams, root, execution, strategy, data, model, record, callbacks)


def _run_locked(
    hparams: ExperimentHparams,
    root: Path,
    execution: Execution,
    strategy: tf.distribute.Strategy | None,
    data: ImageDataset | None,
    model: Any,
    record: dict[str, Any] | None = None,
    callbacks: Sequence[RunCallback] = (),
) -> ExperimentDir:
    """:func:`run_imp` once it holds the experiment directory's lock."""
    hparams = settings_of_directory(ExperimentDir(root), hparams)
    holdout = hparams.dataset.holdout
    data = data or load_dataset(
        hparams.dataset.name, execution.data_dir, experiment_root=root, holdout=holdout
    )
    check_input_shape(hparams.model.name, data.input_shape)  # before anything is written
    parent = parent_dir(ExperimentDir(root), hparams) if hparams.is_branch else None
    # A branch's model is its parent's copy; anything else is measured where it comes from
    # (a model that cannot take the data is said before what the steps' arithmetic finds).
    if parent is not None and custom.is_custom(hparams.model.name):
        model_record = read_saved(parent).model
    else:
        model_record = provenance.model_record(hparams, data, model, ExperimentDir(root))
    resolved = resolve_steps(hparams, len(data.train_labels))
    training = hparams.training
    # The user's augmentation runs once, and the optimizer is built once, so that an import
    # error, a changed batch or an argument Keras refuses is one line before anything is written.
    check_augmentation(
        training.augment,
        data.train_images,
        data.train_labels,
        training.batch_size,
        training.seed,
        data.num_classes,
    )
    check_optimizer(training.schedule_in_iterations(resolved.iterations_per_epoch))
    _warn_about_schedule(resolved)
    experiment = open_experiment(
        root,
        hparams,
        {
            "resolved": dataclasses.asdict(resolved),
            "data": DataRecord(
                source=data.source,
                input_shape=tuple(data.input_shape),
                num_classes=data.num_classes,
                train_examples=len(data.train_labels),
                val_examples=len(data.val_labels),
                test_examples=len(data.test_labels),
                provenance=data.provenance,
            ).to_dict(),
            "model": model_record,
        },
        record,
    )
    provenance.check_same_model(experiment, model_record)
    provenance.say_if_gone(hparams, experiment, model_record)
    provenance.bind_data(experiment, data)
    model_spec = provenance.bind_model(experiment, hparams, model)
    control = get_control(hparams.branch.control)
    if hparams.is_branch:
        branches.start_branch(experiment, hparams)
    control_context = ControlContext(experiment, hparams, data, model_spec)
    control.prepare(control_context)
    if experiment.rewind_point.exists():
        # Now, not when the first new round rewinds to it: a rewind point from another
        # experiment is refused before this run trains or writes anything.
        experiment.check_stamp(experiment.rewind_point)
    log.info("Experiment: %s", experiment.root)
    callbacks = [*callbacks, *_own_callbacks(execution, strategy, callbacks)]
    call_each(callbacks, "on_run_start", experiment, hparams)
    done = experiment.completed_rounds()
    for finished in done:  # a kill between its results row and its end left its checkpoint
        experiment.checkpoint(finished).unlink(missing_ok=True)
    # A finished round's masks are a function of the round before it: a lost file is redone.
    lost_masks = sorted(r for r in done if not experiment.masks(r).exists())
    if not lost_masks and all(r in done for r in range(hparams.pruning.rounds + 1)):
        rounds = hparams.pruning.rounds + 1
        every = "Round 0 of %s is" if rounds == 1 else f"All {rounds} rounds of %s are"
        log.info(f"{every} done already.", experiment.root)
        call_each(callbacks, "on_run_end")
        return experiment

    # A resume (or a branch) trains with or without XLA as the experiment (its parent) chose.
    recorded_xla = experiment.recorded_xla_training()
    if recorded_xla is None and parent is not None:
        recorded_xla = parent.recorded_xla_training()
    left = set(range(hparams.pruning.rounds + 1)) - done
    # On one device, the calls' length too (so TensorBoard's per-call train/ points go on as
    # they would have): several replicas or workers size theirs together, each from its own
    # sessions.json, and must not disagree.
    single = (strategy or tf.distribute.get_strategy()).num_replicas_in_sync == 1
    recorded_length = experiment.recorded_chunk_length(device_description()) if single else None
    run = build_run(
        hparams,
        data,
        strategy,
        execution.resumed(recorded_xla, recorded_length),
        model=model_spec,
        planned_iterations=len(left) * resolved.iterations,
    )
    _log_xla(run.trainer, recorded_xla)
    recorded_precision, whose = experiment.recorded_precision(), "This experiment"
    if recorded_precision is None and parent is not None:
        recorded_precision, whose = parent.recorded_precision(), "Its parent experiment"
    _log_precision(execution, recorded_precision, whose)
    # A finished experiment that only lost masks trains nothing: its session starts at them.
    first_round = min(left or lost_masks)
    experiment.record_session(
        _session(run.trainer, execution, first_round, experiment.checkpoint(first_round).exists())
    )
    if execution.steps_per_execution == "auto" and not run.trainer.chunk_length.sized:
        callbacks = [*callbacks, _RecordChunkLength(experiment, run.trainer)]
    # A branch's rewind point (if it has one) comes from its parent or its control.
    rewind_point = experiment.rewind_point
    if not hparams.is_branch and resolved.rewind_iteration == 0:
        if not rewind_point.exists():
            io.write_npz(
                rewind_point, {**snapshot(run.pruned.rewindable), **experiment.stamp(rewind_point)}
            )

    # From here on, every file a round reads is checked against the network the run built.
    control_context.weight_shapes = {n: tuple(v.shape) for n, v in run.pruned.rewindable.items()}
    control_context.mask_shapes = {n: tuple(v.shape) for n, v in run.pruned.masks.items()}
    rounds = _Rounds(
        experiment, hparams, resolved, run, control, control_context, execution, callbacks
    )
    for pruning_round in lost_masks:  # in order: each needs the masks of the round before
        if pruning_round == 0 or pruning_round - 1 in done:
            run.pruned.set_round(pruning_round)  # its target sparsities
            rounds.masks(pruning_round)
            log.info("Recomputed the lost %s.", experiment.masks(pruning_round))
        else:
            done.discard(pruning_round)  # retrained after the round it comes from
    to_train = [r for r in range(hparams.pruning.rounds + 1) if r not in done]
    # The first round of this session says how long the rest will take (a long run only).
    rounds.later_iterations = sum(
        resolved.iterations - round_start(resolved, r) for r in to_train[1:]
    )
    for pruning_round in to_train:
        began = time.monotonic()
        result = rounds.train_round(pruning_round)
        log.info(round_line(result, time.monotonic() - began))
        if result.xnnpack_1x1_zeros is not None:
            rows = {row.round: row for row in experiment.read_results()}
            line = xnnpack_line(result, rows.get(pruning_round - 1))
            if line:
                log.info(line)
        call_each(callbacks, "on_round_end", rounds.context(pruning_round), result)
    call_each(callbacks, "on_run_end")
    return experiment


def _own_callbacks(
    execution: Execution,
    strategy: tf.distribute.Strategy | None,
    given: Sequence[RunCallback],
) -> list[RunCallback]:
    """The run's own callbacks after the user's (so its TensorBoard logs hold their scalars):
    TensorBoard, where ``execution`` asks for it, no monitor is among the ``given`` ones, and
    this worker is the one that writes logs (every worker of a multi-worker run trains; only
    the chief writes)."""
    from lth_tf.monitoring.tensorboard import TensorBoardMonitor

    writes = (strategy or tf.distribute.get_strategy()).extended.should_save_summary
    given_monitor = any(isinstance(callback, TensorBoardMonitor) for callback in given)
    if not execution.tensorboard or not writes or given_monitor:
        return []
    return [TensorBoardMonitor()]


def channel_costs(pruned: PrunedModel, masks: dict[str, np.ndarray]) -> dict[str, int]:
    """A channel ticket's results columns: surviving channels per kind, and the parameters and
    multiply-adds per example of the smaller network it shrinks into (none for weight tickets).
    """
    if pruned.channels is None:
        return {}
    surviving = pruned.channels.surviving(masks, pruned.kinds)
    small = shrunk_architecture(pruned.unwrapped, masks, pruned.channels)
    return {
        "channels_conv": surviving.get("conv", 0),
        "channels_fc": surviving.get("fc", 0),
        "shrunk_parameters": small.count_params(),
        "shrunk_multiply_adds": multiply_adds(small),
    }


def xnnpack_zeros(pruned: PrunedModel, hparams: ExperimentHparams) -> dict[str, float]:
    """``--prune_for=xnnpack``'s results column: the fraction of the sparse subgraph's 1x1
    convolution weights that are zero, masks applied (none for other experiments)."""
    if hparams.pruning.prune_for != "xnnpack":
        return {}
    subgraph = check_sparse_subgraph(pruned.unwrapped)
    return {"xnnpack_1x1_zeros": round(one_by_one_zero_fraction(pruned.unwrapped, subgraph), 6)}


def xnnpack_line(result: RoundResult, previous: RoundResult | None) -> str | None:
    """The log line that marks the first round whose 1x1 convolutions XNNPack runs sparse.

    >>> row = RoundResult(5, 33.0, 1, 0.9, 0.3, 9, 0.9, 0.3, 9, 1.0, xnnpack_1x1_zeros=0.672)
    >>> xnnpack_line(row, dataclasses.replace(row, round=4, xnnpack_1x1_zeros=0.59))
    'round  5 | 67.2% of the 1x1 weights are zero: past 2/3, XNNPack runs this ticket sparse on ARM'
    """
    zeros = result.xnnpack_1x1_zeros
    before = previous.xnnpack_1x1_zeros if previous is not None else None
    if zeros is None or zeros <= XNNPACK_SPARSE_FRACTION:
        return None
    if before is not None and before > XNNPACK_SPARSE_FRACTION:
        return None
    return (
        f"round {result.round:2d} | {100 * zeros:.1f}% of the 1x1 weights are zero: past 2/3, "
        "XNNPack runs this ticket sparse on ARM"
    )


def round_line(result: RoundResult, seconds: float) -> str:
    """A finished round in one line of at most 100 columns.

    >>> round_line(RoundResult(3, 51.2, 136600, 0.8612, 0.4, 900, 0.8655, 0.39, 1000, 1.5), 4.21)
    'round  3 |  51.20% of weights remain | test 86.12% | early stop at 900: test 86.55% | 4.2 s'
    >>> round_line(RoundResult(3, 51.2, 136600, 0.8612, 0.4, None, None, None, 1000, 1.5), 4.21)
    'round  3 |  51.20% of weights remain | no validation split: final test 86.12% | 4.2 s'
    """
    head = f"round {result.round:2d} | {result.percent_remaining:6.2f}% of weights remain | "
    if result.early_stop_test_accuracy is None:
        return (
            f"{head}no validation split: final test {100 * result.test_accuracy:.2f}% | "
            f"{seconds:.1f} s"
        )
    return (
        f"{head}test {100 * result.test_accuracy:.2f}% | early stop at "
        f"{result.early_stop_iteration}: test {100 * result.early_stop_test_accuracy:.2f}% | "
        f"{seconds:.1f} s"
    )


def _session(
    trainer: Trainer, execution: Execution, first_round: int, mid_round: bool
) -> dict[str, Any]:
    """What :meth:`ExperimentDir.record_session` keeps about this run."""
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "first_round": first_round,
        "resumes_mid_round": mid_round,
        "strategy": type(trainer.strategy).__name__,
        "replicas": trainer.strategy.num_replicas_in_sync,
        "hardware": device_description(),
        # What XLA compiled: --jit_compile asks; "auto" times it (xla_timing, s/iteration).
        "jit_compile": execution.jit_compile,
        "xla_training": trainer.xla_training,
        "xla_timing": trainer.xla_timing,
        "xla_evaluation": trainer.xla_evaluation,
        "mixed_precision": execution.mixed_precision or "float32",
        "steps_per_execution": execution.steps_per_execution,
        # The calls' length "auto" chose (a resume on this hardware keeps it); None: not
        # auto (an explicit count is no later auto run's), or sized later (_RecordChunkLength).
        "chunk_length": trainer.chunk_length.current
        if trainer.chunk_length.sized and execution.steps_per_execution == "auto"
        else None,
        "tensorflow": tf.__version__,
    }


class _RecordChunkLength(RunCallback):
    """Adds the calls' length to this session's sessions.json entry once
    ``--steps_per_execution=auto`` has sized it while training (no ``--jit_compile=auto``
    timing sized it before), so that a resume keeps it as it keeps a timed one."""

    def __init__(self, experiment: ExperimentDir, trainer: Trainer):
        self.experiment, self.trainer, self.recorded = experiment, trainer, False

    def on_chunk(self, context: RunContext, chunk: Any) -> None:
        if not self.recorded and self.trainer.chunk_length.sized:
            self.recorded = True
            self.experiment.amend_session(chunk_length=self.trainer.chunk_length.current)


def _log_xla(trainer: Trainer, recorded: bool | None) -> None:
    """Says what ``--jit_compile=auto`` measured, or that a resume changes the experiment's
    XLA setting (the last bits of every later result then differ from an uninterrupted run)."""
    timing = trainer.xla_timing
    verdict = "with XLA" if trainer.xla_training else "without XLA"
    if timing and "xla" in timing:
        log.info(
            "Training %s: %.3g s/iteration with XLA, %.3g without (--jit_compile=auto)",
            verdict,
            timing["xla"],
            timing["plain"],
        )
    elif timing:
        log.info("Training without XLA: too short a run to pay for compiling it")
    if recorded is not None and trainer.xla_training != recorded:
        log.warning(
            "This experiment trained %s XLA so far and now trains %s: later results differ "
            "from an uninterrupted run's in the last bits (--jit_compile=auto keeps its choice)",
            "with" if recorded else "without",
            verdict.removesuffix(" XLA") + " it",
        )


def _log_precision(
    execution: Execution, recorded: str | None, whose: str = "This experiment"
) -> None:
    """Warns when a resume (or a branch) computes in another precision than the experiment (its
    parent) did: a rerun that forgot ``--mixed_precision`` would otherwise go on silently."""
    now = execution.mixed_precision or "float32"
    if recorded is not None and recorded != now:
        log.warning(
            "%s computed in %s so far and now computes in %s: later results are "
            "not what an uninterrupted run gives (--mixed_precision=%s goes on as it did)",
            whose,
            recorded,
            now,
            recorded,
        )


def _warn_about_schedule(resolved: Resolved) -> None:
    late = [d for d in resolved.lr_drop_iterations if d >= resolved.iterations]
    if resolved.warmup_iterations > resolved.iterations:
        log.warning(
            "Warmup (%d iterations) is longer than a round (%d): the learning rate never "
            "reaches its full value; pass e.g. --warmup=%dit.",
            resolved.warmup_iterations,
            resolved.iterations,
            resolved.iterations // 10,
        )
    if late:
        log.warning(
            "Learning-rate drops at iterations %s come after the end of a round (%d): they "
            "never happen; pass --lr_drops for this length.",
            ",".join(map(str, late)),
            resolved.iterations,
        )


@dataclasses.dataclass
class _Rounds:
    """One run of an experiment's rounds: what every round of it reads."""

    experiment: ExperimentDir
    hparams: ExperimentHparams
    resolved: Resolved
    run: Run
    control: Control
    control_context: ControlContext
    execution: Execution
    # The user's RunCallbacks, then the run's own (TensorBoard).
    run_callbacks: list[RunCallback] = dataclasses.field(default_factory=list)
    # Iterations of the rounds after the first one this run trains, for its time estimate.
    later_iterations: int | None = None

    def context(self, pruning_round: int) -> RunContext:
        """What the run's callbacks see of round ``pruning_round``."""
        return RunContext(pruning_round, self.run.pruned, self.experiment, self.hparams)

    def masks(self, pruning_round: int) -> dict[str, np.ndarray]:
        """Round 0: all ones. Round r: as the control decides (IMP: magnitude pruning)."""
        path = self.experiment.masks(pruning_round)
        pruned = self.run.pruned
        if not path.exists():
            if pruning_round == 0:
                masks = {name: np.ones(v.shape, np.uint8) for name, v in pruned.masks.items()}
            else:
                masks = self.control.masks(self.control_context, pruning_round, pruned)
            # 0/1 as uint8, compressed: a mask file is a small fraction of the weights' size.
            uint8 = {k: v.astype(np.uint8) for k, v in masks.items()}
            io.write_npz(path, {**uint8, **self.experiment.stamp(path)}, compressed=True)
        shapes = {name: tuple(v.shape) for name, v in pruned.masks.items()}
        checked = self.experiment.read_masks(
            pruning_round, shapes, nested=not self.hparams.pruning.one_shot
        )
        return {name: mask.astype(np.float32) for name, mask in checked.items()}

    def train_round(self, pruning_round: int) -> RoundResult:
        experiment, resolved = self.experiment, self.resolved
        pruned, trainer = self.run.pruned, self.run.trainer
        pruned.set_round(pruning_round)
        masks = self.masks(pruning_round)
        start = round_start(resolved, pruning_round)
        # Before a resume too: the checkpoint holds the kernel masks, not the channel masks
        # derived from them.
        pruned.set_masks(masks)
        checkpoint = experiment.checkpoint(pruning_round)
        if checkpoint.exists():
            experiment.check_stamp(checkpoint)
        progress = resume(
            checkpoint, trainer, (start, resolved.iterations), self.run_callbacks, CHECKPOINT_TODO
        )
        if progress is not None:
            log.info("Round %d resumes at iteration %d.", pruning_round, progress.iteration)
        else:
            if pruning_round > 0:
                pruned.rewind_to(self.control.start_values(self.control_context, pruning_round))
            pruned.apply_masks()
            trainer.reset_optimizer(schedule_start=start)
            progress = TrainingProgress(iteration=start)
            call_each(self.run_callbacks, "on_round_start", self.context(pruning_round))

        # Checkpoints and the rewind point are written while training goes on; the round's own
        # files below are written once they are all on disk.
        try:
            with io.BackgroundWriter() as writer:
                callbacks = self.callbacks(pruning_round, start, writer)
                order = self.hparams.training.order_seed(pruning_round)
                train(trainer, progress, resolved.iterations, callbacks, seed=order)
        except Diverged as diverged:
            # Nothing of the round is finished (no weights, no results row). Its checkpoint, if
            # any, is the last evaluated one, whose validation loss was finite: a rerun resumes
            # there and stops here again with this line, never ranks masks from NaN weights.
            raise LthError(self.divergence_message(pruning_round, diverged)) from None
        return self.finish(pruning_round, start, masks, progress)

    def divergence_message(self, pruning_round: int, diverged: Diverged) -> str:
        """``round 1 diverged at iteration 300 (training loss nan): lower --learning_rate ...``"""
        training = self.hparams.training
        if training.compiled:
            return (
                f"round {pruning_round} diverged at iteration {diverged.iteration} "
                f"({diverged.what} {diverged.value}): compile the model with a lower learning "
                "rate (or a longer warmup) and run it in a new experiment"
            )
        warmup = (
            f"lengthen --warmup (now {self.resolved.warmup_iterations}it)"
            if self.resolved.warmup_iterations
            else "add --warmup"
        )
        return (
            f"round {pruning_round} diverged at iteration {diverged.iteration} ({diverged.what} "
            f"{diverged.value}): lower {flag_of(training, 'learning_rate')} (now "
            f"{training.learning_rate:g}) or {warmup}, in a new experiment"
        )

    def callbacks(
        self, pruning_round: int, start: int, writer: io.BackgroundWriter
    ) -> list[Callback]:
        """The round's callbacks, in the order they see each chunk."""
        experiment, resolved, trainer = self.experiment, self.resolved, self.run.trainer
        callbacks: list[Callback] = []
        if pruning_round == 0 and resolved.rewind_iteration > 0:
            rewind_point = experiment.rewind_point
            rewind_stamp = experiment.stamp(rewind_point)
            callbacks.append(
                SnapshotAt(
                    [resolved.rewind_iteration],
                    lambda _: writer.write_npz(
                        rewind_point, {**snapshot(self.run.pruned.rewindable), **rewind_stamp}
                    ),
                )
            )
        context, watching = self.context(pruning_round), self.run_callbacks
        if watching:
            callbacks.append(RunCallbackChunks(context, watching))
        callbacks.append(
            EvaluateEvery(
                trainer,
                resolved.eval_every,
                (lambda e: call_each(watching, "on_evaluation_recorded", context, e))
                if watching
                else None,
                self.execution.test_every_evaluation,
                scalars=(lambda e: evaluation_scalars(watching, context, e)) if watching else None,
            )
        )
        checkpoint_path = experiment.checkpoint(pruning_round)
        checkpoint_stamp = experiment.stamp(checkpoint_path)
        callbacks.append(
            Checkpoint(
                lambda current: writer.write_npz(
                    checkpoint_path,
                    {**checkpoint_arrays(trainer, current, watching), **checkpoint_stamp},
                ),
                every=resolved.eval_every,
            )
        )
        if self.later_iterations is not None:
            from lth_tf.monitoring.progress import RunEstimate

            callbacks.append(RunEstimate(resolved.iterations, self.later_iterations))
            self.later_iterations = None  # once per run
        if self.execution.show_progress:
            from lth_tf.monitoring.progress import ProgressBar

            callbacks.append(ProgressBar(start, resolved.iterations, f"Round {pruning_round}"))
        return callbacks

    def finish(
        self,
        pruning_round: int,
        start: int,
        masks: dict[str, np.ndarray],
        progress: TrainingProgress,
    ) -> RoundResult:
        """Writes the round's weights, evaluations and results row; drops its checkpoint."""
        experiment, pruned = self.experiment, self.run.pruned
        pruned.apply_masks()
        weights_path = experiment.weights(pruning_round)
        weights = snapshot(pruned.rewindable)
        io.write_npz(weights_path, {**weights, **experiment.stamp(weights_path)})
        rows = [
            {**{c: getattr(e, c) for c in EVALUATION_COLUMNS}, **e.scalars}
            for e in progress.evaluations
        ]
        if not self.run.trainer.has_validation:
            # No validation split: its columns are empty, not NaN measurements.
            rows = [{**row, "val_loss": None, "val_accuracy": None} for row in rows]
        # The callbacks' scalars after the evaluation's own, in the order they came.
        reported = list(dict.fromkeys(name for e in progress.evaluations for name in e.scalars))
        io.write_csv(experiment.evaluations(pruning_round), rows, [*EVALUATION_COLUMNS, *reported])
        final, stop = progress.evaluations[-1], progress.early_stop
        counted = counted_masks(masks, pruned.kinds, self.hparams.pruning, pruned.layers)
        alive = sum(int(m.sum()) for m in counted.values())
        result = RoundResult(
            round=pruning_round,
            percent_remaining=percent_remaining(counted),
            weights_remaining=alive,
            test_accuracy=final.test_accuracy,
            test_loss=final.test_loss,
            # None without a validation split: no early stop, not a copy of the final values.
            early_stop_iteration=stop.iteration,
            early_stop_test_accuracy=None if stop.iteration is None else stop.test_accuracy,
            val_loss_min=None if stop.iteration is None else stop.val_loss,
            # Iterations trained: T - k for a round rewound to k.
            iterations=self.resolved.iterations - start,
            train_seconds=round(progress.train_seconds, 3),
            **channel_costs(pruned, masks),
            **xnnpack_zeros(pruned, self.hparams),
            early_stop_trained=None if stop.iteration is None else stop.iteration - start,
        )
        experiment.write_result(result)
        experiment.checkpoint(pruning_round).unlink(missing_ok=True)
        return result
