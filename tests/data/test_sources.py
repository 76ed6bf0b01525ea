"""Tests for lth_tf.data.sources: raw IDX / CIFAR-10 binary files, the TFDS path, the errors.

No test needs the network: downloads are either mocked (tfds.testing.mock_data) or made
impossible by pointing the network probe at a closed local port.
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import lth_tf  # noqa: F401  (environment for TensorFlow, before anything imports it)
from lth_tf.data import cifar10_binary, idx, tfds_source
from lth_tf.data.sources import VALIDATION_EXAMPLES, ImageDataset, load_dataset
from lth_tf.errors import LthError
from tests.helpers import ROOT, closed_port_url, write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- helpers


def make_idx_dir(directory: Path, n_train: int, n_test: int, gz: bool, seed: int = 0) -> dict:
    """Writes the four IDX files with random content; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for base, array in arrays.items():
        write_idx(directory / (base + (".gz" if gz else "")), array, gz)
    return arrays


@pytest.fixture
def tfds_loads(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every call of ``tfds.load`` (each refused): offline, TFDS's download retries for
    minutes, so a refusal that is quick must come before it."""
    import tensorflow_datasets as tfds

    calls: list = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise RuntimeError("tfds.load must not be called here")

    monkeypatch.setattr(tfds, "load", refuse)
    return calls


# ---------------------------------------------------------------- real Fashion-MNIST


def test_debian_fashion_mnist_idx_files() -> None:
    if not all((FASHION_DIR / f"{base}.gz").is_file() for base in idx.IDX_FILES):
        pytest.fail(
            f"Fashion-MNIST IDX files missing in {FASHION_DIR}: "
            "run `apt-get update && apt-get install -y dataset-fashion-mnist`"
        )
    ds = load_dataset("fashion_mnist")
    assert isinstance(ds, ImageDataset)
    assert ds.source == f"IDX files in {FASHION_DIR}"
    assert ds.train_images.shape == (55_000, 28, 28, 1)
    assert ds.val_images.shape == (5_000, 28, 28, 1)
    assert ds.test_images.shape == (10_000, 28, 28, 1)
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    for images in (ds.train_images, ds.val_images, ds.test_images):
        assert images.dtype == np.uint8
    for labels in (ds.train_labels, ds.val_labels, ds.test_labels):
        assert labels.dtype == np.int64
        assert set(np.unique(labels)) == set(range(10))
    # Validation = the last 5,000 of the raw train file, read here without read_idx.
    raw_images = np.frombuffer(
        gzip.decompress((FASHION_DIR / "train-images-idx3-ubyte.gz").read_bytes()),
        np.uint8,
        offset=16,
    ).reshape(60_000, 28, 28, 1)
    raw_labels = np.frombuffer(
        gzip.decompress((FASHION_DIR / "train-labels-idx1-ubyte.gz").read_bytes()),
        np.uint8,
        offset=8,
    )
    np.testing.assert_array_equal(ds.val_images, raw_images[-5_000:])
    np.testing.assert_array_equal(ds.val_labels, raw_labels[-5_000:])
    np.testing.assert_array_equal(ds.train_images, raw_images[:55_000])
    np.testing.assert_array_equal(ds.train_labels, raw_labels[:55_000])


# ---------------------------------------------------------------- synthetic IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool, no_system_dirs: None, offline: None) -> None:
    written = make_idx_dir(tmp_path / "mnist", n_train=5_100, n_test=20, gz=gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path))  # found in data_dir/<name>
    assert ds.source == f"IDX files in {tmp_path / 'mnist'}"
    train_x = written["train-images-idx3-ubyte"][..., None]
    train_y = written["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(ds.train_images, train_x[:100])
    np.testing.assert_array_equal(ds.val_images, train_x[100:])
    np.testing.assert_array_equal(ds.train_labels, train_y[:100])
    np.testing.assert_array_equal(ds.val_labels, train_y[100:])
    np.testing.assert_array_equal(ds.test_images, written["t10k-images-idx3-ubyte"][..., None])
    np.testing.assert_array_equal(ds.test_labels, written["t10k-labels-idx1-ubyte"])
    assert len(ds.val_labels) == VALIDATION_EXAMPLES
    assert ds.train_labels.dtype == ds.test_labels.dtype == np.int64
    assert ds.input_shape == (28, 28, 1)


def test_read_idx_multibyte_and_plain_named_gz(tmp_path: Path) -> None:
    # A gunzipped file that kept its .gz name (browsers do that) must still be read.
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "plain.gz", array, gz=False)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "plain.gz"), array)
    # Big-endian int32 (type 0x0C) comes back native-endian.
    values = np.array([1, -2, 70_000], dtype=">i4")
    (tmp_path / "ints").write_bytes(
        bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + values.tobytes()
    )
    result = idx.read_idx(tmp_path / "ints")
    assert result.dtype == np.int32 and result.tolist() == [1, -2, 70_000]


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_file(tmp_path: Path, gz: bool, no_system_dirs: None) -> None:
    make_idx_dir(tmp_path, n_train=5_100, n_test=20, gz=gz)
    victim = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    victim.write_bytes(victim.read_bytes()[:-1000])
    with pytest.raises(LthError, match="train-images-idx3-ubyte") as caught:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert str(victim) in str(caught.value)
    assert "truncated" in str(caught.value) and "\n" not in str(caught.value)


def test_not_idx_and_partial_set(tmp_path: Path, no_system_dirs: None) -> None:
    (tmp_path / "junk").write_bytes(b"<html>not found</html>")
    with pytest.raises(LthError, match="not an IDX file"):
        idx.read_idx(tmp_path / "junk")
    make_idx_dir(tmp_path, n_train=5_100, n_test=20, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(LthError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_too_few_train_examples(tmp_path: Path, no_system_dirs: None) -> None:
    make_idx_dir(tmp_path, n_train=VALIDATION_EXAMPLES, n_test=20, gz=True)
    with pytest.raises(LthError, match="held out for validation"):
        load_dataset("mnist", data_dir=str(tmp_path))


# ---------------------------------------------------------------- synthetic CIFAR-10 binary


def test_cifar10_binary_round_trip(tmp_path: Path, offline: None) -> None:
    rng = np.random.default_rng(1)
    batches_dir = tmp_path / "cifar-10-batches-bin"
    batches_dir.mkdir()
    per_batch, n_test = 1_020, 30  # 5 x 1,020 = 5,100 train
    chw: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name, n in [
        *((f, per_batch) for f in cifar10_binary.TRAIN_FILES),
        ("test_batch.bin", n_test),
    ]:
        chw[name] = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, n, dtype=np.uint8)
        records = np.concatenate([labels[name][:, None], chw[name].reshape(n, -1)], axis=1)
        (batches_dir / name).write_bytes(records.tobytes())
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.source == f"CIFAR-10 binary files in {batches_dir}"
    assert ds.input_shape == (32, 32, 3)
    train_hwc = np.concatenate([chw[f] for f in cifar10_binary.TRAIN_FILES]).transpose(0, 2, 3, 1)
    train_labels = np.concatenate([labels[f] for f in cifar10_binary.TRAIN_FILES])
    np.testing.assert_array_equal(ds.train_images, train_hwc[:100])
    np.testing.assert_array_equal(ds.val_images, train_hwc[100:])
    np.testing.assert_array_equal(ds.train_labels, train_labels[:100])
    np.testing.assert_array_equal(ds.val_labels, train_labels[100:])
    np.testing.assert_array_equal(ds.test_images, chw["test_batch.bin"].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(ds.test_labels, labels["test_batch.bin"])
    # CHW -> HWC spelled out for one pixel: image 0, row 5, column 7, green channel.
    assert ds.train_images[0, 5, 7, 1] == chw["data_batch_1.bin"][0, 1, 5, 7]
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64


def test_cifar10_truncated_batch(tmp_path: Path) -> None:
    (tmp_path / "test_batch.bin").write_bytes(bytes(3073 * 2 - 5))
    with pytest.raises(LthError, match="test_batch.bin.*3073-byte"):
        cifar10_binary.read_cifar10_binary(tmp_path / "test_batch.bin")


def test_cifar10_pickle_version_is_refused(tmp_path: Path, offline: None, tfds_loads: list) -> None:
    py_dir = tmp_path / "cifar-10-batches-py"
    py_dir.mkdir()
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        # If anything unpickled these, the test would see an UnpicklingError, not LthError.
        (py_dir / name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(LthError) as caught:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(caught.value)
    assert "binary version" in message and "pickle" in message and str(py_dir) in message
    assert "\n" not in message
    assert not tfds_loads, "refused quickly: no download was started"


# ---------------------------------------------------------------- TFDS


def test_tfds_path_with_mock_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_dirs: None
) -> None:
    import tensorflow_datasets as tfds

    # mock_data redirects every builder to its own (absent) metadata dir, so the dataset
    # is never "prepared": load_tfds probes the network before tfds.load(download=True),
    # and mock_data turns that download into a no-op. Pretend the probe succeeded.
    monkeypatch.setattr(tfds_source, "probe_network", lambda url, timeout=3.0: (True, "mock"))
    calls: list[dict] = []
    real_load = tfds.load

    def spy_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", spy_load)
    with tfds.testing.mock_data(num_examples=5_100):
        ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert len(calls) == 1 and calls[0]["data_dir"] == str(tmp_path)
    assert "TFDS" in ds.source
    assert ds.train_images.shape == (100, 28, 28, 1)
    assert ds.val_images.shape == (5_000, 28, 28, 1)
    assert ds.test_images.shape == (5_100, 28, 28, 1)
    assert ds.train_images.dtype == ds.val_images.dtype == ds.test_images.dtype == np.uint8
    assert ds.train_labels.dtype == ds.test_labels.dtype == np.int64
    assert ds.test_labels.min() >= 0 and ds.test_labels.max() <= 9
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)


def test_no_data_no_network_fails_fast(
    tmp_path: Path, offline: None, no_system_dirs: None, tfds_loads: list
) -> None:
    with pytest.raises(LthError) as caught:
        load_dataset("mnist", data_dir=str(tmp_path))
    message = str(caught.value)
    assert not tfds_loads, "the network probe failed: no download was started"
    assert "'mnist'" in message and str(tmp_path) in message
    assert "no prepared TFDS copy" in message and "train-images-idx3-ubyte.gz" in message
    assert "\n" not in message
    assert not any(tmp_path.iterdir()), "nothing may be written to data_dir"


def test_fashion_mnist_error_mentions_debian_package(
    tmp_path: Path, offline: None, no_system_dirs: None
) -> None:
    with pytest.raises(LthError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_network_probe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed local port is refused: unreachable.
    url = closed_port_url()
    reachable, target = tfds_source.probe_network(url, timeout=2.0)
    assert reachable is False and target.rsplit(":", 1)[0] in url
    # A local listener that never answers a request still takes the connection: reachable.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        reachable, target = tfds_source.probe_network(f"http://127.0.0.1:{port}/", timeout=2.0)
        assert reachable is True and target == f"127.0.0.1:{port}"
    # The real download hosts are probed where TFDS would download from (on its https port),
    # here without a connection leaving the machine.
    tried = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise OSError("refused here")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "getproxies", dict)  # no proxy in between
    for url in tfds_source.DOWNLOAD_URLS.values():
        reachable, target = tfds_source.probe_network(url, timeout=2.0)
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, 443 if parts.scheme == "https" else 80
        assert reachable is False and tried[-1] == (host, port) and target == f"{host}:{port}"
    assert len(tried) == len(tfds_source.DOWNLOAD_URLS)

    # A name that does not resolve (as .invalid never does, RFC 2606) is unreachable; the
    # resolver's answer is made here, so no query leaves the machine either.
    def unresolvable(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unresolvable)
    reachable, target = tfds_source.probe_network("https://nonexistent.invalid/", timeout=2.0)
    assert reachable is False and target == "nonexistent.invalid:443"
    monkeypatch.undo()
    # A connection attempt that never returns (DNS can hang past any socket timeout) does not
    # hold the probe: it answers "unreachable" while the attempt still hangs. The attempt is
    # let go after a minute in any case, so that a probe which waits for it fails, not hangs.
    release = threading.Event()

    def hang(address, timeout=None):
        release.wait()
        raise OSError("let go")

    monkeypatch.setattr(socket, "create_connection", hang)
    watchdog = threading.Timer(60.0, release.set)
    watchdog.start()
    try:
        reachable, _ = tfds_source.probe_network("https://example.com/", timeout=0.1)
        assert not release.is_set(), "the probe waited for the hanging connection attempt"
        assert reachable is False
    finally:
        watchdog.cancel()
        release.set()


# ---------------------------------------------------------------- argument errors


def test_unknown_dataset() -> None:
    with pytest.raises(LthError, match="unknown dataset 'imagenet'.*mnist, fashion_mnist, cifar10"):
        load_dataset("imagenet")


def test_bad_data_dir(tmp_path: Path) -> None:
    with pytest.raises(LthError, match="does not exist"):
        load_dataset("mnist", data_dir=str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(LthError, match="is not a directory"):
        load_dataset("mnist", data_dir=str(tmp_path / "file"))


def test_imports_without_tensorflow() -> None:
    # sources must stay cheap to import; TF/TFDS load only when TFDS is actually needed.
    import subprocess
    import sys

    code = (
        "import sys, lth_tf.data.sources; "
        "sys.exit(int('tensorflow' in sys.modules or 'tensorflow_datasets' in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert result.returncode == 0
