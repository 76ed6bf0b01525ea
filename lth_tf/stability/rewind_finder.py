"""The rewind point, found by measuring (Frankle et al. 2020, Linear Mode Connectivity): the
earliest iteration k from which the dense network is stable to SGD noise, i.e. two copies
trained k -> T with different data orders are joined by a linear path whose error barrier
(instability) is below a threshold (2 percentage points, the paper's).

The candidates are a grid of fractions of the round's T iterations spanning the range the
Stabilizing/LMC papers rewind over (0 to 7% of training); each is analysed by the stability
machinery (:func:`lth_tf.stability.analysis.run_stability`: same builder, loop, checkpoints
and resume), so a rerun reuses everything already measured.

<experiment>/stability/rewind_found.json   the grid, each k's instability, the chosen k
<experiment>/stability/round_00-sweep.csv/png  the instability curve (figure and table)

>>> rewind_grid(2000)
[0, 2, 5, 10, 20, 40, 80, 140]
>>> choose_rewind([(0, 9.1), (10, 3.0), (20, 1.2), (40, 0.4)], threshold=2.0)
20
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_tf import io
from lth_tf.config import check_number
from lth_tf.errors import LthError
from lth_tf.experiment import read_experiment
from lth_tf.models.registry import resolve_steps
from lth_tf.stability.measures import STABLE_BELOW
from lth_tf.stability.plan import StabilityPlan, plan_stability

if TYPE_CHECKING:
    from lth_tf.callbacks import RunCallback

# Fractions of T tried as rewind points: the range the Stabilizing/LMC papers rewind over (the
# LMC paper's CIFAR ResNet-20 is said to become stable at about 3% of training: a second-hand
# figure [?], not checked against the paper here); 0 is the LTH paper's reset.
REWIND_FRACTIONS = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.07)
FOUND_FILE = "rewind_found.json"


def rewind_grid(iterations: int, fractions: Sequence[float] = REWIND_FRACTIONS) -> list[int]:
    """The candidate rewind iterations for rounds of ``iterations`` iterations, distinct and in
    order (for short rounds several fractions fall on the same iteration)."""
    return sorted({round(fraction * iterations) for fraction in fractions})


def choose_rewind(instabilities: Sequence[tuple[int, float]], threshold: float) -> int | None:
    """The earliest k whose instability is below ``threshold`` (None: none is).

    >>> choose_rewind([(0, 9.1), (10, 3.0)], threshold=2.0) is None
    True
    """
    stable = [k for k, value in sorted(instabilities) if value < threshold]
    return stable[0] if stable else None


@dataclasses.dataclass(frozen=True)
class RewindSearch:
    """A checked search: the stability plan over the grid, and the threshold."""

    plan: StabilityPlan
    threshold: float

    @property
    def found_file(self) -> Path:
        return self.plan.files.root / FOUND_FILE

    def cost_iterations(self) -> int:
        """Training iterations the search costs at most: every copy trains k -> T, and the
        dense network is retrained up to the largest k to recompute the rewind points."""
        plan = self.plan
        total = plan.resolved.iterations
        copies = len(plan.data_seeds) * sum(total - r.iteration for r in plan.rewinds)
        return copies + max(r.iteration for r in plan.rewinds)

    def cost_line(self) -> str:
        ks = ", ".join(str(r.iteration) for r in self.plan.rewinds)
        return (
            f"Finding the rewind point of {self.plan.experiment.root}: k in {{{ks}}} of "
            f"{self.plan.resolved.iterations} iterations, {len(self.plan.data_seeds)} copies "
            f"each; at most {self.cost_iterations():,} training iterations (about "
            f"{self.cost_iterations() / self.plan.resolved.iterations:.1f} rounds), less what "
            "earlier runs measured"
        )


def plan_rewind_search(
    experiment_dir: str | Path,
    seeds: int = 2,
    points: int = 30,
    bn_batches: int = 100,
    threshold: float = STABLE_BELOW,
) -> RewindSearch:
    """Checks the experiment (its dense round 0 must have finished) and the settings; any
    problem is an :class:`LthError`, before TensorFlow starts."""
    check_number(
        "--threshold",
        threshold,
        low=0,
        high=100,
        low_open=True,
        why="an instability in percentage points, e.g. 2",
    )
    _, hparams, data_info = read_experiment(experiment_dir, data_keys=("train_examples",))
    iterations = resolve_steps(hparams, data_info.train_examples).iterations
    grid = [k for k in rewind_grid(iterations) if k < iterations]
    plan = plan_stability(
        experiment_dir,
        0,
        rewind_sweep=[f"{k}it" for k in grid],
        seeds=seeds,
        points=points,
        bn_batches=bn_batches,
    )
    return RewindSearch(dataclasses.replace(plan, extends_sweep=False), float(threshold))


def record_choice(search: RewindSearch, results: Sequence[Any]) -> dict[str, Any]:
    """Writes ``rewind_found.json`` from the analysis' results; returns what it wrote."""
    measured = [(r.rewind_iteration, r.instability) for r in results]
    chosen = choose_rewind(measured, search.threshold)
    found = {
        "threshold": search.threshold,
        "iterations": search.plan.resolved.iterations,
        "data_seeds": list(search.plan.data_seeds),
        "grid": [
            {"rewind_iteration": k, "instability": value, "stable": value < search.threshold}
            for k, value in measured
        ],
        "rewind_iteration": chosen,
    }
    io.write_json(search.found_file, found)
    return found


def find_rewind(
    search: RewindSearch, data: Any, execution: Any, callbacks: Sequence[RunCallback] = ()
) -> dict[str, Any]:
    """Runs the search's analyses (reusing what earlier runs measured) and records the choice;
    returns what ``rewind_found.json`` says. ``callbacks``: RunCallbacks that watch every copy
    trained, as :func:`lth_tf.stability.analysis.run_stability`'s do.

    >>> find_rewind(plan_rewind_search("runs/dense"), data, Execution())  # doctest: +SKIP
    """
    from lth_tf.stability.analysis import run_stability

    return record_choice(search, run_stability(search.plan, data, execution, callbacks))


def read_choice(experiment_root: Path) -> dict[str, Any]:
    """``rewind_found.json`` of an experiment whose search finished."""
    path = Path(experiment_root) / "stability" / FOUND_FILE
    if not path.is_file():
        raise LthError(f"{path} does not exist: run pipelines.stability --find_rewind first")
    found = io.read_json(path)
    if not isinstance(found, dict) or "rewind_iteration" not in found:
        raise io.damaged(
            path, "it has no rewind_iteration", "rerun pipelines.stability --find_rewind"
        )
    return found


def choice_lines(found: dict[str, Any]) -> list[str]:
    """The search's result in a few lines."""
    lines = [
        f"  k = {row['rewind_iteration']:>6}it: instability {row['instability']:.2f} points "
        f"({'stable' if row['stable'] else 'unstable'})"
        for row in found["grid"]
    ]
    k = found["rewind_iteration"]
    if k is None:
        lines.append(
            f"No k up to {found['grid'][-1]['rewind_iteration']}it is stable (instability below "
            f"{found['threshold']:g} points): train longer, or rewind later with --rewind"
        )
    else:
        lines.append(
            f"Rewind point: {k}it, the earliest k with instability below "
            f"{found['threshold']:g} points (use --rewind={k}it)"
        )
    return lines


def run_imp_with_stable_rewind(
    hparams: Any,
    output_dir: str | Path,
    experiment_name: str | None = None,
    execution: Any = None,
    threshold: float = STABLE_BELOW,
    say: Callable[[str], None] = print,
    **run_imp_kwargs: Any,
) -> Any:
    """IMP rewound to the rewind point found by measuring (``--rewind=stable``).

    1. the dense network: ``hparams`` with rewind 0 and no pruning rounds, in its own
       experiment (under its default name, so an existing one is reused);
    2. the search over its round 0 (:func:`plan_rewind_search`), which must find a stable k;
    3. the IMP experiment with ``rewind=<k>it``; its ``hparams.json`` records where k came from
       (``rewind_found``). Its round 0 retrains the dense network (bit for bit the same).

    ``run_imp_kwargs``' ``callbacks`` watch all three: the search is a run of its own for them,
    each copy a round (:func:`lth_tf.stability.analysis.run_stability`).

    Returns the IMP experiment's directory.
    """
    from lth_tf.execution import Execution
    from lth_tf.lottery.imp import run_imp
    from lth_tf.provenance import experiment_data

    execution = execution or Execution()
    dense = dataclasses.replace(
        hparams, pruning=dataclasses.replace(hparams.pruning, rewind="0it", rounds=0)
    )
    say("Rewind point: stable. First the dense network, then its stability to SGD noise.")
    dense_dir = run_imp(dense, output_dir, None, execution, **run_imp_kwargs)  # its default name
    search = plan_rewind_search(dense_dir.root, threshold=threshold)
    say(search.cost_line())
    data = run_imp_kwargs.get("data") or experiment_data(
        search.plan.experiment, search.plan.hparams, execution.data_dir
    )
    found = find_rewind(search, data, execution, run_imp_kwargs.get("callbacks", ()))
    for line in choice_lines(found):
        say(line)
    k = found["rewind_iteration"]
    if k is None:
        raise LthError(
            f"no rewind point up to {found['grid'][-1]['rewind_iteration']}it of "
            f"{dense_dir.root} is stable (instability below {threshold:g} points; see "
            f"{search.found_file}): give --rewind yourself, or a larger --threshold"
        )
    pruning = dataclasses.replace(hparams.pruning, rewind=f"{k}it")
    imp = dataclasses.replace(hparams, pruning=pruning)
    record = {
        "rewind_found": {
            "dense_experiment": str(dense_dir.root),
            "file": str(search.found_file),
            "rewind_iteration": k,
            "threshold": threshold,
            "instability": next(
                row["instability"] for row in found["grid"] if row["rewind_iteration"] == k
            ),
        }
    }
    return run_imp(imp, output_dir, experiment_name, execution, record=record, **run_imp_kwargs)
