"""Atomic files: what is written reads back exactly, and nothing half-written is left."""

import numpy as np
import pytest

from lth_tf import io


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip_keeps_names_dtypes_and_values(tmp_path, compressed):
    rng = np.random.default_rng(0)
    arrays = {
        "fc1/kernel": (rng.random((784, 300)) < 0.3).astype(np.uint8),
        "fc1/bias": rng.normal(size=300).astype(np.float32),
        "__progress__": np.array('{"iteration": 3}'),
    }
    path = tmp_path / "out.npz"
    io.write_npz(path, arrays, compressed=compressed)
    loaded = io.read_npz(path)
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left


def test_compressed_masks_are_smaller_than_plain_ones(tmp_path):
    masks = {"a": (np.random.default_rng(1).random((300, 100)) < 0.1).astype(np.uint8)}
    io.write_npz(tmp_path / "plain.npz", masks)
    io.write_npz(tmp_path / "small.npz", masks, compressed=True)
    assert (tmp_path / "small.npz").stat().st_size < (tmp_path / "plain.npz").stat().st_size / 3


def test_background_writes_land_in_order_before_the_block_ends(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with io.BackgroundWriter() as writer:
        for step in range(5):
            writer.write_npz(path, {"step": np.array(step)})
    assert int(io.read_npz(path)["step"]) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_a_failed_background_write_raises_where_the_caller_waits(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError):
        with io.BackgroundWriter() as writer:
            writer.write_npz(tmp_path / "file" / "checkpoint.npz", {"a": np.zeros(1)})


def test_an_error_in_the_block_is_not_hidden_by_a_failed_write(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(KeyError, match="the real error"):
        with io.BackgroundWriter() as writer:
            writer.write_npz(tmp_path / "file" / "checkpoint.npz", {"a": np.zeros(1)})
            raise KeyError("the real error")
