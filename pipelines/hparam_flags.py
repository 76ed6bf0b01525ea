"""The hyperparameter flags, generated from the dataclasses in :mod:`lth_tf.config`.

Every field of a group of :class:`~lth_tf.config.ExperimentHparams` that carries flag metadata
(:func:`lth_tf.config.hparam`) is one flag: named after the field unless the metadata names it
(``PruningHparams.scope`` is ``--pruning``), with the field's help text, and absl's str, int,
float or bool type from the field's type (a string for a field that has its own ``parse``).
Every flag defaults to None, "take the recipe's value": :func:`hparams_from_flags` starts from
``paper_defaults(--model, --dataset, --recipe)`` and replaces exactly the fields whose flags are
set. ``--model`` is the exception: it picks the recipe, so it defaults to :data:`DEFAULT_MODEL`.

>>> from absl import flags
>>> flag_values = flags.FlagValues()
>>> define_hparam_flags(flag_values)
>>> _ = flag_values(["imp", "--pruning=global", "--prune_rates=fc=0.3,output=0.3"])
>>> hparams_from_flags(flag_values).pruning.scope
'global'
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import Any

from absl import flags

from lth_tf.config import ExperimentHparams, flag_of

DEFAULT_MODEL = "lenet300_100"
# Flags whose default is not None: --model chooses whose defaults the others take.
FLAG_DEFAULTS = {"model": DEFAULT_MODEL}

_DEFINE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
}


@dataclasses.dataclass(frozen=True)
class HparamFlag:
    """One hyperparameter flag: ``--name`` sets field ``field`` of ``ExperimentHparams.group``."""

    name: str
    group: str
    field: str
    type: type
    help: str
    parse: Callable[[str, Any], Any] | None = None

    @property
    def flag_type(self) -> type:
        """What absl parses the flag's string as (a field with its own parser takes a string)."""
        return str if self.parse is not None else self.type


@functools.cache
def hparam_flags() -> tuple[HparamFlag, ...]:
    """Every hyperparameter flag, in the dataclasses' field order."""
    found = []
    groups = typing.get_type_hints(ExperimentHparams)
    for group in dataclasses.fields(ExperimentHparams):
        cls = groups[group.name]
        types = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if "help" not in field.metadata:
                continue  # not a flag (e.g. the branch's fields: pipelines.imp's own flags)
            found.append(
                HparamFlag(
                    name=flag_of(cls, field.name).removeprefix("--"),
                    group=group.name,
                    field=field.name,
                    type=types[field.name],
                    help=field.metadata["help"],
                    parse=field.metadata.get("parse"),
                )
            )
    names = [spec.name for spec in found]
    if len(set(names)) != len(names):
        raise TypeError(f"two hyperparameter fields have one flag name: {sorted(names)}")
    return tuple(found)


def hparam_flag_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in hparam_flags())


def define_hparam_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines every hyperparameter flag on ``flag_values``.

    absl lists them under this module; a pipeline that wants them in its ``--help`` adopts them
    (``flags.adopt_module_key_flags(hparam_flags)``).
    """
    for spec in hparam_flags():
        if spec.flag_type not in _DEFINE:
            raise TypeError(
                f"{spec.group}.{spec.field}: a {spec.type.__name__} field needs a parse "
                "function in its metadata to be a flag"
            )
        default = FLAG_DEFAULTS.get(spec.name)
        _DEFINE[spec.flag_type](spec.name, default, spec.help, flag_values=flag_values)


def hparams_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> ExperimentHparams:
    """The recipe's hyperparameters for ``--model``/``--dataset``/``--recipe``, with every
    field whose flag is set replaced by the flag's value."""
    from lth_tf.data.sources import check_dataset_name
    from lth_tf.models import get_model, paper_defaults

    given = {
        (spec.group, spec.field): (spec, flag_values[spec.name].value)
        for spec in hparam_flags()
        if flag_values[spec.name].value is not None
    }

    def value(group: str, field: str) -> Any:
        return given.get((group, field), (None, None))[1]

    model = value("model", "name") or DEFAULT_MODEL
    dataset = value("dataset", "name") or get_model(model).dataset  # refuses an unknown model
    # Normalised (npz:./a//b.npz is npz:a/b.npz), so one file gives one experiment name.
    dataset = check_dataset_name(dataset)
    base = paper_defaults(model, dataset, value("model", "recipe"))
    changes: dict[str, dict[str, Any]] = {}
    for (group, field), (flag, text) in given.items():
        recipe_value = getattr(getattr(base, group), field)
        parsed = flag.parse(text, recipe_value) if flag.parse is not None else text
        if (group, field) == ("dataset", "name"):
            parsed = dataset
        changes.setdefault(group, {})[field] = parsed
    return dataclasses.replace(
        base,
        **{
            group: dataclasses.replace(getattr(base, group), **fields)
            for group, fields in changes.items()
        },
    )
