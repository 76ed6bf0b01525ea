"""The experiment directory: where every file of an IMP run lives, and its hyperparameter check.

<output_dir>/<experiment>/
  hparams.json          every hyperparameter, defaults resolved
  sessions.json         how each run (or resume) ran: strategy, devices, precision, XLA
  classes.json          labels given as names: the names, class i's at index i
  results.csv           one row per completed round
  rewind_point.npz      the weights every round rewinds to (written once)
  round_NN/masks.npz    0/1 mask per prunable weight, keyed by weight name
  round_NN/weights.npz  the round's trained (masked) weights
  round_NN/evaluations.csv   validation/test metrics at every evaluation
  round_NN/checkpoint.npz    while the round runs: where a resume picks up

Every ``.npz`` above carries a stamp (:meth:`ExperimentDir.stamp`): the experiment's id from
``hparams.json`` and the file's place in the directory. Each read checks it, so a file copied in
from another experiment, or from another round, is refused instead of used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lth_tf import io
from lth_tf.config import ExperimentHparams, Resolved
from lth_tf.errors import LthError
from lth_tf.legacy import (
    ROUNDS_FROM_REWIND_POINT,
    ROUNDS_KEY,
    check_eval_spacing,
    is_unstamped,
    marked_rounds_from_rewind_point,
    settings_of_older_directory,
    with_early_stop_trained,
)

log = logging.getLogger("lth_tf")


# Results columns bounded above as well as at 0.
_RESULT_RANGES = {
    "percent_remaining": (0, 100),
    "test_accuracy": (0, 1),
    "early_stop_test_accuracy": (0, 1),
    "xnnpack_1x1_zeros": (0, 1),
}
# Measured at every round's end (the early stop's, where it has one): never NaN in a row.
_ACCURACY_COLUMNS = ("test_accuracy", "early_stop_test_accuracy")


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """One row of ``results.csv``: what a finished round measured.

    ``iterations`` is what the round trained (T - k for a round rewound to k);
    ``early_stop_trained`` the iterations it had trained at its early stop (early stop - k), what
    the LTH paper's figures plot. Without a validation split (``--holdout=0``) a round has no
    early stop: the four early-stop columns are empty (None) and :attr:`reported_accuracy` is
    the end of training's.

    >>> row = {"round": "2", "percent_remaining": "64.06", "weights_remaining": "170600",
    ...        "test_accuracy": "0.8557", "test_loss": "0.41", "early_stop_iteration": "900",
    ...        "early_stop_test_accuracy": "0.8593", "val_loss_min": "0.39",
    ...        "iterations": "1000", "train_seconds": "1.5"}
    >>> RoundResult.from_row(row).early_stop_iteration
    900
    """

    round: int
    percent_remaining: float
    weights_remaining: int
    test_accuracy: float
    test_loss: float
    early_stop_iteration: int | None
    early_stop_test_accuracy: float | None
    val_loss_min: float | None
    iterations: int
    train_seconds: float
    # Channel tickets (--granularity=channel) only, empty otherwise: surviving channels of the
    # channel-pruned conv and Dense layers, and the shrunk network's size and cost per example.
    channels_conv: int | None = None
    channels_fc: int | None = None
    shrunk_parameters: int | None = None
    shrunk_multiply_adds: int | None = None
    # --prune_for=xnnpack only: fraction of the weights of the sparse subgraph's 1x1
    # convolutions that are zero (XNNPack's sparse kernels run past 2/3).
    xnnpack_1x1_zeros: float | None = None
    # Written since early_stop_trained existed; rows from before get it from the early stop and
    # the round's start (ExperimentDir.read_results).
    early_stop_trained: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, str]) -> RoundResult:
        """Parses a CSV row; a missing or malformed column is an LthError naming it."""
        values = {}
        for field in dataclasses.fields(cls):
            convert = int if field.type in ("int", int, "int | None") else float
            value = row.get(field.name)
            empty = field.name in OPTIONAL_RESULT_COLUMNS and value in (None, "")
            if empty or (field.name in EARLY_STOP_COLUMNS and value == ""):
                # Written before the column existed, not a channel ticket, or no early stop.
                values[field.name] = None
                continue
            try:
                number = float(row[field.name])
                if convert is int and not number.is_integer():
                    raise ValueError(number)
                values[field.name] = convert(number)
            except (KeyError, TypeError, ValueError, OverflowError):  # Overflow: int(inf)
                raise LthError(
                    f"bad or missing {field.name!r} in the results row of round "
                    f"{row.get('round')!r}"
                ) from None
            # Every column counts or measures something: none is negative. NaN passes (a
            # metric not measured), but not in an accuracy: a round's are always measured.
            if field.name in _ACCURACY_COLUMNS and not math.isfinite(values[field.name]):
                raise LthError(
                    f"{field.name} {values[field.name]!r} in the results row of round "
                    f"{row.get('round')!r} is not a number: a finished round measured it"
                )
            low, high = _RESULT_RANGES.get(field.name, (0, math.inf))
            if values[field.name] < low or values[field.name] > high:
                raise LthError(
                    f"{field.name} {values[field.name]!r} in the results row of round "
                    f"{row.get('round')!r} is outside [{low}, {high}]"
                )
        return cls(**values)

    def to_row(self) -> dict[str, int | float | None]:
        return dataclasses.asdict(self)

    @property
    def reported_accuracy(self) -> float:
        """The round's test accuracy as the papers report it: at the early stop (LTH), or at
        the end of training where there is none (no validation split, as open_lth runs).

        >>> RoundResult(0, 100.0, 9, 0.91, 0.3, None, None, None, 900, 1.0).reported_accuracy
        0.91
        """
        if self.early_stop_test_accuracy is None:
            return self.test_accuracy
        return self.early_stop_test_accuracy


RESULT_COLUMNS = [field.name for field in dataclasses.fields(RoundResult)]
OPTIONAL_RESULT_COLUMNS = RESULT_COLUMNS[RESULT_COLUMNS.index("channels_conv") :]
# Columns every results.csv has, empty in rounds without a validation split (no early stop).
EARLY_STOP_COLUMNS = ("early_stop_iteration", "early_stop_test_accuracy", "val_loss_min")
RESULTS_TODO = (
    "restore it from a copy, or delete it and rerun the IMP command (it trains every round again)"
)
MASKS_TODO = "delete it and rerun the IMP command to recompute it, or restore it from a copy"
WEIGHTS_TODO = "delete it and rerun the IMP command to retrain the round, or restore it from a copy"
HPARAMS_TODO = "restore it from a copy, or start again under another --experiment_name"
REWIND_POINT_TODO = (
    "restore this experiment's own rewind_point.npz from a copy (with --rewind=0it, delete it "
    "and rerun the IMP command to recompute it), or start again under another --experiment_name"
)
CHECKPOINT_TODO = "delete it and rerun the IMP command to train the round again from its start"
# What to do about an experiment's .npz that is damaged or not its own, by file name.
TODO_BY_FILE = {
    "masks.npz": MASKS_TODO,
    "weights.npz": WEIGHTS_TODO,
    "rewind_point.npz": REWIND_POINT_TODO,
    "checkpoint.npz": CHECKPOINT_TODO,
}
FORMAT_VERSION = 1
# In hparams.json: the experiment's id, made once when it starts (new_experiment_id). Every .npz
# of the experiment is stamped with it; directories from before stamps gain one on their next run.
EXPERIMENT_ID_KEY = "experiment_id"
# In hparams.json: the sha256 of its hyperparameters as written, but the number of rounds (more
# rounds extend an experiment), so a hand edit is refused rather than believed.
HPARAMS_HASH_KEY = "hparams_sha256"


def checked_identity(fields: Mapping[str, Any], path: Path) -> str:
    """``hparams.json``'s experiment id; one that is there but not an id is damage (its files'
    stamps name the id it had), not a directory from before ids.

    >>> checked_identity({"experiment_id": 5}, Path("runs/e/hparams.json"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: runs/e/hparams.json: its experiment_id 5 is not an id; ...
    """
    identity = fields[EXPERIMENT_ID_KEY]
    if not isinstance(identity, str) or not identity:
        raise LthError(
            f"{path}: its {EXPERIMENT_ID_KEY} {identity!r} is not an id; restore hparams.json "
            "from a copy (every .npz of the experiment is stamped with its id)"
        )
    return identity


@dataclasses.dataclass(frozen=True)
class ExperimentDir:
    """Paths of one experiment.

    >>> ExperimentDir(Path("runs/e")).masks(3).as_posix()
    'runs/e/round_03/masks.npz'
    """

    root: Path

    @property
    def hparams(self) -> Path:
        return self.root / "hparams.json"

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions.json"

    @property
    def classes(self) -> Path:
        return self.root / "classes.json"

    @property
    def rewind_point(self) -> Path:
        return self.root / "rewind_point.npz"

    def round_dir(self, pruning_round: int) -> Path:
        return self.root / f"round_{pruning_round:02d}"

    def masks(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "masks.npz"

    def weights(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "weights.npz"

    def evaluations(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "evaluations.csv"

    def checkpoint(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "checkpoint.npz"

    @property
    def identity(self) -> str | None:
        """The experiment's id from ``hparams.json`` (``None`` for a directory from before ids,
        or without hparams.json)."""
        if not self.hparams.exists():
            return None
        fields = io.read_json(self.hparams, HPARAMS_TODO)
        if not isinstance(fields, dict) or EXPERIMENT_ID_KEY not in fields:
            return None
        return checked_identity(fields, self.hparams)

    def stamp(self, path: Path) -> dict[str, np.ndarray]:
        """The entries that tie ``path``, an ``.npz`` of this experiment, to it: to write with
        its arrays (:data:`lth_tf.io.STAMP_KEYS`; readers never see them as arrays).

        >>> ExperimentDir(Path("runs/e")).stamp(Path("runs/e/round_02/masks.npz"))  # doctest: +SKIP
        {'__experiment__': array('3f2a9c1b-5e8d0a7b4c21', ...), '__file__': array('round_02/...')}
        """
        identity = self.identity
        if identity is None:
            return {}  # not opened by a run of this version: nothing to tie it to
        return {"__experiment__": np.array(identity), "__file__": np.array(self._place(path))}

    def read_arrays(self, path: Path, todo: str | None = None) -> dict[str, np.ndarray]:
        """The arrays of ``path``, an ``.npz`` of this experiment, once its stamp says it is
        this experiment's file of that place; else an LthError naming it and what to do
        (``todo``, by default :data:`TODO_BY_FILE`'s).

        >>> experiment = ExperimentDir(Path("runs/e"))
        >>> experiment.read_arrays(experiment.masks(2))["fc1/kernel"].shape  # doctest: +SKIP
        (784, 300)
        """
        todo = todo or TODO_BY_FILE.get(Path(path).name, io.RECOMPUTE)
        arrays, stamp = io.read_stamped_npz(path, todo)
        self._check_stamp(path, stamp, todo)
        return arrays

    def check_stamp(self, path: Path, todo: str | None = None) -> None:
        """:meth:`read_arrays`'s check alone, reading only the stamp (for a checkpoint that a
        resume then reads whole)."""
        todo = todo or TODO_BY_FILE.get(Path(path).name, io.RECOMPUTE)
        self._check_stamp(path, io.read_stamp(path, todo), todo)

    def read_rewind_point(self) -> dict[str, np.ndarray]:
        """The weights every round rewinds to, checked to be this experiment's."""
        return self.read_arrays(self.rewind_point)

    def _place(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def _check_stamp(self, path: Path, stamp: Mapping[str, str], todo: str) -> None:
        if is_unstamped(stamp):
            return
        theirs, mine = stamp.get("__experiment__"), self.identity
        if theirs != mine:
            this = f"this one is {mine}" if mine else "this one has no id"
            raise LthError(f"{path} belongs to another experiment ({theirs}; {this}): {todo}")
        place = self._place(path)
        if stamp.get("__file__") != place:
            raise LthError(
                f"{path} is this experiment's {stamp.get('__file__')}, not its {place}: {todo}"
            )

    def record_session(self, session: dict[str, Any]) -> None:
        """Appends how this run executes (none of it is a hyperparameter) to sessions.json.

        Results of one experiment may come from several runs (a resume on other hardware, in
        other precision); this says which rounds each one trained, and how.
        """
        io.write_json(self.sessions, [*self.read_sessions(), session])

    def amend_session(self, **changes: Any) -> None:
        """Sets ``changes`` in the latest sessions.json entry: what this run learnt after it
        started (the calls' length ``auto`` sized while training)."""
        sessions = self.read_sessions()
        if sessions:
            io.write_json(self.sessions, [*sessions[:-1], {**sessions[-1], **changes}])

    def read_sessions(self) -> list[dict[str, Any]]:
        """sessions.json's entries (none before the first run); an LthError if it is not a list
        of objects."""
        if not self.sessions.exists():
            return []
        sessions = io.read_json(self.sessions)
        if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
            raise LthError(
                f"{self.sessions} is not a list of sessions; restore it, or delete it (a resume "
                "then chooses XLA or not again, and may train on with the other)"
            )
        return sessions

    def recorded_xla_training(self) -> bool | None:
        """Whether the latest run of this experiment trained under XLA (None: no run yet).

        ``--jit_compile=auto`` resumes with this choice, so a resume trains as the run it
        continues did, bit for bit.
        """
        chosen = [s["xla_training"] for s in self.read_sessions() if "xla_training" in s]
        return bool(chosen[-1]) if chosen else None

    def recorded_chunk_length(self, hardware: str) -> int | None:
        """How many iterations a compiled call trained in the latest run whose
        ``--steps_per_execution=auto`` sized them on one device of this ``hardware`` (None:
        none such). A resume there keeps it; on other hardware it sizes them again (a length
        sized on a GPU could make a CPU's calls, which Ctrl-C waits for, minutes long).
        """
        for session in reversed(self.read_sessions()):
            length = session.get("chunk_length")
            if session.get("steps_per_execution") == "auto" and type(length) is int and length > 0:
                same = session.get("hardware") == hardware and session.get("replicas") == 1
                return length if same else None
        return None

    def recorded_precision(self) -> str | None:
        """What the latest run of this experiment computed in: ``float32``, ``bfloat16`` or
        ``float16`` (None: no run yet). A resume in another one is logged: its results are not
        an uninterrupted run's."""
        chosen = [s["mixed_precision"] for s in self.read_sessions() if "mixed_precision" in s]
        return str(chosen[-1]) if chosen else None

    def read_results(self) -> list[RoundResult]:
        """Every results row, in round order; a damaged file (a bad value, a round twice, a
        round longer than this experiment's or past its last round) is an LthError saying
        which."""
        if not self.results.exists():
            return []
        # Rounds are retrained from what is on disk, so a lost row costs only time.
        required = [c for c in RESULT_COLUMNS if c not in OPTIONAL_RESULT_COLUMNS]
        rows = io.read_csv(self.results, required, RESULTS_TODO)
        if not rows:
            # write_result never writes a header alone: the rows were lost.
            raise io.damaged(self.results, "no rows", RESULTS_TODO)
        try:
            results = [RoundResult.from_row(row) for row in rows]
        except LthError as error:
            raise io.damaged(self.results, error, RESULTS_TODO) from None
        rounds = [result.round for result in results]
        twice = sorted({r for r in rounds if rounds.count(r) > 1})
        if twice:
            raise io.damaged(self.results, f"two rows for round {twice[0]}", RESULTS_TODO)
        total, last_round = self._saved_length()
        # Past the experiment's end: the results.csv of a longer run, copied in, or an early
        # stop that is none of the round's iterations.
        beyond = [
            *(
                f"round {r.round} trained {r.iterations} iterations, more than this "
                f"experiment's {total}"
                for r in results
                if total is not None and r.iterations > total
            ),
            *(
                f"round {r.round} stopped early at iteration {r.early_stop_iteration}, past "
                f"this experiment's {total}"
                for r in results
                if total is not None and (r.early_stop_iteration or 0) > total
            ),
        ]
        if beyond:
            raise io.damaged(self.results, beyond[0], RESULTS_TODO)
        phantom = [r.round for r in results if last_round is not None and r.round > last_round]
        if phantom:  # no run of this experiment trained it: one row to delete, not every round
            raise io.damaged(
                self.results,
                f"a row for round {phantom[0]}, past this experiment's last round, {last_round}",
                f"delete that row, or restore {self.results.name} from a copy",
            )
        if any(r.early_stop_trained is None for r in results):
            results = with_early_stop_trained(results, total)
        return sorted(results, key=lambda result: result.round)

    def _saved_length(self) -> tuple[int | None, int | None]:
        """T, the iterations a round trains, and the last round, as hparams.json says (None
        where it cannot)."""
        try:
            saved = read_saved(self)
        except LthError:
            return None, None
        return (saved.resolved.iterations if saved.resolved else None), saved.hparams.pruning.rounds

    def write_result(self, result: RoundResult) -> None:
        """Adds (or replaces) the row of ``result.round`` in results.csv, atomically."""
        rows = [r for r in self.read_results() if r.round != result.round] + [result]
        io.write_csv(
            self.results,
            [r.to_row() for r in sorted(rows, key=lambda r: r.round)],
            RESULT_COLUMNS,
        )

    def read_masks(
        self,
        pruning_round: int,
        shapes: Mapping[str, tuple[int, ...]] | None = None,
        nested: bool = True,
    ) -> dict[str, np.ndarray]:
        """Round ``pruning_round``'s masks, checked: 0/1 values, ``shapes`` (name -> shape)
        when given, and (``nested``) zero wherever the previous round's masks are zero.

        A mask that fails is an LthError naming the file: it would prune another network than
        the one the round trained.

        >>> ExperimentDir(Path("e")).read_masks(1, {"fc1/kernel": (784, 300)})  # doctest: +SKIP
        """
        path = self.masks(pruning_round)
        masks = self.read_arrays(path)
        for name, mask in masks.items():
            if not np.isin(mask, (0, 1)).all():
                raise io.damaged(path, f"{name} holds values other than 0 and 1", MASKS_TODO)
        if shapes is not None:
            if set(masks) != set(shapes):
                odd = sorted(set(masks) ^ set(shapes))
                raise io.damaged(path, f"not this model's layers: {', '.join(odd[:3])}", MASKS_TODO)
            check_shapes(path, masks, shapes)
        previous_path = self.masks(pruning_round - 1)
        if nested and pruning_round > 0 and previous_path.exists():
            previous = self.read_arrays(previous_path)
            for name, mask in masks.items():
                before = previous.get(name)
                if before is not None and before.shape == mask.shape and (mask > before).any():
                    raise io.damaged(
                        path,
                        f"{name} keeps weights round {pruning_round - 1} pruned",
                        MASKS_TODO,
                    )
        return masks

    def read_weights(
        self, pruning_round: int, shapes: Mapping[str, tuple[int, ...]] | None = None
    ) -> dict[str, np.ndarray]:
        """Round ``pruning_round``'s trained weights, checked finite and (when given) of
        ``shapes`` for the names ``shapes`` has; else an LthError naming the file."""
        path = self.weights(pruning_round)
        weights = self.read_arrays(path)
        odd = io.not_finite(weights)
        if odd is not None:
            raise io.damaged(path, f"{odd} is not finite everywhere", WEIGHTS_TODO)
        return check_shapes(path, weights, shapes)

    def completed_rounds(self) -> set[int]:
        """Rounds with a results row *and* saved weights (a row is written last)."""
        return {row.round for row in self.read_results() if self.weights(row.round).exists()}


def check_shapes(
    path: Path, arrays: dict[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]] | None
) -> dict[str, np.ndarray]:
    """``arrays`` (read from ``path``, one of an experiment's files), once each name of
    ``shapes`` (the model's: name -> shape) is there in that shape; else an LthError naming the
    file and what to do, not a KeyError where the values meet the model.

    >>> weights = Path("e/round_01/weights.npz")
    >>> check_shapes(weights, {}, {"fc1/kernel": (784, 300)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: e/round_01/weights.npz is damaged (no fc1/kernel): delete it and ...
    """
    todo = TODO_BY_FILE.get(Path(path).name, io.RECOMPUTE)
    for name, shape in (shapes or {}).items():
        if name not in arrays:
            raise io.damaged(path, f"no {name}", todo)
        if tuple(arrays[name].shape) != tuple(shape):
            raise io.damaged(
                path, f"{name} has shape {arrays[name].shape}, the model's is {tuple(shape)}", todo
            )
    return arrays


def parent_dir(experiment: ExperimentDir, hparams: ExperimentHparams) -> ExperimentDir:
    """A branch's parent (:mod:`lth_tf.lottery.branches`): the directory beside it that
    ``branch.parent`` names."""
    return ExperimentDir(experiment.root.parent / hparams.branch.parent)


def default_experiment_name(hparams: ExperimentHparams, defaults: ExperimentHparams) -> str:
    """``<model>-<dataset>-<hash of the hyperparameters that differ from the paper's>``.

    A user's model or dataset shows by its short name (a file's stem) and its full name joins
    the hash, so two files of one stem in different folders are two experiments.

    >>> from lth_tf.models import paper_defaults
    >>> hparams = paper_defaults("models/tiny.keras", "npz:data/shapes.npz")
    >>> default_experiment_name(hparams, hparams)
    'tiny-shapes-a3409b41'
    """
    from lth_tf.models.custom import display_name, is_custom

    model, dataset = hparams.model.name, hparams.dataset.name
    identity = {}
    if is_custom(model):
        identity["model.name"] = model
    if ":" in dataset:
        identity["dataset.name"] = dataset
    # The number of rounds is not part of an experiment's identity (open_experiment), so not of
    # its name: --rounds=5 after --rounds=3 finds the same directory and extends it.
    same_rounds = dataclasses.replace(
        defaults, pruning=dataclasses.replace(defaults.pruning, rounds=hparams.pruning.rounds)
    )
    suffix = hparams.short_hash(same_rounds, identity)
    return f"{display_name(model)}-{dataset_display_name(dataset)}-{suffix}"


def dataset_display_name(name: str) -> str:
    """``npz:data/shapes.npz`` -> ``shapes``, ``tfds:cifar100:3.0.2`` -> ``cifar100``.

    >>> dataset_display_name("arrays:0123abcd"), dataset_display_name("mnist")
    ('arrays', 'mnist')
    """
    kind, sep, rest = name.partition(":")
    if not sep:
        return name
    if kind == "npz":
        return Path(rest).stem
    if kind == "tfds":
        return rest.split(":")[0].replace("/", "_")
    return kind


@dataclasses.dataclass(frozen=True)
class DataRecord:
    """The dataset an experiment ran, as ``hparams.json``'s ``data`` records it (None: written
    before that entry was recorded).

    >>> record = DataRecord.from_dict({"source": "debian", "input_shape": [28, 28, 1]})
    >>> record.input_shape, record.num_classes
    ((28, 28, 1), None)
    """

    source: str = ""
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    train_examples: int | None = None
    val_examples: int | None = None
    test_examples: int | None = None
    # Where the data came from and its fingerprint (lth_tf.provenance).
    provenance: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataRecord:
        """Reads the entry; keys of a newer lth_tf are ignored, malformed values are a
        ``ValueError`` or ``TypeError``."""
        known = {field.name for field in dataclasses.fields(cls)}
        record = {key: value for key, value in values.items() if key in known}
        shape = record.get("input_shape")
        if shape is not None:
            record["input_shape"] = tuple(_count(d, "input_shape", 1) for d in shape)
            if not record["input_shape"]:
                raise ValueError("input_shape is empty")
        smallest = {"num_classes": 2, "train_examples": 1, "val_examples": 0, "test_examples": 0}
        for key, least in smallest.items():
            if record.get(key) is not None:
                record[key] = _count(record[key], key, least)
        if record.get("provenance") is not None and not isinstance(record["provenance"], dict):
            raise TypeError("provenance is not a mapping")
        return cls(**record)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        return out


def _count(value: Any, name: str, least: int) -> int:
    """``value`` as a whole number of at least ``least``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{name} holds {value!r}, not a whole number")
    if value < least:
        raise ValueError(f"{name} holds {value!r}, less than {least}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class SavedExperiment:
    """What an experiment's ``hparams.json`` holds, read and checked in one place.

    ``resolved``: the step counts the run resolved (None: written before they were recorded);
    ``data``: the dataset it ran; ``model``: the model's record (:mod:`lth_tf.provenance`; None
    for registry models of experiments written before models were recorded); ``fields``: the
    whole file as read (other keys, e.g. ``rewind_found``), what a rewrite starts from.
    """

    hparams: ExperimentHparams
    format_version: Any
    resolved: Resolved | None
    data: DataRecord
    model: dict[str, Any] | None
    fields: dict[str, Any]

    @property
    def rewind_iteration(self) -> int:
        """k, the iteration rounds rewind to (0 where the file does not say)."""
        return self.resolved.rewind_iteration if self.resolved else 0


def read_saved(
    experiment: ExperimentDir, what: str = "", todo: str = HPARAMS_TODO
) -> SavedExperiment:
    """Reads ``hparams.json``: missing, malformed or of another format version is an LthError.

    ``what`` prefixes each message (e.g. ``"--branch_of: "``), ``todo`` ends a damaged one's.
    What an older lth_tf wrote reads as this version writes it (:mod:`lth_tf.legacy`).
    """
    path = experiment.hparams
    if not path.exists():
        members = sorted(experiment.root.glob("*/hparams.json"))
        inside = (
            f"; it holds experiments: pass one of them, e.g. {members[0].parent}" if members else ""
        )
        raise LthError(
            f"{what}{experiment.root} is not an lth_tf experiment (no hparams.json){inside}"
        )
    fields = io.read_json(path, todo)
    if not isinstance(fields, dict):
        raise LthError(f"{what}{path} is not an lth_tf hparams file (not a JSON object)")

    def entry(name: str, read: Any) -> Any:
        try:
            return read()
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, LthError) as error:
            why = f"no {error.args[0]!r}" if isinstance(error, KeyError) else str(error)
            raise LthError(
                f"{what}{path} is not an lth_tf hparams file (its {name}: {why}); {todo}"
            ) from None

    hparams = entry("hparams", lambda: ExperimentHparams.from_dict(fields["hparams"]))
    resolved = entry(
        "resolved", lambda: Resolved.from_dict(fields["resolved"]) if "resolved" in fields else None
    )
    data = entry("data", lambda: DataRecord.from_dict(fields.get("data", {})))
    model = fields.get("model")
    if model is not None and not isinstance(model, dict):
        raise LthError(f"{what}{path} is not an lth_tf hparams file (its model: not an object)")
    version = fields.get("format_version")
    if version is None:
        raise LthError(f"{what}{path} is not an lth_tf hparams file (no format_version)")
    if isinstance(version, bool) or not isinstance(version, int):  # every version wrote one
        raise LthError(
            f"{what}{path} is not an lth_tf hparams file (its format_version {version!r} is not "
            f"a number); {todo}"
        )
    if version != FORMAT_VERSION:
        raise LthError(
            f"{what}{experiment.root} was written by another lth_tf version (format {version}, "
            f"this is {FORMAT_VERSION}); use that version with it, or a new --experiment_name"
        )
    _check_unedited(fields, f"{what}{path}", todo)
    return SavedExperiment(hparams, version, resolved, data, model, fields)


def _check_unedited(fields: dict[str, Any], where: str, todo: str) -> None:
    """Refuses ``hparams.json`` whose hyperparameters are not the ones it was written with
    (:data:`HPARAMS_HASH_KEY`): an edited file would label, report and resume a run as one it
    never was. A file from before the hash has nothing to check.

    >>> fields = {"hparams": {"pruning": {"rounds": 2}}, HPARAMS_HASH_KEY: "0" * 64}
    >>> _check_unedited(fields, "runs/e/hparams.json", "restore it")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: runs/e/hparams.json: its hyperparameters are not the ones ...
    """
    if HPARAMS_HASH_KEY in fields and fields[HPARAMS_HASH_KEY] != hparams_hash(fields):
        raise LthError(
            f"{where}: its hyperparameters are not the ones it was written with (they do not "
            f"match its {HPARAMS_HASH_KEY}: the file was edited); {todo}"
        )


def check_experiment_name(name: str, flag: str = "--experiment_name") -> str:
    """Returns ``name`` if it is one path component, so the experiment stays in --output_dir.

    >>> check_experiment_name("lenet-lth")
    'lenet-lth'
    >>> check_experiment_name("../elsewhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lth_tf.errors.LthError: --experiment_name: '../elsewhere' is not a plain name ...
    """
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    control = any(ord(char) < 32 or ord(char) == 127 for char in name)
    if not name or name in (".", "..") or any(sep in name for sep in separators) or control:
        raise LthError(
            f"{flag}: {name!r} is not a plain name (one directory name, without /, .. or "
            "control characters, "
            "inside --output_dir); pass e.g. lenet-lth, and choose the folder with --output_dir"
        )
    return name


def refuse_foreign_directory(
    root: Path, todo: str = "choose another --output_dir or --experiment_name"
) -> None:
    """Refuses ``root`` where it is a file, or a directory that has files but no hparams.json:
    it is someone else's.

    What a kill of the first write leaves (the lock, a temporary hparams.json) does not count.

    >>> refuse_foreign_directory(Path("/nonexistent"))
    """
    if root.exists() and not root.is_dir():
        raise LthError(f"{root} exists and is not a directory; move it away, or {todo}")
    if not root.exists() or (root / "hparams.json").exists():
        return
    if any(not io.is_leftover(path) for path in root.iterdir()):
        raise LthError(f"{root} exists and is not an lth_tf experiment (no hparams.json); {todo}")


def open_experiment(
    root: Path,
    hparams: ExperimentHparams,
    extra: dict[str, Any],
    record: dict[str, Any] | None = None,
) -> ExperimentDir:
    """Creates the experiment directory, or checks that an existing one ran these hyperparameters.

    ``extra`` goes into a new experiment's ``hparams.json``; ``record`` (where its settings came
    from, e.g. ``rewind_found``) into a new or an existing one's.

    Resuming into a directory that holds a different experiment would mix two runs' rounds, so
    any difference is refused, naming the first values that differ. The number of rounds is not
    part of an experiment's identity: more rounds extend it (``hparams.json`` then says the new
    number), fewer leave it as it is.
    """
    experiment = ExperimentDir(root)
    if experiment.hparams.exists():
        saved = read_saved(experiment)
        # Through the dataclasses and back: an option added since the directory was written
        # takes its neutral default, so older experiments still resume.
        # The same model or data file named by another path (absolute or relative, from
        # another folder, through a link) is the same experiment; it keeps its spelling.
        saved_hparams = named_as_mine(experiment_identity(saved.hparams), saved.fields, hparams)
        mine = experiment_identity(hparams)
        if saved_hparams != mine:
            diffs = hparam_differences(saved_hparams, mine)
            if (
                len(diffs) == 1
                and diffs[0].startswith("model.name:")
                and all(
                    value.get("model", {}).get("name", "").startswith("python:")
                    for value in (saved_hparams, mine)
                )
            ):
                raise LthError(
                    f"{root} was started with another model object ({saved.hparams.model.name}, "
                    f"now {hparams.model.name}; Keras numbers an unnamed model built again: "
                    "model_1 for model); "
                    "pass the object it started with, or one built as it was and named as it was "
                    "(keras.Model(..., name=...)), to resume, or another experiment_name"
                )
            raise LthError(
                f"{root} holds an experiment with other hyperparameters ({'; '.join(diffs[:3])}); "
                "rerun with the same flags to resume, or pick another --experiment_name"
            )
        now = extra.get("resolved")
        check_eval_spacing(
            root,
            hparams.training.eval_every,
            saved.resolved.eval_every if saved.resolved else None,
            now.get("eval_every") if isinstance(now, dict) else None,
        )
        more_rounds = hparams.pruning.rounds > saved.hparams.pruning.rounds
        fields = marked_rounds_from_rewind_point(experiment, saved, saved.fields, more_rounds)
        if EXPERIMENT_ID_KEY in fields:
            checked_identity(fields, experiment.hparams)
        else:
            # Started before ids: it gets one now; its files gain stamps as they are rewritten.
            fields = {**fields, EXPERIMENT_ID_KEY: new_experiment_id(written_identity(fields))}
        fields = {**fields, **(record or {})}
        if more_rounds:
            # Rounds 0..R are the same whatever the total: the extended experiment is the same one.
            extended = dict(fields["hparams"])
            extended["pruning"] = {**extended["pruning"], "rounds": hparams.pruning.rounds}
            fields = {**fields, "hparams": extended}
        # From now on an edit is found (a file from before the hash gets one as it is).
        fields = {**fields, HPARAMS_HASH_KEY: hparams_hash(fields)}
        if fields != saved.fields:
            io.write_json(experiment.hparams, fields)
        return experiment
    refuse_foreign_directory(root)
    fields = {
        "format_version": FORMAT_VERSION,
        "hparams": hparams.to_dict(),
        ROUNDS_KEY: ROUNDS_FROM_REWIND_POINT,
        EXPERIMENT_ID_KEY: new_experiment_id(experiment_identity(hparams)),
        **extra,
        **(record or {}),
    }
    io.write_json(experiment.hparams, {**fields, HPARAMS_HASH_KEY: hparams_hash(fields)})
    return experiment


def settings_of_directory(
    experiment: ExperimentDir, hparams: ExperimentHparams
) -> ExperimentHparams:
    """``hparams`` with the values an existing directory written before a field of
    :data:`lth_tf.legacy.DEFAULTS_BEFORE` existed ran, so it resumes as it was trained."""
    if not experiment.hparams.exists():
        return hparams
    written = read_saved(experiment).fields.get("hparams", {})
    mine = settings_of_older_directory(written, hparams.to_dict(), experiment.root)
    return ExperimentHparams.from_dict(mine)


def named_as_mine(
    identity: dict[str, Any], fields: dict[str, Any], hparams: ExperimentHparams
) -> dict[str, Any]:
    """An existing experiment's ``identity`` (from its ``hparams.json`` ``fields``) with its
    model and data file names spelt as ``hparams`` spells them, where both name the same files
    (:func:`started_with_file`), so that only a real difference remains."""
    for group, name in (("model", hparams.model.name), ("dataset", hparams.dataset.name)):
        if started_with_file(fields, group, name) is not None:
            identity = {**identity, group: {**identity[group], "name": name}}
    return identity


def started_with_file(fields: dict[str, Any], group: str, name: str) -> str | None:
    """The name an experiment (``hparams.json``'s ``fields``) recorded for its model or
    dataset (``group``) if ``name`` names that same file by any path, else None.

    The name may be relative to where the experiment started; the absolute path it recorded
    beside it (``model.path``, ``data.provenance.path``) is found from anywhere. A file moved
    since (nothing at the recorded path, the same bytes at ``name``) is that file too.
    """
    hparams = fields.get("hparams")
    saved = hparams.get(group, {}).get("name") if isinstance(hparams, dict) else None
    if not isinstance(saved, str):
        return None
    if same_file_names(saved, name):
        return saved
    record = fields.get("model") if group == "model" else fields.get("data", {}).get("provenance")
    recorded = record.get("path") if isinstance(record, dict) else None
    prefix = "npz:" if group == "dataset" else ""
    if isinstance(recorded, str) and saved.startswith(prefix):
        if same_file_names(f"{prefix}{recorded}", name):
            return saved
        path = name.removeprefix(prefix)
        if not os.path.exists(recorded) and os.path.isfile(path) and name.startswith(prefix):
            return saved if record.get("sha256") == io.file_sha256(path) else None
    return None


def same_file_names(a: str, b: str) -> bool:
    """Whether two model or dataset names name one thing: equal, two spellings of one
    existing file (absolute, relative, with ./, through a link), or of one path whose file is
    gone (an experiment goes on from its copy of a gone model file).

    >>> same_file_names("mnist", "mnist"), same_file_names("npz:gone.npz", "npz:./gone.npz")
    (True, True)
    >>> same_file_names("npz:gone.npz", "npz:other/gone.npz")
    False
    """
    if a == b:
        return True
    if a.startswith("npz:") != b.startswith("npz:"):
        return False
    if not (a.startswith("npz:") or (a.endswith(".keras") and b.endswith(".keras"))):
        return False
    a, b = a.removeprefix("npz:"), b.removeprefix("npz:")
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is not there (any more): the same path, or not
        return os.path.abspath(a) == os.path.abspath(b)


def new_experiment_id(identity: Mapping[str, Any]) -> str:
    """A new experiment's id: a hash of its identity (:func:`experiment_identity`) and a random
    part, so two runs of the same hyperparameters (another seed, or the same one in another
    directory) differ, while a ``cp -r`` copy keeps its original's.

    >>> from lth_tf.models import paper_defaults
    >>> new_experiment_id(experiment_identity(paper_defaults("lenet300_100")))  # doctest: +SKIP
    '5e1f0c2a-9b3d47e8a1c6'
    """
    return f"{json_sha256(identity)[:8]}-{uuid.uuid4().hex[:12]}"


def json_sha256(value: Any) -> str:
    """The sha256 (hex) of ``value`` as JSON with sorted keys: the same whatever the order.

    >>> json_sha256({"b": 1, "a": 2}) == json_sha256({"a": 2, "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def experiment_identity(hparams: ExperimentHparams) -> dict[str, Any]:
    """What makes two runs the same experiment: every hyperparameter but the number of rounds
    (more rounds extend an experiment, see :func:`open_experiment`)."""
    values = hparams.to_dict()
    return {**values, "pruning": without_rounds(values["pruning"])}


def hparams_hash(fields: Mapping[str, Any]) -> str:
    """The sha256 of ``hparams.json``'s hyperparameters (its ``fields``) as written, but the
    number of rounds: what :data:`HPARAMS_HASH_KEY` holds.

    >>> hparams_hash({"hparams": {"pruning": {"rounds": 2}}})[:12]
    '79a344e454b1'
    """
    return json_sha256(written_identity(fields))


def written_identity(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The identity in ``hparams.json``'s ``fields`` as it was written (before this version's
    reading of older files): what its experiment id hashes."""
    written = fields["hparams"]
    return {**written, "pruning": without_rounds(written.get("pruning", {}))}


def without_rounds(pruning: Mapping[str, Any]) -> dict[str, Any]:
    """The pruning hyperparameters but the number of rounds, which extends an experiment.

    >>> without_rounds({"rounds": 3, "rewind": "0it"})
    {'rewind': '0it'}
    """
    return {key: value for key, value in pruning.items() if key != "rounds"}


def hparam_differences(saved: dict, mine: dict, prefix: str = "") -> list[str]:
    """Where two nested hyperparameter dicts differ, as "group.key: saved X, now Y"."""
    diffs = []
    for key in sorted(set(saved) | set(mine)):
        old, new = saved.get(key), mine.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += hparam_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            diffs.append(f"{prefix}{key}: saved {old!r}, now {new!r}")
    return diffs


def read_experiment(
    experiment_dir: str | Path, data_keys: tuple[str, ...] = (), what: str = "--experiment_dir"
) -> tuple[ExperimentDir, ExperimentHparams, DataRecord]:
    """An existing experiment of this format: its paths, hyperparameters and data record.

    ``data_keys`` are fields of the :class:`DataRecord` the caller needs recorded; ``what``
    names where the path came from (a flag, or the Python API's ``Experiment``).

    >>> experiment, hparams, data = read_experiment("runs/demo")  # doctest: +SKIP
    """
    root = Path(experiment_dir)
    if not root.is_dir():
        problem = "is not a directory" if root.exists() else "does not exist"
        raise LthError(
            f"{what}: {root} {problem}; pass the directory an IMP run wrote "
            "(e.g. runs/<experiment>)"
        )
    experiment = ExperimentDir(root)
    saved = read_saved(experiment)
    missing = [key for key in data_keys if getattr(saved.data, key) is None]
    if missing:
        raise LthError(f"{experiment.hparams} has no data.{missing[0]}; was it written by lth_tf?")
    return experiment, saved.hparams, saved.data
