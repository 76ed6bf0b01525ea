"""Stability across experiments, the papers' way: one IMP experiment per rewind point, each
analysed at its own rewind point with its own masks (Frankle et al., 2020), then instability
and the L2 distances against the rewind iteration in one figure and CSV.

The experiments must share every hyperparameter but ``pruning.rewind``; anything else that
differs is refused (checked before TensorFlow starts, by :func:`plan_across`). Each experiment's
own results are written as :func:`lth_tf.stability.analysis.run_stability` writes them; the
across-experiments figure and table go to ``<prefix>.png`` (or .pdf, .svg) and ``<prefix>.csv``.

>>> plan = plan_across(["runs/rewind0", "runs/rewind500"], pruning_round=3)  # doctest: +SKIP
>>> run_across(plan, data, output="figures/own_masks")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import experiment_identity
from lth_tf.stability.plan import StabilityPlan, plan_stability

if TYPE_CHECKING:
    from lth_tf.callbacks import RunCallback

ACROSS_COLUMNS_EXTRA = ["experiment"]
# The one hyperparameter the experiments of a sweep may differ in.
VARIED = "pruning.rewind"


@dataclasses.dataclass(frozen=True)
class AcrossPlan:
    """One checked plan per experiment (its own rewind point), earliest rewind first."""

    plans: tuple[StabilityPlan, ...]
    pruning_round: int


def plan_across(
    experiment_dirs: Sequence[str | Path],
    pruning_round: int,
    seeds: int = 2,
    points: int = 30,
    bn_batches: int = 100,
) -> AcrossPlan:
    """Plans each experiment at its own rewind point; any problem is an :class:`LthError`:
    fewer than two experiments, two at the same rewind point, or a hyperparameter other than
    the rewind point that differs (the first such is named)."""
    from lth_tf.sweep import expand_experiments

    dirs = [str(d) for d in expand_experiments(experiment_dirs)]
    if len(dirs) < 2:
        raise LthError(
            f"--experiments: {len(dirs)} experiment given; a sweep across experiments needs at "
            "least two (one per rewind point)"
        )
    plans = [
        plan_stability(d, pruning_round, seeds=seeds, points=points, bn_batches=bn_batches)
        for d in dirs
    ]
    first = plans[0]
    # The number of rounds is no part of an experiment (more rounds extend it).
    reference = _flat(experiment_identity(first.hparams))
    for plan in plans[1:]:
        other = _flat(experiment_identity(plan.hparams))
        for key in sorted(set(reference) | set(other)):
            if key == VARIED or reference.get(key) == other.get(key):
                continue
            raise LthError(
                f"--experiments: {plan.experiment.root} differs from {first.experiment.root} in "
                f"{key} ({other.get(key)!r}, not {reference.get(key)!r}); the experiments of a "
                f"sweep may differ only in {VARIED}"
            )
    by_rewind: dict[int, StabilityPlan] = {}
    for plan in plans:
        seen = by_rewind.get(plan.own_rewind)
        if seen is not None:
            raise LthError(
                f"--experiments: {seen.experiment.root} and {plan.experiment.root} both rewind to "
                f"iteration {plan.own_rewind}; give one experiment per rewind point"
            )
        by_rewind[plan.own_rewind] = plan
    ordered = tuple(by_rewind[k] for k in sorted(by_rewind))
    return AcrossPlan(plans=ordered, pruning_round=pruning_round)


def output_paths(output: str | Path) -> tuple[Path, Path]:
    """(figure, CSV) for ``--output``: a prefix gets .png and .csv; a name ending in .png, .pdf
    or .svg keeps it for the figure, and its stem gets .csv.

    >>> output_paths("out/sweep")
    (PosixPath('out/sweep.png'), PosixPath('out/sweep.csv'))
    >>> output_paths("out/sweep.pdf")
    (PosixPath('out/sweep.pdf'), PosixPath('out/sweep.csv'))
    """
    from lth_tf.stability.figures import FORMATS

    path = io.output_prefix(output)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return path, path.with_suffix(".csv")
    if suffix == "csv":
        return path.with_suffix(".png"), path
    return path.with_name(path.name + ".png"), path.with_name(path.name + ".csv")


def run_across(
    plan: AcrossPlan,
    data,
    execution=None,
    output: str | Path = "stability-sweep",
    callbacks: Sequence[RunCallback] = (),
):
    """Runs (or reuses) each experiment's analysis, then writes the figure and CSV; returns the
    results, earliest rewind first, and the two paths written. ``callbacks``: RunCallbacks
    that watch every copy trained; each experiment's analysis is a run of its own for them
    (:func:`lth_tf.stability.analysis.run_stability`)."""
    from lth_tf.execution import Execution
    from lth_tf.stability import figures
    from lth_tf.stability.analysis import (
        SWEEP_COLUMNS,
        run_stability,
        sweep_rows,
    )

    figure_path, csv_path = output_paths(output)
    execution = Execution() if execution is None else execution
    results = []
    for one in plan.plans:
        [result] = run_stability(one, data, execution, callbacks)
        results.append(result)
    rows = [
        {**row, "experiment": result.experiment}
        for row, result in zip(sweep_rows(results, masks="own"), results, strict=True)
    ]
    io.write_csv(csv_path, rows, SWEEP_COLUMNS + ACROSS_COLUMNS_EXTRA)
    fmt = figure_path.suffix.lower().lstrip(".")
    io.write_bytes_atomic(
        figure_path, figures.sweep_figure(results, masks=figures.OWN_MASKS, format=fmt)
    )
    return results, figure_path, csv_path


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out
