"""Tests for the user's own datasets: npz:PATH, tfds:NAME, arrays:FINGERPRINT, and the checks
:func:`lth_tf.data.arrays.dataset_from_arrays` applies to all of them.

Small arrays, real files under tmp_path; TFDS through ``tfds.testing.mock_data`` or a tiny
builder prepared in tmp_path, never the network.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lth_tf  # noqa: F401  (environment for TensorFlow, before anything imports it)
from lth_tf.data import arrays as arrays_lib
from lth_tf.data import tfds_source
from lth_tf.data.arrays import (
    arrays_fingerprint,
    arrays_from_splits,
    arrays_from_tf_dataset,
    dataset_from_arrays,
    save_arrays,
)
from lth_tf.data.sources import check_dataset_name, check_same_data, load_dataset
from lth_tf.errors import LthError
from tests.helpers import QUIET, closed_port_url, write_idx


def make_arrays(n_train: int = 50, n_test: int = 8, shape=(4, 4, 1), classes: int = 3) -> dict:
    rng = np.random.default_rng(5)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }


def build(arrays: dict):
    return dataset_from_arrays("mine", arrays, "mine", {"kind": "test"})


# ---------------------------------------------------------------- dataset_from_arrays


def test_held_out_validation_is_the_fixed_permutations_first_examples() -> None:
    arrays = make_arrays(n_train=50)
    ds = build(arrays)
    order = np.random.default_rng(0).permutation(50)
    held_out, kept = order[:5], np.sort(order[5:])  # 10% of 50
    np.testing.assert_array_equal(ds.val_images, arrays["x_train"][held_out])
    np.testing.assert_array_equal(ds.val_labels, arrays["y_train"][held_out])
    np.testing.assert_array_equal(ds.train_images, arrays["x_train"][kept])
    np.testing.assert_array_equal(ds.train_labels, arrays["y_train"][kept])
    np.testing.assert_array_equal(ds.test_images, arrays["x_test"])
    assert ds.provenance == {
        "kind": "test",
        "validation": "5 of 50 training examples held out (permutation seed 0)",
        "num_classes": 3,
    }
    assert ds.input_shape == (4, 4, 1) and ds.num_classes == 3
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert [arrays_lib.validation_count(n) for n in (2, 14, 16, 100_000)] == [1, 1, 2, 5000]


def test_given_validation_split_any_shape_and_dtype() -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.random((6, 7)),  # float64 feature rows: rank-1 examples
        "y_train": np.array([0.0, 1, 2, 3, 4, 0]),  # integer-valued floats
        "x_val": rng.random((2, 7)),
        "y_val": np.array([1, 2]),
        "x_test": rng.random((3, 7)),
        "y_test": np.array([4, 4, 4], np.uint8),
    }
    ds = build(arrays)
    assert ds.input_shape == (7,) and ds.num_classes == 5  # max label 4, + 1
    assert ds.train_images.dtype == ds.val_images.dtype == ds.test_images.dtype == np.float32
    np.testing.assert_array_equal(ds.train_images, arrays["x_train"].astype(np.float32))
    np.testing.assert_array_equal(ds.val_labels, [1, 2])
    assert ds.train_labels.dtype == ds.test_labels.dtype == np.int64
    assert ds.provenance["validation"] == "x_val/y_val"
    for dtype in (np.uint16, np.int32, np.float16, np.float32):
        small = make_arrays(shape=(3, 5))
        small["x_train"] = small["x_train"].astype(dtype)
        small["x_test"] = small["x_test"].astype(dtype)
        assert build(small).train_images.dtype == dtype
    # One class cannot make a classifier (it would train to "100% accuracy").
    with pytest.raises(LthError, match="only the class 0; a classifier needs"):
        build(make_arrays(classes=1))


def test_one_hot_labels_and_num_classes_entry() -> None:
    arrays = make_arrays(classes=3)
    arrays["y_train"] = np.eye(6, dtype=np.float32)[arrays["y_train"]]
    ds = build(arrays)
    # Rows of a 6-wide one-hot: class indices, and 6 classes though only 0..2 occur.
    order = np.random.default_rng(0).permutation(50)
    np.testing.assert_array_equal(ds.train_labels, (np.arange(50) % 3)[np.sort(order[5:])])
    assert ds.num_classes == 6 and ds.train_labels.dtype == np.int64
    plain = make_arrays(classes=3)
    assert build({**plain, "num_classes": np.asarray(10)}).num_classes == 10


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("y_test"), r"missing y_test \(present: x_test, x_train, y_train\)"),
        (lambda a: a.update(x_validation=a["x_test"]), "unexpected x_validation"),
        (lambda a: a.update(x_val=a["x_test"]), "x_val given without y_val"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "x_train has 50 examples but y_train"),
        (lambda a: a.update(x_test=a["x_test"][:, :3]), r"x_test examples have shape \(3, 4, 1\)"),
        (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "x_test is empty"),
        (lambda a: a.update(y_test=np.ones((8, 3))), "y_test has shape .* not one-hot"),
        (lambda a: a.update(y_test=np.full(8, -1)), "y_test holds negative label -1"),
        (lambda a: a.update(y_test=np.full(8, 0.5)), "y_test holds non-integer values"),
        (lambda a: a.update(num_classes=np.asarray(2)), "y_train holds label 2, but num_classes"),
        (lambda a: a.update(num_classes=np.asarray([3, 4])), "num_classes is"),
        (lambda a: a.update(x_train=a["x_train"] > 9), "x_train is bool"),
        (lambda a: a.update(x_test=a["x_test"] * 1j), "x_test is complex128"),
        (lambda a: a.update(x_test=a["x_test"].astype(object)), "x_test is object"),
        (lambda a: a.update(x_test=np.arange(8)), r"x_test has shape \(8,\)"),
        (lambda a: a.update(x_test=np.full((8, 4, 4, 1), np.nan)), "x_test holds NaN"),
        # One example is one class: refused before the validation split would leave none.
        (lambda a: a.update(x_train=a["x_train"][:1], y_train=a["y_train"][:1]), "only the class"),
        (lambda a: a.update(y_train=np.full(50, 7)), "y_train holds only the class 7"),
        (lambda a: a.update(y_test=np.full(8, 1e20)), "y_test holds label 100000000000000000000"),
        (lambda a: a.update(y_test=np.full(8, 2**63 + 5, np.uint64)), "class indices go up to"),
        (lambda a: a["y_train"].__setitem__(0, 100000), "100,001 classes would be inferred"),
        (lambda a: a.update(x_test=np.zeros((8, 0))), r"x_test has shape \(8, 0\)"),
    ],
)
def test_bad_arrays_are_refused_in_one_line(change, message: str) -> None:
    arrays = make_arrays()
    change(arrays)
    with pytest.raises(LthError, match=message) as caught:
        build(arrays)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("mine: ")


def test_fingerprint_depends_on_values_not_on_storage(tmp_path: Path) -> None:
    arrays = make_arrays()
    same = {key: value.copy() for key, value in reversed(arrays.items())}
    assert arrays_fingerprint(arrays) == arrays_fingerprint(same)
    assert len(arrays_fingerprint(arrays)) == 64
    changed = {**arrays, "x_test": arrays["x_test"].copy()}
    changed["x_test"][3, 1, 2, 0] ^= 1
    assert arrays_fingerprint(changed) != arrays_fingerprint(arrays)
    retyped = {**arrays, "y_test": arrays["y_test"].astype(np.int32)}
    assert arrays_fingerprint(retyped) != arrays_fingerprint(arrays)
    fortran = {**arrays, "x_train": np.asfortranarray(arrays["x_train"])}
    assert arrays_fingerprint(fortran) == arrays_fingerprint(arrays)
    # The same arrays, compressed: other file bytes, the same fingerprint.
    fingerprint = save_arrays(tmp_path / "plain.npz", arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    packed, _ = arrays_lib.read_npz(tmp_path / "packed.npz", "test")
    assert (tmp_path / "plain.npz").read_bytes() != (tmp_path / "packed.npz").read_bytes()
    assert arrays_fingerprint(packed) == fingerprint == arrays_fingerprint(arrays)
    with zipfile.ZipFile(tmp_path / "plain.npz") as archive:  # uncompressed, as asked
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


# ---------------------------------------------------------------- npz:PATH


def test_npz_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_arrays(shape=(5, 5))  # 2-D examples, no channel axis
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "my.npz", **arrays, num_classes=4)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("npz:data/my.npz")
    assert ds.name == "npz:data/my.npz"
    assert ds.input_shape == (5, 5) and ds.num_classes == 4
    assert len(ds.train_labels) == 45 and len(ds.val_labels) == 5 and len(ds.test_labels) == 8
    file_hash = hashlib.sha256((tmp_path / "data" / "my.npz").read_bytes()).hexdigest()
    assert ds.provenance == {
        "kind": "npz",
        "path": str(tmp_path / "data" / "my.npz"),
        "sha256": file_hash,
        "validation": "5 of 50 training examples held out (permutation seed 0)",
        "num_classes": 4,
    }


def test_bad_npz_files(tmp_path: Path) -> None:
    def refused(path: Path, message: str) -> None:
        with pytest.raises(LthError, match=message) as caught:
            load_dataset(f"npz:{path}")
        assert "\n" not in str(caught.value) and f"npz:{path}" in str(caught.value)

    refused(tmp_path / "absent.npz", "does not exist")
    refused(tmp_path, "is a directory")
    (tmp_path / "text.npz").write_text("x_train,y_train\n1,2\n")
    refused(tmp_path / "text.npz", "is not an npz file")
    np.save(tmp_path / "one.npy", np.zeros(3))
    refused(tmp_path / "one.npy", "is not an npz file")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "one.npy").read_bytes()[:0] + b"PK\x03\x04xx")
    refused(tmp_path / "cut.npz", "is not a valid npz file")
    pickled = {**make_arrays(), "y_test": np.array([0, "a"], dtype=object)}
    np.savez(tmp_path / "pickled.npz", **pickled)  # np.savez pickles object arrays
    refused(tmp_path / "pickled.npz", "pickled arrays are refused")
    np.savez(tmp_path / "keys.npz", images=np.zeros((3, 2)))
    refused(tmp_path / "keys.npz", r"missing x_train, y_train, x_test, y_test \(present: images")


# ---------------------------------------------------------------- arrays:FINGERPRINT


def test_arrays_saved_with_the_experiment(tmp_path: Path) -> None:
    arrays = make_arrays()
    fingerprint = save_arrays(tmp_path / "exp" / "data.npz", arrays)
    assert fingerprint == arrays_fingerprint(arrays)
    ds = load_dataset(f"arrays:{fingerprint[:16]}", experiment_root=tmp_path / "exp")
    assert ds.name == f"arrays:{fingerprint[:16]}" and ds.provenance["kind"] == "arrays"
    assert ds.provenance["fingerprint"] == fingerprint
    np.testing.assert_array_equal(ds.test_images, arrays["x_test"])

    other = save_arrays(tmp_path / "other" / "data.npz", make_arrays(n_train=40))
    with pytest.raises(LthError, match=r"holds other arrays \(fingerprint " + other[:16]):
        load_dataset(f"arrays:{fingerprint[:16]}", experiment_root=tmp_path / "other")
    with pytest.raises(LthError, match="data.npz does not exist"):
        load_dataset(f"arrays:{fingerprint}", experiment_root=tmp_path)
    with pytest.raises(LthError, match="experiment_root"):
        load_dataset(f"arrays:{fingerprint}")
    with pytest.raises(LthError, match="object array"):
        save_arrays(tmp_path / "x.npz", {"x_train": np.array([None])})


def test_arrays_from_tf_datasets() -> None:
    import tensorflow as tf

    x, y = np.arange(30, dtype=np.float32).reshape(10, 3), np.arange(10) % 2
    single = tf.data.Dataset.from_tensor_slices((x, y))
    for dataset in (single, single.batch(4)):  # unbatched, and batched with a short last one
        got_x, got_y = arrays_from_tf_dataset(dataset)
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
    # Fixed-size batches look like examples of shape (5, 3): say so.
    assert arrays_from_tf_dataset(single.batch(5, drop_remainder=True))[0].shape == (2, 5, 3)
    got_x, _ = arrays_from_tf_dataset(single.batch(5, drop_remainder=True), batched=True)
    np.testing.assert_array_equal(got_x, x)
    with pytest.raises(LthError, match="not \\(x, y\\) pairs"):
        arrays_from_tf_dataset(tf.data.Dataset.from_tensor_slices(x))
    arrays = arrays_from_splits(train=single.batch(3), test=(x[:4], y[:4]))
    assert sorted(arrays) == ["x_test", "x_train", "y_test", "y_train"]
    assert build(arrays).input_shape == (3,)
    with pytest.raises(LthError, match="train: give an \\(x, y\\) pair"):
        arrays_from_splits(train=x, test=(x, y))
    # Examples of several shapes, and a dataset whose own function fails: one line each.
    with pytest.raises(LthError, match="train: x or y is not one array"):
        arrays_from_splits(train=([x[0], x[0, :2]], [0, 1]), test=(x, y))
    ragged = tf.data.Dataset.from_generator(
        lambda: ((x[0, :n], 0) for n in (3, 2)),
        output_signature=(tf.TensorSpec([None]), tf.TensorSpec([], tf.int64)),
    )
    failing = single.map(lambda a, b: (tf.py_function(lambda t: t // 0, [b], tf.int64), b))
    for dataset, reason in (
        (ragged, "Cannot batch tensors.*give examples of one shape"),
        (failing, ".*division by zero.*fix the dataset's own functions"),
    ):
        with pytest.raises(LthError, match=f"reading the tf.data.Dataset failed \\({reason}"):
            arrays_from_tf_dataset(dataset)
    # The shape changes exactly where one chunk of 1,024 examples ends and the next begins.
    chunked = tf.data.Dataset.from_generator(
        lambda: ((np.zeros(3 if i < 1024 else 2, np.float32), 0) for i in range(1030)),
        output_signature=(tf.TensorSpec([None]), tf.TensorSpec([], tf.int64)),
    )
    with pytest.raises(LthError, match=r"Dataset's x differ in shape \(\(2,\), \(3,\)\)"):
        arrays_from_tf_dataset(chunked)


# ---------------------------------------------------------------- tfds:NAME


def test_tfds_mock_data_for_another_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_datasets as tfds

    # mock_data never counts a dataset as prepared; pretend the network probe succeeded.
    monkeypatch.setattr(tfds_source, "probe_network", lambda url, timeout=3.0: (True, "mock"))
    with tfds.testing.mock_data(num_examples=30):
        ds = load_dataset("tfds:cifar100", data_dir=str(tmp_path))
    assert ds.name == "tfds:cifar100" and ds.num_classes == 100
    assert ds.input_shape == (32, 32, 3) and ds.train_images.dtype == np.uint8
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (27, 3, 30)
    assert ds.provenance["kind"] == "tfds" and ds.provenance["name"] == "cifar100"
    assert ds.provenance["splits"] == {"train": "train", "validation": None, "test": "test"}
    assert ds.provenance["version"] == "3.0.2" and ds.provenance["num_classes"] == 100


def test_tfds_offline_without_a_prepared_copy_is_one_quick_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tfds_source, "GENERIC_PROBE_URL", closed_port_url())
    with pytest.raises(LthError, match="no prepared copy in .* and no network") as caught:
        load_dataset("tfds:cifar100", data_dir=str(tmp_path))
    assert "\n" not in str(caught.value) and str(caught.value).startswith("tfds:cifar100: ")
    with pytest.raises(LthError, match="tfds:no_such_dataset_here: TFDS has no dataset"):
        load_dataset("tfds:no_such_dataset_here", data_dir=str(tmp_path))


def test_tfds_split_roles() -> None:
    choose = tfds_source._choose_splits
    assert choose(["train", "validation", "test"], "s") == {
        "train": "train",
        "validation": "validation",
        "test": "test",
    }
    assert choose(["validation", "train"], "s")["test"] == "validation"
    assert choose(["train", "validation"], "s")["validation"] is None
    with pytest.raises(LthError, match=r"neither a 'test' nor a 'validation' split \(it has train"):
        choose(["train", "extra"], "s")


@functools.cache
def tiny_builder_class() -> type:
    """A TFDS builder prepared into tmp_path with no network: a real copy with real splits.
    Defined once: TFDS registers a builder class by name when the class is created."""
    import tensorflow_datasets as tfds

    class LthTinyClasses(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.2.0")

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Tensor(shape=(3, 2), dtype=np.float32),
                        "label": tfds.features.ClassLabel(num_classes=4),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            sizes = {"train": 12, "validation": 4, "test": 5}
            return {split: self._generate_examples(size) for split, size in sizes.items()}

        def _generate_examples(self, count):
            for i in range(count):
                yield i, {"image": np.full((3, 2), i, np.float32), "label": i % 4}

    return LthTinyClasses


def test_tfds_prepared_copy_and_version_check(tmp_path: Path) -> None:
    import tensorflow_datasets as tfds

    tiny_builder_class()
    tfds.builder("lth_tiny_classes", data_dir=str(tmp_path)).download_and_prepare()
    ds = load_dataset("tfds:lth_tiny_classes:1.2.0", data_dir=str(tmp_path))
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (12, 4, 5)
    assert ds.input_shape == (3, 2) and ds.num_classes == 4
    assert sorted(ds.train_images[:, 0, 0].tolist()) == list(range(12))
    assert ds.provenance["splits"]["validation"] == "validation"
    assert ds.provenance["version"] == "1.2.0" and ds.provenance["validation"] == "x_val/y_val"
    check_same_data(ds.provenance, ds, tmp_path)
    older = {**ds.provenance, "version": "1.1.0"}
    with pytest.raises(
        LthError, match="version 1.2.0 now but was 1.1.0 .* ask for tfds:lth_tiny_classes:1.1.0,"
    ):
        check_same_data(older, ds, tmp_path / "exp")


# ---------------------------------------------------------------- names and provenance


def test_check_dataset_name() -> None:
    assert check_dataset_name("cifar10") == "cifar10"
    assert check_dataset_name("npz:./data//my.npz") == "npz:data/my.npz"
    assert check_dataset_name("tfds:emnist/letters:3.*.*") == "tfds:emnist/letters:3.*.*"
    assert check_dataset_name("arrays:0123abcd") == "arrays:0123abcd"
    for bad in ("imagenet", "npz:", "tfds:", "tfds:Bad Name", "arrays:xyz", "csv:a.csv"):
        with pytest.raises(LthError) as caught:
            check_dataset_name(bad)
        assert str(caught.value) == (
            f"--dataset: unknown dataset {bad!r}; choose mnist, fashion_mnist, cifar10, "
            "npz:PATH or tfds:NAME"
        )


def test_dataset_flag_is_checked_and_normalised() -> None:
    from absl import flags

    from pipelines.hparam_flags import define_hparam_flags, hparams_from_flags

    flag_values = flags.FlagValues()
    define_hparam_flags(flag_values)
    flag_values(["imp", "--dataset=npz:./runs/../data.npz"])
    assert hparams_from_flags(flag_values).dataset.name == "npz:data.npz"
    flag_values.unparse_flags()
    flag_values(["imp", "--dataset=svhn"])
    with pytest.raises(LthError, match="unknown dataset 'svhn'"):
        hparams_from_flags(flag_values)


def test_check_same_data_refuses_a_changed_npz(tmp_path: Path) -> None:
    path = tmp_path / "my.npz"
    np.savez(path, **make_arrays())
    saved = load_dataset(f"npz:{path}").provenance
    np.savez(path, **make_arrays(n_train=51))
    now = load_dataset(f"npz:{path}")
    check_same_data(now.provenance, now, tmp_path)  # unchanged: passes
    with pytest.raises(LthError) as caught:
        check_same_data(saved, now, tmp_path / "runs" / "a")
    then_hash, now_hash = saved["sha256"][:8], now.provenance["sha256"][:8]
    assert str(caught.value) == (
        f"npz:{path} changed since {tmp_path / 'runs' / 'a'} was started (sha256 {then_hash}… "
        f"then, {now_hash}… now): restore the file, or start a new --experiment_name"
    )
    # Old experiments (nothing saved) and built-in datasets pass.
    check_same_data({}, now, tmp_path)
    check_same_data(None, now, tmp_path)
    builtin = {"kind": "builtin", "name": "mnist", "source": "elsewhere"}
    check_same_data(builtin, now, tmp_path)
    assert os.path.isabs(now.provenance["path"])


def test_builtin_datasets_record_their_source(mnist_data, idx_dir: Path) -> None:
    from lth_tf.data.arrays import split_arrays

    assert mnist_data.provenance == {
        "kind": "builtin",
        "name": "mnist",
        "source": f"IDX files in {idx_dir}",
        "examples": {"train": 1000, "val": 5000, "test": 500},
        "fingerprint": arrays_lib.arrays_fingerprint(split_arrays(mnist_data)),
    }
    assert mnist_data.input_shape == (28, 28, 1) and len(mnist_data.val_labels) == 5000


@pytest.fixture
def relabelled_dir(tmp_path: Path, idx_dir: Path, mnist_data) -> Path:
    """``idx_dir``'s files with every training label shifted by one: the same dataset's shape
    and sizes, other contents."""
    directory = tmp_path / "relabelled"
    shutil.copytree(idx_dir, directory)
    labels = np.concatenate([mnist_data.train_labels, mnist_data.val_labels])
    write_idx(directory / "train-labels-idx1-ubyte.gz", (labels + 1) % 10)
    return directory


def test_a_builtin_dataset_whose_files_changed_is_refused(
    lenet_runs: Path, relabelled_dir: Path, idx_dir: Path, tmp_path: Path, no_system_dirs: None
) -> None:
    from lth_tf.experiment import ExperimentDir, read_saved
    from lth_tf.lottery.imp import run_imp
    from lth_tf.provenance import experiment_data

    copy = shutil.copytree(lenet_runs / "plain", tmp_path / "runs" / "plain")
    experiment = ExperimentDir(copy)
    saved = read_saved(experiment)
    then = saved.data.provenance["fingerprint"][:8]
    # As export and stability load it: the original files pass, the relabelled ones do not.
    experiment_data(experiment, saved.hparams, str(idx_dir))
    with pytest.raises(LthError) as caught:
        experiment_data(experiment, saved.hparams, str(relabelled_dir))
    message = str(caught.value)
    assert message.startswith(
        f"--data_dir now holds other mnist data than {copy} trained on (fingerprint {then}… then, "
    ), message
    assert message.endswith("point --data_dir at the original files"), message
    assert "\n" not in message
    # A resume (run_imp binds the data before anything trains or is written) may also start
    # anew.
    before = sorted(p.name for p in copy.rglob("*"))
    options = dataclasses.replace(QUIET, data_dir=str(relabelled_dir))
    with pytest.raises(LthError, match="now holds other mnist data than") as caught:
        run_imp(saved.hparams, copy.parent, "plain", options)
    assert str(caught.value).endswith(
        "point --data_dir at the original files, or start a new --experiment_name"
    )
    assert sorted(p.name for p in copy.rglob("*")) == before


def test_experiments_recorded_before_fingerprints_pass(mnist_data) -> None:
    old = {"kind": "builtin", "name": "mnist", "source": mnist_data.source}
    check_same_data(old, mnist_data, "runs/old")
    other = {**mnist_data.provenance, "fingerprint": "0" * 64}
    with pytest.raises(LthError, match="fingerprint 00000000… then"):
        check_same_data(other, mnist_data, "runs/new")


def test_augmentation_needs_images_with_height_width_and_channels() -> None:
    import tensorflow as tf

    from lth_tf.data.pipeline import check_augmentable, gather_batch, training_batches

    check_augmentable((8, 8, 3))
    rows, labels = np.zeros((10, 6), np.float32), np.arange(10)
    with pytest.raises(LthError, match=r"--augment shifts and flips .* shape \(6,\); leave"):
        training_batches(rows, labels, 4, seed=0, augment=True)
    training_batches(rows, labels, 4, seed=0, augment=False)  # without augmentation: fine
    with pytest.raises(LthError, match=r"shape \(5, 5\)"):
        gather_batch(tf.zeros((4, 5, 5)), tf.range(4), tf.range(2), 0, 0, augment=True)


def test_an_npz_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    arrays = make_arrays()
    # 150 MB of zeros deflate to about 150 KB: far more than real data ever inflates.
    arrays["x_train"] = np.zeros((50, 3_000_000), np.uint8)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **arrays)
    with pytest.raises(LthError, match=r"would inflate to 15\d,\d{3},\d{3} bytes .* np\.savez"):
        arrays_lib.read_npz(bomb, "npz:bomb.npz")
    np.savez(tmp_path / "plain.npz", **arrays)  # the same arrays stored plainly are fine
    assert arrays_lib.read_npz(tmp_path / "plain.npz", "npz:plain.npz")[0]["x_train"].shape[1]


def test_an_npz_path_that_is_no_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(LthError, match="is not a regular file"):
        arrays_lib.read_npz(fifo, "npz:data.npz")
    zero = tmp_path / "zero.npz"
    zero.symlink_to("/dev/zero")
    with pytest.raises(LthError, match="is not a regular file"):
        arrays_lib.read_npz(zero, "npz:zero.npz")
