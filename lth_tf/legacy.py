"""What older lth_tf versions wrote, read as this version reads it: every migration in one place.

An experiment directory outlives the version that wrote it. Each rule below says what an older
version wrote and how this one reads it (or, where reading it the new way would mix two
procedures, why it refuses); the readers (:mod:`lth_tf.config`, :mod:`lth_tf.experiment`,
:mod:`lth_tf.training.loop`, :mod:`lth_tf.export.ticket`) call these and hold no rule of their
own. A new rule belongs here, with a test that writes the old format by hand.

>>> upgrade_hparams_groups({"pruning": {"strategy": "global"}})["pruning"]["scope"]
'global'
>>> sorted(upgrade_hparams_groups({})["training"].items())
[('data_order', 'fixed')]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lth_tf.errors import LthError

if TYPE_CHECKING:
    from lth_tf.experiment import ExperimentDir, RoundResult, SavedExperiment

log = logging.getLogger("lth_tf")

# Fields renamed after experiments were written, old dotted key -> new. ``hparams.json`` files
# keep loading, and experiment names keep hashing the old key (so they keep their names).
# ``pruning.strategy`` shared its name with the distribution strategy (--strategy).
RENAMED_KEYS = {"pruning.strategy": "pruning.scope"}
# Fields whose values were spelt otherwise when experiments were written, dotted key -> {value
# now: value then}: experiment names keep hashing the old spelling (so they keep their names).
# --augment was a boolean before it took a function.
RESPELT_VALUES = {"training.augment": {"none": False, "cifar": True}}
# Fields whose default for new experiments is not what experiments written before the field
# existed ran, dotted key -> the value those ran. An ``hparams.json`` without the key reads as
# that value, and a new experiment that keeps the new default has the old name: rerun on such a
# directory, it takes the directory's value and resumes as it was trained
# (:func:`settings_of_older_directory`).
DEFAULTS_BEFORE = {
    "training.data_order": "fixed",
    "model.batchnorm_init": "fixed",
    "dataset.holdout": "auto",
}
# In hparams.json: how rounds after round 0 train. Directories without it were written when a
# round rewound to k trained all T iterations again, from the schedule's start.
# Written as true by every lth_tf whose rounds train k -> T.
ROUNDS_KEY = "rounds_train_from_rewind_point"
ROUNDS_FROM_REWIND_POINT = True
# Stability checkpoints from before training progress was saved as one JSON entry held the
# iteration alone, under this key.
OLD_ITERATION_KEY = "__iteration__"


def upgrade_hparams_groups(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``hparams.json``'s ``hparams`` as this version names them: renamed keys under their new
    names (:data:`RENAMED_KEYS`), fields added since with the value those experiments ran
    (:data:`DEFAULTS_BEFORE`; others take their dataclass default). A file written before
    branches has no ``branch`` group: a plain IMP experiment, which the default says."""
    groups = {group: dict(values) for group, values in data.items()}
    for old, new in RENAMED_KEYS.items():
        (group, old_name), new_name = old.split("."), new.split(".")[1]
        if old_name in groups.get(group, {}):
            groups[group][new_name] = groups[group].pop(old_name)
    for key, before in DEFAULTS_BEFORE.items():
        group, name = key.split(".")
        groups.setdefault(group, {}).setdefault(name, before)
    return groups


def hashed_as_written(flat: dict[str, Any]) -> dict[str, Any]:
    """Flattened hyperparameters (``{"pruning.scope": ...}``) keyed and spelt as they were when
    experiment names were first hashed, so that names survive renames and respellings.

    >>> hashed_as_written({"pruning.scope": "global", "training.augment": "none"})
    {'pruning.strategy': 'global', 'training.augment': False}
    """
    old_names = {new: old for old, new in RENAMED_KEYS.items()}
    out = {}
    for key, value in flat.items():
        spellings = RESPELT_VALUES.get(key, {})
        if isinstance(value, str | bool | int | float | type(None)) and value in spellings:
            value = spellings[value]
        out[old_names.get(key, key)] = value
    return out


def settings_of_older_directory(
    written: Mapping[str, Any], mine: dict[str, Any], root: Path
) -> dict[str, Any]:
    """``mine`` (hyperparameters as a dict) with the values a directory whose ``hparams.json``
    says ``written`` ran, for each field of :data:`DEFAULTS_BEFORE` it was written without.

    Such a field's new default is not part of an experiment's name, so the command that started
    the directory finds it again; the line logged says which value it keeps.
    """
    for key, before in DEFAULTS_BEFORE.items():
        group, name = key.split(".")
        if name in written.get(group, {}) or mine[group].get(name) == before:
            continue
        log.info(
            "%s was written before --%s existed: it keeps %s=%s, as it was trained.",
            root,
            name,
            name,
            before,
        )
        mine[group][name] = before
    return mine


def experiment_name_before_rounds_left_it(model: str, dataset: str, short_hash: str) -> str:
    """The default name before the number of rounds left it (a registry model's experiments
    that set ``--rounds`` hashed it): found and resumed under that name when it exists.

    >>> experiment_name_before_rounds_left_it("lenet300_100", "mnist", "0123abcd")
    'lenet300_100-mnist-0123abcd'
    """
    return f"{model}-{dataset}-{short_hash}"


def with_early_stop_trained(results: Sequence[RoundResult], total: int | None) -> list[RoundResult]:
    """Rows written before ``early_stop_trained`` existed, with it: a round starts at T minus
    the iterations it trained (0, or its rewind point k; 0 for rounds an older lth_tf trained
    all T iterations of), T (``total``) from hparams.json. Left empty where T is unknown."""
    if total is None:
        return list(results)
    return [
        dataclasses.replace(r, early_stop_trained=r.early_stop_iteration - (total - r.iterations))
        if r.early_stop_trained is None and r.early_stop_iteration is not None
        else r
        for r in results
    ]


def is_unstamped(stamp: Mapping[str, str]) -> bool:
    """An ``.npz`` written before files were stamped: an old directory's file still reads (it
    gains a stamp when it is next written)."""
    return not stamp


def old_checkpoint_iteration(arrays: dict[str, np.ndarray]) -> int | None:
    """The iteration of a stability checkpoint from before progress was saved whole (taken out
    of ``arrays``); None for a checkpoint of this version."""
    if OLD_ITERATION_KEY not in arrays:
        return None
    return int(arrays.pop(OLD_ITERATION_KEY))


def num_classes_from_weights(weights: Mapping[str, np.ndarray]) -> int:
    """An experiment written before ``data.num_classes`` was recorded ran a registered model,
    whose last layer is named ``output``: its bias has one entry per class."""
    return int(weights["output/bias"].shape[0])


def rounds_trained_the_old_way(experiment: ExperimentDir, saved: SavedExperiment) -> list[int]:
    """Rounds after round 0 that an lth_tf from before k -> T rounds trained from a rewind
    point k > 0 (all T iterations, schedule and data restarted); empty when there are none."""
    if saved.fields.get(ROUNDS_KEY) == ROUNDS_FROM_REWIND_POINT:
        return []
    if saved.rewind_iteration == 0:
        return []  # with k = 0 both procedures are the same
    return [
        r
        for r in range(1, saved.hparams.pruning.rounds + 1)
        if experiment.checkpoint(r).exists() or experiment.weights(r).exists()
    ]


def check_rounds_semantics(
    experiment: ExperimentDir, saved: SavedExperiment, for_more_rounds: bool = False
) -> None:
    """Refuses to resume or extend a directory whose rewound rounds trained the old way.

    Such rounds stay valid to export, report and analyse, but more rounds now would mix two
    procedures in one experiment. A finished experiment is let through (a rerun trains
    nothing) unless ``for_more_rounds`` (a branch would train rounds beside it).
    """
    old = rounds_trained_the_old_way(experiment, saved)
    finished = experiment.completed_rounds() >= set(range(saved.hparams.pruning.rounds + 1))
    if old and (for_more_rounds or not finished):
        raise LthError(
            f"{experiment.root} was trained by an older lth_tf whose rounds after round 0 "
            f"trained all iterations from the rewind point ({saved.rewind_iteration}it) with "
            "the schedule and data restarted; rounds now train from iteration k to the end, as "
            "the papers do. It still exports and reports; to continue, start a new "
            "--experiment_name"
        )


def marked_rounds_from_rewind_point(
    experiment: ExperimentDir, saved: SavedExperiment, fields: dict[str, Any], more_rounds: bool
) -> dict[str, Any]:
    """``fields`` (hparams.json, to write back) of a directory opened again: one written before
    :data:`ROUNDS_KEY` is checked (:func:`check_rounds_semantics`) and, when none of its
    rounds trained the old way, marked as training k -> T from now on."""
    if fields.get(ROUNDS_KEY) == ROUNDS_FROM_REWIND_POINT:
        return fields
    check_rounds_semantics(experiment, saved, for_more_rounds=more_rounds)
    if rounds_trained_the_old_way(experiment, saved):
        return fields
    return {**fields, ROUNDS_KEY: ROUNDS_FROM_REWIND_POINT}


def check_eval_spacing(
    root: Path, eval_every_flag: str, before: int | None, now: int | None
) -> None:
    """Refuses to resume where the same ``--eval_every`` now means another spacing.

    ``auto`` is per model (:class:`lth_tf.config.AutoEval`); before that it was half an epoch
    for every model, so an older lenet experiment on MNIST evaluated every 500 iterations
    under ``auto``, which now means 100. Its later rounds would find their early-stop
    iteration at another resolution than its first ones.

    >>> check_eval_spacing(Path("runs/e"), "auto", 100, 100)
    """
    if before is None or now is None or before == now:
        return
    why = " (what 'auto' means is per model now)" if eval_every_flag == "auto" else ""
    raise LthError(
        f"{root} evaluated every {before} iterations, but --eval_every={eval_every_flag} now "
        f"means every {now}{why}; its rounds would not share one early-stopping resolution: "
        "report or export it as it is, or run it again under another --experiment_name"
    )
