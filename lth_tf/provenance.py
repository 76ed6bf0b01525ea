"""Where an experiment's model and data came from, kept so the directory stands on its own.

``hparams.json`` records the model (``model``: a registry name; a ``.keras`` file's path and
sha256; a builder's ``package.module:function`` and the sha256 of the architecture it builds;
a model object's sha256) and the data (``data.provenance``: an npz file's path and sha256, a
TFDS name, version and splits). A ``.keras`` file or a model object is copied into the
directory as ``model.keras``, arrays handed to the Python API as ``data.npz``: every later run
(a resume, a branch, the export, the stability analysis) builds from those copies. A model file,
builder or npz file that changed since the experiment started is refused with one line. Labels
given as class names leave ``classes.json`` (the names, by class index), which every later run
checks against the data's names. A Keras 3 model (file, builder or object) is converted to
tf_keras (:mod:`lth_tf.models.keras3`): ``model.keras`` holds the converted model, and the model
record says so (``keras3``: the Keras version, the examples the conversion was checked on, the
outputs' largest difference).

>>> spec = experiment_model(ExperimentDir(Path("runs/tiny-shapes")), hparams)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_tf import io
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError, first_line
from lth_tf.experiment import ExperimentDir, read_saved
from lth_tf.models import custom, keras3
from lth_tf.models.registry import ModelSpec, custom_spec, fresh_copy, get_model

if TYPE_CHECKING:
    import tf_keras

    from lth_tf.data.sources import ImageDataset

log = logging.getLogger("lth_tf")

MODEL_COPY = "model.keras"
DATA_COPY = "data.npz"
CLASSES_TODO = (
    "restore the experiment's classes.json (or its data) from a copy, or start a new "
    "--experiment_name"
)


def model_record(
    hparams: ExperimentHparams,
    data: ImageDataset,
    given: tf_keras.Model | None = None,
    experiment: ExperimentDir | None = None,
) -> dict[str, Any]:
    """What ``hparams.json`` says of the model, measured now (``given``: the API's object;
    ``experiment``: where it may have been recorded before).

    >>> model_record(paper_defaults("conv6"), data)  # doctest: +SKIP
    {'kind': 'registry', 'name': 'conv6'}
    """
    name = hparams.model.name
    kind = custom.model_kind(name)
    record: dict[str, Any] = {"kind": kind, "name": name}
    # Built once here (a user's model) so that a model that does not fit the data is refused
    # before the experiment directory exists.
    from lth_tf.pruning.shrink import check_rebuildable
    from lth_tf.pruning.wrapping import check_wrappable

    # A Keras 3 model is converted as it is built here, the conversion checked on a few of the
    # user's examples; the record says so ("keras3").
    if kind == "keras_file" and not Path(name).exists():
        return _record_of_a_gone_file(name, experiment)
    with keras3.checked_on(data.train_images[: keras3.CHECK_EXAMPLES]) as conversion:
        if kind == "keras_file":
            record.update(path=os.path.abspath(name), sha256=io.file_sha256(name))
            if experiment is not None and experiment.hparams.exists():
                # A changed file is named as such, before its shapes are checked against the data.
                check_same_model(experiment, record)
            built = get_model(name).build(data.input_shape, data.num_classes)
        elif kind == "builder":
            built = get_model(name).build(data.input_shape, data.num_classes)
            record["architecture"] = custom.architecture_sha256(built)
        elif kind == "python":
            if given is None:
                raise LthError(
                    f"{name}: a model object needs the object itself (lth_tf.find_tickets)"
                )
            built = custom.as_tf_keras(given, "the model")
            custom.check_fits(built, "the model", data.input_shape, data.num_classes)
            record["sha256"] = _same_object_renamed(built, experiment)
        elif hparams.pruning.prune_for == "xnnpack" or hparams.pruning.rates.layers:
            # The registry's nets are built too: none of them is MobileNet-shaped, and a rate
            # for a layer one lacks (--prune_rates=fc3=0.3) is a typo; the user hears either
            # before anything is written (a written hparams.json would hold the typo).
            built = get_model(name).build(data.input_shape, data.num_classes)
        else:
            return record
    if conversion.record() is not None:
        record["keras3"] = conversion.record()
    check_wrappable(built, hparams.pruning.rates)
    if kind == "python" and not (experiment is not None and _holds_copy(experiment.root)):
        _check_savable(built, name)  # once, when it starts: its copy is what resumes load
    if hparams.pruning.granularity == "channel":
        check_rebuildable(built)
    if hparams.pruning.prune_for == "xnnpack":
        record["xnnpack"] = xnnpack_record(built, hparams)
    return record


def _check_savable(model: tf_keras.Model, name: str) -> None:
    """Refuses, before anything is written, a model object whose copy (``model.keras``, which
    every round loads) would not load back: one that names code outside Keras (a ``Lambda``,
    a module's layer class), which a .keras file may not, or a class Keras cannot find (one
    defined in a script or a notebook). Saved and loaded once here to know."""
    import tf_keras

    problem = custom.outside_keras(tf_keras.saving.serialize_keras_object(model))
    if problem is None:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / MODEL_COPY
            try:
                model.save(path)
                tf_keras.models.load_model(path, compile=False)
            except Exception as error:  # noqa: BLE001 - Keras raises many kinds
                problem = f"does not load back from a .keras file ({first_line(error)})"
    if problem is not None:
        raise LthError(
            f"the model object {name} {problem}; its experiment keeps it as a .keras file, which "
            "may only use Keras's own layers (loading it would run that code): pass a function "
            "of a module of yours that builds it instead, find_tickets(my_module.build, ...)"
        )


def _same_object_renamed(model: tf_keras.Model, experiment: ExperimentDir | None) -> str:
    """The model object's fingerprint (:func:`lth_tf.models.custom.object_fingerprint`); the
    one its experiment recorded where ``model`` is that experiment's model with its layers
    numbered anew, as Keras does for a model built again in one process (a notebook's cell run
    twice). Every round trains from the experiment's copy, whose names the masks carry."""
    mine = custom.object_fingerprint(model)
    copy = experiment.root / MODEL_COPY if experiment is not None else None
    saved = read_saved(experiment).model if copy is not None and copy.exists() else None
    if not isinstance(saved, dict) or saved.get("sha256") in (None, mine):
        return mine
    try:
        started = custom.load_keras_file(copy, flag="model")
    except LthError:
        return mine  # a damaged copy: said where the experiment loads it
    if custom.unnamed_fingerprint(started) != custom.unnamed_fingerprint(model):
        return mine
    log.info(
        "The model object is the one %s started with, its layers named otherwise (Keras "
        "numbers the names of a model built again); the rounds keep their names.",
        experiment.root,
    )
    return saved["sha256"]


def check_model_file(hparams: ExperimentHparams, root: Path) -> None:
    """Refuses a ``.keras`` file that is not there, unless the experiment in ``root`` holds its
    copy to go on from (:func:`model_record`); before TensorFlow starts.

    >>> from lth_tf.models import experiment_hparams
    >>> gone = experiment_hparams("gone.keras", "mnist")
    >>> check_model_file(gone, Path("runs/new"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: --model=gone.keras: does not exist; pass a model saved with ...
    """
    name = hparams.model.name
    if custom.model_kind(name) != "keras_file" or Path(name).exists() or _holds_copy(root):
        return
    if (root / "hparams.json").exists():
        raise LthError(
            f"--model={name}: does not exist, and {root} has no copy of it ({MODEL_COPY}) to go "
            "on from: put the file back"
        )
    custom.check_keras_file(name)  # says the file does not exist


def _holds_copy(root: Path) -> bool:
    """Whether ``root`` is an experiment holding its copy of a model of the user's."""
    return (root / "hparams.json").exists() and (root / MODEL_COPY).exists()


def _record_of_a_gone_file(name: str, experiment: ExperimentDir | None) -> dict[str, Any]:
    """What an experiment recorded of the ``.keras`` file it started from, which is gone: it
    goes on from its copy, which every round trains from anyway. Without such an experiment,
    the missing file is a user error."""
    if experiment is None or not _holds_copy(experiment.root):
        custom.check_keras_file(name)  # says the file does not exist
    saved, copy = read_saved(experiment).model, experiment.root / MODEL_COPY
    if not (isinstance(saved, dict) and saved.get("kind") == "keras_file"):
        custom.check_keras_file(name)
    # A copy of a tf_keras file is that file byte for byte (one of a Keras 3 file, converted,
    # is not): one that is not was replaced since, and is not what the rounds trained from.
    if "keras3" not in saved and io.file_sha256(copy) != saved.get("sha256"):
        raise LthError(
            f"{name} is gone, and {copy} is not the copy of it {experiment.root} made (sha256 "
            f"{str(saved.get('sha256'))[:8]}…): put back the file or the experiment's own copy"
        )
    return dict(saved)


def say_if_gone(
    hparams: ExperimentHparams, experiment: ExperimentDir, record: dict[str, Any] | None
) -> None:
    """One line where the experiment goes on from its copy of a ``.keras`` file that is gone
    (:func:`model_record` accepted it, ``record``); said once the run is sure to go on."""
    name = hparams.model.name
    if custom.model_kind(name) == "keras_file" and not Path(name).exists():
        log.info(
            "%s is gone: %s goes on from its copy %s (of the file's sha256 %s…)",
            name,
            experiment.root,
            MODEL_COPY,
            str((record or {}).get("sha256"))[:8],
        )


def xnnpack_record(model: tf_keras.Model, hparams: ExperimentHparams) -> dict[str, Any]:
    """``--prune_for=xnnpack``: the model checked against XNNPack's sparse-subgraph rules once
    its stride-2 padding is made symmetric (announced in one line); what ``hparams.json``
    records of both. Every later build makes the same change (:func:`lth_tf.builder.
    build_network`): it is a function of the architecture alone."""
    from lth_tf.pruning.xnnpack import check_sparse_subgraph, symmetric_padding

    rebuilt, changes = symmetric_padding(model)
    subgraph = check_sparse_subgraph(rebuilt)
    if not subgraph.one_by_one:
        raise LthError(
            f"--prune_for=xnnpack: {model.name!r} has no 1x1 convolution between the stem "
            f"{subgraph.stem!r} and the pooling {subgraph.mean!r}; XNNPack's sparse kernels run "
            "1x1 convolutions only: add some (a MobileNet's pointwise convolutions)"
        )
    rates = hparams.pruning.rates
    if all(rates.for_layer(name, "conv") == 0 for name in subgraph.one_by_one):
        raise LthError(
            f"--prune_for=xnnpack: --prune_rates={rates} leaves every 1x1 convolution dense, so "
            "XNNPack's sparse kernels never run: give convolutions a rate, e.g. conv=0.2"
        )
    if changes:
        log.info(
            "--prune_for=xnnpack: %d stride-2 layer(s) pad symmetrically from now on, as "
            "XNNPack's sparse kernels need (the untrained model's architecture, no trained "
            "weight changes): %s",
            len(changes),
            "; ".join(changes),
        )
    return {
        "symmetric_padding": changes,
        "sparse_subgraph": {
            "stem": subgraph.stem,
            "mean": subgraph.mean,
            "one_by_one": list(subgraph.one_by_one),
        },
    }


def check_same_model(experiment: ExperimentDir, record: dict[str, Any]) -> None:
    """Refuses to go on when the model differs from the one the experiment started with."""
    saved = read_saved(experiment).model
    if not isinstance(saved, dict):
        return  # written before models were recorded: registry models only
    root, name = experiment.root, record["name"]
    new_experiment = "or start a new --experiment_name"
    for key in ("sha256", "architecture"):
        before, now = saved.get(key), record.get(key)
        if before is None or before == now:
            continue
        if record["kind"] == "keras_file":
            # A link pointed elsewhere since: the file it names now is the one to look at.
            link = f" (a link, now to {os.path.realpath(name)})" if os.path.islink(name) else ""
            raise LthError(
                f"{name}{link} changed since {root} was started (sha256 {before[:8]}… then, "
                f"{now[:8]}… now): restore the file, {new_experiment}"
            )
        if record["kind"] == "builder":
            raise LthError(
                f"--model={name} now builds another architecture than the one {root} was "
                f"started with: restore the builder, {new_experiment}"
            )
        raise LthError(
            f"the model object differs from the one {root} was started with (architecture or "
            "initial weights): build it as it was built then (the same seed, "
            "tf_keras.utils.set_random_seed, before building) to resume, or pass another "
            "experiment_name for a new experiment"
        )


def bind_model(
    experiment: ExperimentDir, hparams: ExperimentHparams, given: tf_keras.Model | None = None
) -> ModelSpec:
    """Makes the experiment's copy of its model if it has none yet; returns what builds it.

    A ``.keras`` file is copied byte for byte (one saved by Keras 3: converted, and saved by
    tf_keras); a model object (``given``) is saved (converted, if a Keras 3 one); a branch
    takes its parent's copy.
    """
    kind = custom.model_kind(hparams.model.name)
    copy = experiment.root / MODEL_COPY
    if kind in ("keras_file", "python") and not copy.exists():
        parent_copy = experiment.root.parent / hparams.branch.parent / MODEL_COPY
        if hparams.is_branch and parent_copy.exists():
            io.write_bytes_atomic(copy, parent_copy.read_bytes())
        elif kind == "keras_file" and keras3.is_keras3_file(hparams.model.name):
            # Keras 3's file converted: the copy is a tf_keras file, which every later run
            # (resume, branch, export) loads as it loads any experiment's copy.
            _save_model_atomic(custom.load_keras_file(hparams.model.name), copy)
        elif kind == "keras_file":
            io.write_bytes_atomic(copy, Path(hparams.model.name).read_bytes())
        elif given is not None:
            _save_model_atomic(custom.as_tf_keras(given, "the model"), copy)
    return experiment_model(experiment, hparams)


def _save_model_atomic(model: tf_keras.Model, path: Path) -> None:
    """``model.save`` to a temporary name beside ``path``, then a rename: never half a file."""
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        temporary = Path(scratch) / MODEL_COPY
        model.save(temporary)
        io.write_bytes_atomic(path, temporary.read_bytes())


def experiment_model(experiment: ExperimentDir, hparams: ExperimentHparams) -> ModelSpec:
    """What builds the experiment's model: the registry's, the experiment's ``model.keras``,
    or the builder (checked against the architecture the experiment recorded)."""
    name = hparams.model.name
    kind = custom.model_kind(name)
    if kind == "registry":
        return get_model(name)
    if kind == "builder":
        return _checked_builder(experiment, get_model(name))
    copy = experiment.root / MODEL_COPY
    saved = read_saved(experiment).model
    original = saved.get("path") if isinstance(saved, dict) else None
    restore = (
        f"restore it from {original} (sha256 {str(saved.get('sha256'))[:8]}…)"
        if original and os.path.isfile(original)
        else "restore it from a copy of the experiment"
    )
    if not copy.exists():
        raise LthError(
            f"{experiment.root} has no {MODEL_COPY}, its copy of the model {name}: {restore}"
        )
    what = f"{copy} (the copy of {name})"

    def load(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        try:
            model = custom.load_keras_file(copy, flag="model")
        except LthError:
            raise LthError(
                f"{copy}, the experiment's copy of its model {name}, is damaged: {restore}"
            ) from None
        custom.check_fits(model, what, input_shape, num_classes)
        return model

    return custom_spec(name, load, fresh_copy(load))


def _checked_builder(experiment: ExperimentDir, spec: ModelSpec) -> ModelSpec:
    saved = read_saved(experiment).model
    expected = saved.get("architecture") if isinstance(saved, dict) else None

    def build(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        model = spec.build(input_shape, num_classes)
        if expected is not None and custom.architecture_sha256(model) != expected:
            raise LthError(
                f"--model={spec.name} now builds another architecture than the one "
                f"{experiment.root} was trained with: restore the builder to use the experiment"
            )
        return model

    return dataclasses.replace(spec, build=build)


def bind_data(experiment: ExperimentDir, data: ImageDataset) -> None:
    """Saves arrays handed to the Python API as ``data.npz`` (once) and the class names as
    ``classes.json`` (once; a branch's are its parent's), and refuses a dataset that changed
    since the experiment started."""
    from lth_tf.data.arrays import save_arrays, split_arrays
    from lth_tf.data.sources import check_same_data

    saved = read_saved(experiment)
    provenance = saved.data.provenance
    if isinstance(provenance, dict):
        check_same_data(provenance, data, experiment.root)
    copy = experiment.root / DATA_COPY
    if data.name.startswith("arrays:") and not copy.exists():
        save_arrays(copy, split_arrays(data))
    if saved.hparams.is_branch:
        parent = ExperimentDir(experiment.root.parent / saved.hparams.branch.parent)
        if parent.classes.exists() and not experiment.classes.exists():
            io.write_bytes_atomic(experiment.classes, parent.classes.read_bytes())
    if experiment.classes.exists() or data.classes is None:
        check_classes(experiment, data)
    else:
        io.write_json(experiment.classes, list(data.classes))


def read_classes(experiment: ExperimentDir) -> list[str] | None:
    """The experiment's class names (``classes.json``), or None where its labels were class
    indices; a damaged file is an LthError saying so.

    >>> read_classes(ExperimentDir(Path("runs/fruit")))  # doctest: +SKIP
    ['apple', 'banana', 'cherry']
    """
    path = experiment.classes
    if not path.exists():
        return None
    names = io.read_json(path, CLASSES_TODO)
    if not (
        isinstance(names, list)
        and len(names) >= 2
        and all(isinstance(name, str) and name for name in names)
        and len(set(names)) == len(names)
    ):
        raise io.damaged(path, "not a list of at least 2 distinct class names", CLASSES_TODO)
    return names


def check_classes(experiment: ExperimentDir, data: ImageDataset) -> None:
    """Refuses data whose class names are not the ones ``classes.json`` recorded (names where it
    has none, none where it has some, other names or another order)."""
    saved = read_classes(experiment)
    now = None if data.classes is None else list(data.classes)
    if saved == now:
        return
    path = experiment.classes
    if saved is None:
        raise LthError(
            f"{experiment.root} has no {path.name}, but {data.name}'s labels are class names "
            f"({_shown(now)}): rerun the IMP command to write it again, or restore it"
        )
    if now is None:
        raise LthError(
            f"{path} names {len(saved)} classes ({_shown(saved)}), but {data.name}'s labels are "
            f"class indices: remove {path.name} if it does not belong there, or restore the data"
        )
    raise LthError(
        f"{path} names the classes {_shown(saved)}, but {data.name}'s labels name {_shown(now)}: "
        f"{CLASSES_TODO}"
    )


def _shown(names: list[str]) -> str:
    """``'a', 'b', 'c'`` or ``'a', 'b', ... (12 classes)``: short enough for one line."""
    shown = ", ".join(repr(name[:40]) for name in names[:4])
    return shown if len(names) <= 4 else f"{shown}, ... ({len(names)} classes)"


def experiment_data(
    experiment: ExperimentDir, hparams: ExperimentHparams, data_dir: str | None = None
) -> ImageDataset:
    """The experiment's dataset, loaded again and checked against what it recorded.

    An npz named by a relative path is found from the working directory, else at the
    absolute path the experiment recorded.
    """
    from lth_tf.data.sources import check_same_data, load_dataset

    saved = read_saved(experiment).data.provenance
    name = hparams.dataset.name
    if name.startswith("npz:") and isinstance(saved, dict) and saved.get("path"):
        if not Path(name.removeprefix("npz:")).exists():
            name = f"npz:{saved['path']}"
        if not Path(name.removeprefix("npz:")).exists():
            raise LthError(
                f"{experiment.root} was trained on {name.removeprefix('npz:')}, which is gone: "
                f"restore that file there (sha256 {str(saved.get('sha256'))[:8]}…) to use the "
                "experiment"
            )
    if data_dir is None and isinstance(saved, dict) and saved.get("data_dir"):
        data_dir = saved["data_dir"]
    data = load_dataset(
        name, data_dir, experiment_root=experiment.root, holdout=hparams.dataset.holdout
    )
    if isinstance(saved, dict):
        check_same_data(saved, data, experiment.root, or_else=None)
    check_classes(experiment, data)
    return data
