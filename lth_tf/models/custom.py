"""Models of the user's own: a saved ``.keras`` file, a ``package.module:function`` builder, or
(from the Python API) a ``tf_keras.Model`` object.

What ``--model`` (and :attr:`lth_tf.config.ModelHparams.name`) may be:

``conv6``                    a registered model (:data:`lth_tf.models.MODELS`);
``path/to/model.keras``      an untrained model saved by ``tf_keras`` or Keras 3: its weights are
                             theta_0;
``package.module:function``  ``function(input_shape, num_classes) -> model``, imported
                             from the working directory or ``PYTHONPATH``, called after the
                             seed is set (so the seed decides theta_0);
``python:NAME``              a model object handed to :func:`lth_tf.find_tickets`.

A Keras 3 model (file, builder's or object) is converted into the equivalent ``tf_keras`` model
(:mod:`lth_tf.models.keras3`), which is what the experiment keeps and prunes.

An experiment keeps a copy of a ``.keras`` file (or of the object) as ``<experiment>/model.keras``
and builds from it (:mod:`lth_tf.provenance`). Nothing here imports TensorFlow at module level,
so flags are checked before it starts.

>>> check_model_name("models/./tiny.keras"), model_kind("models/tiny.keras")
('models/tiny.keras', 'keras_file')
>>> model_kind("my_pkg.nets:build"), display_name("my_pkg.nets:build")
('builder', 'build')
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import random
import re
import sys
import threading
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_tf.errors import LthError, counted, first_line

if TYPE_CHECKING:
    import tf_keras

KERAS_SUFFIX = ".keras"
IN_MEMORY_PREFIX = "python:"
_BUILDER = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
KERAS3_MESSAGE = (
    "is a Keras 3 model; TF-MOT needs Keras 2: build it with tf_keras "
    "(`import tf_keras as keras`) and save it from there"
)


def model_kind(name: str) -> str:
    """``registry``, ``keras_file``, ``builder`` or ``python`` (see the module docstring)."""
    if name.startswith(IN_MEMORY_PREFIX):
        return "python"
    if name.endswith(KERAS_SUFFIX):
        return "keras_file"
    if ":" in name:
        return "builder"
    return "registry"


def is_custom(name: str) -> bool:
    return model_kind(name) != "registry"


def check_model_name(name: str) -> str:
    """The model name in one spelling; a malformed file or builder spec is a user error.

    A registry name is checked by :func:`lth_tf.models.get_model`.
    """
    kind = model_kind(name)
    if kind == "keras_file":
        return os.path.normpath(name)
    if kind == "builder" and not _BUILDER.match(name):
        raise LthError(
            f"--model={name}: a builder is package.module:function (e.g. my_models.nets:build), "
            "a saved model ends in .keras"
        )
    return name


def display_name(name: str) -> str:
    """A short name for directory names: the file's stem, the function's name.

    >>> display_name("models/tiny.keras"), display_name("python:net"), display_name("conv6")
    ('tiny', 'net', 'conv6')
    """
    kind = model_kind(name)
    if kind == "keras_file":
        return Path(name).stem
    if kind == "builder":
        return name.rsplit(":", 1)[1]
    if kind == "python":
        return name.removeprefix(IN_MEMORY_PREFIX)
    return name


def check_keras_file(path: str | Path, flag: str = "--model") -> Path:
    """The file, checked without TensorFlow: it exists and is a ``.keras`` archive that names
    Keras's own modules only; one saved by Keras 3 holds only layers that convert to
    ``tf_keras`` (:func:`lth_tf.models.keras3.check_config_layers`)."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise LthError(f"{flag}={path}: {what}; pass a model saved with model.save('x.keras')")
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive_sizes(archive, path, flag)
            metadata = json.loads(archive.read("metadata.json"))
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RecursionError):
        raise LthError(
            f"{flag}={path} is not a saved Keras model (.keras archive); save one with "
            "model.save('model.keras') from tf_keras or Keras 3"
        ) from None
    version = str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
    check_config_names_keras_only(config, path, flag)
    if version.startswith("3"):
        from lth_tf.models.keras3 import check_config_layers

        check_config_layers(config, path, flag)
    return path


# A .keras file is data: what loading it may import is Keras's own modules, nothing else (Keras
# imports every module its config names, whatever safe_mode says).
KERAS_MODULES = ("keras", "tf_keras")
# Bounds on what is read from the archive: a config is text of some kilobytes per layer.
MAX_CONFIG_BYTES = 64 << 20
MAX_METADATA_BYTES = 1 << 20


def check_archive_sizes(archive: zipfile.ZipFile, path: Path, flag: str) -> None:
    """Refuses an archive whose config or metadata is larger than any model's, or whose entries
    would inflate far beyond the file (a zip bomb), before anything is decompressed."""
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    for name, bound in (("config.json", MAX_CONFIG_BYTES), ("metadata.json", MAX_METADATA_BYTES)):
        if sizes.get(name, 0) > bound:
            raise LthError(
                f"{flag}={path}: its {name} declares {sizes[name]:,} bytes, more than any saved "
                f"model's ({bound:,} at most); this is not a model file lth_tf loads"
            )
    total, on_disk = sum(sizes.values()), path.stat().st_size
    # Keras stores its entries uncompressed; even compressed weights do not shrink 100-fold.
    if total > 100 * on_disk + MAX_CONFIG_BYTES:
        raise LthError(
            f"{flag}={path}: its entries inflate to {total:,} bytes from a {on_disk:,}-byte "
            "file; this is not a model file lth_tf loads"
        )


def check_config_names_keras_only(config: Any, path: Path, flag: str) -> None:
    """Refuses, before anything is imported, a model config whose entries name a module outside
    Keras (importing it would run its code) or an object registered by other code.

    >>> check_config_names_keras_only({"module": "this"}, Path("m"), "-")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: -=m names the module 'this'; a .keras file may only use Keras's ...
    """
    problem = outside_keras(config)
    if problem is not None:
        raise LthError(
            f"{flag}={path} {problem}; a .keras file may only use Keras's own layers (loading "
            "it would import that module and run its code): build a model with custom parts "
            "through a builder, --model=package.module:function"
        )


def outside_keras(config: Any) -> str | None:
    """What in a saved model's config (``config.json`` of a ``.keras`` file) names code outside
    Keras (``names the module 'x' (class Y)``), or None.

    >>> outside_keras({"layers": [{"module": "keras.layers", "class_name": "Dense"}]}) is None
    True
    """
    stack = [config]
    while stack:
        entry = stack.pop()
        if isinstance(entry, list):
            stack.extend(entry)
            continue
        if not isinstance(entry, dict):
            continue
        stack.extend(entry.values())
        module, registered = entry.get("module"), entry.get("registered_name")
        what = entry.get("class_name")
        if module is not None and str(module).split(".")[0] not in KERAS_MODULES:
            of = f" (class {str(what)[:80]})" if what is not None else ""
            return f"names the module {str(module)[:80]!r}{of}"
        if registered is not None and registered != what:
            return f"names the registered object {str(registered)[:80]!r}"
    return None


def load_keras_file(path: str | Path, flag: str = "--model") -> tf_keras.Model:
    """The saved model, uncompiled; its weights are the experiment's theta_0. A file saved by
    Keras 3 is loaded by Keras 3 and converted (:func:`lth_tf.models.keras3.to_tf_keras`)."""
    import tf_keras

    path = check_keras_file(path, flag)
    from lth_tf.models import keras3

    if keras3.is_keras3_file(path):
        converted = keras3.to_tf_keras(keras3.load_keras3_file(path, flag), f"{flag}={path}")
        return in_global_precision(converted)
    try:
        model = tf_keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds; the user needs one line
        # tf_keras quotes the whole model config in some messages: a short excerpt is enough.
        first = first_line(error, limit=300)
        advice = (
            "a model with custom layers loads through a builder instead: "
            "--model=package.module:function"
            if "Unknown" in first or "Could not locate" in first
            # Its config was read (check_keras_file): what fails is its weights or their match.
            else "the file is damaged or its weights do not fit its layers: save the model "
            "again (model.save('model.keras'))"
        )
        raise LthError(f"{flag}={path}: tf_keras cannot load it ({first}); {advice}") from None
    return in_global_precision(check_is_tf_keras(model, f"{flag}={path}"))


def in_global_precision(model: tf_keras.Model) -> tf_keras.Model:
    """``model`` with every layer computing in the global precision policy (what
    ``--mixed_precision`` sets), its weights the same.

    A saved model names a policy in each layer's config (``mixed_bfloat16`` where it was
    trained so), which would override the run's: it would compute in another precision than
    the one the experiment records. Inputs keep their dtypes.
    """
    import tf_keras

    policy = tf_keras.mixed_precision.global_policy().name
    layers = model._flatten_layers(include_self=False, recursive=True)  # wrappers' layers too
    if all(
        layer.dtype_policy.name == policy
        for layer in layers
        if not isinstance(layer, tf_keras.layers.InputLayer)
    ):
        return model
    try:
        rebuilt = type(model).from_config(_layer_dtypes_dropped(model.get_config()))
        rebuilt.set_weights(model.get_weights())
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds; the user needs one line
        raise LthError(
            f"model {model.name!r} names its own precision policy ({first_line(error)}), and "
            f"cannot be rebuilt in the run's ({policy}); save it under float32 (build it with "
            "tf_keras.mixed_precision.set_global_policy('float32'))"
        ) from None
    return rebuilt


def _layer_dtypes_dropped(config: Any) -> Any:
    """A model's config in which no layer (at any depth: nested models, wrappers such as
    Bidirectional) names a dtype policy; inputs keep theirs."""
    if isinstance(config, list):
        return [_layer_dtypes_dropped(item) for item in config]
    if not isinstance(config, dict):
        return config
    dropped = {key: _layer_dtypes_dropped(value) for key, value in config.items()}
    inner = dropped.get("config")
    is_layer = "class_name" in dropped and isinstance(inner, dict)
    if is_layer and dropped["class_name"] != "InputLayer":
        dropped["config"] = {key: value for key, value in inner.items() if key != "dtype"}
    return dropped


def as_tf_keras(model: Any, what: str) -> tf_keras.Model:
    """``model`` if it is a tf_keras model, converted if it is a Keras 3 one; anything else is a
    user error."""
    from lth_tf.models import keras3

    if keras3.is_keras3_model(model):
        return keras3.to_tf_keras(model, what)
    return check_is_tf_keras(model, what)


def check_is_tf_keras(model: Any, what: str) -> tf_keras.Model:
    """``model`` if it is a tf_keras model; a Keras 3 model or anything else is a user error."""
    import tf_keras

    if isinstance(model, tf_keras.Model):
        return model
    module = type(model).__module__.split(".")[0]
    if module == "keras":
        raise LthError(f"{what} {KERAS3_MESSAGE}")
    raise LthError(f"{what} is a {type(model).__name__}, not a tf_keras model")


def import_builder(spec: str) -> Callable[[tuple[int, ...], int], Any]:
    """The builder of ``--model=package.module:function``."""
    return import_user_function(check_model_name(spec), "--model")


def check_findable(spec: str, flag: str) -> None:
    """Refuses ``package.module:function`` whose module Python cannot find on its path, without
    importing anything (the user's code runs once TensorFlow has started): a typo or the wrong
    directory is the first thing said, before the other flags' checks. A package is searched
    where its files are, as ``import`` searches it (one that extends its ``__path__`` when
    imported is searched in its own folder only).

    >>> check_findable("no_such_package.nets:build", "--model")
    Traceback (most recent call last):
    lth_tf.errors.LthError: --model=no_such_package.nets:build: cannot import no_such_package ...
    """
    _search_the_working_directory()
    module = spec.rsplit(":", 1)[0]
    if module.endswith(".py"):
        raise LthError(
            f"{flag}={spec}: name the module as Python imports it, without .py: "
            f"{flag}={module.removesuffix('.py').replace('/', '.')}:{spec.rsplit(':', 1)[1]}"
        )
    parts = module.split(".")
    locations = None  # sys.path, for the top-level package
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        if name in sys.modules:
            # Imported already: what is under it is where its __path__ says (without one, an
            # importer of its own may answer: the import itself tells).
            locations = getattr(sys.modules[name], "__path__", None)
            if locations is None:
                return
            continue
        found = importlib.machinery.PathFinder.find_spec(name, locations)
        if found is None:
            why = f"ModuleNotFoundError: No module named {name!r}"
            raise LthError(_cannot_import(spec, flag, name, why))
        locations = found.submodule_search_locations
        if locations is None and depth < len(parts):
            why = f"ModuleNotFoundError: {name} is a module, not a package"
            raise LthError(_cannot_import(spec, flag, ".".join(parts[: depth + 1]), why))


def _search_the_working_directory() -> None:
    # As Python does for `python -m`; the console scripts' path does not hold it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())


def _cannot_import(spec: str, flag: str, module_name: str, why: str) -> str:
    return (
        f"{flag}={spec}: cannot import {module_name} ({why}); run from the directory that "
        "holds it, or add that directory to PYTHONPATH"
    )


def import_user_function(spec: str, flag: str) -> Callable[..., Any]:
    """The function of ``package.module:function`` (a builder, an augmentation), imported as
    Python would from the working directory (also for the console scripts, whose path does
    not hold it) or ``PYTHONPATH``; a failure is one line naming ``flag``."""
    module_name, function_name = spec.rsplit(":", 1)
    _search_the_working_directory()
    # Importing Keras 3 (the user's module may, the first time) draws from Python's random
    # state, from which Keras 3 seeds its initializers: the seeded state is kept for the build.
    random_state = random.getstate()
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exited:
        # Not Exception: it would end the run with its status, having done nothing.
        raise LthError(
            f"{flag}={spec}: importing {module_name} exited (sys.exit({exited.code!r})); guard "
            "its command-line code with `if __name__ == '__main__':`"
        ) from None
    except Exception as error:  # noqa: BLE001 - importing user code can raise anything
        why = f"{type(error).__name__}: {error}"
        missing = getattr(error, "name", None) if isinstance(error, ImportError) else None
        if missing and not f"{module_name}.".startswith(f"{missing}."):
            # Found, but what it imports is not installed: the directory is not the problem.
            raise LthError(
                f"{flag}={spec}: cannot import {module_name} ({why}); install {missing} in "
                "this environment"
            ) from None
        if not isinstance(error, ImportError):
            # Found (an unfound module is a ModuleNotFoundError): its own code raised.
            # Where its code raised; a SyntaxError names its own line and has no frame of it.
            syntax = isinstance(error, SyntaxError)
            frames = [] if syntax else traceback.extract_tb(error.__traceback__)
            where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
            raise LthError(
                f"{flag}={spec}: importing {module_name} raised {why}{where}; fix the module"
            ) from None
        raise LthError(_cannot_import(spec, flag, module_name, why)) from None
    random.setstate(random_state)
    function = getattr(module, function_name, None)
    if not callable(function):
        kind = "class" if flag == "--callback" else "function"  # a callback is a class
        what = f"has no {kind}" if function is None else "has a non-callable"
        raise LthError(f"{flag}={spec}: {module_name} {what} {function_name!r}")
    return function


def call_builder(
    function: Callable, what: str, input_shape: tuple[int, ...], num_classes: int
) -> tf_keras.Model:
    """``function(input_shape, num_classes)``, its errors as one line.

    Keras' automatic layer names (``dense_3``) count the layers made so far in the process; they
    are reset first, so a builder names its layers the same in every run (weights are saved by
    layer name).
    """
    import tf_keras

    tf_keras.backend.reset_uids()
    keras = sys.modules.get("keras")
    if keras is not None and str(getattr(keras, "__version__", "")).startswith("3"):
        # The same for a builder of Keras 3 layers: Keras 3 keeps its own layer counters (and
        # its global seed generator, made again from the seeded Python random state).
        _reset_keras3_state(keras)
    try:
        model = function(tuple(input_shape), int(num_classes))
    except LthError:
        raise
    except SystemExit as exited:
        # Not Exception: it would end the run with its status (0 for sys.exit()) having done
        # nothing, as if it had succeeded.
        raise LthError(
            f"{what}: the builder exited (sys.exit({exited.code!r})) instead of returning a model; "
            f"make it return a tf_keras model for input_shape={tuple(input_shape)}, "
            f"num_classes={num_classes}"
        ) from None
    except Exception as error:  # noqa: BLE001 - user code can raise anything
        raise LthError(
            f"{what}: the builder raised {type(error).__name__}: {error} (called with "
            f"input_shape={tuple(input_shape)}, num_classes={num_classes})"
        ) from None
    return as_tf_keras(model, f"{what}: the builder's model")


def _reset_keras3_state(keras: Any) -> None:
    """Keras 3's ``clear_session`` without its ``reset_default_graph``, which would empty the
    distribution strategy's scope the builder is called in (``--strategy=mirrored``)."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # another layout: the public call, outside any strategy's scope only
        import tensorflow as tf

        if not tf.distribute.has_strategy():
            keras.backend.clear_session(free_memory=False)
        return
    global_state.GLOBAL_STATE_TRACKER = threading.local()
    global_state.GLOBAL_SETTINGS_TRACKER = threading.local()


def architecture_sha256(model: tf_keras.Model) -> str:
    """sha256 of the model's configuration (layers, shapes, names; not its weights), whatever
    precision policy it was built under."""
    check_describable(model)
    config = json.dumps(_without_dtypes(model.get_config()), sort_keys=True, default=str)
    return hashlib.sha256(config.encode()).hexdigest()


def check_describable(model: tf_keras.Model) -> None:
    """Every layer returns its configuration: lth_tf records, compares and rebuilds models
    from it (a custom layer whose ``__init__`` takes arguments must override ``get_config``)."""
    for layer in model.layers:
        try:
            layer.get_config()
        except NotImplementedError:
            raise LthError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no configuration: its "
                "__init__ takes arguments, so its class must define get_config() returning "
                "them (and, for arrays, from_config()); lth_tf records and rebuilds models from "
                "their configurations"
            ) from None


def _without_dtypes(value: Any) -> Any:
    # A mixed-precision build (--mixed_precision) names its policy in every layer's config.
    if isinstance(value, dict):
        return {k: _without_dtypes(v) for k, v in value.items() if k != "dtype"}
    if isinstance(value, list):
        return [_without_dtypes(v) for v in value]
    return value


def object_fingerprint(model: tf_keras.Model) -> str:
    """sha256 of the configuration and every weight: what theta_0 of a model object is."""
    digest = hashlib.sha256(architecture_sha256(model).encode())
    for weight in model.weights:
        value = weight.numpy()
        digest.update(f"{weight.name}{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def unnamed_fingerprint(model: tf_keras.Model) -> str:
    """:func:`object_fingerprint` with the model's and its layers' names left out: the same
    for a model built again in the same process, where Keras numbers the names anew
    (``conv2d_1`` for ``conv2d``), with the same weights."""
    names = {layer.name: f"layer {index}" for index, layer in enumerate(model.layers)}
    names[model.name] = "model"

    def unnamed(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: unnamed(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [unnamed(item) for item in value]
        return names.get(value, value) if isinstance(value, str) else value

    config = json.dumps(unnamed(_without_dtypes(model.get_config())), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode())
    for weight in model.weights:
        value = weight.numpy()
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def check_fits(
    model: tf_keras.Model, what: str, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """The model takes the data's examples and has an output per class of the data."""
    from lth_tf.pruning.prunable import check_model, outputs_probabilities

    check_model(model)  # a subclassed or Keras 3 model has no inputs to compare
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise LthError(
            f"{what} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; IMP "
            "here trains a classifier with one input and one output (the class scores)"
        )
    if isinstance(model.output, dict):
        raise LthError(
            f"{what} returns a dict ({', '.join(map(repr, model.output))}); IMP here trains on "
            "the class scores as one tensor: build the model with that tensor as its output "
            "(Model(inputs, scores), not Model(inputs, {name: scores}))"
        )
    outputs_probabilities(model)  # a sigmoid head is refused
    expected = tuple(model.inputs[0].shape[1:])
    fits = len(expected) == len(input_shape) and all(
        e is None or e == d for e, d in zip(expected, input_shape, strict=True)
    )
    if not fits:
        raise LthError(
            f"{what} takes inputs of shape {expected}, but the dataset's examples are "
            f"{tuple(input_shape)}; build the model for the data (or reshape the data)"
        )
    scores = tuple(model.outputs[0].shape[1:])
    if len(scores) != 1:  # even (1, classes): its metrics broadcast to nonsense (4056%)
        raise LthError(
            f"{what} gives outputs of shape {scores} per example; IMP here trains a classifier "
            "whose output is one score per class, shape (classes,): flatten or pool before the "
            "last layer (e.g. Flatten or GlobalAveragePooling2D)"
        )
    width = model.outputs[0].shape[-1]
    if width is not None and width < num_classes:
        raise LthError(
            f"{what} predicts {counted(width, 'class')}, but the dataset's labels go up to "
            f"{num_classes - 1}; give the output layer one unit per class (labels are "
            "0 .. classes-1)"
        )
