"""A gzip IDX file is inflated only as far as its header announces, and an announced size no
file of its size can hold is refused before anything is inflated."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lth_tf.data import idx
from lth_tf.errors import LthError
from tests.helpers import write_idx

BOMB_BYTES = 8 << 20  # what the bomb would expand to: small enough for any test machine


def _header(shape: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def test_a_gzip_bomb_is_refused_without_being_inflated(tmp_path: Path) -> None:
    bomb = tmp_path / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(_header((100,)) + bytes(BOMB_BYTES)))
    assert bomb.stat().st_size < BOMB_BYTES / 100
    tracemalloc.start()
    try:
        with pytest.raises(LthError, match="trailing bytes") as caught:
            idx.read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(bomb) in str(caught.value) and "\n" not in str(caught.value)
    # The old reader inflated all of it first (8 MiB at least); this one stops at 101 bytes.
    assert peak < BOMB_BYTES / 8, peak


@pytest.mark.parametrize(
    "shape", [(4096, 4096, 64), (2**32 - 1, 2**32 - 1, 2**32 - 1)], ids=["1GiB", "absurd"]
)
def test_an_announced_size_beyond_what_the_file_can_hold_is_refused(tmp_path, shape) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header(shape) + bytes(1000)))
    tracemalloc.start()
    try:
        with pytest.raises(LthError, match="announces shape") as caught:
            idx.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value)
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("members", [1, 2])
def test_honest_gzip_files_still_read_whole(tmp_path: Path, members: int) -> None:
    array = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)
    path = tmp_path / "images.gz"
    if members == 1:
        write_idx(path, array)
    else:  # `cat a.gz b.gz` is a valid gzip file of the two contents in turn
        data = _header(array.shape) + array.tobytes()
        path.write_bytes(gzip.compress(data[:50]) + gzip.compress(data[50:]))
    np.testing.assert_array_equal(idx.read_idx(path), array)


def test_a_bit_flip_in_the_deflate_stream_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 255, (50, 28, 28)).astype(np.uint8))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LthError) as caught:
        idx.read_idx(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
