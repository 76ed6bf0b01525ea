"""absl entry points: they parse flags and call the ``lth_tf`` library."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

INTERRUPTED_WHILE_STARTING = "interrupted while starting; nothing was written"


def stop_while_starting(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C before a pipeline's own handlers are in place (while Python imports it, ~1 s):
    one line and exit status 130, not a KeyboardInterrupt's traceback from inside an import."""
    print(f"{INTERRUPTED_WHILE_STARTING}; rerun the command", file=sys.stderr)
    raise SystemExit(130)


def _runs_as_a_program() -> bool:
    """``python -m pipelines.imp`` (argv[0] is "-m" while it imports this package) or a console
    script (lth-imp): a program that imports pipelines.common (a test, a notebook) keeps its own
    Ctrl-C."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return program == "-m" or program.startswith("lth-")


if _runs_as_a_program() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, stop_while_starting)
