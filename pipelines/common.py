"""What every pipeline shares: one-line errors instead of tracebacks, and logging set-up."""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable

import lth_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from lth_tf.errors import LthError

EXIT_USER_ERROR = 2


def user_errors_as_one_line(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Turns an :class:`LthError` into ``error: <message>`` on stderr and exit status 2.

    Positional arguments (absl leaves them in ``argv``) are refused the same way.
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
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume", file=sys.stderr)
            sys.exit(130)

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


def start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with the C++ start-up chatter hidden.

    On a machine without CUDA, TensorFlow prints several lines about missing drivers to the
    process's stderr before Python's logging exists; they bury the one line a user needs. The
    text is shown after all if the start fails.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved_fd, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
