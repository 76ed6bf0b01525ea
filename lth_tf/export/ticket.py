"""Which round of an experiment to export, and that round's masks and weights.

NumPy only: a pipeline checks its input here before TensorFlow starts.

>>> ticket = open_ticket("runs/quickstart", "best")  # doctest: +SKIP
>>> ticket.round, ticket.selection  # doctest: +SKIP
(10, 'round 10: the sparsest finished round whose test accuracy (at early stop, or ...')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lth_tf import io
from lth_tf.config import ExperimentHparams, check_number
from lth_tf.errors import LthError
from lth_tf.experiment import MASKS_TODO, DataRecord, ExperimentDir, RoundResult, read_experiment
from lth_tf.legacy import num_classes_from_weights
from lth_tf.steps import is_count

BEST = "best"


@dataclasses.dataclass(frozen=True, eq=False)
class Ticket:
    """One finished round of an experiment: its masks, trained weights and results row.

    ``weights`` holds every rewindable variable by name (``fc1/kernel``, ``fc1/bias``), pruned
    positions exactly zero; ``masks`` the 0/1 mask of each prunable kernel.
    """

    experiment: ExperimentDir
    hparams: ExperimentHparams
    data: DataRecord
    round: int
    selection: str
    masks: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    results: RoundResult

    @property
    def name(self) -> str:
        return self.experiment.root.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape

    @property
    def num_classes(self) -> int:
        if self.data.num_classes is not None:
            return self.data.num_classes
        return num_classes_from_weights(self.weights)

    @property
    def percent_remaining(self) -> float:
        """As results.csv has it: over the layers IMP prunes (the output layer of a globally
        pruned net stays dense and is not counted; ``masks`` holds it all the same)."""
        return self.results.percent_remaining


def parse_round(text: str | int) -> int | str:
    """``"best"`` or a round number.

    >>> parse_round("7"), parse_round("best")
    (7, 'best')
    """
    if isinstance(text, int) or is_count(str(text).strip()):
        return int(text)
    if str(text).strip().lower() == BEST:
        return BEST
    raise LthError(f"--round: {text!r} is neither a round number (0, 1, ...) nor 'best'")


def choose_best_round(rows: list[RoundResult], tolerance: float) -> tuple[int, str]:
    """The sparsest round whose weights as exported (those at the end of its training) score
    within ``tolerance`` points of round 0's on the test set, and a sentence saying why.

    The papers rank rounds by the test accuracy at the early stop; IMP keeps, and the export
    ships, the weights at the end of training, which may score lower (0.75 points on a Fashion-
    MNIST lenet round). A ticket is chosen by what ships, against the dense network's file.

    >>> from types import SimpleNamespace
    >>> def row(r, left, accuracy):
    ...     return SimpleNamespace(round=r, percent_remaining=left, test_accuracy=accuracy)
    >>> rows = [row(0, 100.0, 0.90), row(1, 80.0, 0.897), row(2, 64.0, 0.89)]
    >>> choose_best_round(rows, tolerance=0.5)[0]
    1
    """
    # NaN would compare false with every accuracy and silently pick round 0; inf every round.
    check_number("--tolerance", tolerance, low=0, why="accuracy points below round 0's allowed")
    by_round = {row.round: row for row in rows}
    if 0 not in by_round:
        raise LthError("round 0 has not finished, so no round can be compared with it")
    dense = by_round[0].test_accuracy
    # A 1e-9 slack: accuracies are fractions of a test set, tolerances are decimal points.
    within = [
        row for row in by_round.values() if row.test_accuracy >= dense - tolerance / 100 - 1e-9
    ]
    best = min(within, key=lambda row: (row.percent_remaining, -row.round))
    chosen = best.round
    reason = (
        f"round {chosen}: the sparsest finished round whose weights as exported (at the end of "
        f"training) score at most {tolerance:g} points below round 0's on the test set "
        f"({100 * best.test_accuracy:.2f}% against {100 * dense:.2f}%); "
        f"{best.percent_remaining:.2f}% of weights remain"
    )
    sparser = sorted(
        (r for r in by_round.values() if r.percent_remaining < best.percent_remaining),
        key=lambda r: r.round,
    )
    if sparser:
        missed = ", ".join(f"{r.round} ({100 * r.test_accuracy:.2f}%)" for r in sparser)
        reason += f"; sparser rounds fall short: {missed}"
    return chosen, reason


def open_ticket(
    experiment_dir: str | Path, pruning_round: int | str = BEST, tolerance: float = 0.5
) -> Ticket:
    """Round ``pruning_round`` (a number or ``"best"``, see :func:`choose_best_round`) of an
    experiment, with its masks and weights; anything missing or unfinished is an LthError."""
    # The export checks the dataset it loads against the saved description.
    experiment, hparams, data = read_experiment(
        experiment_dir, data_keys=("input_shape", "test_examples")
    )
    requested = parse_round(pruning_round)
    done = sorted(experiment.completed_rounds())
    rows = [row for row in experiment.read_results() if row.round in done]
    if not done:
        raise LthError(f"{experiment.root} has no finished round yet; run IMP first")
    if requested == BEST:
        chosen, selection = choose_best_round(rows, tolerance)
    else:
        chosen, selection = requested, f"round {requested}, as asked"
        if chosen not in done:
            planned = hparams.pruning.rounds
            problem = (
                f"{experiment.root} has no round {chosen} (it runs rounds 0-{planned})"
                if chosen > planned
                else f"round {chosen} of {experiment.root} has not finished"
            )
            raise LthError(
                f"{problem}; finished rounds: {_ranges(done)}; pick one of those or --round=best"
            )
    row = next(r for r in rows if r.round == chosen)
    if not experiment.masks(chosen).exists():
        raise LthError(
            f"{experiment.masks(chosen)} is missing; rerun the IMP command to recompute it"
        )
    # Round 0's shapes are the model's: a round of other shapes is not of this experiment.
    dense = experiment.read_weights(0)
    shapes = {name: value.shape for name, value in dense.items()}
    weights = dense if chosen == 0 else experiment.read_weights(chosen, shapes)
    masks = experiment.read_masks(chosen, nested=not hparams.pruning.one_shot)
    if chosen and experiment.masks(0).exists():  # round 0's are all ones, for every layer
        lost = sorted(set(experiment.read_arrays(experiment.masks(0))) - set(masks))
        if lost:
            raise io.damaged(experiment.masks(chosen), f"no {lost[0]}", MASKS_TODO)
    for name, mask in masks.items():
        if name in weights and weights[name].shape != mask.shape:
            raise io.damaged(
                experiment.masks(chosen), f"{name} is not of its weights' shape", MASKS_TODO
            )
        # The round saved its weights masked: a survivor where the mask prunes means the two
        # files are not of one training. Which is wrong is unknown (a recomputed mask is the
        # same), so the whole round is trained again.
        if name in weights and np.any(weights[name][mask == 0] != 0):
            raise LthError(
                f"{experiment.masks(chosen)} prunes {name} weights that "
                f"{experiment.weights(chosen).name} holds: the round's files are not of one "
                f"training; delete {experiment.round_dir(chosen)} and rerun the IMP command "
                "to train the round again"
            )
    expected = set(masks) if data.num_classes is not None else set(masks) | {"output/bias"}
    missing = sorted(expected - set(weights))
    if missing:
        raise LthError(
            f"{experiment.weights(chosen)} lacks {', '.join(missing)}; the round's files are "
            "from different runs"
        )
    return Ticket(experiment, hparams, data, chosen, selection, masks, weights, row)


def _ranges(rounds: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for index, value in enumerate(rounds):
        if start is None:
            start = value
        if index + 1 == len(rounds) or rounds[index + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)
