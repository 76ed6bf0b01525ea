"""The user's training recipe: any Keras optimizer by name, its arguments, the compiled recipe of
a saved or in-memory model, the classification loss, and the augmentation spec.

Nothing here imports TensorFlow, so every flag is checked before it starts. The tables below
are tf_keras 2.x's own (a test compares them with its signatures); the compiled recipe of a
model is kept in ``hparams.json`` as tf_keras class names and configs (:func:`compiled_json`),
built into objects by :mod:`lth_tf.training.trainer`.

>>> parse_optimizer_args("weight_decay=0.05, beta_2=0.98", "adamw")
'beta_2=0.98,weight_decay=0.05'
>>> loss_of(compiled_json({"class_name": "Adam", "config": {}}, "categorical_crossentropy"))
LossSpec(kind='categorical', from_logits=None, label_smoothing=0.0)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import re
import zipfile
from pathlib import Path
from typing import Any

from lth_tf.errors import LthError
from lth_tf.steps import decimal

# --optimizer NAME -> tf_keras.optimizers class name.
OPTIMIZER_CLASSES = {
    "adadelta": "Adadelta",
    "adafactor": "Adafactor",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "nadam": "Nadam",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
}
# Arguments every tf_keras optimizer takes that --optimizer_args may set.
_COMMON_ARGS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
# Each optimizer's own arguments (learning_rate aside: --learning_rate and --lr_schedule set it).
OPTIMIZER_ARGS: dict[str, tuple[str, ...]] = {
    "Adadelta": ("rho", "epsilon"),
    "Adafactor": ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step"),
    "Adagrad": ("initial_accumulator_value", "epsilon"),
    "Adam": ("beta_1", "beta_2", "epsilon", "amsgrad"),
    "AdamW": ("beta_1", "beta_2", "epsilon", "amsgrad"),
    "Adamax": ("beta_1", "beta_2", "epsilon"),
    "Ftrl": (
        "learning_rate_power",
        "initial_accumulator_value",
        "l1_regularization_strength",
        "l2_regularization_strength",
        "l2_shrinkage_regularization_strength",
        "beta",
    ),
    "Lion": ("beta_1", "beta_2"),
    "Nadam": ("beta_1", "beta_2", "epsilon"),
    "RMSprop": ("rho", "momentum", "epsilon", "centered"),
    "SGD": ("momentum", "nesterov"),
}
# What a config may also hold that changes nothing here: the name, how Keras compiles the step,
# and Keras 3's loss scaling and gradient accumulation when unset.
_IGNORED_WHEN_UNSET = ("loss_scale_factor", "gradient_accumulation_steps")
_IGNORED = ("name", "jit_compile", "is_legacy_optimizer")
# Exponential moving averages of the weights: their values are swapped in at the end of fit(),
# which this trainer does not call; refused rather than silently dropped.
_EMA = ("use_ema", "ema_momentum", "ema_overwrite_frequency")
_BOOLEAN_ARGS = ("amsgrad", "nesterov", "centered", "relative_step")
# (low, high, low_open, high_open) per argument; others: any finite number.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "beta_1": (0, 1, False, True),
    "beta_2": (0, 1, False, True),
    "rho": (0, 1, False, True),
    "momentum": (0, 1, False, True),
    "epsilon": (0, None, True, False),
    "epsilon_1": (0, None, True, False),
    "epsilon_2": (0, None, True, False),
    "clipnorm": (0, None, True, False),
    "clipvalue": (0, None, True, False),
    "global_clipnorm": (0, None, True, False),
    "clip_threshold": (0, None, True, False),
    "weight_decay": (0, None, False, False),
    "initial_accumulator_value": (0, None, False, False),
    "l1_regularization_strength": (0, None, False, False),
    "l2_regularization_strength": (0, None, False, False),
    "l2_shrinkage_regularization_strength": (0, None, False, False),
    "beta": (0, None, False, False),
    "learning_rate_power": (None, 0, False, False),
}
# tf_keras.optimizers.schedules classes (Keras 3 has the same names and arguments).
SCHEDULE_ARGS: dict[str, tuple[str, ...]] = {
    "CosineDecay": (
        "initial_learning_rate",
        "decay_steps",
        "alpha",
        "warmup_target",
        "warmup_steps",
    ),
    "CosineDecayRestarts": (
        "initial_learning_rate",
        "first_decay_steps",
        "t_mul",
        "m_mul",
        "alpha",
    ),
    "ExponentialDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "InverseTimeDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "PiecewiseConstantDecay": ("boundaries", "values"),
    "PolynomialDecay": (
        "initial_learning_rate",
        "decay_steps",
        "end_learning_rate",
        "power",
        "cycle",
    ),
}
LR_SCHEDULES = ("step", "cosine")
# The classification losses: the labels are class indices (sparse) or, inside the trainer, their
# one-hot rows (categorical, which label smoothing needs).
_LOSS_NAMES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
}
_LOSS_KINDS = {"SparseCategoricalCrossentropy": "sparse", "CategoricalCrossentropy": "categorical"}
AUGMENTATIONS = ("none", "cifar")
_FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def optimizer_class(name: str) -> str:
    """``--optimizer``'s tf_keras class, any spelling of its name; unknown is one line.

    >>> optimizer_class("AdamW"), optimizer_class("rmsprop")
    ('AdamW', 'RMSprop')
    """
    found = OPTIMIZER_CLASSES.get(str(name).strip().lower())
    if found is None:
        raise LthError(
            f"--optimizer: {name!r} is not a tf_keras optimizer; choose one of "
            f"{', '.join(OPTIMIZER_CLASSES)}"
        )
    return found


def _value(text: str, key: str, where: str) -> bool | float:
    """One argument's value from its text: a boolean argument takes true/false, others a number
    within the argument's range."""
    if key in _BOOLEAN_ARGS:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise LthError(f"{where}: {key}={text} is not true or false")
        return lowered == "true"
    try:
        value = decimal(text)
    except ValueError:
        raise LthError(f"{where}: {key}={text} is not a number") from None
    _check_range(value, key, where)
    return value


def _check_range(value: float, key: str, where: str) -> None:
    low, high, low_open, high_open = _RANGES.get(key, (None, None, False, False))
    ok = math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        opening = "(" if low is None or low_open else "["
        closing = ")" if high is None or high_open else "]"
        interval = f"{opening}{lo}, {hi}{closing}"
        raise LthError(f"{where}: {key}={value:g} is outside {interval}")


def optimizer_arguments(class_name: str) -> tuple[str, ...]:
    """What ``--optimizer_args`` may set for this tf_keras optimizer class."""
    return (*OPTIMIZER_ARGS[class_name], *_COMMON_ARGS)


def parse_optimizer_args(text: str, optimizer: str) -> str:
    """``--optimizer_args`` checked against ``--optimizer`` and spelt one way (sorted, numbers
    as Python writes them), so equal arguments are one experiment.

    >>> parse_optimizer_args("nesterov=True,clipnorm=1", "sgd")
    'clipnorm=1.0,nesterov=true'
    >>> parse_optimizer_args("beta_3=1", "adam")
    Traceback (most recent call last):
    lth_tf.errors.LthError: --optimizer_args: adam has no argument beta_3; it takes beta_1, \
beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue, global_clipnorm
    """
    return ",".join(f"{k}={_spell(v)}" for k, v in sorted(optimizer_args(text, optimizer).items()))


def optimizer_args(text: str, optimizer: str) -> dict[str, bool | float]:
    """``--optimizer_args`` as keyword arguments of the optimizer's class."""
    where = "--optimizer_args"
    class_name = optimizer_class(optimizer)
    allowed = optimizer_arguments(class_name)
    values: dict[str, bool | float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise LthError(f"{where}: {item!r} is not name=value (e.g. weight_decay=0.05)")
        if key in values:
            raise LthError(f"{where}: {key} is given twice")
        if key == "learning_rate":
            raise LthError(f"{where}: set the learning rate with --learning_rate")
        if key == "momentum" and class_name == "SGD":
            raise LthError(f"{where}: set SGD's momentum with --momentum")
        if key not in allowed:
            raise LthError(
                f"{where}: {optimizer.lower()} has no argument {key}; it takes {', '.join(allowed)}"
            )
        values[key] = _value(value, key, where)
    return values


def _spell(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(float(value))


def check_lr_schedule(name: str) -> None:
    if name not in LR_SCHEDULES:
        raise LthError(f"--lr_schedule: {name!r} is not one of {', '.join(LR_SCHEDULES)}")


# -- augmentation ----------------------------------------------------------------------------


def parse_augment(text: str | bool, default: Any = None) -> str:
    """``--augment``'s value: ``none``, ``cifar`` or ``package.module:function``; the
    boolean spellings of before (``--augment``, ``--noaugment``, True/False) are cifar/none.

    >>> parse_augment("true"), parse_augment(False), parse_augment("my_aug.ops:flip")
    ('cifar', 'none', 'my_aug.ops:flip')
    """
    if isinstance(text, bool):
        return "cifar" if text else "none"
    value = str(text).strip()
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "cifar"):
        return "cifar"
    if lowered in ("false", "0", "no", "none"):
        return "none"
    if not _FUNCTION.match(value):
        raise LthError(
            f"--augment: {value!r} is not none, cifar or package.module:function (a function "
            "fn(images, labels, seed) -> (images, labels))"
        )
    return value


def is_user_augmentation(spec: str) -> bool:
    return spec not in AUGMENTATIONS


# -- the compiled recipe ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """The classification loss: ``sparse`` (class indices) or ``categorical`` (one-hot rows,
    with label smoothing); ``from_logits`` None means "as the model's head says" (a softmax
    head outputs probabilities)."""

    kind: str = "sparse"
    from_logits: bool | None = None
    label_smoothing: float = 0.0


def compiled_json(optimizer: Any, loss: Any) -> str:
    """The compiled recipe as it goes into ``hparams.json``: the optimizer (its schedule inside)
    and loss as tf_keras class names and configs, in one canonical JSON spelling.

    ``optimizer`` and ``loss`` are what a ``compile_config`` holds (a name, or a serialised
    object with ``class_name`` and ``config``), from tf_keras or Keras 3 alike. Anything with
    no tf_keras equivalent, and a loss that is not a classification loss, is one line.

    >>> compiled_json("sgd", "sparse_categorical_crossentropy")
    '{"loss": {"class_name": "SparseCategoricalCrossentropy", "config": {}}, "optimizer": \
{"class_name": "SGD", "config": {}}}'
    """
    data = {"optimizer": _optimizer_config(optimizer), "loss": _loss_config(loss)}
    return canonical(data)


def canonical(data: Any) -> str:
    """One JSON spelling (numpy scalars, as a model object's configs hold them, as numbers)."""
    try:
        return json.dumps(_plain(data), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise LthError(f"--recipe=compiled: its compile config is not JSON ({error})") from None


def _short_float(value: float) -> float:
    """A float that is exactly a float32 (an optimizer variable's value, as a model object's
    config gives it) in float32's shortest spelling, the number the user wrote: 0.1, not
    0.10000000149011612. Keras stores it as that same float32.

    >>> _short_float(0.10000000149011612), _short_float(0.9)
    (0.1, 0.9)
    """
    import numpy as np

    if not math.isfinite(value) or float(np.float32(value)) != value:
        return value
    return float(str(np.float32(value)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _short_float(float(value))
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a 0-d array
        return _plain(value.item())
    return value


def _serialised(entry: Any, what: str) -> tuple[str, dict[str, Any]]:
    """(class name, config) of a name or a serialised Keras object."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("class_name"), str):
        config = entry.get("config") or {}
        if isinstance(config, str):  # Keras 3 writes a loss function as {"class_name": "function"}
            return config, {}
        if isinstance(config, dict):
            return entry["class_name"], config
    raise LthError(f"--recipe=compiled: the model's {what} ({_short(entry)}) is not a Keras {what}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _optimizer_config(entry: Any) -> dict[str, Any]:
    name, config = _serialised(entry, "optimizer")
    if name == "LossScaleOptimizer":  # mixed precision's wrapper: what it wraps trains
        return _optimizer_config(config.get("inner_optimizer"))
    class_name = OPTIMIZER_CLASSES.get(name.lower(), name)
    if class_name not in OPTIMIZER_ARGS:
        raise LthError(
            f"--recipe=compiled: the model's optimizer {name} has no tf_keras equivalent; "
            f"tf_keras has {', '.join(OPTIMIZER_ARGS)} (or train with --recipe=stabilizing "
            "and --optimizer)"
        )
    allowed = {"learning_rate", *optimizer_arguments(class_name)}
    kept: dict[str, Any] = {}
    for key, value in sorted(config.items()):
        if key in _IGNORED or (key in _IGNORED_WHEN_UNSET and value is None):
            continue
        if key in _EMA:
            if key == "use_ema" and value:
                raise LthError(
                    f"--recipe=compiled: the model's {class_name} uses an exponential moving "
                    "average of the weights (use_ema=True), which lth_tf does not train with; "
                    "compile it without"
                )
            continue
        if key not in allowed:
            raise LthError(
                f"--recipe=compiled: the model's {class_name} sets {key}={_short(value)}, which "
                "has no tf_keras equivalent; compile it without"
            )
        if key == "learning_rate":
            kept[key] = _schedule_config(value)
        elif value is not None:
            kept[key] = value
    return {"class_name": class_name, "config": kept}


def _schedule_config(value: Any) -> float | dict[str, Any]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    name, config = _serialised(value, "learning-rate schedule")
    if name not in SCHEDULE_ARGS:
        raise LthError(
            f"--recipe=compiled: the learning-rate schedule {name} is not one of tf_keras's "
            f"({', '.join(SCHEDULE_ARGS)}); the experiment records its schedule as a Keras "
            "configuration, so compile with one of those (or use --lr_schedule)"
        )
    unknown = sorted(set(config) - {"name", *SCHEDULE_ARGS[name]})
    if unknown:
        raise LthError(
            f"--recipe=compiled: the schedule {name} sets {', '.join(unknown)}, which tf_keras's "
            f"{name} does not take"
        )
    kept = {k: v for k, v in sorted(config.items()) if k != "name" and v is not None}
    return {"class_name": name, "config": kept}


def _loss_config(entry: Any) -> dict[str, Any]:
    name, config = _serialised(entry, "loss")
    class_name = _LOSS_NAMES.get(name, name)
    if class_name not in _LOSS_KINDS:
        raise LthError(
            f"--recipe=compiled: the model's loss {name} is not a classification loss; lth_tf "
            "finds tickets of classifiers (metric: accuracy) trained with "
            "sparse_categorical_crossentropy or categorical_crossentropy"
        )
    kept: dict[str, Any] = {}
    if config.get("from_logits") is not None:
        kept["from_logits"] = bool(config["from_logits"])
    smoothing = config.get("label_smoothing") or 0.0
    if smoothing:
        kept["label_smoothing"] = float(smoothing)
    if config.get("axis", -1) != -1:
        raise LthError(
            f"--recipe=compiled: the model's {class_name} has axis={config['axis']}; "
            "lth_tf's class scores are the last axis"
        )
    if config.get("ignore_class") is not None:
        raise LthError(
            f"--recipe=compiled: the model's {class_name} ignores class {config['ignore_class']}; "
            "lth_tf trains on every label: compile it without ignore_class"
        )
    return {"class_name": class_name, "config": kept}


def loss_of(compiled: str) -> LossSpec:
    """The compiled recipe's loss (:func:`compiled_json`)."""
    loss = json.loads(compiled)["loss"]
    config = loss["config"]
    return LossSpec(
        _LOSS_KINDS[loss["class_name"]],
        config.get("from_logits"),
        float(config.get("label_smoothing", 0.0)),
    )


def read_compile_config(path: str | Path) -> dict[str, Any] | None:
    """The ``compile_config`` of a ``.keras`` file (tf_keras or Keras 3), read as data (nothing
    imported); None when it was saved uncompiled. The file is checked by the caller
    (:func:`lth_tf.models.custom.check_keras_file`).

    >>> read_compile_config("models/tiny.keras")  # doctest: +SKIP
    {'optimizer': {'module': 'keras.optimizers', 'class_name': 'AdamW', ...}, 'loss': ...}
    """
    from lth_tf.models.custom import check_archive_sizes

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive_sizes(archive, path, "--model")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RecursionError):
        raise LthError(f"--model={path} is not a saved Keras model (.keras archive)") from None
    compiled = config.get("compile_config") if isinstance(config, dict) else None
    if not isinstance(compiled, dict) or compiled.get("optimizer") is None:
        return None
    return compiled


# Compiled metrics lth_tf keeps: its own accuracy is every run's metric.
# (names as compile takes them, or class names, lower case without underscores).
_ACCURACY_NAMES = {"accuracy", "acc", "sparsecategoricalaccuracy", "categoricalaccuracy"}


def metrics_left_out(compile_config: dict[str, Any] | None) -> list[str]:
    """The names of a compile's metrics other than accuracy, which a run does not compute
    (``--callback`` adds a metric of the user's).

    >>> metrics_left_out({"metrics": ["accuracy", {"class_name": "AUC", "config": {}}]})
    ['AUC']
    """
    entries: list[Any] = []
    for key in ("metrics", "weighted_metrics"):
        value = (compile_config or {}).get(key)
        if isinstance(value, dict):  # one list per output, by name
            value = [item for group in value.values() for item in _as_list(group)]
        entries += _as_list(value)
    names = []
    for entry in entries:
        name = entry.get("class_name") if isinstance(entry, dict) else entry
        if isinstance(name, str) and name.lower().replace("_", "") not in _ACCURACY_NAMES:
            names.append(name)
    return names


def say_metrics_left_out(compile_config: dict[str, Any] | None) -> None:
    """One line naming the compile's metrics a run leaves out (none: nothing said)."""
    names = metrics_left_out(compile_config)
    if names:
        logging.getLogger("lth_tf").info(
            "The compile's metrics %s are not computed: a run measures accuracy (--callback "
            "adds a metric of yours).",
            ", ".join(names),
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def compile_config_of(model: Any) -> dict[str, Any] | None:
    """A compiled model object's ``compile_config`` (tf_keras and Keras 3 both serialise it);
    None when it has none."""
    try:
        config = model.get_compile_config()
    except Exception:  # an object without one, or a compile Keras cannot serialise
        return None
    return config if isinstance(config, dict) else None


def compiled_optimizer(path: str | Path) -> str | None:
    """The class name of the optimizer a ``.keras`` file was saved compiled with; None when it
    was saved uncompiled or cannot be read (the model's own checks say why).

    >>> compiled_optimizer("my_net.keras")  # doctest: +SKIP
    'SGD'
    """
    try:
        compiled = read_compile_config(path)
    except LthError:
        return None
    optimizer = compiled["optimizer"] if compiled is not None else None
    if isinstance(optimizer, dict):
        return str(optimizer.get("class_name") or "an optimizer")
    return None if optimizer is None else str(optimizer)


def compiled_from_file(path: str | Path) -> str | None:
    """The compiled recipe (:func:`compiled_json`) of a ``.keras`` file, None if uncompiled."""
    compiled = read_compile_config(path)
    if compiled is None:
        return None
    if compiled.get("loss") is None:
        raise LthError(f"--recipe=compiled: --model={path} was compiled without a loss")
    if isinstance(compiled["loss"], dict | list) and not _serialisable_loss(compiled["loss"]):
        raise LthError(
            f"--recipe=compiled: --model={path} has one loss per output; lth_tf trains a "
            "classifier with one output"
        )
    return compiled_json(compiled["optimizer"], compiled["loss"])


def _serialisable_loss(loss: Any) -> bool:
    return isinstance(loss, dict) and "class_name" in loss


def compiled_from_object(model: Any) -> str | None:
    """The compiled recipe of a model object (tf_keras or Keras 3), None if uncompiled."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    loss = getattr(model, "loss", None)
    if loss is None:
        raise LthError("--recipe=compiled: the model was compiled without a loss")
    return compiled_json(_object_entry(optimizer), _object_entry(loss))


def _object_entry(obj: Any) -> Any:
    """A Keras object (optimizer, schedule, loss, loss function) as its serialised entry."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict | list):
        raise LthError(
            "--recipe=compiled: the model has one loss per output; lth_tf trains a classifier "
            "with one output"
        )
    if not hasattr(obj, "get_config"):
        return getattr(obj, "__name__", type(obj).__name__)  # a loss function
    config = dict(obj.get_config())
    if type(obj).__name__ == "LossScaleOptimizer":
        inner = getattr(obj, "inner_optimizer", None)
        return _object_entry(inner)
    # An optimizer's config holds its schedule serialised already (tf_keras's and Keras 3's).
    if isinstance(config.get("fn"), str):
        config.pop("fn")  # tf_keras losses name their function: the class says it
    return {"class_name": type(obj).__name__, "config": config}
