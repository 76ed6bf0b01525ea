"""An experiment's directory name: the default one (the model, the data and a hash of what
differs from the paper's recipe), the name it had in an older lth_tf, and the directory a run
of the same files named by other paths started.

No TensorFlow: a pipeline finds the experiment's directory before TensorFlow starts.

>>> default_name(Path("runs"), paper_defaults("lenet300_100", "fashion_mnist"))  # doctest: +SKIP
'lenet300_100-fashion_mnist'
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lth_tf import io
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import default_experiment_name, started_with_file
from lth_tf.legacy import DEFAULTS_BEFORE, experiment_name_before_rounds_left_it
from lth_tf.models import paper_defaults


def experiment_root(
    output_dir: str | Path, hparams: ExperimentHparams, experiment_name: str | None = None
) -> Path:
    """Where a run of ``hparams`` writes: ``<output_dir>/<experiment_name or default_name>``."""
    return Path(output_dir) / (experiment_name or default_name(Path(output_dir), hparams))


def name_defaults(hparams: ExperimentHparams) -> ExperimentHparams:
    """What an experiment's name is hashed against: the model's default recipe, except the
    fields of :data:`lth_tf.legacy.DEFAULTS_BEFORE`, which take the experiment's own recipe's.

    Those fields' recipe defaults differ between recipes (resnet20's stabilizing recipe holds
    nothing out and starts batch norm uniform; its lth recipe does neither), so against the
    default recipe alone every lth-recipe experiment would hash them and lose the name it had
    before they existed. They join a name only where they differ from the experiment's own
    recipe.

    >>> name_defaults(paper_defaults("resnet20", recipe="lth")).dataset.holdout
    'auto'
    """
    model, dataset = hparams.model.name, hparams.dataset.name
    defaults = paper_defaults(model, dataset)
    recipe = hparams.model.recipe
    own = paper_defaults(model, dataset, None if recipe == "compiled" else recipe)
    for key in DEFAULTS_BEFORE:
        group, name = key.split(".")
        value = getattr(getattr(own, group), name)
        defaults = dataclasses.replace(
            defaults, **{group: dataclasses.replace(getattr(defaults, group), **{name: value})}
        )
    return defaults


def default_name(output_dir: Path, hparams: ExperimentHparams) -> str:
    """The experiment's default directory name (an existing one under its older name wins)."""
    defaults = name_defaults(hparams)
    name = default_experiment_name(hparams, defaults)
    legacy = experiment_name_before_rounds_left_it(
        hparams.model.name, hparams.dataset.name, hparams.short_hash(defaults)
    )
    if not (output_dir / name).exists() and (output_dir / legacy / "hparams.json").exists():
        return legacy
    if not (output_dir / name).exists():
        # Started with the model or data file named by another path (absolute, relative, with
        # ./): settings_of_directory then takes the spelling the directory was started with.
        found = _started_with_another_spelling(output_dir, name, hparams, defaults)
        if found is not None:
            return found
    return name


def _started_with_another_spelling(
    output_dir: Path, name: str, hparams: ExperimentHparams, defaults: ExperimentHparams
) -> str | None:
    """The directory in ``output_dir`` whose experiment named this run's model and data files
    by other paths (or through a link) and is otherwise this one, if any. Only a run of a file
    looks: registered models and datasets have one spelling."""
    mine = {"model": hparams.model.name, "dataset": hparams.dataset.name}
    if not any(_names_a_file(value) for value in mine.values()):
        return None
    for candidate in sorted(output_dir.glob("*/hparams.json")):
        try:
            fields = io.read_json(candidate)
            names = {g: started_with_file(fields, g, mine[g]) for g in mine}
        except (OSError, LthError, AttributeError, TypeError):
            continue  # not an experiment, or a damaged one: not this one
        if None in names.values():
            continue
        respelled = dataclasses.replace(
            hparams,
            model=dataclasses.replace(hparams.model, name=names["model"]),
            dataset=dataclasses.replace(hparams.dataset, name=names["dataset"]),
        )
        if default_experiment_name(respelled, defaults) == candidate.parent.name:
            return candidate.parent.name
    return None


def _names_a_file(name: str) -> bool:
    """Whether ``name`` is a file (a .keras model, an npz dataset), which paths can spell
    differently."""
    return name.startswith("npz:") or name.endswith(".keras")
