"""Train copies of a subnetwork from a rewind point with different data orders, and walk the
straight line between them.

Copies follow Frankle et al. (2020): from the rewind point theta_k they train the rest of the
round, iterations k to T (T - k iterations), each with its own data order (``data_seeds``; the
augmentation too, where the experiment augments), the round's mask (pruned weights stay
exactly 0), a fresh optimizer state and the learning-rate schedule where it stands at
iteration k. Copy 0 takes the experiment's own seed, so it sees the very batches the dense
network saw from iteration k on: against the dense network's trained weights it measures
pruning alone.

A rewind point other than the experiment's own is recomputed: the dense network is rebuilt as
:func:`lth_tf.lottery.imp.run_imp` built it (:func:`lth_tf.builder.build_run`) and trained k
iterations by the same loop (:func:`lth_tf.training.loop.train`) with the experiment's data
order; where the experiment's own rewind point is on the way, the recomputed weights are
checked against ``rewind_point.npz``.

Everything expensive is saved as it is made (copies, recomputed rewind points, checkpoints
while training), so a killed analysis resumes and a rerun recomputes nothing. Each of those
``.npz`` files is stamped as the experiment's own file of its place (which round, rewind point
and data seed), and checked when it is reused (:meth:`StabilitySession.read_saved`): a file of
another copy or experiment, or one whose weights are missing, misshapen, not finite or not zero
where the round's mask prunes them, is refused with one line that says to delete it.

Callbacks of your own (:class:`lth_tf.callbacks.RunCallback`) watch the copies: the analysis is
a run (``on_run_start`` with the experiment and its hyperparameters, ``on_run_end`` once every
result is written) and each copy it trains is a round (``on_round_start`` from the rewind point,
or ``load_state`` from the copy's checkpoint; ``on_chunk``; ``on_round_end`` with a
:class:`lth_tf.callbacks.CopyResult`), the context naming the copy (``stability_copy``). Copies
are not evaluated while they train, so ``on_evaluation`` is not called; a reused copy and the
dense network's retraining to a rewind point are not rounds.

>>> results = run_stability(plan, load_dataset("fashion_mnist"))  # doctest: +SKIP
>>> run_stability(plan, data, callbacks=[MyMetric()])  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lth_tf import io
from lth_tf.builder import build_run
from lth_tf.callbacks import (
    CopyResult,
    RunCallback,
    RunContext,
    StabilityCopy,
    call_each,
    check_callbacks,
)
from lth_tf.data.pipeline import training_batches
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.experiment import REWIND_POINT_TODO
from lth_tf.provenance import experiment_model
from lth_tf.pruning.wrapping import Snapshot, check_restorable, restore, snapshot
from lth_tf.stability import figures, summaries
from lth_tf.stability.batch_norm import BatchNormStatistics, batch_norm_layers
from lth_tf.stability.measures import (
    DISTANCE_NORMALISATION,
    DISTANCE_OVER,
    STABLE_BELOW,
    instability,
    interpolate,
    l2_distance,
    mean_error,
    mixtures,
)
from lth_tf.stability.plan import RewindPoint, StabilityPlan
from lth_tf.stability.result import CopyPair, StabilityResult
from lth_tf.training.loop import (
    Callback,
    Checkpoint,
    RunCallbackChunks,
    SnapshotAt,
    TrainingProgress,
    checkpoint_arrays,
    resume,
    train,
)

log = logging.getLogger("lth_tf")
ERROR_UNIT = "percent: 100 x (1 - test accuracy); instability in percentage points"
SWEEP_COLUMNS = [
    "masks",
    "rewind",
    "rewind_iteration",
    "instability",
    "stable",
    "max_path_error",
    "mean_end_error",
    "mean_copy_test_error",
    "l2_distance_data_order",
    "l2_distance_pruning",
]
# What to do about a saved file of the analysis that is damaged or not the one it should be: a
# rerun without it recomputes it.
COPY_TODO = "delete it and rerun the stability command to train that copy again"
COPY_CHECKPOINT_TODO = (
    "delete it and rerun the stability command to train that copy again from its rewind point"
)
STABILITY_REWIND_POINT_TODO = "delete it and rerun the stability command to recompute it"
DENSE_CHECKPOINT_TODO = (
    "delete it and rerun the stability command to recompute the rewind points from the start"
)


def run_stability(
    plan: StabilityPlan,
    data: ImageDataset,
    execution: Execution = Execution(),
    callbacks: Sequence[RunCallback] = (),
) -> list[StabilityResult]:
    """Analyses (or reuses) every rewind point of ``plan``; returns one result per point.

    Writes each point's JSON and figure, the TensorBoard run (unless ``execution.tensorboard``
    is False), and for a sweep its CSV and figure,
    holding the experiment's lock (:func:`lth_tf.io.locked`): an IMP run or another analysis
    writing there meanwhile is refused. ``callbacks``: :class:`lth_tf.callbacks.RunCallback`
    instances that watch every copy trained (each copy is a round for them; see the module's
    docstring), their state kept in each copy's checkpoints.

    >>> run_stability(plan, data, callbacks=[MyMetric()])  # doctest: +SKIP
    """
    callbacks = check_callbacks(callbacks)
    check_dataset(plan, data)
    with io.locked(plan.experiment.root, "another lth_tf run"):
        io.remove_leftovers(plan.files.root)
        return _run_stability_locked(plan, data, execution, callbacks)


def _run_stability_locked(
    plan: StabilityPlan,
    data: ImageDataset,
    execution: Execution,
    callbacks: Sequence[RunCallback],
) -> list[dict]:
    files = plan.files
    call_each(callbacks, "on_run_start", plan.experiment, plan.hparams)
    results: dict[int, StabilityResult] = {}
    fresh: set[int] = set()
    for rewind in plan.rewinds:
        path = files.result(plan.pruning_round, rewind.iteration, plan.own_rewind)
        cached = _saved_result(path)
        if cached is not None and cached.settings == settings(plan, rewind):
            log.info("Rewind %s: results already in %s", rewind.label, path)
            results[rewind.iteration] = cached
    todo = [rewind for rewind in plan.rewinds if rewind.iteration not in results]
    if todo:
        session = StabilitySession(plan, data, execution, callbacks)
        points = session.rewind_points([rewind.iteration for rewind in todo])
        for rewind in todo:
            result = session.analyse(rewind, points.pop(rewind.iteration))
            io.write_json(
                files.result(plan.pruning_round, rewind.iteration, plan.own_rewind),
                result.to_json(),
            )
            results[rewind.iteration] = result
            fresh.add(rewind.iteration)

    ordered = [results[rewind.iteration] for rewind in plan.rewinds]
    pngs = []
    for result in ordered:
        path = files.figure(plan.pruning_round, result.rewind_iteration, plan.own_rewind)
        if result.rewind_iteration in fresh or not path.exists():
            io.write_bytes_atomic(path, figures.path_figure(result))
        pngs.append(path.read_bytes())
    if execution.tensorboard:
        summaries.log_results(files.tensorboard, ordered, pngs)
    if plan.sweep:
        # A sweep extended by a later run (--rewind_sweep=0,100it, then 500it) is one sweep.
        now = {result.rewind_iteration for result in ordered}
        earlier = _analysed_before(plan, now) if plan.extends_sweep else []
        if earlier:
            log.info(
                "The sweep also holds the rewind points analysed before with these settings: %s",
                ", ".join(f"{result.rewind_iteration}it" for result in earlier),
            )
        swept = sorted([*ordered, *earlier], key=lambda result: result.rewind_iteration)
        io.write_csv(files.sweep_csv(plan.pruning_round), sweep_rows(swept), SWEEP_COLUMNS)
        io.write_bytes_atomic(files.sweep_figure(plan.pruning_round), figures.sweep_figure(swept))
    call_each(callbacks, "on_run_end")
    return ordered


def settings(plan: StabilityPlan, rewind: RewindPoint) -> dict:
    """What decides a result: a saved result with other settings is recomputed."""
    return {
        "round": plan.pruning_round,
        "rewind_iteration": rewind.iteration,
        "train_to_iteration": plan.resolved.iterations,
        "data_seeds": list(plan.data_seeds),
        "points": plan.points,
        "bn_batches": plan.bn_batches,
    }


def check_dataset(plan: StabilityPlan, data: ImageDataset) -> None:
    """The dataset must be the one the experiment trained on (same sizes and image shape)."""
    info = plan.data_info
    expected = (info.input_shape, info.train_examples, info.test_examples)
    found = (data.input_shape, len(data.train_labels), len(data.test_labels))
    if found != expected:
        raise LthError(
            f"the dataset loaded from {data.source} (images {found[0]}, {found[1]} training and "
            f"{found[2]} test examples) is not the one {plan.experiment.root} trained on "
            f"({expected[0]}, {expected[1]} and {expected[2]}); pass the --data_dir it used"
        )


def _analysed_before(plan: StabilityPlan, now: set[int]) -> list[StabilityResult]:
    """The saved results of ``plan``'s round at rewind points other than ``now``'s, analysed
    with ``plan``'s settings (copies, points, BN batches) and of the round as it stands (its
    sparsity and test error), in rewind order.

    >>> plan = plan_stability("runs/e", 1, rewind_sweep=["500it"])  # doctest: +SKIP
    >>> _analysed_before(plan, {500})  # doctest: +SKIP
    [StabilityResult(rewind_iteration=0, ...), StabilityResult(rewind_iteration=100, ...)]
    """
    files, row = plan.files, plan.results_row
    found = []
    for path in sorted(files.root.glob(f"round_{plan.pruning_round:02d}*.json")):
        try:
            result = _read_result(path)
        except LthError:
            continue  # a damaged file: not this sweep's to mend
        if result is None:
            continue
        iteration = result.rewind_iteration
        point = RewindPoint(f"{iteration}it", iteration)
        if (
            iteration in now
            or path != files.result(plan.pruning_round, iteration, plan.own_rewind)
            or result.settings != settings(plan, point)
            or result.weights_remaining != row.weights_remaining
            or result.imp_test_error != plan.imp_test_error
        ):
            continue
        found.append(result)
    return sorted(found, key=lambda result: result.rewind_iteration)


def _saved_result(path: Path) -> StabilityResult | None:
    """The result saved at ``path``; none there, or one that does not read as a result (an
    older format, a damaged file), is None: it is computed again."""
    if not path.exists():
        return None
    result = _read_result(path)
    if result is None:
        log.info("%s does not read as a stability result; it is computed again", path)
    return result


def _read_result(path: Path) -> StabilityResult | None:
    """The result in ``path``; None where it does not read as one (an older format, a damaged
    entry)."""
    try:
        return StabilityResult.from_json(io.read_json(path))
    except (ValueError, TypeError, OSError):
        return None


def checked_weights(
    path: Path,
    arrays: dict[str, np.ndarray],
    variables: dict[str, tf.Variable],
    todo: str,
    masks: Snapshot | None = None,
) -> Snapshot:
    """``arrays`` (read from ``path``) for each of the model's ``variables``, once each is
    there in the variable's shape and kind of number, finite, and zero wherever ``masks`` (by
    variable) prune it; else an LthError naming the file, with ``todo``. Entries that are no
    variable of the model are left out, as :func:`lth_tf.pruning.wrapping.restore` leaves them.

    >>> checked_weights(path, {"fc1/kernel": np.full((784, 300), np.nan)}, pruned.rewindable,
    ...                 "delete it")  # doctest: +SKIP
    Traceback (most recent call last):
    lth_tf.errors.LthError: ... is damaged (fc1/kernel is not finite everywhere): delete it
    """
    try:
        check_restorable(variables, arrays)  # missing, misshapen, integers for floats
    except (KeyError, ValueError) as error:
        raise io.damaged(path, error.args[0], todo) from None
    weights = {name: arrays[name] for name in variables}
    odd = io.not_finite(weights)
    if odd is not None:
        raise io.damaged(path, f"{odd} is not finite everywhere", todo)
    for name, mask in (masks or {}).items():
        if np.any(weights[name][np.asarray(mask) == 0]):
            raise io.damaged(path, f"{name} is not zero where the round's mask prunes it", todo)
    return weights


def sweep_rows(results: Sequence[StabilityResult], masks: str = "fixed") -> list[dict]:
    """One CSV row per rewind point, earliest first; ``masks`` is ``fixed`` (one round's mask at
    every point) or ``own`` (each point's own experiment and masks)."""
    return [
        {
            "masks": masks,
            "rewind": result.rewind,
            "rewind_iteration": result.rewind_iteration,
            "instability": result.instability,
            "stable": result.stable,
            "max_path_error": result.max_path_error,
            "mean_end_error": result.mean_end_error,
            "mean_copy_test_error": mean_error(result.copy_test_errors),
            "l2_distance_data_order": result.l2_distance_data_order,
            "l2_distance_pruning": (
                "" if result.l2_distance_pruning is None else result.l2_distance_pruning
            ),
        }
        for result in results
    ]


class StabilitySession:
    """The experiment's network rebuilt exactly as run_imp built it, with one Trainer for the
    dense network's rewind points and every copy (nothing is retraced between them).
    ``callbacks`` watch every copy it trains."""

    def __init__(
        self,
        plan: StabilityPlan,
        data: ImageDataset,
        execution: Execution,
        callbacks: Sequence[RunCallback] = (),
    ):
        self.plan = plan
        self.data = data
        self.callbacks = check_callbacks(callbacks)
        # jit_compile="auto": with or without XLA as the experiment trained, so a recomputed
        # rewind point matches its run bit for bit.
        execution = execution.resumed(plan.experiment.recorded_xla_training())
        self.execution = execution
        hparams = plan.hparams
        # As run_imp builds it, so the initial weights and every step are the same.
        model = experiment_model(plan.experiment, hparams)
        run = build_run(hparams, data, execution=execution, model=model)
        self.pruned, self.trainer = run.pruned, run.trainer
        self.initial = snapshot(self.pruned.rewindable)
        shapes = {name: tuple(v.shape) for name, v in self.pruned.masks.items()}
        masks = plan.experiment.read_masks(
            plan.pruning_round, shapes, nested=not hparams.pruning.one_shot
        )
        self.masks = {name: mask.astype(np.float32) for name, mask in masks.items()}
        self.batch_norm = None
        if batch_norm_layers(self.pruned.unwrapped):
            batches = self._batches(hparams.training.seed, 0).take(plan.bn_batches)
            self.batch_norm = BatchNormStatistics(self.pruned.unwrapped, batches)

    # -- rewind points ---------------------------------------------------------------------

    def rewind_points(self, iterations: Sequence[int]) -> dict[int, Snapshot]:
        """The dense network's weights after each of ``iterations`` iterations of round 0: the
        experiment's ``rewind_point.npz``, a point recomputed before, or recomputed now."""
        files = self.plan.files
        points: dict[int, Snapshot] = {}
        for k in iterations:
            if k == self.plan.own_rewind:
                points[k] = self.own_rewind_point()
            elif files.rewind_point(k).exists():
                points[k] = self.read_saved(files.rewind_point(k), STABILITY_REWIND_POINT_TODO)
        missing = [k for k in iterations if k not in points]
        if missing:
            points.update(self.recompute_rewind_points(missing))
        return points

    def recompute_rewind_points(self, iterations: Sequence[int]) -> dict[int, Snapshot]:
        """Trains the dense network from its initial weights, keeping it at each of
        ``iterations``; each point but the experiment's own is saved as it passes.

        Passing the experiment's own rewind point on the way checks the recomputation against
        ``rewind_point.npz`` (an iteration-0 rewind point checks the initial weights).
        """
        files, own = self.plan.files, self.plan.own_rewind
        experiment = self.plan.experiment
        saved = self.own_rewind_point() if experiment.rewind_point.exists() else None
        if own == 0 and saved is not None:
            # Deterministic initialisation: a difference means the model's code changed.
            self._check_same(self.initial, saved, "initial weights", fatal=True)
        points: dict[int, Snapshot] = {}

        def reached(k: int, weights: Snapshot) -> None:
            if k == own and k > 0 and saved is not None:
                self._check_same(weights, saved, f"weights at iteration {k}", fatal=False)
            if k in iterations:
                points[k] = weights
                if k != own:
                    path = files.rewind_point(k)
                    io.write_npz(path, {**weights, **experiment.stamp(path)})

        if 0 in iterations:
            reached(0, self.initial)
        targets = sorted({k for k in iterations if k > 0} | ({own} if own > 0 else set()))
        if not targets:
            return points
        checkpoint = files.dense_checkpoint
        if checkpoint.exists():
            resumed_at = self._checkpoint_iteration(checkpoint, DENSE_CHECKPOINT_TODO)
            passed = [k for k in iterations if 0 < k <= resumed_at]
            if any(k == own or not files.rewind_point(k).exists() for k in passed):
                checkpoint.unlink()  # it went past a point this run needs: start over
            else:
                points.update(
                    {
                        k: self.read_saved(files.rewind_point(k), STABILITY_REWIND_POINT_TODO)
                        for k in passed
                    }
                )
        self.pruned.set_round(0)
        self.pruned.set_masks({name: np.ones_like(m) for name, m in self.masks.items()})
        restore(self.pruned.rewindable, self.initial)
        self.trainer.reset_optimizer()
        self._train(
            seed=self.plan.hparams.training.seed,
            start=0,
            stop=targets[-1],
            checkpoint=checkpoint,
            callbacks=[SnapshotAt(targets, lambda k: reached(k, snapshot(self.pruned.rewindable)))],
            title=f"Round 0 again, to iteration{'s' * (len(targets) > 1)} "
            + ", ".join(map(str, targets)),
            todo=DENSE_CHECKPOINT_TODO,
        )
        checkpoint.unlink(missing_ok=True)
        return points

    def _check_same(self, mine: Snapshot, saved: Snapshot, what: str, fatal: bool) -> None:
        """Logs whether recomputed weights equal the experiment's rewind point; a difference
        is an error where it cannot come from floating point (``fatal``), else a warning."""
        differences = {
            name: float(np.max(np.abs(mine[name] - saved[name]), initial=0.0)) for name in saved
        }
        worst = max(differences, key=differences.get)
        if differences[worst] == 0.0:
            log.info("Recomputed %s equal the experiment's rewind_point.npz exactly", what)
        elif fatal:
            raise LthError(
                f"the rebuilt {what} differ from {self.plan.experiment.rewind_point} "
                f"({worst} by up to {differences[worst]:.3g}): the model's code changed since "
                "the experiment ran, so other rewind points cannot be recomputed; use "
                "--rewind with the experiment's own rewind point"
            )
        else:
            log.warning(
                "Recomputed weights at %s differ from rewind_point.npz (%s by up to %.3g): was "
                "the experiment run with another --jit_compile setting?",
                what,
                worst,
                differences[worst],
            )

    # -- copies ----------------------------------------------------------------------------

    def train_copy(self, rewind: RewindPoint, point: Snapshot, seed: int) -> Snapshot:
        """The subnetwork trained from ``point`` (times the mask), iterations k to T, with the
        data order of ``seed``; saved, and reused when it was saved before."""
        plan = self.plan
        path = plan.files.copy(plan.pruning_round, rewind.iteration, seed)
        if path.exists():
            saved = self.read_saved(path, COPY_TODO, masks=self.round_masks())  # checked first
            log.info("Copy with data seed %d: reusing %s", seed, path)
            return saved
        self.pruned.set_round(plan.pruning_round)
        self.pruned.set_masks(self.masks)
        self.pruned.rewind_to(point)
        self.pruned.apply_masks()
        # Fresh optimizer slots (and Adam's bias correction), the learning-rate schedule
        # where the dense run had it at iteration k.
        self.trainer.reset_optimizer(schedule_start=rewind.iteration)
        checkpoint = plan.files.copy_checkpoint(plan.pruning_round, rewind.iteration, seed)
        context = RunContext(
            plan.pruning_round,
            self.pruned,
            plan.experiment,
            plan.hparams,
            StabilityCopy(rewind.iteration, seed),
        )
        progress = self._train(
            seed=seed,
            start=rewind.iteration,
            stop=plan.resolved.iterations,
            checkpoint=checkpoint,
            callbacks=[],
            title=(
                f"Copy with data seed {seed}: iterations {rewind.iteration} to "
                f"{plan.resolved.iterations}"
            ),
            watched_by=(context, self.callbacks),
            todo=COPY_CHECKPOINT_TODO,
        )
        self.pruned.apply_masks()
        weights = snapshot(self.pruned.rewindable)
        io.write_npz(path, {**weights, **plan.experiment.stamp(path)})
        checkpoint.unlink(missing_ok=True)
        result = CopyResult(
            round=plan.pruning_round,
            rewind_iteration=rewind.iteration,
            data_seed=seed,
            iterations=plan.resolved.iterations - rewind.iteration,
            train_seconds=round(progress.train_seconds, 3),
            weights=path,
        )
        call_each(self.callbacks, "on_round_end", context, result)
        return weights

    def _batches(self, seed: int, start: int) -> tf.data.Dataset:
        """The experiment's training stream (augmented as it was), with another seed."""
        training = self.plan.hparams.training
        return training_batches(
            self.data.train_images,
            self.data.train_labels,
            training.batch_size,
            seed=seed,
            start_iteration=start,
            augment=training.augment,
        )

    def _train(
        self,
        seed: int,
        start: int,
        stop: int,
        checkpoint: Path,
        callbacks: list[Callback],
        title: str,
        watched_by: tuple[RunContext, Sequence[RunCallback]] | None = None,
        todo: str = io.RECOMPUTE,
    ) -> TrainingProgress:
        """Trains from ``start`` (or a checkpoint) to ``stop`` on the data order of ``seed``,
        with ``callbacks`` and a checkpoint every ``checkpoint_seconds``; returns the progress.

        ``watched_by``: a copy's context and the RunCallbacks that see it as a round (their
        state goes into the checkpoint and comes back from it). ``todo``: what to do about a
        checkpoint that is damaged or not this training's."""
        trainer = self.trainer
        context, watching = watched_by or (None, ())
        if checkpoint.exists():
            self.plan.experiment.check_stamp(checkpoint, todo)
        progress = resume(checkpoint, trainer, (start, stop), watching, todo)
        if progress is not None:
            log.info("%s: resumes at iteration %d", title, progress.iteration)
        else:
            progress = TrainingProgress(iteration=start)
            log.info("%s", title)
            call_each(watching, "on_round_start", context)
        if watching:
            # Before the checkpoint, so that it holds the state after the chunk it saves.
            callbacks = [*callbacks, RunCallbackChunks(context, watching)]
        stamp = self.plan.experiment.stamp(checkpoint)
        callbacks = [
            *callbacks,
            Checkpoint(
                lambda current: io.write_npz(
                    checkpoint, {**checkpoint_arrays(trainer, current, watching), **stamp}
                ),
                seconds=self.execution.checkpoint_seconds,
            ),
        ]
        if self.execution.show_progress:
            from lth_tf.monitoring.progress import ProgressBar

            callbacks.append(ProgressBar(start, stop))  # the title is logged above
        return train(trainer, progress, stop, callbacks, seed=seed)

    # -- saved files -----------------------------------------------------------------------

    def read_saved(self, path: Path, todo: str, masks: Snapshot | None = None) -> Snapshot:
        """The weights this analysis saved at ``path`` (a copy, a recomputed rewind point),
        once its stamp says it is this experiment's file of that place and its values fit the
        model (:func:`checked_weights`); else an LthError naming it, with ``todo``."""
        arrays = self.plan.experiment.read_arrays(path, todo)
        return checked_weights(path, arrays, self.pruned.rewindable, todo, masks)

    def own_rewind_point(self) -> Snapshot:
        """The experiment's ``rewind_point.npz``, checked to be its own and to fit the model."""
        experiment = self.plan.experiment
        return checked_weights(
            experiment.rewind_point,
            experiment.read_rewind_point(),
            self.pruned.rewindable,
            REWIND_POINT_TODO,
        )

    def round_masks(self) -> Snapshot:
        """Every mask of the round by variable: the kernels', and with
        ``--granularity=channel`` the biases', normalisation parameters' and others' that
        :meth:`lth_tf.pruning.wrapping.PrunedModel.set_masks` derives from them."""
        masks = dict(self.masks)
        channels = self.pruned.channels
        if channels is not None:
            shapes = {name: tuple(mask.shape) for name, mask in self.pruned.channel_masks.items()}
            masks.update(channels.channel_masks(self.masks, shapes))
        return masks

    def _checkpoint_iteration(self, checkpoint: Path, todo: str) -> int:
        """The iteration ``checkpoint`` (this analysis's, checked as :meth:`read_saved` checks
        a file) resumes at; its weights are checked when it is resumed."""
        arrays = self.plan.experiment.read_arrays(checkpoint, todo)
        try:
            return TrainingProgress.pop_from(arrays).iteration
        except (KeyError, ValueError, TypeError) as error:  # as resume() reports them
            why = error.args[0] if error.args else error
            what = f"no {why!r} entry" if isinstance(error, KeyError) else why
            raise io.damaged(checkpoint, what, todo) from None

    # -- measures --------------------------------------------------------------------------

    def test_error(self, weights: Snapshot, recompute_batch_norm: bool = False) -> float:
        """Test error in percent of the network with these weights (and the round's mask)."""
        restore(self.pruned.rewindable, weights)
        if recompute_batch_norm and self.batch_norm is not None:
            self.batch_norm.recompute()
        _, accuracy = self.trainer.evaluate_split("test")
        # Rounded to 9 decimals: 12.34 instead of 12.339999999999998 (same value either way).
        return round(100.0 * (1.0 - accuracy), 9)

    def path_errors(self, a: Snapshot, b: Snapshot, alphas: Sequence[float]) -> list[float]:
        """Test error at each mixture ``(1 - alpha) * a + alpha * b``.

        With batch norm, the statistics are recomputed at every mixture, ends included, so the
        whole path is measured one way (a mixture of two copies' statistics means nothing).
        """
        return [
            self.test_error(interpolate(a, b, alpha), recompute_batch_norm=True) for alpha in alphas
        ]

    def copy_pairs(self, copies: Sequence[Snapshot], alphas: Sequence[float]) -> list[CopyPair]:
        """Every pair of copies: the test errors along the path between them, its barrier and
        their distance."""
        seeds = self.plan.data_seeds
        pairs = []
        for i, j in itertools.combinations(range(len(copies)), 2):
            errors = self.path_errors(copies[i], copies[j], alphas)
            distance, raw = l2_distance(copies[i], copies[j], self.masks)
            pairs.append(
                CopyPair(
                    copies=[i, j],
                    data_seeds=[seeds[i], seeds[j]],
                    path_errors=errors,
                    instability=instability(errors),
                    l2_distance=distance,
                    l2_distance_raw=raw,
                )
            )
        return pairs

    def pruning_distances(self, copies: Sequence[Snapshot]) -> dict[str, Any]:
        """Stability to pruning: each copy's distance to the dense network's trained weights
        (none for round 0, which is the dense network)."""
        plan = self.plan
        if plan.pruning_round == 0:
            return {
                "l2_distance_pruning": None,
                "l2_distance_pruning_raw": None,
                "l2_distance_pruning_per_copy": None,
                "pruning_reference": "none: round 0 is the dense network itself, nothing is pruned",
            }
        shapes = {name: tuple(v.shape) for name, v in self.pruned.rewindable.items()}
        dense = plan.experiment.read_weights(0, shapes)
        per_copy = [l2_distance(copy, dense, self.masks) for copy in copies]
        return {
            "l2_distance_pruning": per_copy[0][0],
            "l2_distance_pruning_raw": per_copy[0][1],
            "l2_distance_pruning_per_copy": [d for d, _ in per_copy],
            "pruning_reference": (
                "round_00/weights.npz (the dense network trained to iteration "
                f"{plan.resolved.iterations}) times the mask, against copy 0 (data seed "
                f"{plan.data_seeds[0]}: the dense network's own data order)"
            ),
        }

    def analyse(self, rewind: RewindPoint, point: Snapshot) -> StabilityResult:
        """Copies, distances and the path between every pair of copies."""
        plan = self.plan
        began = time.monotonic()
        total = plan.resolved.iterations
        log.info(
            "Round %d (%.2f%% of weights remain), rewind %s: %d copies train %d iterations each",
            plan.pruning_round,
            plan.percent_remaining,
            rewind.label,
            len(plan.data_seeds),
            total - rewind.iteration,
        )
        self.pruned.set_round(plan.pruning_round)
        self.pruned.set_masks(self.masks)
        copies = [self.train_copy(rewind, point, seed) for seed in plan.data_seeds]
        copy_errors = [self.test_error(copy) for copy in copies]
        for seed, error in zip(plan.data_seeds, copy_errors, strict=True):
            log.info("Copy with data seed %d: test error %.2f%%", seed, error)

        alphas = mixtures(plan.points)
        pairs = self.copy_pairs(copies, alphas)
        path = [mean_error(errors) for errors in zip(*(p.path_errors for p in pairs), strict=True)]
        barrier = mean_error(pair.instability for pair in pairs)
        pruning = self.pruning_distances(copies)
        result = StabilityResult(
            **{
                "experiment": str(plan.experiment.root),
                "model": plan.hparams.model.name,
                "dataset": plan.hparams.dataset.name,
                "round": plan.pruning_round,
                "percent_remaining": plan.percent_remaining,
                "weights_remaining": plan.results_row.weights_remaining,
                "rewind": rewind.step,
                "rewind_iteration": rewind.iteration,
                "experiment_rewind_iteration": plan.own_rewind,
                "train_from_iteration": rewind.iteration,
                "train_to_iteration": total,
                "iterations_trained": total - rewind.iteration,
                "data_seeds": list(plan.data_seeds),
                "mixtures": alphas,
                "error_unit": ERROR_UNIT,
                "copy_test_errors": copy_errors,
                "imp_test_error": plan.imp_test_error,
                "path_errors": path,
                "end_errors": [path[0], path[-1]],
                "max_path_error": max(path),
                "instability": barrier,
                "stable": barrier < STABLE_BELOW,
                "stable_below": STABLE_BELOW,
                "l2_distance_data_order": float(np.mean([pair.l2_distance for pair in pairs])),
                "l2_distance_data_order_raw": float(np.mean([p.l2_distance_raw for p in pairs])),
                **pruning,
                "distance_over": DISTANCE_OVER,
                "distance_normalisation": DISTANCE_NORMALISATION,
                "batch_norm": {
                    "layers": len(batch_norm_layers(self.pruned.unwrapped)),
                    "statistics_from_training_batches": plan.bn_batches if self.batch_norm else 0,
                },
                "pairs": pairs,
                "settings": settings(plan, rewind),
                "seconds": round(time.monotonic() - began, 1),
            }
        )
        log.info(
            "Rewind %s: instability %.2f points (%s), L2 distance data order %.4f, pruning %s",
            rewind.label,
            barrier,
            "stable" if result.stable else "unstable",
            result.l2_distance_data_order,
            "n/a" if plan.pruning_round == 0 else f"{result.l2_distance_pruning:.4f}",
        )
        return result
