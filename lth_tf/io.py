"""Atomic file writes (a temporary file in the same directory, fsync, then rename), readers
that name a damaged file, the experiment directory's lock, and the cleaning of leftovers.

A kill at any moment leaves either the old file or the new one, never half of one, so a resume
can trust whatever it finds; what a kill can leave besides (``.<name>.*.tmp`` files) is
removed by :func:`remove_leftovers` once the directory is locked.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lth_tf.errors import LthError

RECOMPUTE = "delete it to recompute it, or restore it from a copy"
# What reading a damaged file raises: a zip or deflate stream cut short or with flipped bits,
# an .npy header that no longer parses, text that is not UTF-8 or not JSON/CSV.
DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    UnicodeDecodeError,
    ValueError,
    KeyError,
    struct.error,
    NotImplementedError,
    csv.Error,
    RecursionError,  # JSON nested deeper than Python's stack
)
LOCK_FILE = ".lock"
# Entries of an .npz that say what the file is rather than hold its data: the experiment it
# belongs to and its place in it (lth_tf.experiment.ExperimentDir.stamp). Exact names, not a
# prefix: checkpoints keep their progress under other "__...__" names.
STAMP_KEYS = ("__experiment__", "__file__")

_UMASK = os.umask(0)
os.umask(_UMASK)


def damaged(path: str | os.PathLike, what: object, todo: str = RECOMPUTE) -> LthError:
    """The one-line error for a file that exists but cannot be read as what it should be.

    >>> str(damaged("e/masks.npz", "Bad CRC-32", "delete it"))
    'e/masks.npz is damaged (Bad CRC-32): delete it'
    """
    text = " ".join(str(what).split())[:120] or type(what).__name__
    return LthError(f"{path} is damaged ({text}): {todo}")


def not_finite(arrays: dict[str, Any], names: Iterable[str] | None = None) -> str | None:
    """The first of ``names`` (default: every array) whose floats are not all finite, or None.

    >>> not_finite({"a": np.ones(2), "b": np.array([1.0, np.nan]), "step": np.array(3)})
    'b'
    """
    for name in arrays if names is None else names:
        value = np.asarray(arrays[name])
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return name
    return None


def output_prefix(output: str | os.PathLike, flag: str = "--output") -> Path:
    """``output`` as the path prefix of a report's files, once it names a file and not a
    directory (``reports/`` would otherwise write ``reports.png`` beside it).

    >>> output_prefix("reports/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: --output=reports/ is a directory; give a file name prefix in it, ...
    """
    text = str(output)
    path = Path(text)
    if not text.strip() or path.name in ("", ".", ".."):
        raise LthError(f"{flag}: {text!r} is not a file name prefix")
    if text.endswith(("/", os.sep)) or path.is_dir():
        inside = (path / "report").as_posix()
        raise LthError(
            f"{flag}={text} is a directory; give a file name prefix in it, e.g. {inside}"
        )
    experiment = experiment_around(path.parent)
    if experiment is not None:
        # PREFIX.csv there could be the experiment's own results.csv (or a round's file).
        raise LthError(
            f"{flag}={text} writes into the experiment {experiment}, among its own files; "
            f"write the report elsewhere, e.g. --output=reports/{path.name}"
        )
    return path


def check_can_write(folder: str | os.PathLike) -> None:
    """Makes ``folder`` (and its parents) and writes and removes a file in it: an unwritable
    output is an ``OSError`` before hours of work, not after them.

    >>> check_can_write("/proc/lth")  # doctest: +SKIP
    PermissionError: [Errno 13] Permission denied: '/proc/lth'
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".lth_tf-probe-"):
        pass


def experiment_around(folder: str | os.PathLike) -> Path | None:
    """The experiment directory (one holding ``hparams.json``) that is ``folder`` or holds it,
    if any: what no report or export may write into.

    >>> experiment_around("/") is None
    True
    """
    folder = Path(os.path.abspath(folder))
    for candidate in (folder, *folder.parents):
        if (candidate / "hparams.json").is_file():
            return candidate
    return None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        _write_and_rename(fd, tmp, path, data)
    except OSError as error:
        # write() and fsync() on a full disk say ENOSPC without a file name, and a folder that
        # takes no files names the temporary one: the user needs the file they asked for.
        if error.filename is None or str(error.filename).endswith(".tmp"):
            error.filename = str(path)
        raise


def _write_and_rename(fd: int, tmp: str, path: Path, data: bytes) -> None:
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


def read_json(path: str | os.PathLike, todo: str = RECOMPUTE) -> Any:
    """The JSON file's value; one that does not parse is an LthError naming it (``todo`` says
    what to do about it)."""
    try:
        return json.loads(Path(path).read_bytes().decode())
    except DAMAGE as error:
        raise damaged(path, f"not JSON: {error}", todo) from None


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


def read_npz(path: str | os.PathLike, todo: str = RECOMPUTE) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file but its stamp (:data:`STAMP_KEYS`); a truncated or
    bit-flipped one is an LthError naming it.

    >>> read_npz("runs/e/round_01/masks.npz")["fc1/kernel"].shape  # doctest: +SKIP
    (784, 300)
    """
    return read_stamped_npz(path, todo)[0]


def read_stamped_npz(
    path: str | os.PathLike, todo: str = RECOMPUTE
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of an ``.npz`` file and, apart, its stamp (empty for a file without one).

    >>> arrays, stamp = read_stamped_npz("runs/e/round_01/masks.npz")  # doctest: +SKIP
    >>> stamp["__file__"]  # doctest: +SKIP
    'round_01/masks.npz'
    """
    try:
        # allow_pickle=False: a data file must never be able to run code.
        with np.load(path, allow_pickle=False) as data:
            # Reading every member checks every CRC now, not when a value is first used.
            arrays = {name: data[name] for name in data.files}
    except DAMAGE as error:
        if "allow_pickle" in str(error):  # NumPy's text invites the unsafe load: never here
            error = "it holds Python objects or text, not arrays"
        raise damaged(path, error, todo) from None
    stamp = {
        key: _stamp_text(path, key, arrays.pop(key), todo) for key in STAMP_KEYS if key in arrays
    }
    return arrays, stamp


def read_stamp(path: str | os.PathLike, todo: str = RECOMPUTE) -> dict[str, str]:
    """Only the stamp of an ``.npz`` file (the other members are not read: cheap for a
    checkpoint of a large model); empty for a file without one.

    >>> read_stamp("runs/e/round_01/checkpoint.npz")  # doctest: +SKIP
    {'__experiment__': '3f2a9c1b-5e8d0a7b4c21', '__file__': 'round_01/checkpoint.npz'}
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            entries = {key: data[key] for key in STAMP_KEYS if key in data.files}
    except DAMAGE as error:
        raise damaged(path, error, todo) from None
    return {key: _stamp_text(path, key, value, todo) for key, value in entries.items()}


def _stamp_text(path: str | os.PathLike, key: str, value: np.ndarray, todo: str) -> str:
    # A stamp is one short line of text; anything else is not a file lth_tf wrote.
    text = str(value) if value.ndim == 0 and value.dtype.kind == "U" else ""
    if not text or len(text) > 200 or not text.isprintable():
        raise damaged(path, f"its {key} entry is not a stamp lth_tf writes", todo)
    return text


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, text.getvalue().encode())


def read_csv(
    path: str | os.PathLike, columns: Sequence[str] = (), todo: str = RECOMPUTE
) -> list[dict[str, str]]:
    """The rows of a CSV file written by :func:`write_csv`; one that is not text, lacks one of
    ``columns`` in its header, or has a row of another length is an LthError naming it."""
    try:
        text = Path(path).read_bytes().decode()
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except DAMAGE as error:
        raise damaged(path, error, todo) from None
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise damaged(path, f"no column {missing[0]!r} in its header", todo)
    for number, row in enumerate(rows, start=2):
        # DictReader puts a short row's missing values as None, a long row's extras under None.
        if None in row or None in row.values():
            raise damaged(path, f"line {number} has another number of values", todo)
    return rows


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


@contextlib.contextmanager
def locked(directory: str | os.PathLike, what: str = "an lth_tf run") -> Iterator[Path]:
    """Holds ``<directory>/.lock`` (an OS advisory lock, with this process's pid inside) for
    the ``with`` block; while another process holds it, an LthError naming that process.

    The kernel drops the lock when its holder exits, however it exits, so a lock left by a
    killed run is simply taken: nothing stale to clean up by hand.

    >>> with locked("runs/lenet"):  # doctest: +SKIP
    ...     ...  # only this process writes into runs/lenet
    """
    directory = Path(directory)
    # The outermost folder this makes (--output_dir may be new too), to take back on a refusal.
    made = [parent for parent in [directory, *directory.parents] if not parent.exists()]
    refuse_links(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    try:
        # Never through a link: a planted .lock would have its target truncated.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666 & ~_UMASK)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise LthError(_LINK_MESSAGE.format(path=path)) from None
    try:
        refuse_links(directory)  # a link planted inside, now that nothing else writes here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LthError(
                f"{directory} is in use by {what} (pid {holder}); wait for it to end or stop "
                "it, then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield directory
        finally:
            # A run refused before it wrote anything leaves no directory it made behind.
            if made and [p.name for p in directory.iterdir()] == [LOCK_FILE]:
                path.unlink()
                for folder in made:  # innermost first; stops at one that is no longer empty
                    if any(folder.iterdir()):
                        break
                    folder.rmdir()
    finally:
        os.close(fd)  # releases the lock


_LINK_MESSAGE = (
    "{path} is a symbolic link: lth_tf writes an experiment only into real files and folders, "
    "never through a link to somewhere else; remove the link (or pass the folder it points to "
    "as --output_dir)"
)


def refuse_links(directory: Path) -> None:
    """Refuses an experiment directory that is a symbolic link or holds one (a file or folder
    at any depth): a run writes into every folder of it, and through a link it would write
    outside. ``--output_dir`` itself may be a link; it is the user's choice of place.

    >>> refuse_links(Path("runs/lenet"))  # doctest: +SKIP
    """
    if directory.is_symlink():
        raise LthError(_LINK_MESSAGE.format(path=directory))
    if not directory.is_dir():
        return
    for folder, folders, files in os.walk(directory):  # os.walk does not follow links
        for name in sorted(folders + files):
            if os.path.islink(os.path.join(folder, name)):
                raise LthError(_LINK_MESSAGE.format(path=Path(folder) / name))


def is_leftover(path: Path) -> bool:
    """A temporary file of :func:`write_bytes_atomic` (``.<name>.<random>.tmp``), or the lock.

    >>> is_leftover(Path(".hparams.json.x1y2z3.tmp")), is_leftover(Path("hparams.json"))
    (True, False)
    """
    name = path.name
    return name == LOCK_FILE or (name.startswith(".") and name.endswith(".tmp"))


def remove_leftovers(directory: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files kills left in ``directory`` and its subdirectories (the lock
    excepted); returns them. Call it only while holding :func:`locked`: a running writer's
    temporary file looks the same."""
    removed = []
    for path in sorted(Path(directory).rglob(".*.tmp")):
        if path.name != LOCK_FILE:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks.

    >>> len(file_sha256(__file__))
    64
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
