"""Finding and loading the datasets: the built-in ones, and the user's own.

Built-in (mnist, fashion_mnist, cifar10): raw files (IDX for MNIST/Fashion-MNIST, the binary
version for CIFAR-10) are looked for in ``data_dir``, ``data_dir/<name>`` and known system
locations, so the tool works offline; TFDS is the fallback. Either way the last 5,000 training
examples are held out as the validation set the paper uses for early stopping (``--holdout``:
another count of them, or none).

The user's own: ``npz:PATH`` (arrays x_train, y_train, x_test, y_test, optional x_val, y_val),
``tfds:NAME[:VERSION]`` (any TFDS dataset with supervised keys) and ``arrays:FINGERPRINT``
(arrays a Python caller passed in memory, saved as ``<experiment>/data.npz``). All three go
through :func:`lth_tf.data.arrays.dataset_from_arrays`, which checks them and holds out a
validation set when none is given (``--holdout``, :func:`held_out_count`).

>>> ds = load_dataset("fashion_mnist")  # Debian's dataset-fashion-mnist, no network needed
>>> ds.train_images.shape, ds.val_images.shape, ds.test_images.shape, ds.input_shape
((55000, 28, 28, 1), (5000, 28, 28, 1), (10000, 28, 28, 1), (28, 28, 1))
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lth_tf.config import HOLDOUT_AUTO, DatasetHparams, flag_of
from lth_tf.data import arrays, cifar10_binary, idx, tfds_source
from lth_tf.data.dataset import ImageDataset, arrays_fingerprint, held_out_count
from lth_tf.errors import LthError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
VALIDATION_EXAMPLES = 5000
# Where an arrays:FINGERPRINT dataset lives, inside its experiment's folder.
ARRAYS_FILE = "data.npz"

# tfds:NAME[/CONFIG][:VERSION], VERSION in TFDS's own syntax (3.0.1, 3.*.*, 3.0.*).
_TFDS_SPEC = re.compile(r"([a-z0-9_]+(?:/[A-Za-z0-9_.=,-]+)?)(?::([0-9*]+(?:\.[0-9*]+){0,2}))?")
_HEX = re.compile(r"[0-9a-f]{8,64}")

# Raw-file locations that system packages install to (Debian: dataset-fashion-mnist).
SYSTEM_DATA_DIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "cifar10": (),
}

# (H, W, C) and classes of each dataset, to catch e.g. CIFAR files passed as MNIST.
_IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}
_NUM_CLASSES = 10


def check_dataset_name(text: str) -> str:
    """Checks a ``--dataset`` value without loading anything (and without TensorFlow); returns
    it normalised (an npz path through ``os.path.normpath``).

    >>> check_dataset_name("npz:./data//my.npz"), check_dataset_name("tfds:cifar100:3.0.2")
    ('npz:data/my.npz', 'tfds:cifar100:3.0.2')
    """
    kind, _, rest = text.partition(":")
    if text in DATASETS:
        return text
    if kind == "npz" and rest:
        return f"npz:{os.path.normpath(rest)}"
    if kind == "tfds" and _TFDS_SPEC.fullmatch(rest):
        return text
    if kind == "arrays" and _HEX.fullmatch(rest):
        return text
    raise LthError(
        f"{flag_of(DatasetHparams, 'name')}: unknown dataset {text!r}; choose mnist, "
        "fashion_mnist, cifar10, npz:PATH or tfds:NAME"
    )


def load_dataset(
    name: str,
    data_dir: str | None = None,
    experiment_root: str | os.PathLike | None = None,
    holdout: str = HOLDOUT_AUTO,
) -> ImageDataset:
    """Loads dataset `name`: a built-in one, ``npz:PATH``, ``tfds:NAME[:VERSION]`` or
    ``arrays:FINGERPRINT``, holding out ``holdout`` training examples (:func:`held_out_count`)
    as its validation split when it has none of its own.

    Built-in datasets come from raw files in `data_dir` or system locations, else TFDS;
    ``tfds:`` datasets from a prepared copy in `data_dir` (TFDS's default when None), else a
    download; ``arrays:`` ones from ``experiment_root/data.npz``. Raises LthError with a
    one-line explanation when that does not work.

    >>> load_dataset("fashion_mnist").source
    'IDX files in /usr/share/datasets/fashion-mnist'
    >>> load_dataset("npz:data/my.npz").provenance["kind"]  # doctest: +SKIP
    'npz'
    """
    check_dataset_name(name)
    kind, _, rest = name.partition(":")
    if kind == "npz":
        return _load_npz(name, rest, holdout)
    if kind == "arrays":
        return _load_saved_arrays(name, rest, experiment_root, holdout)
    if data_dir is not None:
        data_dir = os.path.expanduser(data_dir)
        if not os.path.isdir(data_dir):
            what = "is not a directory" if os.path.exists(data_dir) else "does not exist"
            raise LthError(
                f"data_dir {data_dir} {what}; pass a directory holding the {name} files "
                "(or a TFDS data dir), or leave it out to use the system and TFDS locations"
            )
    if kind == "tfds":
        return _load_tfds_spec(name, rest, data_dir, holdout)

    searched = _raw_dirs(name, data_dir)
    pickle_dirs: list[Path] = []
    for directory in searched:
        if not directory.is_dir():
            continue
        if name == "cifar10":
            if cifar10_binary.find_binary_files(directory) is not None:
                arrays = cifar10_binary.load_cifar10_dir(directory)
                source = f"CIFAR-10 binary files in {directory}"
                return _make_dataset(name, arrays, source, holdout)
            if cifar10_binary.has_pickle_version(directory):
                pickle_dirs.append(directory)
        elif idx.find_idx_files(directory) is not None:
            train_x, train_y, test_x, test_y = idx.load_idx_dir(directory)
            # IDX images are [N, H, W]; give greyscale its channel axis.
            arrays = (train_x[..., np.newaxis], train_y, test_x[..., np.newaxis], test_y)
            return _make_dataset(name, arrays, f"IDX files in {directory}", holdout)

    try:
        arrays, source = tfds_source.load_tfds(name, data_dir)
    except tfds_source.NotAvailable as missing:
        raise LthError(_nothing_found_message(name, searched, pickle_dirs, missing)) from None
    return _make_dataset(name, arrays, source, holdout)


def _raw_dirs(name: str, data_dir: str | None) -> list[Path]:
    """Directories to search for raw files, in order, without duplicates."""
    dirs: list[Path] = []
    if data_dir is not None:
        root = Path(data_dir)
        dirs += [root, root / name]
        if name == "cifar10":
            # What cifar-10-binary.tar.gz extracts to; the -py one only to recognise it.
            dirs += [root / "cifar-10-batches-bin", root / "cifar-10-batches-py"]
    dirs += [Path(path) for path in SYSTEM_DATA_DIRS.get(name, ())]
    return list(dict.fromkeys(dirs))


def _nothing_found_message(
    name: str,
    searched: list[Path],
    pickle_dirs: list[Path],
    missing: tfds_source.NotAvailable,
) -> str:
    """The one-line error for: no raw files, no prepared TFDS copy, no network."""
    places = [str(path) for path in searched if path.name != "cifar-10-batches-py"]
    kind = "CIFAR-10 binary files" if name == "cifar10" else "IDX files"
    where = f"no {kind} in {_join_or(places)}, " if places else f"no {kind} (no --data_dir given), "
    message = (
        f"cannot load dataset '{name}': {where}no prepared TFDS copy in {missing.searched}, "
        f"and no network to download it (could not reach {missing.unreachable})."
    )
    if pickle_dirs:
        message += (
            f" Found the CIFAR-10 python (pickle) version in {_join_or(map(str, pickle_dirs))},"
            " which is never loaded because unpickling a file can run code: the binary"
            " version is needed."
        )
    if name == "cifar10":
        fix = (
            f"Put data_batch_1.bin ... data_batch_5.bin and test_batch.bin (from "
            f"{cifar10_binary.BINARY_URL}, the CIFAR-10 binary version) in --data_dir"
        )
    else:
        fix = f"Put {', '.join(base + '.gz' for base in idx.IDX_FILES)} in --data_dir"
        if name == "fashion_mnist":
            fix += ", or apt-get install dataset-fashion-mnist"
    return f"{message} {fix}, or run once with network access."


def _join_or(items: Iterable[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _make_dataset(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    source: str,
    holdout: str = HOLDOUT_AUTO,
) -> ImageDataset:
    """Checks shapes and labels, then splits the last ``holdout`` examples (auto:
    VALIDATION_EXAMPLES) off train."""
    train_x, train_y, test_x, test_y = arrays
    expected = _IMAGE_SHAPES[name]
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if images.shape[1:] != expected or images.dtype != np.uint8:
            raise LthError(
                f"{source}: {split} images are {images.dtype} {images.shape[1:]}, expected "
                f"uint8 {expected} for {name}; is this the right dataset?"
            )
        if len(images) != len(labels):
            raise LthError(
                f"{source}: {split} split has {len(images)} images but {len(labels)} labels"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
            raise LthError(
                f"{source}: {split} labels range {labels.min()}..{labels.max()}, expected "
                f"0..{_NUM_CLASSES - 1} for {name}; is this the right dataset?"
            )
    if holdout == HOLDOUT_AUTO and len(train_y) <= VALIDATION_EXAMPLES:
        raise LthError(
            f"{source}: the {name} train split has only {len(train_y)} examples, but its last "
            f"{VALIDATION_EXAMPLES} are held out for validation; use the full dataset"
        )
    if len(test_y) == 0:
        raise LthError(f"{source}: the {name} test split is empty; use the full dataset")
    split = len(train_y) - held_out_count(holdout, len(train_y), VALIDATION_EXAMPLES, source)
    splits = {
        "x_train": train_x[:split],
        "y_train": train_y[:split].astype(np.int64),
        "x_val": train_x[split:],
        "y_val": train_y[split:].astype(np.int64),
        "x_test": test_x,
        "y_test": test_y.astype(np.int64),
    }
    return ImageDataset(
        name=name,
        train_images=splits["x_train"],
        train_labels=splits["y_train"],
        val_images=splits["x_val"],
        val_labels=splits["y_val"],
        test_images=splits["x_test"],
        test_labels=splits["y_test"],
        num_classes=_NUM_CLASSES,
        source=source,
        provenance=_builtin_provenance(name, source, splits),
    )


def _builtin_provenance(name: str, source: str, splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """What a built-in dataset's experiment records of it: where it came from, the split sizes,
    and a fingerprint of the arrays, so that other files of the same dataset (relabelled, a
    different release) are noticed on resume, export and stability (:func:`check_same_data`).

    The fingerprint costs about 0.04 s for Fashion-MNIST's 55 MB of arrays (sha256, measured on
    one core of the development machine), against about 0.5 s to read and decompress its IDX
    files: cheap enough for every load.
    """
    return {
        "kind": "builtin",
        "name": name,
        "source": source,
        "examples": {split: len(splits[f"y_{split}"]) for split in ("train", "val", "test")},
        "fingerprint": arrays_fingerprint(splits),
    }


def _load_npz(spec: str, path_text: str, holdout: str) -> ImageDataset:
    """``npz:PATH``: the arrays in one npz file, relative paths from the working directory."""
    path = os.path.abspath(os.path.expanduser(path_text))
    values, sha256 = arrays.read_npz(path, spec)
    provenance = {"kind": "npz", "path": path, "sha256": sha256}
    return arrays.dataset_from_arrays(spec, values, f"{spec} ({path})", provenance, holdout)


def _load_saved_arrays(
    spec: str, fingerprint: str, experiment_root: str | os.PathLike | None, holdout: str
) -> ImageDataset:
    """``arrays:FINGERPRINT``: the arrays a Python caller passed, saved in the experiment."""
    if experiment_root is None:
        raise LthError(
            f"{spec}: in-memory arrays are saved with their experiment; load them with "
            "experiment_root=<the experiment's folder>"
        )
    path = Path(experiment_root) / ARRAYS_FILE
    if not path.is_file():
        raise LthError(
            f"{spec}: {path} does not exist; the experiment's arrays were not saved there "
            "(pass the arrays again, or the experiment folder they were saved in)"
        )
    values, _ = arrays.read_npz(path, spec)
    found = arrays_fingerprint(values)
    if not found.startswith(fingerprint):
        raise LthError(
            f"{spec}: {path} holds other arrays (fingerprint {found[:16]}…); restore the "
            "experiment's data.npz, or start a new --experiment_name"
        )
    provenance = {"kind": "arrays", "path": str(path.resolve()), "fingerprint": found}
    return arrays.dataset_from_arrays(spec, values, f"{spec} ({path})", provenance, holdout)


def _load_tfds_spec(spec: str, rest: str, data_dir: str | None, holdout: str) -> ImageDataset:
    """``tfds:NAME[:VERSION]``: any TFDS dataset with supervised keys."""
    name, _, version = rest.partition(":")
    values, provenance = tfds_source.load_tfds_arrays(name, version or None, data_dir, spec)
    source = f"TFDS {name} {provenance['version']} in {provenance['data_dir']}"
    return arrays.dataset_from_arrays(spec, values, source, provenance, holdout)


def check_same_data(
    saved: dict[str, Any] | None,
    data: ImageDataset,
    experiment_root: str | os.PathLike,
    or_else: str | None = "start a new --experiment_name",
) -> None:
    """Refuses to continue an experiment on data other than what it started with.

    `saved` is the provenance recorded when the experiment started; none recorded (experiments
    from before provenance existed), and a built-in dataset recorded without a fingerprint
    (before fingerprints existed), pass. Each refusal says how to restore the data, and
    ``or_else`` (None where the experiment is only read, by an export).

    >>> check_same_data({}, load_dataset("fashion_mnist"), "runs/x")  # old experiment: passes
    """
    if not saved:
        return
    otherwise = f", or {or_else}" if or_else else ""
    now = data.provenance
    kind = saved.get("kind")
    if kind == "npz" and saved.get("sha256") != now.get("sha256"):
        then_hash, now_hash = str(saved.get("sha256")), str(now.get("sha256"))
        raise LthError(
            f"{data.name} changed since {experiment_root} was started (sha256 {then_hash[:8]}… "
            f"then, {now_hash[:8]}… now): restore the file{otherwise}"
        )
    if kind == "tfds" and saved.get("version") != now.get("version"):
        raise LthError(
            f"{data.name} is version {now.get('version')} now but was {saved.get('version')} "
            f"when {experiment_root} was started: ask for tfds:{saved.get('name')}:"
            f"{saved.get('version')}{otherwise}"
        )
    if kind == "builtin" and saved.get("fingerprint") not in (None, now.get("fingerprint")):
        # Recorded since fingerprints existed; experiments from before pass.
        then_print, now_print = str(saved.get("fingerprint")), str(now.get("fingerprint"))
        sizes = ""
        if saved.get("examples") not in (None, now.get("examples")):
            sizes = f", {_sizes(saved['examples'])} then, {_sizes(now.get('examples'))} now"
        raise LthError(
            f"--data_dir now holds other {data.name} data than {experiment_root} trained on "
            f"(fingerprint {then_print[:8]}… then, {now_print[:8]}… now{sizes}; read from "
            f"{data.source}): point --data_dir at the original files{otherwise}"
        )
    if kind == "arrays" and saved.get("fingerprint") != now.get("fingerprint"):
        raise LthError(
            f"{data.name}: the arrays changed since {experiment_root} was started: restore its "
            f"{ARRAYS_FILE}{otherwise}"
        )


def _sizes(examples: Any) -> str:
    """``{"train": 55000, "val": 5000, "test": 10000}`` -> ``55000/5000/10000 examples``."""
    if not isinstance(examples, dict):
        return "unknown sizes"
    return "/".join(str(examples.get(split, "?")) for split in ("train", "val", "test")) + (
        " examples"
    )
