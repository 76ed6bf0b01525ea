"""Atomic file writes: a temporary file in the same directory, fsync, then rename.

A kill at any moment leaves either the old file or the new one, never half of one, so a resume
can trust whatever it finds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_npz(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], compressed: bool = False
) -> None:
    """Saves named arrays (names may contain ``/``) atomically, as ``np.load`` reads them.

    ``compressed`` deflates at level 1: ``np.savez_compressed``'s level 6 took 7x as long on a
    mask file for a 40% larger file (lenet300_100: 27 ms against 3.7 ms).
    """
    buffer = io.BytesIO()
    if compressed:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    else:
        np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    # allow_pickle=False: a data file must never be able to run code.
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, text.getvalue().encode())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class BackgroundWriter:
    """Atomic ``.npz`` writes on one background thread, so training need not wait for the disk.

    Writes happen in the order asked for, one at a time (a new one first waits for the last),
    so a kill leaves the first n of them done and none half-done: what writing in the
    foreground leaves when killed a moment earlier. Leaving the ``with`` block waits for the
    last write; a failed write raises at the next call.

    >>> with BackgroundWriter() as writer:
    ...     writer.write_npz("round_01/checkpoint.npz", state)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lth_tf-writer")
        self._pending: Future | None = None

    def write_npz(
        self, path: str | os.PathLike, arrays: dict[str, np.ndarray], compressed: bool = False
    ) -> None:
        """Like :func:`write_npz`; ``arrays`` must not change afterwards (pass copies)."""
        self.wait()
        self._pending = self._executor.submit(write_npz, path, arrays, compressed)

    def wait(self) -> None:
        """Returns once every write asked for is on disk; raises if one failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self.wait()
        except Exception:
            if exc_type is None:
                raise
            # Already leaving on an error (a kill, a failed step): that one is the news.
        finally:
            self._executor.shutdown()
