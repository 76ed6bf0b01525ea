"""Reader for the CIFAR-10 *binary* version (``cifar-10-binary.tar.gz``, ``cifar-10-batches-bin``).

Each ``*.bin`` file is a sequence of 3,073-byte records: one label byte (0-9), then the
32x32 image as 1,024 red, 1,024 green and 1,024 blue bytes (CHW order, rows top to bottom).
The "python version" of CIFAR-10 is a pickle, and unpickling a downloaded file can run
arbitrary code, so it is recognised only to tell the user to fetch the binary version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lth_tf.errors import LthError

TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

_HEIGHT = _WIDTH = 32
_CHANNELS = 3
_RECORD_BYTES = 1 + _CHANNELS * _HEIGHT * _WIDTH  # 3073
_NUM_CLASSES = 10


def read_cifar10_binary(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch: images uint8 [N, 32, 32, 3] (HWC), labels int64 [N].

    >>> path = "cifar-10-batches-bin/test_batch.bin"
    >>> images, labels = read_cifar10_binary(path)  # doctest: +SKIP
    >>> images.shape, labels.shape  # doctest: +SKIP
    ((10000, 32, 32, 3), (10000,))
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LthError(f"cannot read {path}: {error.strerror or error}") from None
    if not data or len(data) % _RECORD_BYTES:
        raise LthError(
            f"{path}: {len(data)} bytes is not a whole number of {_RECORD_BYTES}-byte CIFAR-10 "
            f"records (truncated or not the binary version); download {BINARY_URL} again"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= _NUM_CLASSES:
        raise LthError(
            f"{path}: label byte {labels.max()} is not a CIFAR-10 class (0-9); is this the "
            "CIFAR-100 binary version or another file? Use the CIFAR-10 binary version"
        )
    # The file stores each image as planes (C, H, W); Keras wants (H, W, C).
    images = records[:, 1:].reshape(-1, _CHANNELS, _HEIGHT, _WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def find_binary_files(directory: Path) -> dict[str, Path] | None:
    """Returns {file name: path} for the six binary batches in `directory`, or None if none.

    A directory with only some of them is an error naming the missing ones.

    >>> find_binary_files(Path("/nonexistent")) is None
    True
    """
    wanted = (*TRAIN_FILES, TEST_FILE)
    found = {name: directory / name for name in wanted if (directory / name).is_file()}
    if not found:
        return None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise LthError(
            f"{directory} holds only some of the CIFAR-10 binary batches: missing "
            f"{', '.join(missing)}; extract all of {BINARY_URL} there"
        )
    return found


def has_pickle_version(directory: Path) -> bool:
    """True if `directory` looks like the CIFAR-10 python (pickle) version, which we refuse.

    >>> has_pickle_version(Path("/nonexistent"))
    False
    """
    return (directory / "data_batch_1").is_file() or (directory / "test_batch").is_file()


def load_cifar10_dir(
    directory: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads the binary batches in `directory`: (train_images, train_labels, test_images,
    test_labels), train = data_batch_1..5 in order.

    >>> x, y, tx, ty = load_cifar10_dir(Path("cifar-10-batches-bin"))  # doctest: +SKIP
    >>> x.shape, tx.shape  # doctest: +SKIP
    ((50000, 32, 32, 3), (10000, 32, 32, 3))
    """
    files = find_binary_files(directory)
    if files is None:
        raise LthError(f"no CIFAR-10 binary batches (data_batch_1.bin, ...) in {directory}")
    train = [read_cifar10_binary(files[name]) for name in TRAIN_FILES]
    test_images, test_labels = read_cifar10_binary(files[TEST_FILE])
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return train_images, train_labels, test_images, test_labels
