"""A report across experiments: one figure with a line per experiment, and one CSV.

Each experiment is labelled by the hyperparameters that tell it apart from the others (e.g.
``rewind=500it`` beside ``rewind=0it``), so a ticket and its controls read as in the paper.
Experiments that differ only in their seed (on the same data) are replicates: one group, drawn
as its mean with a min-max band (the papers' convention), and the CSV has per group and round
the mean, std, min, max and n.

>>> write_report(["runs/lth", "runs/rewind500"], "reports/lenet")  # doctest: +SKIP
(PosixPath('reports/lenet.png'), PosixPath('reports/lenet.csv'))
>>> write_report(["runs/sweeps/lth"], "reports/lth.pdf")  # doctest: +SKIP
(PosixPath('reports/lth.pdf'), PosixPath('reports/lth.csv'))
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth_tf import io
from lth_tf.config import XNNPACK_SPARSE_FRACTION, flat_hparams
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, ExperimentDir, RoundResult, read_saved
from lth_tf.monitoring.figures import FORMATS, X_AXES, Curve, sparsity_figure

REPORT_COLUMNS = ["experiment", "label", *RESULT_COLUMNS]
# What a replicate group's CSV row aggregates, each as mean, std, min and max over its seeds:
# the accuracy the figure draws (at early stop, else at the end of training), and the
# iterations trained to early stop (from the round's start: what the figure draws) beside the
# global early-stop iteration.
AGGREGATED = (
    "percent_remaining",
    "reported_accuracy",
    "early_stop_test_accuracy",
    "early_stop_trained",
    "early_stop_iteration",
)
STATISTICS = ("mean", "std", "min", "max")


def group_columns(aggregated: Sequence[str] = AGGREGATED) -> list[str]:
    """A replicate group's CSV columns when it aggregates these quantities."""
    statistics = [f"{quantity}_{statistic}" for quantity in aggregated for statistic in STATISTICS]
    return ["label", "round", "n", *statistics, "experiments"]


GROUP_COLUMNS = group_columns()
# A branch's parent directory name: the control tells a branch from its parent already.
# The number of rounds is no part of an experiment (more rounds extend it): experiments that
# differ in it alone are one experiment's replicates, each drawn for the rounds it has.
_NOT_IN_LABELS = {"parent", "rounds"}
# What replicates differ in (a branch's parent differs with the seed, being another member).
_REPLICATE_KEYS = {"seed", "parent", "rounds"}
# Image formats matplotlib writes that a report does not offer (any other suffix stays part of
# the prefix, as before formats were chosen by extension: --output=reports/run.v2).
_REFUSED_SUFFIXES = {".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp", ".gif"}
# Legends in words rather than flag values.
_CONTROL_NAMES = {
    "none": "ticket (IMP)",
    "random_reinit": "random reinit",
    "random_prune": "random pruning",
    "lr_rewind": "learning-rate rewinding",
}


@dataclasses.dataclass(frozen=True)
class ExperimentResults:
    """An experiment's hyperparameters (short names) and its finished rounds."""

    path: str
    hparams: dict[str, Any]
    rows: list[RoundResult]

    @property
    def name(self) -> str:
        return Path(self.path).name


def load_results(path: str | Path) -> ExperimentResults:
    """Reads an experiment directory; anything that is not one with a finished round is refused."""
    root = Path(path)
    experiment = ExperimentDir(root)
    if not root.exists():
        link = (
            f" (a link to {os.readlink(root)}, which does not exist)" if root.is_symlink() else ""
        )
        raise LthError(f"experiment directory {path} does not exist{link}")
    if not root.is_dir():
        raise LthError(f"{path} is not a directory; give an experiment directory (runs/<name>)")
    # With every option's default filled in, an experiment written before an option existed
    # (e.g. a parent without ``branch``) is labelled like a new one (``control=none``).
    if not experiment.hparams.exists() and any(root.glob("*/hparams.json")):
        # A folder of experiments (an --output_dir): all of them is what a report usually wants.
        raise LthError(
            f"{path} is not an lth_tf experiment (no hparams.json) but holds experiments: pass "
            f"them all, --experiments='{Path(path) / '*'}', or some of them, comma-separated"
        )
    saved = read_saved(experiment)
    hparams = saved.hparams.to_dict()
    rows = experiment.read_results()
    if not rows:
        if any(root.glob("round_*/weights.npz")):
            # Rounds on disk, their rows gone (results.csv deleted): a rerun trains them again.
            raise LthError(
                f"{path} has rounds on disk but no results.csv rows for them; restore "
                f"{experiment.results} from a copy, or rerun the IMP command (it trains every "
                "round again)"
            )
        raise LthError(
            f"{path} has no finished round yet (no rows in results.csv); "
            "wait for round 0 to finish, or run pipelines.imp first"
        )
    lost = sorted(set(range(rows[-1].round)) - {row.round for row in rows})
    if lost:
        # Rounds go in order: a row between two others was lost (a rerun trains it again).
        raise LthError(
            f"{experiment.results} has no row for round {lost[0]}, though round "
            f"{rows[-1].round} has one; rerun the IMP command (it trains round {lost[0]} again), "
            "or restore results.csv from a copy"
        )
    flat = flat_hparams(hparams)
    fingerprint = data_fingerprint(saved.data.provenance)
    if fingerprint is not None:
        flat[DATA_KEY] = fingerprint
    return ExperimentResults(str(path), flat, rows)


# The data an experiment trained on, when it says (``hparams.json``'s ``data.provenance``): two
# runs of one ``npz:`` path on other contents are not replicates of each other.
DATA_KEY = "data"


def data_fingerprint(provenance: dict[str, Any] | None) -> str | None:
    """The first 8 hex digits of a data file's sha256 (``npz:``); None for a built-in dataset,
    whose fingerprint changes with its split (``--holdout``, a hyperparameter already), and for
    a record without one.

    >>> data_fingerprint({"kind": "npz", "sha256": "9de91d137fe71baf2381"})
    '9de91d13'
    """
    digest = (provenance or {}).get("sha256")
    return str(digest)[:8] if digest else None


def _data_only_where_it_differs(experiments: list[ExperimentResults]) -> list[ExperimentResults]:
    """The data fingerprint stays a hyperparameter (grouping and legends) only among
    experiments of one ``--dataset`` whose recorded fingerprints differ (a file changed between
    runs); one recorded by none of them (an older lth_tf) then reads ``not recorded``."""
    differing = set()
    for dataset in {e.hparams.get("dataset") for e in experiments}:
        same = [e for e in experiments if e.hparams.get("dataset") == dataset]
        if len({e.hparams[DATA_KEY] for e in same if DATA_KEY in e.hparams}) > 1:
            differing.add(dataset)
    return [
        dataclasses.replace(
            e,
            hparams={**e.hparams, DATA_KEY: e.hparams.get(DATA_KEY, "not recorded")}
            if e.hparams.get("dataset") in differing
            else {k: v for k, v in e.hparams.items() if k != DATA_KEY},
        )
        for e in experiments
    ]


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
        # A key only some experiments have (the data's fingerprint, a compiled recipe's
        # settings) labels those.
        ", ".join(
            f"{key}={experiment.hparams[key]}" for key in differing if key in experiment.hparams
        )
        for experiment in experiments
    ]
    if len(set(labels)) < len(labels):
        return [f"{e.name} ({label})" for e, label in zip(experiments, labels, strict=True)]
    return labels


def figure_path(output: str | Path) -> tuple[Path, str, Path]:
    """The figure's path and format, and the CSV's path, from ``--output``.

    >>> figure_path("reports/lenet")
    (PosixPath('reports/lenet.png'), 'png', PosixPath('reports/lenet.csv'))
    >>> figure_path("reports/lenet.pdf")
    (PosixPath('reports/lenet.pdf'), 'pdf', PosixPath('reports/lenet.csv'))
    """
    path = io.output_prefix(output)
    suffix = path.suffix.lower()
    if suffix in _REFUSED_SUFFIXES:
        formats = ", ".join(f".{f}" for f in FORMATS)
        raise LthError(f"--output: {path.suffix} is not a report format; end it in {formats}")
    format = suffix[1:] if suffix[1:] in FORMATS else "png"
    prefix = path.with_suffix("") if suffix[1:] in (*FORMATS, "csv") else path
    figure = prefix.with_name(f"{prefix.name}.{format}")
    return figure, format, prefix.with_name(prefix.name + ".csv")


def replicate_groups(
    experiments: Sequence[ExperimentResults],
) -> list[list[ExperimentResults]]:
    """Experiments that differ only in their seed, grouped, in the order first seen.

    >>> a = ExperimentResults("a", {"rewind": "0it", "seed": 0}, [])
    >>> b = ExperimentResults("b", {"rewind": "0it", "seed": 1}, [])
    >>> c = ExperimentResults("c", {"rewind": "100it", "seed": 0}, [])
    >>> [[e.path for e in group] for group in replicate_groups([a, c, b])]
    [['a', 'b'], ['c']]
    """
    groups: dict[str, list[ExperimentResults]] = {}
    for experiment in experiments:
        key = repr(
            sorted((k, v) for k, v in experiment.hparams.items() if k not in _REPLICATE_KEYS)
        )
        groups.setdefault(key, []).append(experiment)
    return list(groups.values())


def legend_label(label: str) -> str:
    """A label in words for a figure's legend: ``control=random_reinit, rewind=100it`` ->
    ``random reinit, rewind to 100it``.

    >>> legend_label("rewind=0it, control=none")
    'rewind to 0it, ticket (IMP)'
    """
    words = []
    for part in label.split(", "):
        key, sep, value = part.partition("=")
        if not sep:
            words.append(part)
        elif key == "control":
            words.append(_CONTROL_NAMES.get(value, value))
        elif key == "rewind":
            words.append(f"rewind to {value}")
        else:
            words.append(part)
    return ", ".join(words)


def _group_rows(
    label: str, group: Sequence[ExperimentResults], aggregated: Sequence[str] = AGGREGATED
) -> list[dict[str, Any]]:
    """One CSV row per round: each aggregated quantity's statistics over the group's
    experiments that finished that round (std is the sample's, 0 for one experiment); empty
    where none of them has it (no early stop without a validation split)."""
    rounds = sorted({row.round for experiment in group for row in experiment.rows})
    rows = []
    for pruning_round in rounds:
        found = [
            row for experiment in group for row in experiment.rows if row.round == pruning_round
        ]
        values: dict[str, Any] = {"label": label, "round": pruning_round, "n": len(found)}
        for quantity in aggregated:
            numbers = [float(v) for row in found if (v := getattr(row, quantity)) is not None]
            if not numbers:
                values |= {f"{quantity}_{statistic}": None for statistic in STATISTICS}
                continue
            mean = sum(numbers) / len(numbers)
            spread = sum((x - mean) ** 2 for x in numbers) / max(len(numbers) - 1, 1)
            values |= {
                f"{quantity}_mean": mean,
                f"{quantity}_std": math.sqrt(spread),
                f"{quantity}_min": min(numbers),
                f"{quantity}_max": max(numbers),
            }
        values["experiments"] = ";".join(e.path for e in group)
        rows.append(values)
    return rows


def _group_curve(label: str, rows: Sequence[dict[str, Any]], x_axis: str) -> Curve:
    counts = [row["n"] for row in rows]
    # Replicates that stopped early (an unfinished sweep) leave later rounds to fewer runs.
    n = str(max(counts)) if min(counts) == max(counts) else f"{min(counts)}\u2013{max(counts)}"

    def column(name: str) -> tuple[float, ...]:
        return tuple(math.nan if row[name] is None else float(row[name]) for row in rows)

    return Curve(
        label=legend_label(label),
        x=column(f"{x_axis}_mean"),
        reported_accuracy=column("reported_accuracy_mean"),
        early_stop_trained=column("early_stop_trained_mean"),
        accuracy_band=(column("reported_accuracy_min"), column("reported_accuracy_max")),
        iteration_band=(column("early_stop_trained_min"), column("early_stop_trained_max")),
        n=n,
    )


def _refuse_repeated_seeds(groups: Sequence[Sequence[ExperimentResults]]) -> None:
    """Refuses two experiments of one group with the same seed: a rerun of one run (same
    numbers, or the same but for hardware noise) would count as a second replicate and
    narrow the band."""
    for group in groups:
        first: dict[str, ExperimentResults] = {}
        for experiment in group:
            key = repr(sorted((k, v) for k, v in experiment.hparams.items() if k != "rounds"))
            if key in first:
                raise LthError(
                    f"--experiments: {first[key].path} and {experiment.path} ran the same "
                    f"hyperparameters with the same seed ({experiment.hparams.get('seed')}): one "
                    "replicate, not two; give only one of them"
                )
            first[key] = experiment


def _refuse_copies(experiment_dirs: Sequence[str | Path]) -> None:
    """Refuses two directories that are one run: a directory and its copy (``cp -r``) share
    the experiment id in ``hparams.json``, and would count one run twice (e.g. as replicates).
    Directories from before ids are not compared.

    >>> _refuse_copies(["runs/lenet", "backup/lenet"])  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    lth_tf.errors.LthError: --experiments: runs/lenet and backup/lenet are the same run ...
    """
    first: dict[str, str | Path] = {}
    for directory in experiment_dirs:
        identity = ExperimentDir(Path(directory)).identity
        if identity is None:
            continue
        if identity in first:
            raise LthError(
                f"--experiments: {first[identity]} and {directory} are the same run (experiment "
                f"id {identity}: one is a copy of the other); give only one of them"
            )
        first[identity] = directory


def write_report(
    experiment_dirs: Sequence[str | Path], output: str | Path, x_axis: str = "percent_remaining"
) -> tuple[Path, Path]:
    """Writes the figure (format from ``output``'s extension, PNG without one) and the CSV for
    these experiments, sweeps or globs; returns both paths. ``x_axis``: what accuracy is
    drawn against (:data:`lth_tf.monitoring.figures.X_AXES`; the shrunk network's parameters or
    multiply-adds need channel tickets).

    Without replicates (no two experiments differ only in seed) the CSV has one row per
    experiment and round (:data:`REPORT_COLUMNS`); with them, one per group and round
    (:data:`GROUP_COLUMNS`).
    """
    if not experiment_dirs:
        raise LthError("--experiments: give one or more experiment directories, comma-separated")
    if x_axis not in X_AXES:
        raise LthError(f"--x_axis: unknown axis {x_axis!r}; choose one of {', '.join(X_AXES)}")
    from lth_tf.sweep import expand_experiments

    figure, format, csv = figure_path(output)
    experiment_dirs = expand_experiments(experiment_dirs, started_only=True)
    seen: set[Path] = set()
    for directory in experiment_dirs:
        resolved = Path(directory).resolve()
        if resolved in seen:
            raise LthError(f"--experiments: {directory} is given twice")
        seen.add(resolved)
    experiments = _data_only_where_it_differs(
        [load_results(directory) for directory in experiment_dirs]
    )
    _refuse_copies(experiment_dirs)
    for experiment in experiments:
        if any(getattr(row, x_axis) is None for row in experiment.rows):
            raise LthError(
                f"--x_axis={x_axis}: {experiment.path} has no shrunk network (its rounds prune "
                "single weights); draw channel tickets (--granularity=channel) against it, or "
                "use --x_axis=percent_remaining"
            )
    groups = replicate_groups(experiments)
    _refuse_repeated_seeds(groups)
    # Both files can be written, before either is: a refusal between them would leave a new
    # figure beside an old table.
    for path in (csv, figure):
        if path.is_dir():
            raise LthError(
                f"--output: {path} is a directory; move it away, or choose another --output"
            )
    io.check_can_write(figure.parent)
    # The papers' figures are printed: PNGs at print resolution.
    dpi = 300 if format == "png" else 100
    if all(len(group) == 1 for group in groups):
        labels = experiment_labels(experiments)
        curves = [
            dataclasses.replace(
                Curve.from_results(label, e.rows, x_axis=x_axis), label=legend_label(label)
            )
            for e, label in zip(experiments, labels, strict=True)
        ]
        drawn = sparsity_figure(curves, format=format, dpi=dpi, x_axis=x_axis)
        io.write_bytes_atomic(figure, drawn)
        rows = [
            {"experiment": experiment.path, "label": label} | row.to_row()
            for experiment, label in zip(experiments, labels, strict=True)
            for row in experiment.rows
        ]
        io.write_csv(csv, rows, REPORT_COLUMNS)
        return figure, csv

    representatives = [
        dataclasses.replace(
            group[0],
            hparams={k: v for k, v in group[0].hparams.items() if k not in _REPLICATE_KEYS},
        )
        for group in groups
    ]
    labels = (
        experiment_labels(representatives)
        if len(groups) > 1
        else [str(representatives[0].hparams.get("model", representatives[0].name))]
    )
    aggregated = list(dict.fromkeys([*AGGREGATED, x_axis]))
    table = [
        _group_rows(label, group, aggregated) for label, group in zip(labels, groups, strict=True)
    ]
    curves = [_group_curve(label, rows, x_axis) for label, rows in zip(labels, table, strict=True)]
    io.write_bytes_atomic(figure, sparsity_figure(curves, format=format, dpi=dpi, x_axis=x_axis))
    rows = [row for rows in table for row in rows]
    io.write_csv(csv, rows, group_columns(aggregated))
    return figure, csv


def unfinished_sweeps(inputs: Sequence[str | Path]) -> list[str]:
    """A line for each sweep directory among ``inputs`` whose members have not all finished:
    the report draws what they have, and the user should know.

    >>> unfinished_sweeps(["runs/sweeps/lth"])  # doctest: +SKIP
    ['runs/sweeps/lth: 1 of 4 members has not finished every round (seed3); ...']
    """
    from lth_tf.sweep import SWEEP_FILE, member_names, unfinished_members

    lines = []
    for item in inputs:
        if glob.has_magic(str(item)) or not (Path(item) / SWEEP_FILE).is_file():
            continue
        missing = unfinished_members(item)
        if missing:
            total = len(member_names(item))
            verb = "has" if len(missing) == 1 else "have"
            lines.append(
                f"{item}: {len(missing)} of {total} members {verb} not finished every round "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); the report "
                "draws the rounds they have (n in the table and legend)"
            )
    return lines


def xnnpack_marks(experiment_dirs: Sequence[str | Path]) -> list[str]:
    """For each ``--prune_for=xnnpack`` experiment, the first round past XNNPack's 2/3 zeros in
    its 1x1 convolutions (from that round on its tickets run sparse on ARM), or how far it got.

    >>> xnnpack_marks(["runs/mobilenet-xnnpack"])  # doctest: +SKIP
    ['runs/mobilenet-xnnpack: XNNPack runs its tickets sparse on ARM from round 5 (67.2% ...']
    """
    from lth_tf.sweep import expand_experiments

    marks = []
    for directory in expand_experiments(experiment_dirs, started_only=True):
        rows = [row for row in load_results(directory).rows if row.xnnpack_1x1_zeros is not None]
        if not rows:
            continue
        past = [row for row in rows if row.xnnpack_1x1_zeros > XNNPACK_SPARSE_FRACTION]
        if past:
            first = min(past, key=lambda row: row.round)
            marks.append(
                f"{directory}: XNNPack runs its tickets sparse on ARM from round {first.round} "
                f"({100 * first.xnnpack_1x1_zeros:.1f}% of the 1x1 weights zero, past 2/3)"
            )
        else:
            last = max(rows, key=lambda row: row.round)
            zeros = 100 * last.xnnpack_1x1_zeros
            marks.append(
                f"{directory}: no round past XNNPack's 2/3 zeros yet ({zeros:.1f}% of the 1x1 "
                f"weights zero at round {last.round}): run more rounds"
            )
    return marks
