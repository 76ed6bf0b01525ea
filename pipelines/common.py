"""What every pipeline shares: one-line errors instead of tracebacks, and logging set-up."""

from __future__ import annotations

import errno
import functools
import logging
import sys
import traceback
import warnings
from collections.abc import Callable

import lth_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from lth_tf.errors import LthError
from lth_tf.startup import start_tensorflow_quietly  # noqa: F401  (what every pipeline calls)

EXIT_USER_ERROR = 2
EXIT_BUG = 1

# errno -> (its meaning in words, what to do); others get the system's words and the last hint.
OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", "free space or choose another --output_dir, then rerun to resume"),
    errno.EDQUOT: (
        "disk quota exceeded",
        "free space or choose another --output_dir, then rerun to resume",
    ),
    errno.EROFS: ("read-only file system", "choose a writable --output_dir"),
    errno.EACCES: ("permission denied", "check its permissions or choose another directory"),
    errno.EPERM: ("permission denied", "check its permissions or choose another directory"),
    errno.ENOTDIR: (
        "not a directory",
        "a file stands where a directory should be: move it or choose another path",
    ),
    errno.EISDIR: ("is a directory", "a directory stands where a file should be: move it away"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EEXIST: ("already exists", "move it away or choose another path"),
}
_OTHER_OS_ERROR = "check the path and the disk, then rerun"


def os_error_line(error: OSError) -> str:
    """``<path>: <meaning> (<what to do>)`` for a failed file-system call.

    >>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "e/results.csv"))
    'e/results.csv: disk full (free space or choose another --output_dir, then rerun to resume)'
    """
    meaning, todo = OS_ERRORS.get(error.errno or 0, (None, _OTHER_OS_ERROR))
    meaning = meaning or (error.strerror or str(error)).lower()
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    where = f"{' -> '.join(paths)}: " if paths else ""
    return f"{where}{meaning} ({todo})"


def user_errors_as_one_line(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Turns an :class:`LthError` or an ``OSError`` into ``error: <message>`` on stderr and
    exit status 2; anything else is a bug: its traceback, a line asking to report it, exit 1.

    Positional arguments (absl leaves them in ``argv``) are refused the same way.

    >>> main = user_errors_as_one_line(lambda argv: open("/nonexistent/x"))
    >>> main(["imp"])  # doctest: +SKIP
    error: /nonexistent/x: no such file or directory (check the path)
    """

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        try:
            if len(argv) > 1:
                raise LthError(
                    f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value"
                )
            main(argv)
        except LthError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except OSError as error:
            print(f"error: {os_error_line(error)}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume", file=sys.stderr)
            sys.exit(130)
        except Exception as error:
            traceback.print_exc()
            print(
                f"error: {type(error).__name__} is a bug in lth_tf; please report it with the "
                "command and the traceback above",
                file=sys.stderr,
            )
            sys.exit(EXIT_BUG)

    return wrapped


def setup_logging() -> None:
    """Progress lines from ``lth_tf`` on stdout, plain, without absl's prefixes."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    # tf.data warns about its own option plumbing under distribution strategies.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")
    logger = logging.getLogger("lth_tf")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
