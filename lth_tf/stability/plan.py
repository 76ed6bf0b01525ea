"""What a stability analysis will do and where its files go, checked before TensorFlow starts
(the measures themselves are :mod:`lth_tf.stability.measures`).

<experiment>/stability/
  round_NN[-Kit].json     the measures of round NN at rewind iteration K (no suffix: the
                          experiment's own rewind point)
  round_NN[-Kit].png      test error along the path between two copies
  round_NN-sweep.csv/png  instability and distances against the rewind point (--rewind_sweep)
  round_NN/rewind_Kit/copy_seedS.npz   a trained copy (data seed S), reused on a rerun
  round_NN/rewind_Kit/copy_seedS.checkpoint.npz   while that copy trains
  rewind_points/rewind_Kit.npz         the dense network after K iterations of round 0
  rewind_points/dense.checkpoint.npz   while rewind points are recomputed

Every ``.npz`` here carries the experiment's stamp (:meth:`lth_tf.experiment.ExperimentDir.stamp`:
its id and the file's place, so which round, rewind point and seed), checked when it is reused
(:meth:`lth_tf.stability.analysis.StabilitySession.read_saved`).

>>> plan = plan_stability("runs/quickstart", pruning_round=3, rewind="0")  # doctest: +SKIP
>>> plan.files.result(3, 0, own_rewind=0).name  # doctest: +SKIP
'round_03.json'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from lth_tf import io
from lth_tf.config import ExperimentHparams, Resolved, check_number
from lth_tf.errors import LthError
from lth_tf.experiment import MASKS_TODO, DataRecord, ExperimentDir, RoundResult, read_experiment
from lth_tf.lottery.controls import ControlContext, get_control
from lth_tf.models.registry import resolve_steps
from lth_tf.steps import Step

STABILITY_DIR = "stability"
# Upper bounds, so a typo is refused at once instead of running for days: each copy is a
# network trained to the end of the round, each mixture a pass over the test set (the papers
# use 2-4 copies and 30 points).
MAX_SEEDS = 100
MAX_POINTS = 1000


@dataclasses.dataclass(frozen=True)
class RewindPoint:
    """A rewind point as the user wrote it (canonical) and the iteration it falls on.

    >>> RewindPoint.parse("2ep", iterations_per_epoch=917)
    RewindPoint(step='2ep', iteration=1834)
    """

    step: str
    iteration: int

    @classmethod
    def parse(
        cls, text: str | int, iterations_per_epoch: int, what: str = "--rewind"
    ) -> RewindPoint:
        step = Step.parse(text, what)
        return cls(str(step), step.to_iterations(iterations_per_epoch))

    @property
    def label(self) -> str:
        """``500it``, or ``2ep (1834it)`` where epochs hide the iteration."""
        iterations = f"{self.iteration}it"
        return iterations if self.step == iterations else f"{self.step} ({iterations})"


@dataclasses.dataclass(frozen=True)
class StabilityFiles:
    """Paths under ``<experiment>/stability/`` (and its TensorBoard run)."""

    experiment: ExperimentDir

    @property
    def root(self) -> Path:
        return self.experiment.root / STABILITY_DIR

    @property
    def tensorboard(self) -> Path:
        return self.experiment.root / "tensorboard" / STABILITY_DIR

    def stem(self, pruning_round: int, rewind_iteration: int, own_rewind: int) -> str:
        suffix = "" if rewind_iteration == own_rewind else f"-{rewind_iteration}it"
        return f"round_{pruning_round:02d}{suffix}"

    def result(self, pruning_round: int, rewind_iteration: int, own_rewind: int) -> Path:
        return self.root / f"{self.stem(pruning_round, rewind_iteration, own_rewind)}.json"

    def figure(self, pruning_round: int, rewind_iteration: int, own_rewind: int) -> Path:
        return self.root / f"{self.stem(pruning_round, rewind_iteration, own_rewind)}.png"

    def sweep_csv(self, pruning_round: int) -> Path:
        return self.root / f"round_{pruning_round:02d}-sweep.csv"

    def sweep_figure(self, pruning_round: int) -> Path:
        return self.root / f"round_{pruning_round:02d}-sweep.png"

    def copy(self, pruning_round: int, rewind_iteration: int, seed: int) -> Path:
        folder = self.root / f"round_{pruning_round:02d}" / f"rewind_{rewind_iteration}it"
        return folder / f"copy_seed{seed}.npz"

    def copy_checkpoint(self, pruning_round: int, rewind_iteration: int, seed: int) -> Path:
        return self.copy(pruning_round, rewind_iteration, seed).with_suffix(".checkpoint.npz")

    def rewind_point(self, iteration: int) -> Path:
        return self.root / "rewind_points" / f"rewind_{iteration}it.npz"

    @property
    def dense_checkpoint(self) -> Path:
        """While rewind points are recomputed: the dense network's training so far."""
        return self.root / "rewind_points" / "dense.checkpoint.npz"


@dataclasses.dataclass(frozen=True)
class StabilityPlan:
    """One checked request: a finished round, rewind points, copies and mixtures.

    ``data_seeds`` seed the copies' data orders (the first is the experiment's own seed, so
    copy 0 sees the batches the dense network saw); ``points`` mixtures are evenly spaced in
    [0, 1], ends included; ``bn_batches`` training batches recompute batch-norm statistics.
    """

    experiment: ExperimentDir
    hparams: ExperimentHparams
    resolved: Resolved
    data_info: DataRecord
    pruning_round: int
    rewinds: tuple[RewindPoint, ...]
    sweep: bool
    data_seeds: tuple[int, ...]
    points: int
    bn_batches: int
    results_row: RoundResult
    # A sweep's table and figure also hold the round's points analysed before with these
    # settings (a sweep extended by a later run); not the rewind search's, whose choice
    # weighs its own grid only.
    extends_sweep: bool = True

    @property
    def files(self) -> StabilityFiles:
        return StabilityFiles(self.experiment)

    @property
    def own_rewind(self) -> int:
        """The experiment's rewind iteration: its ``rewind_point.npz`` holds these weights."""
        return self.resolved.rewind_iteration

    @property
    def percent_remaining(self) -> float:
        return self.results_row.percent_remaining

    @property
    def imp_test_error(self) -> float:
        """The round's own test error (%), as its results row says."""
        return round(100.0 * (1.0 - self.results_row.test_accuracy), 9)


def plan_stability(
    experiment_dir: str | Path,
    pruning_round: int,
    rewind: str | None = None,
    rewind_sweep: Sequence[str] = (),
    seeds: int = 2,
    points: int = 30,
    bn_batches: int = 100,
) -> StabilityPlan:
    """Checks every input against the experiment; any problem is an :class:`LthError`.

    ``rewind`` defaults to the experiment's own rewind point; ``rewind_sweep`` lists several
    (and excludes ``rewind``). Copies train from the rewind point k to the end of the round,
    iteration T, so a rewind point must fall before T.
    """
    check_number("--seeds", seeds, low=2, integer=True, why="copies to compare")
    check_number("--points", points, low=2, integer=True, why="the two ends of the path at least")
    # Apart from the lower bounds, whose messages say why a single copy or point cannot be.
    check_number("--seeds", seeds, high=MAX_SEEDS, integer=True, why="each copy trains a network")
    check_number("--points", points, high=MAX_POINTS, integer=True, why="each point is a test pass")
    check_number("--bn_batches", bn_batches, low=1, integer=True)
    if rewind is not None and rewind_sweep:
        raise LthError("give --rewind or --rewind_sweep, not both")
    experiment, hparams, data_info = read_experiment(
        experiment_dir, data_keys=("input_shape", "train_examples", "test_examples")
    )
    resolved = resolve_steps(hparams, data_info.train_examples)
    row = _finished_round(experiment, hparams, pruning_round)

    per_epoch = resolved.iterations_per_epoch
    if rewind_sweep:
        texts, what = list(rewind_sweep), "--rewind_sweep"
        if any(not str(t).strip() for t in texts):
            raise LthError(f"--rewind_sweep: empty entry in {','.join(texts)!r}")
        requested = [RewindPoint.parse(t, per_epoch, what) for t in texts]
    else:
        texts = [rewind if rewind is not None else hparams.pruning.rewind]
        what = "--rewind" if rewind is not None else "the experiment's rewind point"
        requested = [RewindPoint.parse(texts[0], per_epoch, what)]
    for point in requested:
        if point.iteration >= resolved.iterations:
            raise LthError(
                f"{what}: {point.label} is not before the end of training ({resolved.iterations} "
                "iterations per round); copies train from the rewind point to the end, so "
                f"choose a point below {resolved.iterations}it"
            )
    steps = [point.step for point in requested]
    twice = next((i for i, step in enumerate(steps) if steps.index(step) < i), None)
    if twice is not None:  # a slip, as lth-sweep's --rewind refuses it
        first = texts[steps.index(steps[twice])]
        spelt = "" if str(first) == str(texts[twice]) else f" (as {first} and {texts[twice]})"
        raise LthError(f"{what}: {steps[twice]} is given twice{spelt}; give each rewind point once")
    # One analysis per iteration ("2ep" and "1834it" can be the same point), earliest first.
    unique = {point.iteration: point for point in reversed(requested)}
    rewinds = tuple(unique[i] for i in sorted(unique))
    # A control's rounds start from values it was given, so only those can be analysed.
    get_control(hparams.branch.control).check_analysable(
        ControlContext(experiment, hparams),
        [(point.label, point.iteration) for point in rewinds],
        resolved.rewind_iteration,
    )
    if resolved.rewind_iteration in unique and not experiment.rewind_point.exists():
        raise LthError(f"{experiment.root} has no rewind_point.npz; was round 0 interrupted?")
    if experiment.rewind_point.exists():
        # Before TensorFlow starts: another experiment's rewind point is refused in a second.
        experiment.check_stamp(experiment.rewind_point)
    return StabilityPlan(
        experiment=experiment,
        hparams=hparams,
        resolved=resolved,
        data_info=data_info,
        pruning_round=pruning_round,
        rewinds=rewinds,
        sweep=bool(rewind_sweep),
        data_seeds=tuple(hparams.training.seed + i for i in range(seeds)),
        points=points,
        bn_batches=bn_batches,
        results_row=row,
    )


def _finished_round(
    experiment: ExperimentDir, hparams: ExperimentHparams, pruning_round: int
) -> RoundResult:
    """The results row of a finished round; round 0's trained weights are needed too."""
    planned = hparams.pruning.rounds
    if pruning_round < 0 or pruning_round > planned:
        raise LthError(
            f"--round: {experiment.root} has no round {pruning_round} (it runs rounds 0-{planned})"
        )
    done = sorted(experiment.completed_rounds())
    for needed in sorted({0, pruning_round}):
        if needed in done and not experiment.masks(needed).exists():
            raise LthError(
                f"{experiment.masks(needed)} is missing; rerun the IMP command to recompute it"
            )
        if needed not in done:
            finished = ", ".join(map(str, done)) or "none"
            why = "" if needed == pruning_round else f" (round {pruning_round} is compared with it)"
            raise LthError(
                f"round {needed} of {experiment.root} has not finished{why}; finished rounds: "
                f"{finished}; rerun pipelines.imp to finish it, or pick a finished round"
            )
    # Read now, before TensorFlow starts: a damaged file is refused in a second, not after
    # the dense network has been rebuilt.
    dense = experiment.read_weights(0)
    shapes = {name: value.shape for name, value in dense.items()}
    masks = experiment.read_masks(pruning_round, nested=not hparams.pruning.one_shot)
    odd = [name for name, mask in masks.items() if shapes.get(name) != mask.shape]
    if odd:
        raise io.damaged(
            experiment.masks(pruning_round),
            f"{odd[0]} is not of round 0's shape",
            MASKS_TODO,
        )
    experiment.read_weights(pruning_round, shapes)
    return next(r for r in experiment.read_results() if r.round == pruning_round)
