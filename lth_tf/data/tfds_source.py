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


# Any dataset's download host is unknown before its builder runs; a host most TFDS downloads
# (and TFDS's own prepared-data bucket) use stands in for "is there a network".
GENERIC_PROBE_URL = "https://storage.googleapis.com/"


def load_tfds_arrays(
    name: str, version: str | None, data_dir: str | None, spec: str
) -> tuple[dict[str, np.ndarray], dict]:
    """Reads TFDS dataset `name` (``name:version`` when given) as the arrays of
    :func:`lth_tf.data.arrays.dataset_from_arrays`, and its provenance.

    (image, label) come from the builder's ``info.supervised_keys``. train is "train"; test is
    "test", else "validation"; x_val/y_val are "validation" when it exists and is not the test
    split (otherwise validation is held out of train). A builder that lists no splits (not yet
    prepared, or under ``tfds.testing.mock_data``) is taken to have train and test. `spec`
    (the ``tfds:`` text) starts every error message.

    >>> spec = "tfds:cifar100"
    >>> arrays, provenance = load_tfds_arrays("cifar100", None, None, spec)  # doctest: +SKIP
    >>> provenance["splits"]  # doctest: +SKIP
    {'train': 'train', 'validation': None, 'test': 'test'}
    """
    try:
        import tensorflow_datasets as tfds

        with _quiet_absl():
            builder = tfds.builder(f"{name}:{version}" if version else name, data_dir=data_dir)
            prepared = builder.is_prepared()
    except Exception as error:  # noqa: BLE001  (TFDS raises many types; all end the same way)
        if type(error).__name__ == "DatasetNotFoundError":
            # Its message lists every dataset TFDS knows: thousands of characters.
            raise LthError(
                f"{spec}: TFDS has no dataset {name!r}; see tfds.list_builders() or "
                "https://www.tensorflow.org/datasets/catalog for the names"
            ) from None
        raise LthError(f"{spec}: TFDS cannot find it: {_one_line(error)}") from None
    searched = data_dir if data_dir else f"{builder.data_dir_root} (TFDS's default)"
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(key, str) for key in keys):
        raise LthError(
            f"{spec}: the dataset has no (image, label) supervised keys "
            f"({keys!r}); use a classification dataset, or convert it to npz:PATH"
        )
    image_key, label_key = keys
    image_shape = info.features[image_key].shape
    if None in image_shape:
        raise LthError(
            f"{spec}: its {image_key!r} examples have no fixed shape ({image_shape}); resize "
            "them to one shape and save them as npz:PATH"
        )

    if not prepared:
        reachable, target = probe_network(DOWNLOAD_URLS.get(name, GENERIC_PROBE_URL))
        if not reachable:
            raise LthError(
                f"{spec}: no prepared copy in {searched} and no network to download it (could "
                f"not reach {target}); run `tfds build {name}` with network access and pass its "
                "data dir as --data_dir"
            )
    try:
        if not prepared:
            _check_download_dependencies(name)
            builder.download_and_prepare()
        splits = _choose_splits(list(builder.info.splits.keys()), spec)
        arrays: dict[str, np.ndarray] = {}
        for role, split in splits.items():
            if split is None:
                continue
            dataset = builder.as_dataset(
                split=split, as_supervised=True, batch_size=_BATCH, shuffle_files=False
            )
            x, y = [], []
            for batch_x, batch_y in tfds.as_numpy(dataset):
                x.append(batch_x)
                y.append(batch_y)
            suffix = {"train": "train", "validation": "val", "test": "test"}[role]
            if not x:
                raise LthError(f"{spec}: TFDS returned an empty {split!r} split; prepare it again")
            arrays[f"x_{suffix}"], arrays[f"y_{suffix}"] = np.concatenate(x), np.concatenate(y)
    except LthError:
        raise
    except Exception as error:  # noqa: BLE001
        raise LthError(f"{spec}: TFDS failed (data_dir={searched}): {_one_line(error)}") from None
    num_classes = getattr(info.features[label_key], "num_classes", None)
    if num_classes is not None:
        arrays["num_classes"] = np.asarray(num_classes)
    provenance = {
        "kind": "tfds",
        "name": name,
        "version": str(builder.version),
        "data_dir": str(builder.data_dir),
        "splits": splits,
    }
    return arrays, provenance


def _choose_splits(available: list[str], spec: str) -> dict[str, str | None]:
    """{"train", "validation", "test"} -> the TFDS split playing that role (None: none)."""
    if not available:
        available = ["train", "test"]  # not listed: assume the usual two
    if "train" not in available:
        raise LthError(
            f"{spec}: the dataset has no 'train' split (it has {', '.join(available)}); use a "
            "dataset with one, or save the arrays as npz:PATH"
        )
    if "test" in available:
        test = "test"
    elif "validation" in available:
        test = "validation"
    else:
        raise LthError(
            f"{spec}: the dataset has neither a 'test' nor a 'validation' split (it has "
            f"{', '.join(available)}); save the arrays as npz:PATH with a test split"
        )
    validation = "validation" if "validation" in available and test != "validation" else None
    return {"train": "train", "validation": validation, "test": test}
