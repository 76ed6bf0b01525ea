"""The user's own data as numpy arrays: checked, split and fingerprinted.

:func:`dataset_from_arrays` is the one entry point every custom source (``npz:``, ``tfds:``,
``arrays:``) goes through, so they all get the same checks and the same validation split.
The arrays are named ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val`` and a
scalar ``num_classes``. Nothing here imports TensorFlow until a ``tf.data.Dataset`` is read.

>>> rng = np.random.default_rng(0)
>>> arrays = {"x_train": rng.random((50, 3)), "y_train": np.arange(50) % 4,
...           "x_test": rng.random((10, 3)), "y_test": np.arange(10) % 4}
>>> ds = dataset_from_arrays("mine", arrays, "tests", {"kind": "test"})
>>> ds.input_shape, ds.num_classes, len(ds.train_labels), len(ds.val_labels)
((3,), 4, 45, 5)

Labels may also be class names (str, or bool): they become indices in the names' sorted order.

>>> named = {**arrays, "y_train": np.array(["cat", "dog"])[np.arange(50) % 2],
...          "y_test": np.array(["dog", "cat"] * 5)}
>>> dataset_from_arrays("mine", named, "tests", {}).classes
('cat', 'dog')
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from lth_tf import io
from lth_tf.config import HOLDOUT_AUTO
from lth_tf.data.dataset import ImageDataset, arrays_fingerprint, held_out_count
from lth_tf.errors import LthError, first_line

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_KEYS = ("x_val", "y_val", "num_classes")
# Class indices beyond this are a data error, not a classifier (and would not survive int64).
MAX_LABEL = 1_000_000
# Labels of these dtype kinds are class names, not indices: str, bytes (UTF-8 text), bool, and
# object arrays of str or bytes (what pandas and tf.data give for text).
NAME_KINDS = "USbO"
# A class name longer than this is a sentence, not a name: some column other than the labels.
MAX_NAME_LENGTH = 1000
# An npz member may inflate to this many times the file's size (plus a floor): real data
# compresses 2-20x; more is a decompression bomb. Arrays saved uncompressed (np.savez) never are.
MAX_INFLATION = 200
INFLATION_FLOOR = 64 << 20
# Held out of train when no x_val/y_val are given and --holdout=auto: 10%, at most the paper's
# 5,000.
MAX_VALIDATION_EXAMPLES = 5000
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0

_SPLITS = ("train", "val", "test")


def validation_count(num_train: int) -> int:
    """How many of `num_train` training examples are held out when no x_val/y_val are given.

    >>> validation_count(100), validation_count(4), validation_count(1_000_000)
    (10, 1, 5000)
    """
    return min(MAX_VALIDATION_EXAMPLES, max(1, round(VALIDATION_FRACTION * num_train)))


def dataset_from_arrays(
    name: str,
    arrays: Mapping[str, Any],
    source: str,
    provenance: dict[str, Any],
    holdout: str = HOLDOUT_AUTO,
) -> ImageDataset:
    """Checks `arrays` and builds the dataset; `source` prefixes every error message.

    Examples (x) may have any shape of rank >= 1 and any numeric dtype (float64 becomes
    float32; bool, complex and object arrays are refused); the model gets them cast to float32,
    unscaled. Labels (y) are 1-D class indices (integer-valued floats too) or one-hot rows. The
    number of classes is the ``num_classes`` entry, else the one-hot width, else the largest
    label + 1 (at least 2). Labels that are class names (str, bytes, bool: every split of one
    type) become indices in the sorted order of the distinct names (train, val and test
    together; a val or test name that train lacks is refused); the dataset's ``classes`` holds
    them, and is None for class indices. Without x_val/y_val, ``holdout`` training examples
    (``"auto"``: :func:`validation_count`; ``"0"``: none, no validation split) are held out: the
    first of ``np.random.default_rng(0).permutation(n_train)``, in that order; the rest keep
    their order. With them, ``holdout`` changes nothing. The returned provenance is
    `provenance` plus "validation" and "num_classes".

    >>> x, y = np.zeros((20, 2, 2), np.uint8), np.eye(3)[np.arange(20) % 3]
    >>> ds = dataset_from_arrays("d", {"x_train": x, "y_train": y, "x_test": x, "y_test": y},
    ...                          "d", {})
    >>> ds.num_classes, ds.provenance["validation"]
    (3, '2 of 20 training examples held out (permutation seed 0)')
    """
    _check_keys(arrays, source)
    given_classes = _num_classes_entry(arrays, source)
    arrays, classes = encode_class_names(arrays, source)
    if classes is not None and given_classes not in (None, len(classes)):
        raise LthError(
            f"{source}: num_classes is {given_classes} but the labels name {len(classes)} "
            "classes; make them agree (or leave num_classes out)"
        )
    images, labels, widths = {}, {}, {}
    for split in _SPLITS:
        if f"x_{split}" not in arrays:
            continue
        images[split] = _checked_examples(arrays[f"x_{split}"], f"x_{split}", source)
        labels[split], widths[split] = _checked_labels(arrays[f"y_{split}"], f"y_{split}", source)
        if len(images[split]) != len(labels[split]):
            raise LthError(
                f"{source}: x_{split} has {len(images[split])} examples but y_{split} has "
                f"{len(labels[split])} labels; give one label per example"
            )
        if not len(images[split]):
            raise LthError(f"{source}: x_{split} is empty; give it at least one example")
    shape = images["train"].shape[1:]
    for split, split_images in images.items():
        if split_images.shape[1:] != shape:
            raise LthError(
                f"{source}: x_{split} examples have shape {split_images.shape[1:]} but x_train "
                f"examples {shape}; give every split examples of one shape"
            )
    num_classes = _num_classes(labels, widths, given_classes, source)

    if "val" in images:
        validation = "x_val/y_val"
        train_x, train_y = images["train"], labels["train"]
        val_x, val_y = images["val"], labels["val"]
    else:
        num_train = len(labels["train"])
        held_out = held_out_count(holdout, num_train, validation_count(num_train), source)
        order = np.random.default_rng(VALIDATION_SEED).permutation(num_train)
        val_index, train_index = order[:held_out], np.sort(order[held_out:])
        train_x, train_y = images["train"][train_index], labels["train"][train_index]
        val_x, val_y = images["train"][val_index], labels["train"][val_index]
        validation = (
            f"{held_out} of {num_train} training examples held out (permutation seed "
            f"{VALIDATION_SEED})"
        )
    return ImageDataset(
        name=name,
        train_images=train_x,
        train_labels=train_y,
        val_images=val_x,
        val_labels=val_y,
        test_images=images["test"],
        test_labels=labels["test"],
        num_classes=num_classes,
        source=source,
        provenance={**provenance, "validation": validation, "num_classes": num_classes},
        classes=classes,
    )


def _check_keys(arrays: Mapping[str, Any], source: str) -> None:
    present = ", ".join(sorted(arrays)) or "none"
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise LthError(
            f"{source}: missing {', '.join(missing)} (present: {present}); give x_train, "
            "y_train, x_test, y_test (and optionally x_val, y_val, num_classes)"
        )
    unknown = [key for key in arrays if key not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        # A misspelt x_val would otherwise be ignored, and validation held out of train.
        raise LthError(
            f"{source}: unexpected {', '.join(sorted(unknown))} (present: {present}); the "
            f"arrays are {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}: rename or drop the others"
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        given, absent = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise LthError(f"{source}: {given} given without {absent}; give both or neither")


def _checked_examples(value: Any, key: str, source: str) -> np.ndarray:
    """The examples as an array of a dtype the pipeline can cast to float32."""
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind not in "uif":
        raise LthError(
            f"{source}: {key} is {array.dtype}; give numbers (unsigned or signed integers, "
            "float16/32/64)"
        )
    if array.ndim < 2 or 0 in array.shape[1:]:
        raise LthError(
            f"{source}: {key} has shape {array.shape}; give [examples, ...] with at least one "
            "value per example"
        )
    if kind == "f":
        if array.dtype == np.float64:
            # float64 would double the memory for a model that computes in float32 anyway.
            array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise LthError(f"{source}: {key} holds NaN or infinite values; remove or fix them")
    return array


def _checked_labels(value: Any, key: str, source: str) -> tuple[np.ndarray, int | None]:
    """int64 class indices, and the one-hot width when the labels were one-hot rows."""
    array = np.asarray(value)
    if array.dtype.kind not in "uif":
        raise LthError(
            f"{source}: {key} is {array.dtype}; give integer class indices or class names (str)"
        )
    width = None
    if array.ndim == 2:
        is_one_hot = np.isin(array, (0, 1)).all() and (array.sum(axis=1) == 1).all()
        if not is_one_hot:
            raise LthError(
                f"{source}: {key} has shape {array.shape} but is not one-hot (every row exactly "
                "one 1, else zeros); give 1-D class indices or one-hot rows (rows of indices "
                "are batches: unbatch() a tf.data.Dataset batched with drop_remainder=True)"
            )
        width = array.shape[1]
        array = array.argmax(axis=1)
    elif array.ndim != 1:
        raise LthError(
            f"{source}: {key} has shape {array.shape}; give 1-D class indices or 2-D one-hot rows"
        )
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise LthError(f"{source}: {key} holds non-integer values; give class indices")
    if len(array) and array.min() < 0:
        raise LthError(f"{source}: {key} holds negative label {array.min()}; classes start at 0")
    # Before the cast, which would turn 1e20 or 2**63 + 5 into negative numbers.
    if len(array) and array.max() >= MAX_LABEL:
        raise LthError(
            f"{source}: {key} holds label {array.max():.0f}; class indices go up to "
            f"{MAX_LABEL - 1:,} at most: fix the labels"
        )
    return array.astype(np.int64), width


def encode_class_names(
    arrays: Mapping[str, Any], source: str
) -> tuple[Mapping[str, Any], tuple[str, ...] | None]:
    """Labels given as class names become int64 indices in the names' sorted order: (the
    arrays with the y's replaced, the names); (the arrays as they are, None) for numbers.

    The names are those of every split; a val or test name that y_train never has is refused,
    as is a mix of names and numbers (or of str and bool). bool labels are the names "False"
    and "True".

    >>> arrays = {"y_train": np.array(["b", "a", "b"]), "y_test": np.array(["a"])}
    >>> encoded, names = encode_class_names(arrays, "mine")
    >>> encoded["y_train"], names
    (array([1, 0, 1]), ('a', 'b'))
    """
    keys = [f"y_{split}" for split in _SPLITS if f"y_{split}" in arrays]
    raw = {key: np.asarray(arrays[key]) for key in keys}
    named = [key for key in keys if raw[key].dtype.kind in NAME_KINDS]
    if not named:
        return arrays, None  # class indices: exactly as before names existed
    names = {key: _label_names(raw[key], key, source) for key in named}
    numeric = [key for key in keys if key not in names]
    kinds = {key: "bool" if raw[key].dtype.kind == "b" else "str" for key in named}
    if numeric or len(set(kinds.values())) > 1:
        # 1 and "1" (or True and "True") in one dataset: which class is which is anyone's guess.
        other = numeric[0] if numeric else next(k for k in named if kinds[k] != kinds[named[0]])
        what = f"numbers ({raw[other].dtype})" if numeric else f"class names ({kinds[other]})"
        raise LthError(
            f"{source}: {named[0]} holds class names ({kinds[named[0]]}) but {other} holds "
            f"{what}; give every split's labels as one type"
        )
    train = np.unique(names["y_train"])
    if not len(train):
        raise LthError(f"{source}: y_train is empty; give it at least one example")
    if len(train) < 2:
        raise LthError(
            f"{source}: y_train holds only the class {str(train[0])!r}; a classifier needs "
            "examples of at least 2 classes"
        )
    for key in keys[1:]:
        unseen = np.setdiff1d(names[key], train)
        if len(unseen):
            more = f" (and {len(unseen) - 1} more)" if len(unseen) > 1 else ""
            raise LthError(
                f"{source}: {key} holds the class {str(unseen[0])!r}{more}, which y_train never "
                "has: a model cannot learn a class it never sees; drop those examples or give "
                "y_train some"
            )
    classes = np.unique(np.concatenate(list(names.values())))
    if len(classes) > MAX_LABEL:
        raise LthError(
            f"{source}: the labels name {len(classes):,} classes, more than {MAX_LABEL:,}: are "
            "they labels, or another column?"
        )
    # searchsorted on the sorted names: each label's index among them.
    encoded = {key: np.searchsorted(classes, names[key]).astype(np.int64) for key in keys}
    return {**arrays, **encoded}, tuple(str(name) for name in classes)


def _label_names(array: np.ndarray, key: str, source: str) -> np.ndarray:
    """1-D str (numpy ``<U``) names of one split's labels, checked."""
    if array.ndim != 1:
        raise LthError(
            f"{source}: {key} has shape {array.shape}; give class names as a 1-D array, one "
            "per example"
        )
    kind = array.dtype.kind
    if kind == "O":
        types = {type(item) for item in array.tolist()}
        if types <= {bytes}:
            array = array.astype(bytes)
            kind = "S"
        elif all(issubclass(kind_of, str) for kind_of in types):
            array = array.astype(str)
        else:
            odd = next(t for t in types if not issubclass(t, str | bytes))
            raise LthError(
                f"{source}: {key} is an object array holding {odd.__name__} values; give class "
                "names as np.array(labels, dtype=str), or integer class indices"
            )
    if kind == "S":
        try:
            array = np.char.decode(array, "utf-8")
        except UnicodeDecodeError:
            raise LthError(
                f"{source}: {key} holds bytes that are not UTF-8 text; give class names as str"
            ) from None
    elif kind == "b":
        array = array.astype(str)  # "False", "True": sorted as the values are
    if len(array):
        lengths = np.char.str_len(array)
        if lengths.min() == 0:
            raise LthError(
                f"{source}: {key} holds an empty class name (example {int(lengths.argmin())}); "
                "give every example its class"
            )
        if lengths.max() > MAX_NAME_LENGTH:
            raise LthError(
                f"{source}: {key} holds a class name of {int(lengths.max()):,} characters (at "
                f"most {MAX_NAME_LENGTH:,}); are these the labels?"
            )
    return array


def _num_classes_entry(arrays: Mapping[str, Any], source: str) -> int | None:
    if "num_classes" not in arrays:
        return None
    value = np.asarray(arrays["num_classes"])
    if value.ndim != 0 or value.dtype.kind not in "uif" or value != int(value) or value < 2:
        raise LthError(
            f"{source}: num_classes is {value!r}; give one integer >= 2 (or leave it out)"
        )
    return int(value)


def _num_classes(
    labels: dict[str, np.ndarray],
    widths: dict[str, int | None],
    given: int | None,
    source: str,
) -> int:
    one_hot = {width for width in widths.values() if width is not None}
    if len(one_hot) > 1:
        raise LthError(
            f"{source}: the one-hot labels have different widths ({sorted(one_hot)}); give every "
            "split the same classes"
        )
    if given is not None and one_hot and one_hot != {given}:
        raise LthError(
            f"{source}: num_classes is {given} but the one-hot labels have {one_hot.pop()} "
            "columns; make them agree"
        )
    for split, split_labels in labels.items():
        if given is not None and split_labels.max() >= given:
            raise LthError(
                f"{source}: y_{split} holds label {split_labels.max()}, but num_classes is "
                f"{given} (labels 0..{given - 1}); fix the labels or num_classes"
            )
    present = np.unique(labels["train"])
    if len(present) < 2:
        raise LthError(
            f"{source}: y_train holds only the class {present[0]}; a classifier needs "
            "examples of at least 2 classes"
        )
    if given is not None:
        return given
    if one_hot:
        # The width says how many classes there are even if the last never occurs.
        return one_hot.pop()
    inferred = max(int(split_labels.max()) for split_labels in labels.values()) + 1
    distinct = len(np.unique(np.concatenate(list(labels.values()))))
    if inferred > 2 * distinct + 8:
        # A stray large label would build a model with that many outputs.
        raise LthError(
            f"{source}: the labels take {distinct} distinct values but the largest is "
            f"{inferred - 1}, so {inferred:,} classes would be inferred; fix the stray labels, "
            "or give num_classes in the npz if that many classes are meant"
        )
    return inferred


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, Any]) -> str:
    """Writes `arrays` as an uncompressed npz, atomically; returns :func:`arrays_fingerprint`.

    >>> fingerprint = save_arrays("runs/mine/data.npz", arrays)  # doctest: +SKIP
    >>> load_dataset(f"arrays:{fingerprint[:16]}", experiment_root="runs/mine")  # doctest: +SKIP
    """
    values = {key: np.asarray(value) for key, value in arrays.items()}
    fingerprint = arrays_fingerprint(values)  # refuses object arrays, which np.savez pickles
    io.write_npz(path, values)
    return fingerprint


def read_npz(path: str | os.PathLike, source: str) -> tuple[dict[str, np.ndarray], str]:
    """Reads an npz file without unpickling anything: (arrays, sha256 of the file's bytes).

    >>> arrays, sha256 = read_npz("data/my.npz", "npz:data/my.npz")  # doctest: +SKIP
    """
    if os.path.isdir(path):
        raise LthError(f"{source}: {path} is a directory; give the path of an .npz file")
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        # A FIFO or a device (/dev/zero) would be read forever.
        raise LthError(f"{source}: {path} is not a regular file; give the path of an .npz file")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            digest.update(magic)
            # In chunks: the file may be as large as memory, and the arrays come next.
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise LthError(f"{source}: {path} does not exist; give the path of an .npz file") from None
    except OSError as error:
        raise LthError(f"{source}: cannot read {path}: {error.strerror or error}") from None
    # np.load reads anything that is not zip or .npy as a pickle (and refuses it): ask first.
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise LthError(
            f"{source}: {path} is not an npz file (it starts with {magic.hex() or 'nothing'}, "
            "not a zip archive); save the arrays with np.savez"
        )
    _check_inflation(path, source)
    try:
        # allow_pickle=False: a data file must never be able to run code.
        with np.load(path, allow_pickle=False) as archive:
            arrays = {}
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as error:
                    if "pickle" in str(error).lower():
                        raise LthError(_pickled_message(source, path, key)) from None
                    raise
    except LthError:
        raise
    except ValueError as error:
        raise LthError(
            f"{source}: {path} is not a valid npz file ({error}); save it again with np.savez"
        ) from None
    except Exception as error:  # noqa: BLE001  (zipfile and np.load raise many types)
        raise LthError(
            f"{source}: {path} is not a valid npz file ({type(error).__name__}: {error}); save "
            "it again with np.savez"
        ) from None
    return arrays, digest.hexdigest()


def _pickled_message(source: str, path: str | os.PathLike, key: str) -> str:
    """An object array in an npz: np.savez pickled it, and unpickling can run code."""
    fix = (
        "save class names as np.array(labels, dtype=str) (numpy str arrays need no pickle), or "
        "integer class indices"
        if key.startswith("y_")
        else "save numeric arrays only"
    )
    return (
        f"{source}: {path} holds a pickled (object) array {key}, and pickled arrays are refused "
        f"because loading one can run code; {fix}"
    )


def _check_inflation(path: str | os.PathLike, source: str) -> None:
    """Refuses an npz whose members would inflate far beyond the file (a decompression bomb),
    from the sizes its zip directory declares, before anything is decompressed."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # np.load says what is wrong with it
    size = os.path.getsize(path)
    if declared > MAX_INFLATION * size + INFLATION_FLOOR:
        raise LthError(
            f"{source}: {path} would inflate to {declared:,} bytes from {size:,} (more than "
            f"{MAX_INFLATION} times); if the arrays are real, save them uncompressed with "
            "np.savez"
        )


def arrays_from_tf_dataset(
    dataset: Any, batched: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copies a ``tf.data.Dataset`` of ``(x, y)`` pairs into two numpy arrays.

    With ``batched=None`` the dataset counts as batched when both x and y have a first
    dimension of unknown size (what ``Dataset.batch`` gives), and is unbatched first; any
    other element is one example. Pass ``batched=True`` for ``batch(drop_remainder=True)``.

    >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((5, 2)), np.arange(5)))  # doctest: +SKIP
    >>> [a.shape for a in arrays_from_tf_dataset(ds.batch(2))]  # doctest: +SKIP
    [(5, 2), (5,)]
    """
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise LthError(
            f"the tf.data.Dataset yields {spec}, not (x, y) pairs; map it to (x, y) pairs"
        )
    import tensorflow as tf

    # It is copied into memory whole: an endless one (``repeat()``) would fill it.
    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise LthError(
            "the tf.data.Dataset is infinite (repeat() without a count); pass it without "
            "repeat(): IMP draws its own epochs from the examples"
        )
    if batched is None:
        batched = all(s.shape.rank and s.shape[0] is None for s in spec)
    if batched:
        dataset = dataset.unbatch()
    images, labels = [], []
    # Copying in chunks: one numpy conversion per 1,024 examples, not per example.
    try:
        for x, y in dataset.batch(1024).as_numpy_iterator():
            images.append(x)
            labels.append(y)
    except tf.errors.OpError as error:  # its examples differ in shape, or its own code fails
        shapes = "Cannot batch tensors with different shapes" in str(error)
        advice = "give examples of one shape" if shapes else "fix the dataset's own functions"
        raise LthError(
            f"reading the tf.data.Dataset failed ({first_line(error)}); {advice}"
        ) from None
    if not images:
        raise LthError("the tf.data.Dataset is empty; give at least one example")
    try:
        return np.concatenate(images), np.concatenate(labels)
    except ValueError:  # the shape changed from one chunk of 1,024 examples to the next
        x_shapes = {chunk.shape[1:] for chunk in images}
        which, shapes = (
            ("x", x_shapes) if len(x_shapes) > 1 else ("y", {c.shape[1:] for c in labels})
        )
        shown = ", ".join(map(str, sorted(shapes)))
        raise LthError(
            f"the tf.data.Dataset's {which} differ in shape ({shown}); give examples of one shape"
        ) from None


def arrays_from_splits(train: Any, test: Any, validation: Any = None) -> dict[str, np.ndarray]:
    """The arrays dict of :func:`dataset_from_arrays` from ``(x, y)`` pairs or tf.data Datasets.

    >>> arrays = arrays_from_splits(train=(x, y), test=test_dataset)  # doctest: +SKIP
    >>> sorted(arrays)  # doctest: +SKIP
    ['x_test', 'x_train', 'y_test', 'y_train']
    """
    arrays: dict[str, np.ndarray] = {}
    for split, value in (("train", train), ("test", test), ("val", validation)):
        if value is None and split == "val":
            continue
        if hasattr(value, "element_spec"):  # a tf.data.Dataset, without importing TF to ask
            x, y = arrays_from_tf_dataset(value)
        elif isinstance(value, tuple | list) and len(value) == 2:
            try:
                x, y = np.asarray(value[0]), np.asarray(value[1])
            except ValueError as error:  # a list of examples of several shapes
                raise LthError(
                    f"{split}: x or y is not one array ({first_line(error, 120)}); give arrays, "
                    "or lists of examples of one shape"
                ) from None
        else:
            raise LthError(
                f"{split}: give an (x, y) pair of arrays or a tf.data.Dataset of (x, y) pairs, "
                f"not {type(value).__name__}"
            )
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays


def split_arrays(data: ImageDataset) -> dict[str, Any]:
    """The dataset's three splits under the npz keys, validation included, so that loading the
    file again gives these very splits (labels as their class names when they have names)."""

    def labels(indices: np.ndarray) -> np.ndarray:
        return indices if data.classes is None else np.asarray(data.classes)[indices]

    splits = {
        "x_train": data.train_images,
        "y_train": labels(data.train_labels),
        "x_val": data.val_images,
        "y_val": labels(data.val_labels),
        "x_test": data.test_images,
        "y_test": labels(data.test_labels),
    }
    if not len(data.val_labels):
        # --holdout=0: no validation split; an empty x_val would be refused on loading.
        del splits["x_val"], splits["y_val"]
    return splits
