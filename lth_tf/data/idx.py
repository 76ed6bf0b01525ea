"""Reader for the IDX files that MNIST and Fashion-MNIST are distributed as.

IDX layout: two zero bytes, one type byte (0x08 = uint8), one byte with the number of
dimensions, then one big-endian uint32 per dimension, then the values in C order.
Files may be gzip-compressed; that is detected from the content, not the name, because
browsers often decompress a download and keep the ``.gz`` name.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from lth_tf.errors import LthError

# IDX type byte -> element type; multi-byte types are big-endian in the file.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four files of an MNIST-style distribution: (train images, train labels, test images,
# test labels). The same names are used by MNIST and Fashion-MNIST.
IDX_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_GZIP_MAGIC = b"\x1f\x8b"


# Deflate emits at most 258 bytes per 2 bits of input (about 1032:1), so a gzip file whose
# header announces more than that many times its own size cannot hold it: it is truncated, or
# is a bomb made to look small. No IDX dataset comes near the second bound (MNIST's largest
# file is 47 MB); past it, a uint32 shape would have the reader allocate whatever it says.
_DEFLATE_MAX_RATIO = 1032
_MAX_IDX_BYTES = 4 << 30
_CHUNK = 1 << 20


class _Gunzip:
    """Inflates a gzip file's bytes on demand, never more than asked for."""

    def __init__(self, raw: bytes) -> None:
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = raw

    def read(self, size: int) -> bytearray:
        """The next ``size`` bytes (fewer at the end of the data)."""
        out = bytearray(size)
        view, filled = memoryview(out), 0
        while filled < size:
            if self._inflater.eof:
                rest = self._inflater.unused_data
                if rest[:2] != _GZIP_MAGIC:  # a concatenated member continues the data
                    break
                self._inflater, self._pending = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
            chunk = self._inflater.decompress(self._pending, min(size - filled, _CHUNK))
            self._pending = self._inflater.unconsumed_tail
            if not chunk and not self._pending and not self._inflater.eof:
                raise EOFError("compressed data ends early")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        del view
        del out[filled:]
        return out


def _gunzip_idx(path: Path, raw: bytes) -> bytes | bytearray:
    """The IDX bytes of gzip content ``raw``: the header, then only as many values as it
    announces (plus one byte, so that :func:`read_idx` sees trailing data); an announced size
    no gzip file of this size can hold, or over 4 GiB, is refused before inflating it."""
    gunzip = _Gunzip(raw)
    head = gunzip.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        return head  # read_idx says what is wrong
    head += gunzip.read(4 * head[3])
    if len(head) < 4 + 4 * head[3]:
        return head
    shape = struct.unpack(f">{head[3]}I", head[4:])
    announced = math.prod(shape) * _IDX_TYPES[head[2]].itemsize
    if announced > _MAX_IDX_BYTES or announced > _DEFLATE_MAX_RATIO * len(raw):
        raise LthError(
            f"{path}: the IDX header announces shape {shape} ({announced} bytes), more than "
            f"this {len(raw)}-byte gzip file can hold or than 4 GiB; download the file again"
        )
    return head + gunzip.read(announced + 1)


def _read_bytes(path: Path) -> bytes | bytearray:
    """Returns the file's content, gunzipped (as far as its IDX header says) if it is gzip."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            return _gunzip_idx(path, raw)
        return raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise LthError(
            f"{path}: corrupt or truncated gzip file ({error}); download it again"
        ) from None
    except OSError as error:
        raise LthError(f"cannot read {path}: {error.strerror or error}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (gzip or plain) into an array with the shape its header gives.

    Raises LthError naming the file if it is not IDX, or is truncated or too long.

    >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
    (10000,)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise LthError(
            f"{path}: not an IDX file (starts with {data[:4].hex() or 'nothing'}, expected "
            "0000 08 <ndim>); use the original MNIST-style train-/t10k-*-ubyte(.gz) files"
        )
    dtype = _IDX_TYPES[data[2]]
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise LthError(
            f"{path}: truncated or corrupt IDX header ({ndim} dimensions, {len(data)} bytes); "
            "download the file again"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise LthError(
            f"{path}: IDX file {problem}: the header says shape {shape} ({expected} bytes of "
            f"data) but it holds {actual} bytes; download the file again"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # astype copies: the result is writable, native-endian and does not pin `data`.
    return values.astype(dtype.newbyteorder("="))


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """Returns {base name: path} for the four IDX files in `directory`, or None if none is there.

    Accepts each file gzipped (``.gz``) or plain. A directory holding some but not all of
    them is an error, since silently falling back to another source would hide the problem.

    >>> find_idx_files(Path("/usr/share/datasets/fashion-mnist"))["t10k-labels-idx1-ubyte"]
    PosixPath('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz')
    """
    found: dict[str, Path] = {}
    for base in IDX_FILES:
        for candidate in (directory / f"{base}.gz", directory / base):
            if candidate.is_file():
                found[base] = candidate
                break
    if not found:
        return None
    missing = [base for base in IDX_FILES if base not in found]
    if missing:
        raise LthError(
            f"{directory} holds only some of the IDX files: missing "
            f"{', '.join(m + '(.gz)' for m in missing)}; put all four there"
        )
    return found


def load_idx_dir(
    directory: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads the four IDX files in `directory`: (train_images, train_labels, test_images,
    test_labels), images uint8 [N, H, W], labels int64 [N].

    >>> x, y, tx, ty = load_idx_dir(Path("/usr/share/datasets/fashion-mnist"))
    >>> x.shape, tx.shape
    ((60000, 28, 28), (10000, 28, 28))
    """
    files = find_idx_files(directory)
    if files is None:
        raise LthError(f"no IDX files ({IDX_FILES[0]}.gz, ...) in {directory}")
    arrays = []
    for base, expected_ndim in zip(IDX_FILES, (3, 1, 3, 1), strict=True):
        array = read_idx(files[base])
        if array.ndim != expected_ndim or array.dtype != np.uint8:
            kind = "images" if expected_ndim == 3 else "labels"
            raise LthError(
                f"{files[base]}: expected uint8 {kind} with {expected_ndim} dimensions, found "
                f"{array.dtype} with shape {array.shape}; is this the right file?"
            )
        arrays.append(array)
    train_x, train_y, test_x, test_y = arrays
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(images) != len(labels):
            raise LthError(
                f"{directory}: {split} images and labels disagree ({len(images)} images, "
                f"{len(labels)} labels); the files come from different releases"
            )
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)
