"""The one exception type that reaches users as a single line instead of a traceback, and the
line a failed file-system call becomes."""

import errno
import functools
import os
import re
from collections.abc import Callable
from typing import TypeVar

_Function = TypeVar("_Function", bound=Callable)


class LthError(Exception):
    """A problem with the user's input (a flag, a file, a directory) that they can fix.

    Pipelines print ``str(error)`` on one line and exit non-zero; the message should say
    what was wrong and what to do.

    >>> raise LthError("--rewind: 'soon' is not a step; use e.g. 0, 500it or 2ep")
    Traceback (most recent call last):
    ...
    lth_tf.errors.LthError: --rewind: 'soon' is not a step; use e.g. 0, 500it or 2ep
    """


# errno -> (its meaning in words, what to do); others get the system's words and the last hint.
# {output} is the flag that chose where the command writes.
_FREE_SPACE = "free space or choose another {output}, then rerun to resume"
_PERMISSION = ("permission denied", "check its permissions or choose another directory")
OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", _FREE_SPACE),
    errno.EDQUOT: ("disk quota exceeded", _FREE_SPACE),
    errno.EROFS: ("read-only file system", "choose a writable {output}"),
    errno.EACCES: _PERMISSION,
    errno.EPERM: _PERMISSION,
    errno.ENOTDIR: (
        "not a directory",
        "a file stands where a directory should be: move it or choose another path",
    ),
    errno.EISDIR: ("is a directory", "a directory stands where a file should be: move it away"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EEXIST: ("already exists", "move it away or choose another path"),
}
_OTHER_OS_ERROR = "check the path and the disk, then rerun"


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless one, as a message says them.

    >>> counted(1, "member"), counted(3, "member"), counted(2, "class")
    ('1 member', '3 members', '2 classes')
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def os_error_line(error: OSError, output_flag: str | None = "--output_dir") -> str:
    """``<path>: <meaning> (<what to do>)`` for a failed file-system call; ``output_flag`` is
    the flag that chose where the command writes (``lth-report``'s is ``--output``; None where
    no flag did).

    >>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "e/results.csv"))
    'e/results.csv: disk full (free space or choose another --output_dir, then rerun to resume)'
    """
    meaning, todo = OS_ERRORS.get(error.errno or 0, (None, _OTHER_OS_ERROR))
    if error.errno == errno.EEXIST and error.filename and os.path.isfile(error.filename):
        # makedirs met a file where it makes a folder: "already exists" reads as a clash.
        meaning, todo = OS_ERRORS[errno.ENOTDIR]
    elif error.errno == errno.EEXIST and isinstance(error.filename, str):
        # makedirs met a link to nothing (its target moved or deleted): name where it points.
        if os.path.islink(error.filename) and not os.path.exists(error.filename):
            target = os.readlink(error.filename)
            meaning = f"a link to {target}, which does not exist"
            todo = "create that folder, or remove the link"
    if error.errno == errno.ENOTDIR and isinstance(error.filename, str):
        # Name the file in the way (out/sub/e: out is the file), not the path through it.
        in_the_way = [p for p in _ancestors(error.filename) if os.path.isfile(p)]
        if in_the_way:
            error = OSError(error.errno, error.strerror, in_the_way[0])
    todo = todo.format(output=output_flag or "place")
    meaning = meaning or (error.strerror or str(error)).lower()
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    paths = list(dict.fromkeys(paths))  # a write into place names its file twice
    where = f"{' -> '.join(paths)}: " if paths else ""
    return f"{where}{meaning} ({todo})"


def _ancestors(path: str) -> list[str]:
    """``path`` and the folders above it, nearest first."""
    found = [path]
    while os.path.dirname(found[-1]) not in ("", found[-1]):
        found.append(os.path.dirname(found[-1]))
    return found


def os_errors_as_lth_errors(function: _Function) -> _Function:
    """Makes a failed file-system call inside ``function`` an :class:`LthError` with
    :func:`os_error_line`'s message: for the Python API, where no pipeline wrapper reports it.

    >>> read = os_errors_as_lth_errors(lambda: open("/nonexistent/x"))
    >>> read()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    lth_tf.errors.LthError: /nonexistent/x: no such file or directory (check the path)
    """

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as error:
            raise LthError(os_error_line(error)) from None

    return wrapped  # type: ignore[return-value]


def first_line(error: BaseException, limit: int = 200) -> str:
    """An error's first line (its type where it says nothing), without TensorFlow's
    ``{{function_node ...}}`` prefix and ``[Op:...]`` suffix, cut at ``limit`` characters.

    >>> first_line(ValueError("{{function_node f}} Cannot batch tensors [Op:IteratorGetNext]"))
    'Cannot batch tensors'
    """
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(error)).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    first = re.sub(r"\s*\[Op:\w+\].*$", "", first)
    return first if len(first) <= limit else f"{first[:limit]}..."


def one_line(error: BaseException) -> str:
    """An error as one line: an LthError's message, otherwise its type and first line.

    >>> one_line(ValueError("bad shape\\nmore detail")), one_line(KeyError())
    ('ValueError: bad shape', 'KeyError')
    """
    if isinstance(error, LthError):
        return first_line(error, limit=10_000)
    if not str(error).strip():
        return type(error).__name__
    return f"{type(error).__name__}: {first_line(error, limit=10_000)}"
