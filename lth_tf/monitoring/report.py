"""A report across experiments: one figure with a line per experiment, and one CSV.

Each experiment is labelled by the hyperparameters that tell it apart from the others (e.g.
``rewind=500it`` beside ``rewind=0it``), so a ticket and its controls read as in the paper.

>>> write_report(["runs/lth", "runs/rewind500"], "reports/lenet")  # doctest: +SKIP
(PosixPath('reports/lenet.png'), PosixPath('reports/lenet.csv'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, ExperimentDir, RoundResult, read_saved
from lth_tf.monitoring.figures import Curve, sparsity_figure

REPORT_COLUMNS = ["experiment", "label", *RESULT_COLUMNS]
# A branch's parent directory name: the control tells a branch from its parent already.
_NOT_IN_LABELS = {"parent"}
# Hyperparameter groups whose names read better under the pipeline flag's name.
_RENAMES = {"rates": "prune_rates"}


@dataclasses.dataclass(frozen=True)
class ExperimentResults:
    """An experiment's hyperparameters (short names) and its finished rounds."""

    path: str
    hparams: dict[str, Any]
    rows: list[RoundResult]

    @property
    def name(self) -> str:
        return Path(self.path).name


def flat_hparams(hparams: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Hyperparameters under their flag names, one level deep, as legends and HParams show them.

    >>> flat_hparams({"model": {"name": "conv2", "recipe": "lth"}, "training": {"seed": 0},
    ...               "pruning": {"rates": {"fc": 0.2}, "rewind": "0it"}})
    {'model': 'conv2', 'recipe': 'lth', 'seed': 0, 'prune_rates.fc': 0.2, 'rewind': '0it'}
    """
    flat: dict[str, bool | int | float | str] = {}

    def visit(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                visit(value, f"{prefix}{_RENAMES.get(key, key)}.")
            else:
                flat[prefix + key] = _scalar(value)

    # The top level is the concern (model, training, pruning), which the flags do not name.
    for group, values in hparams.items():
        if isinstance(values, dict) and "name" in values:
            flat[group] = _scalar(values["name"])  # model.name -> model
            visit({k: v for k, v in values.items() if k != "name"}, "")  # model.recipe -> recipe
        elif isinstance(values, dict):
            visit(values, "")
        else:
            flat[group] = _scalar(values)
    return flat


def _scalar(value: Any) -> bool | int | float | str:
    return value if isinstance(value, bool | int | float) else str(value)


def load_results(path: str | Path) -> ExperimentResults:
    """Reads an experiment directory; anything that is not one with a finished round is refused."""
    root = Path(path)
    experiment = ExperimentDir(root)
    if not root.exists():
        raise LthError(f"experiment directory {path} does not exist")
    if not root.is_dir():
        raise LthError(f"{path} is not a directory; give an experiment directory (runs/<name>)")
    # With every option's default filled in, an experiment written before an option existed
    # (e.g. a parent without ``branch``) is labelled like a new one (``control=none``).
    hparams = read_saved(experiment).hparams.to_dict()
    rows = experiment.read_results()
    if not rows:
        raise LthError(
            f"{path} has no finished round yet (no rows in results.csv); "
            "wait for round 0 to finish, or run pipelines.imp first"
        )
    return ExperimentResults(str(path), flat_hparams(hparams), rows)


def experiment_labels(experiments: Sequence[ExperimentResults]) -> list[str]:
    """Legends: the hyperparameters in which the experiments differ, else their names.

    >>> a = ExperimentResults("runs/a", {"model": "lenet", "rewind": "0it"}, [])
    >>> b = ExperimentResults("runs/b", {"model": "lenet", "rewind": "500it"}, [])
    >>> experiment_labels([a, b])
    ['rewind=0it', 'rewind=500it']
    """
    keys: list[str] = []
    for experiment in experiments:
        keys += [key for key in experiment.hparams if key not in keys]
    differing = [
        key
        for key in keys
        if key not in _NOT_IN_LABELS and len({repr(e.hparams.get(key)) for e in experiments}) > 1
    ]
    if len(experiments) < 2 or not differing:
        return [experiment.name for experiment in experiments]
    labels = [
        ", ".join(f"{key}={experiment.hparams.get(key)}" for key in differing)
        for experiment in experiments
    ]
    if len(set(labels)) < len(labels):
        return [f"{e.name} ({label})" for e, label in zip(experiments, labels, strict=True)]
    return labels


def write_report(experiment_dirs: Sequence[str | Path], prefix: str | Path) -> tuple[Path, Path]:
    """Writes ``<prefix>.png`` and ``<prefix>.csv`` for these experiments; returns both paths."""
    if not experiment_dirs:
        raise LthError("--experiments: give one or more experiment directories, comma-separated")
    seen: set[Path] = set()
    for directory in experiment_dirs:
        resolved = Path(directory).resolve()
        if resolved in seen:
            raise LthError(f"--experiments: {directory} is given twice")
        seen.add(resolved)
    experiments = [load_results(directory) for directory in experiment_dirs]
    labels = experiment_labels(experiments)
    prefix = Path(prefix)
    if prefix.suffix in (".png", ".csv"):
        prefix = prefix.with_suffix("")
    png, csv = prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".csv")

    curves = [
        Curve.from_results(label, experiment.rows)
        for experiment, label in zip(experiments, labels, strict=True)
    ]
    io.write_bytes_atomic(png, sparsity_figure(curves))
    rows = [
        {"experiment": experiment.path, "label": label}
        | row.to_row()
        for experiment, label in zip(experiments, labels, strict=True)
        for row in experiment.rows
    ]
    io.write_csv(csv, rows, REPORT_COLUMNS)
    return png, csv
