"""Keras 3 models in and out: a Keras 3 functional or Sequential model becomes the equivalent
``tf_keras`` model TF-MOT prunes, and a ``tf_keras`` ticket becomes a Keras 3 model again.

TF-MOT wraps Keras 2 (``tf_keras``) layers only, and ``import keras`` is Keras 3. A Keras 3
model is converted layer by layer from its configuration (keys renamed where the two Kerases
name an option differently, Keras-3-only options refused unless they have their default
value), its functional graph rebuilt from its layers' inbound nodes, and its weights copied by
layer, exactly. Every conversion is checked: both models compute the same outputs (within
:data:`OUTPUT_TOLERANCE`) on a batch of inputs (the user's training examples inside
:func:`checked_on`, otherwise a fixed random batch). The way back (:func:`to_keras3`) uses the
same table of layers (:data:`LAYERS`).

>>> import keras  # doctest: +SKIP
>>> k3 = keras.saving.load_model("k3.keras", compile=False, safe_mode=True)  # doctest: +SKIP
>>> model = to_tf_keras(k3)  # tf_keras: the same layers, names, weights  # doctest: +SKIP
>>> to_keras3(model).save("ticket.keras")  # doctest: +SKIP

Nothing here imports TensorFlow or Keras at module level.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lth_tf.errors import LthError, first_line

if TYPE_CHECKING:
    import keras
    import tf_keras

# The layers that convert, by class name (the same in both Kerases), with what they are. The
# docs/your-own-model.md, "Keras 3 models", lists these.
LAYERS: dict[str, str] = {
    "InputLayer": "input (keras.Input)",
    "Dense": "core",
    "Embedding": "core",
    "Conv1D": "convolution",
    "Conv2D": "convolution",
    "Conv3D": "convolution",
    "Conv1DTranspose": "convolution",
    "Conv2DTranspose": "convolution",
    "Conv3DTranspose": "convolution",
    "DepthwiseConv1D": "convolution",
    "DepthwiseConv2D": "convolution",
    "SeparableConv1D": "convolution",
    "SeparableConv2D": "convolution",
    "BatchNormalization": "normalization",
    "LayerNormalization": "normalization",
    "Normalization": "preprocessing",
    "Rescaling": "preprocessing",
    "Activation": "activation",
    "ReLU": "activation",
    "LeakyReLU": "activation",
    "PReLU": "activation",
    "ELU": "activation",
    "Softmax": "activation",
    "Dropout": "regularization",
    "SpatialDropout1D": "regularization",
    "SpatialDropout2D": "regularization",
    "SpatialDropout3D": "regularization",
    "GaussianNoise": "regularization",
    "GaussianDropout": "regularization",
    "Flatten": "reshaping",
    "Reshape": "reshaping",
    "Permute": "reshaping",
    "RepeatVector": "reshaping",
    "ZeroPadding1D": "reshaping",
    "ZeroPadding2D": "reshaping",
    "ZeroPadding3D": "reshaping",
    "Cropping1D": "reshaping",
    "Cropping2D": "reshaping",
    "UpSampling1D": "reshaping",
    "UpSampling2D": "reshaping",
    "MaxPooling1D": "pooling",
    "MaxPooling2D": "pooling",
    "MaxPooling3D": "pooling",
    "AveragePooling1D": "pooling",
    "AveragePooling2D": "pooling",
    "AveragePooling3D": "pooling",
    "GlobalMaxPooling1D": "pooling",
    "GlobalMaxPooling2D": "pooling",
    "GlobalMaxPooling3D": "pooling",
    "GlobalAveragePooling1D": "pooling",
    "GlobalAveragePooling2D": "pooling",
    "GlobalAveragePooling3D": "pooling",
    "Add": "merging",
    "Subtract": "merging",
    "Multiply": "merging",
    "Average": "merging",
    "Maximum": "merging",
    "Minimum": "merging",
    "Concatenate": "merging",
}
# Options the two Kerases name differently: Keras 3's name -> tf_keras's, by layer.
RENAMED: dict[str, dict[str, str]] = {"LeakyReLU": {"negative_slope": "alpha"}}
# Dtype policies both Kerases have (a quantized Keras 3 policy has no tf_keras counterpart).
DTYPES = ("float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16")
# The converted model's outputs may differ from the original's by this much, relative to the
# outputs' scale: the same operations, some computed by other TensorFlow kernels (batch norm
# fused in tf_keras, not in Keras 3).
OUTPUT_TOLERANCE = 1e-4
# Examples the conversion is checked on.
CHECK_EXAMPLES = 8
MODEL_CLASSES = ("Functional", "Sequential")
KERAS3_ADVICE = (
    'keep to the layers and options docs/your-own-model.md ("Keras 3 models") lists, or build '
    "the model with tf_keras (`import tf_keras as keras`)"
)


# -- where a model comes from ------------------------------------------------------------------


def is_keras3_model(model: Any) -> bool:
    """True for a Keras 3 model object (told without importing Keras 3)."""
    keras = sys.modules.get("keras")
    model_class = getattr(keras, "Model", None)
    return isinstance(model_class, type) and isinstance(model, model_class)


def saved_keras_version(path: str | Path) -> str:
    """The ``keras_version`` a ``.keras`` archive says saved it ('' if it says none)."""
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
    return str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""


def is_keras3_file(path: str | Path) -> bool:
    """True for a ``.keras`` archive saved by Keras 3."""
    return saved_keras_version(path).startswith("3")


def check_config_layers(config: Any, path: Path, flag: str) -> None:
    """Refuses, before TensorFlow starts, a Keras 3 file whose model is not a functional or
    Sequential model of :data:`LAYERS` (read from its ``config.json``)."""
    top = config if isinstance(config, dict) else {}
    kind = top.get("class_name")
    if kind not in MODEL_CLASSES:
        raise LthError(
            f"{flag}={path} holds a Keras 3 {kind or 'object'} model: only functional and "
            "Sequential models convert to tf_keras (their layers and graph are in their "
            "config); rebuild it with keras.Input and keras.Model(inputs, outputs)"
        )
    layers = top.get("config", {}).get("layers", []) if isinstance(top.get("config"), dict) else []
    for entry in layers if isinstance(layers, list) else []:
        if isinstance(entry, dict):
            name = (
                entry.get("config", {}).get("name", "?")
                if isinstance(entry.get("config"), dict)
                else "?"
            )
            _check_supported(str(entry.get("class_name")), str(name), f"{flag}={path}")


def load_keras3_file(path: str | Path, flag: str = "--model") -> keras.Model:
    """A ``.keras`` file saved by Keras 3, loaded as Keras 3 loads it (uncompiled, safe mode:
    no Python code from the file runs; the caller checked its config names Keras only)."""
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds; the user needs one line
        why = first_line(error, 300)
        raise LthError(f"{flag}={path}: Keras 3 cannot load it ({why})") from None


# -- checking a conversion on data -------------------------------------------------------------


@dataclasses.dataclass
class Check:
    """What :func:`checked_on` saw: the conversions made inside it and how close they came."""

    sample: np.ndarray | None
    conversions: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def record(self) -> dict[str, Any] | None:
        """``hparams.json``'s ``model.keras3`` entry: the last conversion made, or None."""
        return self.conversions[-1] if self.conversions else None


_CHECK: contextvars.ContextVar[Check | None] = contextvars.ContextVar("lth_keras3", default=None)


@contextlib.contextmanager
def checked_on(sample: np.ndarray) -> Iterator[Check]:
    """Conversions made inside are checked on ``sample`` (a few of the user's examples) rather
    than on random inputs: the model is built deep inside the registry, which has no data.

    >>> with checked_on(data.train_images[:8]) as check:  # doctest: +SKIP
    ...     model = get_model("k3.keras").build(data.input_shape, data.num_classes)
    >>> check.record()["max_output_difference"] < 1e-4  # doctest: +SKIP
    True
    """
    check = Check(np.asarray(sample)[:CHECK_EXAMPLES])
    token = _CHECK.set(check)
    try:
        yield check
    finally:
        _CHECK.reset(token)


def _sample_for(model: Any) -> Any:
    """The active :func:`checked_on` batch, else a fixed random one of the model's input shape
    (a list of them for a model of several inputs)."""
    check = _CHECK.get()
    rng = np.random.default_rng(0)
    batches = []
    for tensor in model.inputs:
        dtype = np.dtype(str(getattr(tensor.dtype, "name", tensor.dtype)))
        if check is not None and check.sample is not None and len(model.inputs) == 1:
            fits = check.sample.ndim == len(tensor.shape) and all(
                size is None or size == given
                for size, given in zip(tensor.shape[1:], check.sample.shape[1:], strict=True)
            )
            # Data the model does not take is refused later, by check_fits, in its own words.
            if fits:
                return check.sample.astype(dtype)
        shape = tuple(8 if size is None else int(size) for size in tensor.shape[1:])
        if np.issubdtype(dtype, np.integer):
            batches.append(rng.integers(0, 2, (CHECK_EXAMPLES, *shape)).astype(dtype))
        else:
            batches.append(rng.uniform(0, 1, (CHECK_EXAMPLES, *shape)).astype(dtype))
    return batches[0] if len(batches) == 1 else batches


def _outputs(model: Any, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs on ``inputs``; several (a list or a dict of them, keys sorted) side
    by side, one row per example."""
    outputs = model(inputs, training=False)
    if is_keras3_model(model):
        import keras

        flat = [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]
    else:
        import tensorflow as tf

        flat = [np.asarray(output) for output in tf.nest.flatten(outputs)]
    if len(flat) == 1:
        return flat[0]
    return np.concatenate([output.reshape(len(output), -1) for output in flat], axis=1)


def check_same_outputs(source: Any, target: Any, inputs: Any, what: str) -> float:
    """The largest difference of the two models' outputs on ``inputs``; one line if it exceeds
    :data:`OUTPUT_TOLERANCE` (relative to the outputs' scale)."""
    expected, found = _outputs(source, inputs), _outputs(target, inputs)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    difference = float(np.max(np.abs(expected - found))) if expected.size else 0.0
    if expected.shape != found.shape or not difference <= OUTPUT_TOLERANCE * scale:
        raise LthError(
            f"{what}: the converted model computes other outputs than the original (up to "
            f"{difference:.3g} apart on {len(np.asarray(found))} examples, outputs up to "
            f"{scale:.3g}); "
            f"a layer converts wrongly: {KERAS3_ADVICE}, and report the model"
        )
    return difference


# -- the two directions ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Keras:
    """One side of a conversion: the package's name and its modules."""

    name: str
    package: Any

    @property
    def layers(self) -> Any:
        return self.package.layers


def _tf_keras() -> _Keras:
    import tf_keras

    return _Keras("tf_keras", tf_keras)


def _keras3() -> _Keras:
    import keras

    return _Keras("Keras 3", keras)


def to_tf_keras(model: keras.Model, what: str = "the model") -> tf_keras.Model:
    """The Keras 3 functional or Sequential ``model`` as a ``tf_keras`` model: the same layers,
    names, graph and weights (exactly), checked to compute the same outputs.

    >>> to_tf_keras(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))  # doctest: +SKIP
    <tf_keras.src.engine.sequential.Sequential object at ...>
    """
    import keras

    if not is_keras3_model(model):
        raise LthError(f"{what} is a {type(model).__name__}, not a Keras 3 model")
    converted = _convert(model, _keras3(), _tf_keras(), what)
    sample = _sample_for(model)
    difference = check_same_outputs(model, converted, sample, what)
    check = _CHECK.get()
    if check is not None:
        check.conversions.append(
            {
                "converted_to": "tf_keras",
                "keras_version": keras.__version__,
                "checked_examples": CHECK_EXAMPLES if isinstance(sample, list) else len(sample),
                "max_output_difference": difference,
            }
        )
    return converted


def to_keras3(model: tf_keras.Model, what: str = "the ticket") -> keras.Model:
    """The ``tf_keras`` ``model`` (a stripped ticket: no pruning wrappers) as a Keras 3 model,
    the same layers, names, graph and weights (pruned weights stay exactly zero), checked to
    compute the same outputs.

    >>> to_keras3(Experiment("runs/mine").model(3)).save("ticket.keras")  # doctest: +SKIP
    """
    import tf_keras

    if not isinstance(model, tf_keras.Model):
        raise LthError(f"{what} is a {type(model).__name__}, not a tf_keras model")
    converted = _convert(model, _tf_keras(), _keras3(), what)
    check_same_outputs(model, converted, _sample_for(model), what)
    return converted


def _convert(model: Any, source: _Keras, target: _Keras, what: str) -> Any:
    """``model`` rebuilt with ``target``'s layers from its config; weights copied by layer."""
    kind = type(model).__name__
    if kind not in MODEL_CLASSES:
        raise LthError(
            f"{what} ({model.name!r}) is a subclassed {source.name} model ({kind}): only "
            "functional and Sequential models convert (their layers and graph are in their "
            "config); build it with Input and Model(inputs, outputs)"
        )
    try:
        config = model.get_config()
    except Exception as error:  # noqa: BLE001 - a layer's get_config may raise anything
        raise LthError(f"{what}: {source.name} cannot describe it ({error})") from None
    entries = config.get("layers", [])
    for entry in entries:
        _check_supported(entry["class_name"], entry["config"].get("name", "?"), what)
    if kind == "Sequential":
        rebuilt = _sequential(config, source, target, what)
    else:
        rebuilt = _functional(config, source, target, what)
    _copy_weights(model, rebuilt, source, target, what)
    return rebuilt


def _check_supported(class_name: str, name: str, what: str) -> None:
    if class_name in LAYERS:
        return
    hint = (
        "a model nested in a model does not convert: call its layers on the outer model's "
        "tensors instead"
        if class_name in MODEL_CLASSES
        else KERAS3_ADVICE
    )
    raise LthError(
        f"{what}: layer {name!r} ({class_name}) is not one lth_tf converts between Keras 3 and "
        f"tf_keras; {hint}"
    )


def _input(entry: dict[str, Any], target: _Keras, what: str) -> Any:
    """The input tensor an InputLayer's config describes, made by ``target``."""
    config = entry["config"]
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    name = config.get("name")
    if config.get("sparse") or config.get("ragged") or config.get("optional"):
        raise LthError(
            f"{what}: input {name!r} is sparse, ragged or optional; only dense inputs convert"
        )
    return target.package.Input(
        batch_shape=tuple(shape), name=name, dtype=_dtype_name(config.get("dtype"), name, what)
    )


def _sequential(config: dict[str, Any], source: _Keras, target: _Keras, what: str) -> Any:
    entries = config.get("layers", [])
    if not entries or entries[0]["class_name"] != "InputLayer":
        raise LthError(
            f"{what}: the Sequential model has no input shape; start it with keras.Input(shape)"
        )
    layers = [_input(entries[0], target, what)]
    layers += [_layer(entry, source, target, what) for entry in entries[1:]]
    return target.package.Sequential(layers, name=config.get("name"))


@dataclasses.dataclass(frozen=True)
class _Ref:
    """A tensor of the source graph: the ``index``-th output of ``layer``'s ``node``-th call."""

    layer: str
    node: int
    index: int


def _nodes(entry: dict[str, Any], source: _Keras) -> list[tuple[list[Any], dict[str, Any]]]:
    """A layer's calls as (positional arguments, keyword arguments) with :class:`_Ref` for
    tensors, from either Keras's config format."""
    calls = []
    for node in entry.get("inbound_nodes", []):
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            calls.append((_refs(node.get("args", [])), _refs(node.get("kwargs", {}))))
        else:  # tf_keras: [[layer, node, index, kwargs], ...], one entry per input tensor
            tensors = [_Ref(str(item[0]), int(item[1]), int(item[2])) for item in node]
            kwargs = node[0][3] if node and len(node[0]) > 3 else {}
            calls.append(([tensors[0] if len(tensors) == 1 else tensors], _refs(kwargs)))
    return calls


def _refs(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            return _Ref(str(history[0]), int(history[1]), int(history[2]))
        return {key: _refs(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_refs(item) for item in value]
    return value


def _functional(config: dict[str, Any], source: _Keras, target: _Keras, what: str) -> Any:
    """The graph rebuilt: every layer called, in dependency order, on the target's tensors that
    correspond to its source inputs."""
    tensors: dict[_Ref, Any] = {}
    pending = []
    for entry in config["layers"]:
        name = entry.get("name", entry["config"].get("name"))
        if entry["class_name"] == "InputLayer":
            tensors[_Ref(name, 0, 0)] = _input(entry, target, what)
            continue
        layer = _layer(entry, source, target, what)
        pending += [(layer, name, n, call) for n, call in enumerate(_nodes(entry, source))]
    while pending:
        waiting = []
        for layer, name, node, (args, kwargs) in pending:
            if not _ready((args, kwargs), tensors):
                waiting.append((layer, name, node, (args, kwargs)))
                continue
            kwargs = {k: v for k, v in kwargs.items() if v is not None}  # defaults (mask=None)
            outputs = layer(*_resolve(args, tensors), **_resolve(kwargs, tensors))
            for index, tensor in enumerate(
                outputs if isinstance(outputs, list | tuple) else [outputs]
            ):
                tensors[_Ref(name, node, index)] = tensor
        if len(waiting) == len(pending):
            names = ", ".join(sorted({name for _, name, _, _ in waiting}))
            raise LthError(f"{what}: the layers {names} wait for inputs no layer makes")
        pending = waiting

    def ends(value: Any) -> Any:
        """A model's inputs or outputs: one ``[layer, node, index]``, a list of them, or a dict
        of them by name (``keras.Model({"image": x}, ...)``), as the target's tensors."""
        if isinstance(value, dict):
            return {key: ends(item) for key, item in value.items()}
        if value and isinstance(value[0], str):
            return tensors[_Ref(str(value[0]), int(value[1]), int(value[2]))]
        found = [ends(item) for item in value]
        return found[0] if len(found) == 1 else found

    return target.package.Model(
        ends(config["input_layers"]), ends(config["output_layers"]), name=config.get("name")
    )


def _ready(value: Any, tensors: dict[_Ref, Any]) -> bool:
    if isinstance(value, _Ref):
        return value in tensors
    if isinstance(value, dict):
        return all(_ready(item, tensors) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_ready(item, tensors) for item in value)
    return True


def _resolve(value: Any, tensors: dict[_Ref, Any]) -> Any:
    if isinstance(value, _Ref):
        return tensors[value]
    if isinstance(value, dict):
        return {key: _resolve(item, tensors) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(item, tensors) for item in value]
    return value


# -- one layer ---------------------------------------------------------------------------------


def _layer(entry: dict[str, Any], source: _Keras, target: _Keras, what: str) -> Any:
    """The target's layer for one source layer's config entry."""
    class_name, config = entry["class_name"], dict(entry["config"])
    name = config.get("name", "?")
    where = f"{what}: layer {name!r} ({class_name})"
    source_class = getattr(source.layers, class_name)
    target_class = getattr(target.layers, class_name, None)
    if target_class is None:
        raise LthError(f"{where} has no {target.name} counterpart; {KERAS3_ADVICE}")
    renamed = RENAMED.get(class_name, {})
    if target.name == "Keras 3":
        renamed = {new: old for old, new in renamed.items()}
    translated = _options(config, source_class, target_class, renamed, source, target, where)
    try:
        return target_class.from_config(translated)
    except Exception as error:  # noqa: BLE001 - from_config raises many kinds
        raise LthError(
            f"{where}: {target.name} cannot build it ({first_line(error)}); {KERAS3_ADVICE}"
        ) from None


def _options(
    config: dict[str, Any],
    source_class: type,
    target_class: type,
    renamed: dict[str, str],
    source: _Keras,
    target: _Keras,
    where: str,
) -> dict[str, Any]:
    """A layer's (or an initializer's) config in the target's terms: keys renamed; an option the
    target lacks dropped when it has its default value, refused otherwise."""
    accepted = _parameters(target_class)
    defaults = _defaults(source_class)
    translated = {}
    for key, value in config.items():
        new_key = renamed.get(key, key)
        if key in ("batch_input_shape", "input_shape", "batch_size"):
            continue  # a layer's input shape comes from the tensors it is called on
        if key == "dtype":
            value = _dtype_name(value, config.get("name"), where)
        elif key == "axis" and isinstance(value, list | tuple) and len(value) == 1:
            # tf_keras writes a built BatchNormalization's axis as a list; Keras 3 takes an int.
            value = int(value[0])
        elif key == "activation" and value is not None:
            value = _activation(value, target, where)
        elif key.endswith(("_initializer", "_regularizer", "_constraint")) and value is not None:
            value = _object(key, value, source, target, where)
        if new_key not in accepted:
            if _is_default(key, value, defaults) or key.endswith("_initializer"):
                # An option the target lacks, left as it would be without it; an initializer
                # the target has no use for (tf_keras' SeparableConv keeps Conv's kernel one)
                # changes no weight: they are copied.
                continue
            default = f"its default ({_short(defaults[key])})" if key in defaults else "it out"
            raise LthError(
                f"{where}: its option {key}={_short(value)} has no {target.name} equivalent; "
                f"leave {default} or {KERAS3_ADVICE}"
            )
        translated[new_key] = value
    return translated


def _is_default(key: str, value: Any, defaults: dict[str, Any]) -> bool:
    if value is None or (key in defaults and _same(value, defaults[key])):
        return True
    if key not in defaults and value is False:
        return True  # an option read from **kwargs (e.g. rms_scaling), off
    # Keras writes the data format it resolved (its default, channels_last) into the config.
    return key == "data_format" and value == "channels_last"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _parameters(cls: type) -> set[str]:
    """Every keyword ``cls(...)`` takes: its ``__init__`` parameters, and its bases' as long as
    each passes ``**kwargs`` on."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # its bases get only what it passes them (SpatialDropout1D: no noise_shape)
    names.discard("self")
    return names


def _defaults(cls: type) -> dict[str, Any]:
    """The default of every keyword ``cls(...)`` takes, the most derived class's first."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.default is not parameter.empty:
                found.setdefault(parameter.name, parameter.default)
    return found


def _dtype_name(value: Any, name: Any, where: str) -> str | None:
    """A dtype or dtype policy (a string, or Keras 3's serialized ``DTypePolicy``) as its name."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name")
    if value is None or value in DTYPES or value in ("int32", "int64", "uint8", "bool"):
        return value
    raise LthError(
        f"{where}: its dtype policy {value!r} has no counterpart in the other Keras (these "
        f"convert: {', '.join(DTYPES)})"
    )


def _activation(value: Any, target: _Keras, where: str) -> Any:
    """An activation named by string, checked to exist in the target."""
    if not isinstance(value, str):
        raise LthError(
            f"{where}: its activation {_short(value)} is not one of Keras's own by name; "
            f"{KERAS3_ADVICE}"
        )
    try:
        target.package.activations.get(value)
    except (ValueError, TypeError):
        raise LthError(
            f"{where}: its activation {value!r} does not exist in {target.name}; {KERAS3_ADVICE}"
        ) from None
    return value


def _object(key: str, value: Any, source: _Keras, target: _Keras, where: str) -> Any:
    """An initializer, regularizer or constraint: a name as it is, a serialized object as
    ``{"class_name", "config"}`` with the target's options (the ``module`` it names is the
    source Keras's)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or "class_name" not in value:
        raise LthError(f"{where}: its {key} {_short(value)} does not convert; {KERAS3_ADVICE}")
    family = {
        "_initializer": "initializers",
        "_regularizer": "regularizers",
        "_constraint": "constraints",
    }[key[key.rindex("_") :]]
    class_name = value["class_name"]
    source_class = getattr(getattr(source.package, family), class_name, None)
    target_class = getattr(getattr(target.package, family), class_name, None)
    if not isinstance(source_class, type) or not isinstance(target_class, type):
        raise LthError(
            f"{where}: its {key} {class_name} has no {target.name} counterpart; {KERAS3_ADVICE}"
        )
    config = _options(
        value.get("config", {}) or {},
        source_class,
        target_class,
        {},
        source,
        target,
        f"{where}, its {key} {class_name},",
    )
    return {"class_name": class_name, "config": config}


def _copy_weights(model: Any, rebuilt: Any, source: _Keras, target: _Keras, what: str) -> None:
    """Each layer's weights, in order, into its namesake: exact copies, shapes checked."""
    for layer in rebuilt.layers:
        values = model.get_layer(layer.name).get_weights()
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(w.shape) for w in layer.weights]
        if shapes != wanted:
            raise LthError(
                f"{what}: layer {layer.name!r} ({type(layer).__name__}) has weights of shapes "
                f"{shapes} in {source.name} but {wanted} in {target.name}; {KERAS3_ADVICE}, "
                "and report the model"
            )
        if values:
            layer.set_weights(values)
            # A preprocessing layer (Normalization) computes what it uses from its weights here,
            # as after adapt() or loading.
            getattr(layer, "finalize_state", lambda: None)()
