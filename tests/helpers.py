"""What several test modules share: tiny datasets in memory and as IDX files, and a pipeline
runner."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

import lth_tf  # noqa: F401  (environment before TensorFlow)

ROOT = Path(__file__).resolve().parents[1]


def make_images(count: int, shape=(28, 28, 1), classes: int = 10, seed: int = 0):
    """Random uint8 images whose label is written into their brightness, so nets can learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=count)
    images = rng.integers(0, 80, size=(count, *shape))
    images[..., : shape[0] // 2, :, :] += (labels * 17)[:, None, None, None]
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def tiny_dataset(train: int = 600, val: int = 120, test: int = 200, shape=(28, 28, 1)):
    from lth_tf.data.sources import ImageDataset

    images, labels = make_images(train + val + test, shape)
    return ImageDataset(
        name="tiny",
        train_images=images[:train],
        train_labels=labels[:train],
        val_images=images[train : train + val],
        val_labels=labels[train : train + val],
        test_images=images[train + val :],
        test_labels=labels[train + val :],
        num_classes=10,
        source="tests",
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def run_pipeline(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m module args`` from the repository root, capturing text output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
