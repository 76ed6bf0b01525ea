"""Labels given as class names (str, bytes, bool): encoded in the names' sorted order, kept as
the dataset's ``classes``, refused in one line where they cannot be; integer labels as before.
No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lth_tf  # noqa: F401  (environment before anything imports TensorFlow)
from lth_tf.data.arrays import (
    arrays_fingerprint,
    dataset_from_arrays,
    encode_class_names,
    split_arrays,
)
from lth_tf.data.sources import load_dataset
from lth_tf.errors import LthError

NAMES = np.array(["zebra", "ant", "moth"])  # sorted: ant, moth, zebra


def named_arrays(train: int = 60, test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "x_train": rng.random((train, 4), dtype=np.float32),
        "y_train": NAMES[np.arange(train) % 3],
        "x_test": rng.random((test, 4), dtype=np.float32),
        "y_test": NAMES[np.arange(test) % 3],
    }


def build(arrays: dict):
    return dataset_from_arrays("mine", arrays, "mine", {"kind": "test"})


def test_names_become_indices_in_sorted_order() -> None:
    arrays = named_arrays()
    ds = build(arrays)
    assert ds.classes == ("ant", "moth", "zebra") and ds.num_classes == 3
    assert ds.train_labels.dtype == np.int64
    # Each index names its example's class, in every split (validation held out of train).
    order = np.random.default_rng(0).permutation(60)
    kept, held_out = np.sort(order[6:]), order[:6]
    names = np.asarray(ds.classes)
    np.testing.assert_array_equal(names[ds.train_labels], arrays["y_train"][kept])
    np.testing.assert_array_equal(names[ds.val_labels], arrays["y_train"][held_out])
    np.testing.assert_array_equal(names[ds.test_labels], arrays["y_test"])


@pytest.mark.parametrize(
    "labels",
    [
        lambda y: y.astype(bytes),  # np.savez of bytes, or tf.data text
        lambda y: y.astype(object),  # pandas' text columns
        lambda y: np.array([name.encode() for name in y], dtype=object),  # tf.data's strings
    ],
)
def test_bytes_and_object_arrays_of_text_give_the_same_names(labels) -> None:
    arrays = named_arrays()
    changed = {**arrays, "y_train": labels(arrays["y_train"]), "y_test": labels(arrays["y_test"])}
    same, ds = build(arrays), build(changed)
    assert ds.classes == same.classes
    np.testing.assert_array_equal(ds.train_labels, same.train_labels)


def test_bool_labels_are_the_classes_false_and_true() -> None:
    arrays = named_arrays()
    arrays["y_train"] = np.arange(60) % 3 == 0
    arrays["y_test"] = np.arange(12) % 2 == 0
    ds = build(arrays)
    assert ds.classes == ("False", "True") and ds.num_classes == 2
    np.testing.assert_array_equal(ds.test_labels, (np.arange(12) % 2 == 0).astype(np.int64))


def test_integer_labels_are_as_before_names_existed() -> None:
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.random((60, 4)),
        "y_train": np.arange(60) % 3,
        "x_test": rng.random((12, 4)),
        "y_test": np.arange(12) % 3,
    }
    assert encode_class_names(arrays, "mine") == (arrays, None)
    ds = build(arrays)
    assert ds.classes is None
    # split_arrays (what data.npz holds and the arrays: fingerprint covers): int64 indices.
    assert split_arrays(ds)["y_train"].dtype == np.int64


def test_split_arrays_keep_the_names_so_the_copy_loads_as_the_same_dataset(tmp_path) -> None:
    ds = build(named_arrays())
    splits = split_arrays(ds)
    assert splits["y_test"].dtype.kind == "U"
    np.savez(tmp_path / "copy.npz", **splits)
    again = load_dataset(f"npz:{tmp_path / 'copy.npz'}")
    assert again.classes == ds.classes
    np.testing.assert_array_equal(again.train_labels, ds.train_labels)
    assert arrays_fingerprint(split_arrays(again)) == arrays_fingerprint(splits)


def test_an_npz_of_str_labels_loads_without_pickle(tmp_path: Path) -> None:
    np.savez(tmp_path / "names.npz", **named_arrays())
    ds = load_dataset(f"npz:{tmp_path / 'names.npz'}")
    assert ds.classes == ("ant", "moth", "zebra")


def test_an_npz_of_object_labels_is_refused_with_how_to_save_them(tmp_path: Path) -> None:
    arrays = named_arrays()
    np.savez(tmp_path / "objects.npz", **{**arrays, "y_train": arrays["y_train"].astype(object)})
    with pytest.raises(LthError, match="pickled") as caught:
        load_dataset(f"npz:{tmp_path / 'objects.npz'}")
    message = str(caught.value)
    assert "\n" not in message and "y_train" in message
    assert "np.array(labels, dtype=str)" in message


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(y_test=np.arange(12) % 3), r"y_train holds class names \(str\) but "),
        (lambda a: a.update(y_test=np.arange(12) % 2 == 0), r"y_test holds class names \(bool\)"),
        (lambda a: a.update(y_test=np.full(12, "wasp")), "y_test holds the class 'wasp', which"),
        (
            lambda a: a.update(x_val=a["x_test"], y_val=np.full(12, "bee")),
            "y_val holds the class 'bee'",
        ),
        (lambda a: a.update(y_train=np.full(60, "ant")), "y_train holds only the class 'ant'"),
        (lambda a: a["y_train"].__setitem__(4, ""), "empty class name"),
        (lambda a: a.update(y_train=a["y_train"].reshape(30, 2)), r"shape \(30, 2\); give class"),
        (
            lambda a: a.update(y_train=np.array(["ant", 3] * 30, dtype=object)),
            "object array holding int values; give class names as np.array",
        ),
        (lambda a: a.update(y_test=np.full(12, b"\xff")), "not UTF-8 text"),
        (lambda a: a.update(y_test=np.full(12, "a" * 1001)), "1,001 characters"),
        (lambda a: a.update(num_classes=np.asarray(4)), "num_classes is 4 but the labels name 3"),
        (
            lambda a: a.update(y_train=np.arange(60) % 3, y_test=np.full(12, 1j)),
            "complex128; give integer class indices or class names",
        ),
    ],
)
def test_bad_names_are_refused_in_one_line(change, message: str) -> None:
    arrays = named_arrays()
    change(arrays)
    with pytest.raises(LthError, match=message) as caught:
        build(arrays)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("mine: ")
