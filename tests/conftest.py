"""Shared fixtures; the shared functions are in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_images, write_idx


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
