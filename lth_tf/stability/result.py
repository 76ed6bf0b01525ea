"""What one stability analysis of one rewind point measured: :class:`StabilityResult`.

It is written as ``<experiment>/stability/round_NN[-Kit].json`` (:meth:`StabilityResult.to_json`)
and read back from there for a rerun (:meth:`StabilityResult.from_json`); the figures, the sweep
table, TensorBoard and the pipeline's summary all read its fields.

>>> pair = CopyPair([0, 1], [0, 1], [10.0, 12.5, 10.5], 2.0, 0.3, 41.0)
>>> CopyPair.from_json(pair.to_json()) == pair
True
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class CopyPair:
    """Two copies' path: test errors along it, its barrier, their distance."""

    copies: list[int]
    data_seeds: list[int]
    path_errors: list[float]
    instability: float
    l2_distance: float
    l2_distance_raw: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> CopyPair:
        return cls(**_fields_of(cls, values))


@dataclasses.dataclass(frozen=True)
class StabilityResult:
    """One rewind point of one round: the copies' test errors, the error along the path between
    them (``instability`` is the barrier, in percentage points), and L2 distances: between the
    copies (data order) and from copy 0 to the dense network (pruning; ``None`` for round 0).

    Errors are in ``error_unit`` (percent); ``mixtures`` are the path's alphas.
    """

    experiment: str
    model: str
    dataset: str
    round: int
    percent_remaining: float
    weights_remaining: int
    rewind: str
    rewind_iteration: int
    experiment_rewind_iteration: int
    train_from_iteration: int
    train_to_iteration: int
    iterations_trained: int
    data_seeds: list[int]
    mixtures: list[float]
    error_unit: str
    copy_test_errors: list[float]
    imp_test_error: float
    path_errors: list[float]
    end_errors: list[float]
    max_path_error: float
    instability: float
    stable: bool
    stable_below: float
    l2_distance_data_order: float
    l2_distance_data_order_raw: float
    l2_distance_pruning: float | None
    l2_distance_pruning_raw: float | None
    l2_distance_pruning_per_copy: list[float] | None
    pruning_reference: str
    distance_over: str
    distance_normalisation: str
    batch_norm: dict[str, int]
    pairs: list[CopyPair]
    settings: dict[str, Any]
    seconds: float

    @property
    def mean_end_error(self) -> float:
        return sum(self.end_errors) / len(self.end_errors)

    def to_json(self) -> dict[str, Any]:
        """The JSON file's content: every field, in this order, pairs as plain dicts."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["pairs"] = [pair.to_json() for pair in self.pairs]
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> StabilityResult:
        """A saved result; a missing field or a value of the wrong type is a ValueError (the
        caller recomputes such a file)."""
        fields = _fields_of(cls, values)
        if not isinstance(fields["pairs"], list):
            raise ValueError("pairs is not a list")
        fields["pairs"] = [CopyPair.from_json(pair) for pair in fields["pairs"]]
        return cls(**fields)


_SIMPLE = {int: int, float: (int, float), str: str, bool: bool}


def _fields_of(cls: type, values: Any) -> dict[str, Any]:
    """The dataclass's fields out of a JSON object, with their plain types checked."""
    if not isinstance(values, dict):
        raise ValueError(f"a {cls.__name__} is a JSON object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            raise ValueError(f"no {field.name!r}")
        value, expected = values[field.name], _SIMPLE.get(hints[field.name])
        # bool is an int to Python; a count must not be True.
        wrong_bool = isinstance(value, bool) and hints[field.name] in (int, float)
        if expected is not None and (not isinstance(value, expected) or wrong_bool):
            raise ValueError(f"{field.name!r} is {value!r}")
        fields[field.name] = value
    return fields
