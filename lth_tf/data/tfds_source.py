"""Loading a dataset through TensorFlow Datasets, without TFDS's slow offline failure.

Offline, ``tfds.load`` retries its download for about 3.5 minutes before it gives up.
So a prepared copy is used as is, and a download is only started after a quick TCP
connect to the host TFDS would download from has succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np

from lth_tf.errors import LthError

# Where TFDS 4.9 downloads each dataset from (tensorflow_datasets/image_classification/
# mnist.py and cifar.py); only the host and port are used, for the network probe.
DOWNLOAD_URLS: dict[str, str] = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
}
PROBE_TIMEOUT_S = 3.0
# Examples per tf.data batch while copying a split into numpy.
_BATCH = 10_000


class NotAvailable(Exception):
    """No prepared TFDS copy and no network to download one; `sources` words the message."""

    def __init__(self, searched: str, unreachable: str) -> None:
        super().__init__(searched, unreachable)
        self.searched = searched  # where TFDS looked for a prepared copy
        self.unreachable = unreachable  # the host (or proxy) the probe could not reach

    def __str__(self) -> str:
        return f"no prepared TFDS copy in {self.searched}, could not reach {self.unreachable}"


def probe_network(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Tries a TCP connection to the host serving `url` (or to the proxy the environment sets).

    Returns (reachable, "host:port"). Never takes much longer than `timeout`, even when DNS
    hangs: the attempt runs in a daemon thread that is abandoned after the timeout.

    >>> probe_network("https://nonexistent.invalid/", timeout=1.0)
    (False, 'nonexistent.invalid:443')
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # TFDS downloads with `requests`, which honours *_proxy variables; probe what it would use.
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    target = f"{host}:{port}"

    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except (OSError, UnicodeError):
            result.append(False)

    thread = threading.Thread(target=attempt, name=f"probe {target}", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0]), target


def _to_numpy(dataset: object, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Copies a supervised (image, label) tf.data split into two numpy arrays."""
    import tensorflow_datasets as tfds

    images, labels = [], []
    for batch_images, batch_labels in tfds.as_numpy(dataset):
        images.append(batch_images)
        labels.append(batch_labels)
    if not images:
        raise LthError(f"TFDS returned an empty {split} split for '{name}'; prepare it again")
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def load_tfds(
    name: str, data_dir: str | None
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], str]:
    """Loads train and test of TFDS dataset `name` as uint8 images [N, H, W, C], int64 labels.

    Uses a prepared copy in `data_dir` (or TFDS's default data dirs when None); downloads
    only if none is prepared and the download host answers. Returns the arrays and a
    description of the source. Raises NotAvailable when neither works, LthError otherwise.

    >>> (x, y, tx, ty), source = load_tfds("mnist", "~/tensorflow_datasets")  # doctest: +SKIP
    >>> x.shape, source  # doctest: +SKIP
    ((60000, 28, 28, 1), 'TFDS mnist 3.0.1 (prepared copy) in /home/me/tensorflow_datasets/...')
    """
    try:
        import tensorflow_datasets as tfds

        with _quiet_absl():
            builder = tfds.builder(name, data_dir=data_dir)
            prepared = builder.is_prepared()
        searched = data_dir if data_dir else f"{builder.data_dir_root} (TFDS's default)"
    except Exception as error:  # noqa: BLE001  (TFDS raises many types; all end the same way)
        raise LthError(f"cannot load dataset '{name}' with TFDS: {_one_line(error)}") from None

    if not prepared:
        reachable, target = probe_network(DOWNLOAD_URLS[name])
        if not reachable:
            raise NotAvailable(searched=searched, unreachable=target)

    try:
        if not prepared:
            _check_download_dependencies(name)
        train, test = tfds.load(
            name,
            split=["train", "test"],
            data_dir=data_dir,
            as_supervised=True,
            # Not batch_size=-1: that batches by info.splits.total_num_examples, which is 0
            # under tfds.testing.mock_data, and TF then aborts the process reserving
            # sys.maxsize elements. Fixed-size batches work for real and mocked data.
            batch_size=_BATCH,
            shuffle_files=False,
            download=not prepared,
        )
        train_x, train_y = _to_numpy(train, name, "train")
        test_x, test_y = _to_numpy(test, name, "test")
    except LthError:
        raise
    except Exception as error:  # noqa: BLE001
        raise LthError(
            f"cannot load dataset '{name}' with TFDS (data_dir={searched}): {_one_line(error)}"
        ) from None
    how = "prepared copy" if prepared else "downloaded and prepared"
    return (train_x, train_y, test_x, test_y), (
        f"TFDS {name} {builder.version} ({how}) in {builder.data_dir}"
    )


def _check_download_dependencies(name: str) -> None:
    """tensorflow-datasets 4.9.10 needs importlib_resources to download but does not declare
    it; say so plainly instead of failing deep inside TFDS."""
    try:
        import importlib_resources  # noqa: F401
    except ImportError:
        raise LthError(
            f"cannot download dataset '{name}' with TFDS: it needs the package "
            "importlib_resources, which is not installed; pip install importlib_resources"
        ) from None


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Hides absl warnings such as "Variant folder ... has no dataset_info.json", which TFDS
    logs for every directory it merely checks, while looking for a prepared copy."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(error: BaseException) -> str:
    """`Type: message` squeezed onto one line (TFDS messages often span several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
