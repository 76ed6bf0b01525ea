"""Hyperparameters as frozen dataclasses, grouped by concern, with the paper's defaults.

The pipelines build an :class:`ExperimentHparams` from flags; the library only ever sees the
dataclasses. Step-valued fields (``iterations``, ``rewind``, ``eval_every``) stay strings such as
``"2ep"`` until the dataset's size is known; :meth:`ExperimentHparams.resolve` turns them into
iteration counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from lth_tf.errors import LthError
from lth_tf.steps import Step, iterations_per_epoch

LAYER_KINDS = ("conv", "fc", "output")
OPTIMIZERS = ("adam", "sgd")
# --eval_every=auto: about 20 evaluations per round, but never closer than 100 iterations (an
# evaluation covers 15,000 examples: on a CPU it can cost more than 100 training steps) nor
# further apart than 500 (the early-stop iteration would blur).
AUTO_EVALUATIONS_PER_ROUND = 20
AUTO_EVAL_EVERY_MIN = 100
AUTO_EVAL_EVERY_MAX = 500


@dataclasses.dataclass(frozen=True)
class PruneRates:
    """Fraction of the still-alive weights pruned per round, per layer kind.

    >>> PruneRates.parse("fc=0.2,output=0.1")
    PruneRates(conv=0.0, fc=0.2, output=0.1)
    >>> str(PruneRates.parse("conv=0.15", base=PruneRates(fc=0.2)))
    'conv=0.15,fc=0.2,output=0.0'
    """

    conv: float = 0.0
    fc: float = 0.0
    output: float = 0.0

    def __post_init__(self) -> None:
        for kind in LAYER_KINDS:
            rate = getattr(self, kind)
            if not 0.0 <= rate < 1.0:
                raise LthError(
                    f"--prune_rates: {kind}={rate} is not in [0, 1); a rate is the fraction of "
                    "the surviving weights pruned per round, e.g. fc=0.2"
                )

    @classmethod
    def parse(cls, text: str, base: PruneRates | None = None) -> PruneRates:
        """Parses ``kind=rate`` pairs; kinds left out keep their value in ``base``."""
        values = dataclasses.asdict(base or cls())
        for item in filter(None, (part.strip() for part in text.split(","))):
            kind, sep, rate = item.partition("=")
            kind = kind.strip()
            if not sep or kind not in LAYER_KINDS:
                raise LthError(
                    f"--prune_rates: {item!r} is not kind=rate with kind one of "
                    f"{', '.join(LAYER_KINDS)} (e.g. conv=0.15,fc=0.2,output=0.1)"
                )
            try:
                values[kind] = float(rate)
            except ValueError:
                raise LthError(f"--prune_rates: {item!r}: {rate!r} is not a number") from None
        return cls(**values)

    def __str__(self) -> str:
        return ",".join(f"{kind}={getattr(self, kind)}" for kind in LAYER_KINDS)

    def for_kind(self, kind: str) -> float:
        return getattr(self, kind)


@dataclasses.dataclass(frozen=True)
class DatasetHparams:
    name: str


@dataclasses.dataclass(frozen=True)
class ModelHparams:
    name: str


@dataclasses.dataclass(frozen=True)
class TrainingHparams:
    """How each round trains. ``iterations`` and ``eval_every`` are step strings."""

    optimizer: str = "adam"
    learning_rate: float = 1.2e-3
    momentum: float = 0.0
    batch_size: int = 60
    iterations: str = "50000it"
    eval_every: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise LthError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.learning_rate <= 0:
            raise LthError(f"--learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise LthError(f"--batch_size must be at least 1, got {self.batch_size}")
        if Step.parse(self.iterations, "--iterations") == Step():
            raise LthError("--iterations must be more than 0")
        if self.eval_every != "auto" and Step.parse(self.eval_every, "--eval_every") == Step():
            raise LthError("--eval_every must be more than 0 (or 'auto')")


@dataclasses.dataclass(frozen=True)
class PruningHparams:
    """How IMP prunes: per-kind rates, rounds, rewind point, and Dense kernels' block shape.

    ``block_size`` is ROWSxCOLUMNS of a Dense kernel; ``"1x1"`` prunes weight by weight.
    """

    rates: PruneRates = PruneRates(fc=0.2, output=0.1)
    rounds: int = 20
    rewind: str = "0it"
    block_size: str = "1x1"

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise LthError(f"--rounds must be 0 or more, got {self.rounds}")
        Step.parse(self.rewind, "--rewind")
        rows, cols = parse_block_size(self.block_size)
        # One spelling per block shape, so "4X1" and "4x1" are the same experiment.
        object.__setattr__(self, "block_size", f"{rows}x{cols}")

    @property
    def block_shape(self) -> tuple[int, int]:
        """``block_size`` as (rows, columns) of a Keras Dense kernel, i.e. (inputs, outputs)."""
        return parse_block_size(self.block_size)


def parse_block_size(text: str) -> tuple[int, int]:
    """``"4x1"`` -> (4, 1): 4 consecutive input rows of one output column of a Dense kernel.

    (4, 1) is the block TFLite's fast sparse FullyConnected kernel runs in float: TFLite stores
    the kernel transposed, as (outputs, inputs), where it is a 1x4 block.

    >>> parse_block_size("4x1")
    (4, 1)
    """
    rows, sep, cols = text.strip().lower().partition("x")
    if not (sep and rows.isdigit() and cols.isdigit() and int(rows) > 0 and int(cols) > 0):
        raise LthError(
            f"--block_size: {text!r} is not ROWSxCOLUMNS of positive integers; use 1x1 "
            "(unstructured) or e.g. 4x1 (blocks TFLite's sparse kernel runs fast in float)"
        )
    return int(rows), int(cols)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Step strings turned into iteration counts for one dataset size."""

    iterations: int
    eval_every: int
    rewind_iteration: int
    iterations_per_epoch: int


@dataclasses.dataclass(frozen=True)
class ExperimentHparams:
    """Everything that decides an experiment's results (not where or how fast it runs)."""

    dataset: DatasetHparams
    model: ModelHparams
    training: TrainingHparams
    pruning: PruningHparams

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["pruning"]["rates"] = dataclasses.asdict(self.pruning.rates)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentHparams:
        pruning = dict(data["pruning"])
        pruning["rates"] = PruneRates(**pruning["rates"])
        return cls(
            dataset=DatasetHparams(**data["dataset"]),
            model=ModelHparams(**data["model"]),
            training=TrainingHparams(**data["training"]),
            pruning=PruningHparams(**pruning),
        )

    def short_hash(self, defaults: ExperimentHparams) -> str:
        """Hash of the values that differ from ``defaults``.

        Hashing only the differences keeps old experiment names valid when a new option with
        a neutral default is added.
        """
        mine, base = _flatten(self.to_dict()), _flatten(defaults.to_dict())
        changed = {key: value for key, value in mine.items() if base.get(key) != value}
        blob = json.dumps(changed, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def resolve(self, num_train_examples: int) -> Resolved:
        """Turns the step strings into iteration counts for a training set of this size."""
        per_epoch = iterations_per_epoch(num_train_examples, self.training.batch_size)
        iterations = Step.parse(self.training.iterations, "--iterations").to_iterations(per_epoch)
        if self.training.eval_every == "auto":
            spacing = iterations // AUTO_EVALUATIONS_PER_ROUND
            eval_every = min(max(spacing, AUTO_EVAL_EVERY_MIN), AUTO_EVAL_EVERY_MAX)
        else:
            eval_every = Step.parse(self.training.eval_every, "--eval_every").to_iterations(
                per_epoch
            )
        rewind = Step.parse(self.pruning.rewind, "--rewind").to_iterations(per_epoch)
        if rewind > iterations:
            raise LthError(
                f"--rewind={self.pruning.rewind} is iteration {rewind}, past the end of round 0 "
                f"({iterations} iterations); choose a rewind point within training"
            )
        return Resolved(
            iterations=iterations,
            eval_every=min(eval_every, iterations),
            rewind_iteration=rewind,
            iterations_per_epoch=per_epoch,
        )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
