"""Atomic files: what is written reads back exactly, and nothing half-written is left."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from tests.helpers import ROOT


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


# -- damaged files -----------------------------------------------------------------------------


def _npz(tmp_path):
    path = tmp_path / "masks.npz"
    io.write_npz(path, {"fc1/kernel": np.ones((30, 20), np.uint8)}, compressed=True)
    return path


def _truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bit_flipped(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10  # inside the first member's deflate stream
    path.write_bytes(bytes(data))


def _binary(path):
    path.write_bytes(bytes(range(256)) * 4)


DAMAGES = {"truncated": _truncated, "bit_flipped": _bit_flipped, "binary": _binary}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_npz_is_one_line_naming_it(tmp_path, damage):
    path = _npz(tmp_path)
    DAMAGES[damage](path)
    with pytest.raises(LthError) as caught:
        io.read_npz(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged (") and "\n" not in message
    assert message.endswith(io.RECOMPUTE)


def test_an_npz_of_python_objects_is_damaged_without_an_invitation_to_unpickle_it(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, fc1=np.array([1, "a"], dtype=object))  # np.savez pickles object arrays
    with pytest.raises(LthError) as caught:
        io.read_npz(path)
    assert str(caught.value) == (
        f"{path} is damaged (it holds Python objects or text, not arrays): {io.RECOMPUTE}"
    )


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), b"round,test_accuracy\n1\n", b"a,b\n1,2,3\n", b"\xff\xfe\x00\x01"],
    ids=["binary", "short_row", "long_row", "not_utf8"],
)
def test_a_damaged_csv_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "results.csv"
    path.write_bytes(content)
    with pytest.raises(LthError, match="is damaged") as caught:
        io.read_csv(path, ["round"])
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b""], ids=["cut", "not_utf8", "empty"])
def test_a_damaged_json_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "hparams.json"
    path.write_bytes(content)
    with pytest.raises(LthError, match="is damaged") as caught:
        io.read_json(path, "restore it")
    assert str(caught.value).startswith(str(path)) and str(caught.value).endswith("restore it")


def test_a_write_that_fails_names_its_file(tmp_path, monkeypatch):
    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full_disk)
    with pytest.raises(OSError) as caught:
        io.write_json(tmp_path / "hparams.json", {})
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "hparams.json")
    assert list(tmp_path.iterdir()) == []  # the temporary file went too


# -- the lock and the leftovers ----------------------------------------------------------------

HOLDER = """
import sys
from lth_tf import io
with io.locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold_lock(directory):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_locked_directory_names_its_holder_and_is_free_once_it_dies(tmp_path):
    holder = _hold_lock(tmp_path / "e")
    try:
        with pytest.raises(LthError, match=rf"in use by .* \(pid {holder.pid}\)"):
            with io.locked(tmp_path / "e"):
                pass
    finally:
        holder.kill()  # as kill -9 would: nothing of the holder's runs to clean up
        holder.wait()
    with io.locked(tmp_path / "e"):
        assert (tmp_path / "e" / ".lock").read_text().strip() == str(os.getpid())


def test_leftovers_are_recognised_and_removed(tmp_path):
    (tmp_path / "round_01").mkdir()
    leftovers = [tmp_path / ".hparams.json.ab12.tmp", tmp_path / "round_01" / ".w.npz.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    (tmp_path / "results.csv").write_text("kept")
    with io.locked(tmp_path):
        assert sorted(io.remove_leftovers(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".lock", "results.csv", "round_01"]


def test_the_advice_on_a_failed_write_names_the_flag_that_chose_the_place():
    from lth_tf.errors import os_error_line

    error = OSError(errno.EROFS, "Read-only file system", "rep/x.png")
    assert (
        os_error_line(error) == "rep/x.png: read-only file system (choose a writable --output_dir)"
    )
    assert os_error_line(error, "--output").endswith("(choose a writable --output)")
    assert os_error_line(error, None).endswith("(choose a writable place)")
    # A write into place (a rename onto a directory) names the path once, not "a -> a".
    onto = IsADirectoryError(errno.EISDIR, "Is a directory", "r/x.csv", None, "r/x.csv")
    assert os_error_line(onto, "--output").startswith("r/x.csv: is a directory (")


def test_a_file_where_a_folder_is_made_is_named_as_such(tmp_path):
    from lth_tf.errors import os_error_line

    (tmp_path / "afile").write_text("")
    with pytest.raises(FileExistsError) as caught:
        (tmp_path / "afile").mkdir(parents=True)
    assert os_error_line(caught.value).endswith(
        "afile: not a directory (a file stands where a directory should be: move it or choose "
        "another path)"
    )
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileExistsError) as caught:
        (tmp_path / "folder").mkdir()
    assert os_error_line(caught.value).endswith(
        "folder: already exists (move it away or choose another path)"
    )
    # A link whose folder was moved or deleted: where it points is what is missing.
    (tmp_path / "runs").symlink_to(tmp_path / "gone")
    with pytest.raises(FileExistsError) as caught:
        os.makedirs(tmp_path / "runs", exist_ok=True)
    assert os_error_line(caught.value).endswith(
        f"runs: a link to {tmp_path / 'gone'}, which does not exist (create that folder, or "
        "remove the link)"
    )


def test_a_path_through_a_file_names_that_file(tmp_path):
    from lth_tf.errors import os_error_line

    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError) as caught:
        (tmp_path / "afile" / "sub" / "e").mkdir(parents=True)
    assert os_error_line(caught.value) == (
        f"{tmp_path / 'afile'}: not a directory (a file stands where a directory should be: "
        "move it or choose another path)"
    )
