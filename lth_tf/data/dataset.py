"""What a loaded dataset is (:class:`ImageDataset`), how many training examples its
validation split holds out, and the fingerprint of its arrays: what every loader
(:mod:`lth_tf.data.sources`, :mod:`lth_tf.data.arrays`) shares. NumPy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from lth_tf.config import HOLDOUT_AUTO, DatasetHparams, flag_of
from lth_tf.errors import LthError


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """One dataset split into train / validation / test, as raw values and int64 labels.

    Built-in datasets: uint8 images [N, H, W, C]; `val_*` are the last VALIDATION_EXAMPLES
    examples of the official train split and `train_*` the rest; `test_*` is the official test
    split. The user's own datasets may have any per-example shape (rank >= 1) and any
    numeric dtype (see :func:`lth_tf.data.arrays.dataset_from_arrays`). The model receives the
    values cast to float32 and nothing else: no scaling, so scale the data beforehand if the
    model needs it. `provenance` (JSON) says where the data came from, e.g.
    ``{"kind": "npz", "path": ..., "sha256": ...}``. `classes` names each class index when the
    labels were given as names (``classes[i]`` is class i's), else None.

    >>> from lth_tf.data.sources import load_dataset
    >>> ds = load_dataset("fashion_mnist")
    >>> ds.input_shape, ds.num_classes, ds.train_labels.dtype, ds.provenance["kind"]
    ((28, 28, 1), 10, dtype('int64'), 'builtin')
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
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    classes: tuple[str, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (28, 28, 1), (32, 32, 3) or (20,) for feature rows."""
        return tuple(int(size) for size in self.train_images.shape[1:])

    def __repr__(self) -> str:
        # The default repr would print the pixel arrays.
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
            f"val={len(self.val_labels)}, test={len(self.test_labels)}, "
            f"input_shape={self.input_shape}, source={self.source!r})"
        )


def held_out_count(holdout: str, num_train: int, auto: int, source: str) -> int:
    """How many of ``num_train`` training examples ``--holdout`` holds out as the validation
    split: ``auto`` (the source's own rule) for ``"auto"``, else the count. At least one must be
    left to train on, else the LthError says what to do.

    >>> held_out_count("auto", 60000, 5000, "mnist"), held_out_count("0", 50000, 5000, "cifar10")
    (5000, 0)
    """
    count = auto if holdout == HOLDOUT_AUTO else int(holdout)
    if count >= num_train:
        flag = flag_of(DatasetHparams, "holdout")
        raise LthError(
            f"{source}: {flag}={holdout} holds out {count} of the {num_train} training "
            f"example(s) for validation, which leaves none to train on; give at most "
            f"{flag}={num_train - 1} ({flag}=0: no validation split), more training examples, "
            "or a validation split of the dataset's own (x_val/y_val)"
        )
    return count


def arrays_fingerprint(arrays: Mapping[str, Any]) -> str:
    """sha256 (hex) over each array's key, dtype, shape and bytes, in sorted key order.

    It depends on the values only, not on how they were stored (an npz's zip metadata, memory
    order), so equal arrays give equal fingerprints.

    >>> arrays_fingerprint({"a": np.zeros(2)}) == arrays_fingerprint({"a": np.zeros(2)})
    True
    """
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        if array.dtype.hasobject:
            raise LthError(f"{key} is an object array; give numeric arrays")
        # Length-prefixed header: no two different (key, dtype, shape) can read the same.
        header = repr((key, array.dtype.str, array.shape)).encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()
