"""Shared fixtures: datasets, the network kept offline, experiments several folders read. The
shared functions and constants are in :mod:`tests.helpers`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    QUIET,
    TICKET_RATES,
    closed_port_url,
    lenet_hparams,
    make_images,
    tiny_dataset,
    write_idx,
)

# -- datasets ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory) -> Path:
    """A small MNIST-format dataset (6,000 train incl. 5,000 validation, 500 test) on disk."""
    directory = tmp_path_factory.mktemp("idx")
    train_x, train_y = make_images(6000, seed=1)
    test_x, test_y = make_images(500, seed=2)
    write_idx(directory / "train-images-idx3-ubyte.gz", train_x[..., 0])
    write_idx(directory / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(directory / "t10k-images-idx3-ubyte.gz", test_x[..., 0])
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", test_y)
    return directory


@pytest.fixture(scope="session")
def mnist_data(idx_dir):
    """``idx_dir`` loaded as the pipelines load ``--dataset=mnist --data_dir=idx_dir``."""
    from lth_tf.data.sources import load_dataset

    return load_dataset("mnist", str(idx_dir))


@pytest.fixture(scope="module")
def data():
    """:func:`tests.helpers.tiny_dataset`: 600 training images of 28x28x1, 120 validation, 200
    test."""
    return tiny_dataset()


# -- no network, no system datasets ------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No download can happen, whether or not this machine has a network."""
    from lth_tf.data import sources, tfds_source

    for name in sources.DATASETS:
        monkeypatch.setitem(tfds_source.DOWNLOAD_URLS, name, closed_port_url())


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignore raw files installed on this machine, so only data_dir and TFDS are used."""
    from lth_tf.data import sources

    for name in sources.DATASETS:
        monkeypatch.setitem(sources.SYSTEM_DATA_DIRS, name, ())


# -- experiments that pruning, export and the export pipeline read -----------------------------


@pytest.fixture(scope="session")
def lenet_runs(tmp_path_factory, mnist_data) -> Path:
    """Two 2-round lenet experiments on the IDX test data, ``plain`` (unstructured) and
    ``blocks`` (4x1 blocks), pruned at :data:`tests.helpers.TICKET_RATES`; their folder."""
    from lth_tf.lottery.imp import run_imp

    root = tmp_path_factory.mktemp("runs")
    for name, block_size in [("plain", "1x1"), ("blocks", "4x1")]:
        hparams = lenet_hparams(
            iterations="40it",
            eval_every="20it",
            rounds=2,
            pruning={"rates": TICKET_RATES, "block_size": block_size},
        )
        run_imp(hparams, root, name, QUIET, data=mnist_data)
    return root


@pytest.fixture(scope="session")
def broken(lenet_runs, tmp_path_factory) -> Path:
    """Copies of ``lenet_runs/plain``: ``unfinished`` (round 2 unfinished), ``other_version``
    (another format version); and ``not_an_experiment``, an empty folder."""
    from lth_tf import io

    root = tmp_path_factory.mktemp("broken")
    unfinished = shutil.copytree(lenet_runs / "plain", root / "unfinished")
    (unfinished / "round_02" / "weights.npz").unlink()
    other = shutil.copytree(lenet_runs / "plain", root / "other_version")
    saved = io.read_json(other / "hparams.json")
    io.write_json(other / "hparams.json", {**saved, "format_version": 99})
    (root / "not_an_experiment").mkdir()
    return root
