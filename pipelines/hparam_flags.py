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

from absl import flags

from lth_tf.config import ExperimentHparams, HparamFlag, hparam_flag_names, hparam_flags
from pipelines import common

__all__ = [
    "DEFAULT_MODEL",
    "HparamFlag",
    "define_hparam_flags",
    "hparam_flag_names",
    "hparam_flags",
    "hparams_from_flags",
]

DEFAULT_MODEL = "lenet300_100"
# Flags whose default is not None: --model chooses whose defaults the others take.
FLAG_DEFAULTS = {"model": DEFAULT_MODEL}

_DEFINE = {
    str: flags.DEFINE_string,
    int: common.define_integer,
    float: common.define_float,
    bool: flags.DEFINE_boolean,
}


def define_hparam_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines every hyperparameter flag on ``flag_values``.

    absl lists them under this module; a pipeline that wants them in its ``--help`` adopts them
    (``flags.adopt_module_key_flags(hparam_flags)``).
    """
    for spec in hparam_flags():
        default = FLAG_DEFAULTS.get(spec.name)
        says_default = default is not None or "Default" in spec.help
        help_text = spec.help if says_default else f"{spec.help} {_recipe_default(spec)}"
        if spec.boolean:
            # A string flag that also takes --name and --noname (absl passes "true"/"false").
            flag = flags.Flag(
                _BooleanSpellings(),
                flags.ArgumentSerializer(),
                spec.name,
                None,
                help_text,
                boolean=True,
            )
            flags.DEFINE_flag(flag, flag_values)
            continue
        if spec.flag_type not in _DEFINE:
            raise TypeError(
                f"{spec.group}.{spec.field}: a {spec.type.__name__} field needs a parse "
                "function in its metadata to be a flag"
            )
        _DEFINE[spec.flag_type](spec.name, default, help_text, flag_values=flag_values)


def _recipe_default(spec: HparamFlag) -> str:
    """What an unset flag takes, said in its help: the value of --model's recipe (the flag's
    own absl default is None, so that a flag set to the recipe's value counts as set).

    >>> from lth_tf.config import hparam_flags
    >>> _recipe_default(next(s for s in hparam_flags() if s.name == "rounds"))
    "(default: --model's recipe; lenet300_100's: 20)"
    """
    from lth_tf.models import paper_defaults

    value = getattr(getattr(paper_defaults(DEFAULT_MODEL), spec.group), spec.field)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"(default: --model's recipe; {DEFAULT_MODEL}'s: {text or 'none'})"


class _BooleanSpellings(flags.ArgumentParser):
    """Takes the flag's text as it is; ``--name``/``--noname`` arrive as "true"/"false", which
    the field's own parse reads (:func:`lth_tf.config.hparam`'s ``boolean``)."""

    syntactic_help = ""

    def parse(self, argument: str) -> str:
        return str(argument)

    def flag_type(self) -> str:
        return "string"


def hparams_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> ExperimentHparams:
    """The recipe's hyperparameters for ``--model``/``--dataset``/``--recipe``, with every
    field whose flag is set replaced by the flag's value."""
    from lth_tf.models import experiment_hparams

    given = {
        spec.name: flag_values[spec.name].value
        for spec in hparam_flags()
        if flag_values[spec.name].value is not None
    }
    model = given.pop("model", None) or DEFAULT_MODEL
    return experiment_hparams(model, given.pop("dataset", None), given.pop("recipe", None), given)
