"""Finding and loading the image datasets: raw files first, then TensorFlow Datasets.

Raw files (IDX for MNIST/Fashion-MNIST, the binary version for CIFAR-10) are looked for in
``data_dir``, ``data_dir/<name>`` and known system locations, so the tool works offline;
TFDS is the fallback. Either way the last 5,000 training examples are held out as the
validation set the paper uses for early stopping.

>>> ds = load_dataset("fashion_mnist")  # Debian's dataset-fashion-mnist, no network needed
>>> ds.train_images.shape, ds.val_images.shape, ds.test_images.shape, ds.input_shape
((55000, 28, 28, 1), (5000, 28, 28, 1), (10000, 28, 28, 1), (28, 28, 1))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lth_tf.data import cifar10_binary, idx, tfds_source
from lth_tf.errors import LthError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
VALIDATION_EXAMPLES = 5000

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


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """One dataset split into train / validation / test, as raw uint8 pixels.

    `val_*` are the last VALIDATION_EXAMPLES examples of the official train split and
    `train_*` the rest; `test_*` is the official test split. Images are [N, H, W, C].

    >>> ds = load_dataset("fashion_mnist")
    >>> ds.input_shape, ds.num_classes, ds.train_labels.dtype
    ((28, 28, 1), 10, dtype('int64'))
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image, e.g. (28, 28, 1) or (32, 32, 3)."""
        height, width, channels = self.train_images.shape[1:]
        return int(height), int(width), int(channels)

    def __repr__(self) -> str:
        # The default repr would print the pixel arrays.
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
            f"val={len(self.val_labels)}, test={len(self.test_labels)}, "
            f"input_shape={self.input_shape}, source={self.source!r})"
        )


def load_dataset(name: str, data_dir: str | None = None, experiment_root=None) -> ImageDataset:
    """Loads `name` (one of DATASETS) from raw files in `data_dir` or system locations, else TFDS.

    Raises LthError with a one-line explanation when no source works.

    >>> load_dataset("fashion_mnist").source
    'IDX files in /usr/share/datasets/fashion-mnist'
    """
    if name not in DATASETS:
        raise LthError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None:
        data_dir = os.path.expanduser(data_dir)
        if not os.path.isdir(data_dir):
            what = "is not a directory" if os.path.exists(data_dir) else "does not exist"
            raise LthError(
                f"data_dir {data_dir} {what}; pass a directory holding the {name} files "
                "(or a TFDS data dir), or leave it out to use the system and TFDS locations"
            )

    searched = _raw_dirs(name, data_dir)
    pickle_dirs: list[Path] = []
    for directory in searched:
        if not directory.is_dir():
            continue
        if name == "cifar10":
            if cifar10_binary.find_binary_files(directory) is not None:
                arrays = cifar10_binary.load_cifar10_dir(directory)
                return _make_dataset(name, arrays, f"CIFAR-10 binary files in {directory}")
            if cifar10_binary.has_pickle_version(directory):
                pickle_dirs.append(directory)
        elif idx.find_idx_files(directory) is not None:
            train_x, train_y, test_x, test_y = idx.load_idx_dir(directory)
            # IDX images are [N, H, W]; give greyscale its channel axis.
            arrays = (train_x[..., np.newaxis], train_y, test_x[..., np.newaxis], test_y)
            return _make_dataset(name, arrays, f"IDX files in {directory}")

    try:
        arrays, source = tfds_source.load_tfds(name, data_dir)
    except tfds_source.NotAvailable as missing:
        raise LthError(_nothing_found_message(name, searched, pickle_dirs, missing)) from None
    return _make_dataset(name, arrays, source)


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
) -> ImageDataset:
    """Checks shapes and labels, then splits the last VALIDATION_EXAMPLES off train."""
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
    if len(train_y) <= VALIDATION_EXAMPLES:
        raise LthError(
            f"{source}: the {name} train split has only {len(train_y)} examples, but its last "
            f"{VALIDATION_EXAMPLES} are held out for validation; use the full dataset"
        )
    if len(test_y) == 0:
        raise LthError(f"{source}: the {name} test split is empty; use the full dataset")
    split = len(train_y) - VALIDATION_EXAMPLES
    return ImageDataset(
        name=name,
        train_images=train_x[:split],
        train_labels=train_y[:split].astype(np.int64),
        val_images=train_x[split:],
        val_labels=train_y[split:].astype(np.int64),
        test_images=test_x,
        test_labels=test_y.astype(np.int64),
        num_classes=_NUM_CLASSES,
        source=source,
    )


def check_dataset_name(name: str) -> str:  # placeholder until the custom-data branch lands
    if name not in DATASETS and not name.startswith(("npz:", "tfds:", "arrays:")):
        raise LthError(f"--dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name
