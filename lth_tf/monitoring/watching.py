"""Whether a person watches this process's output: a terminal, or a notebook's cell.

Cheap and free of TensorFlow, so the Python API can decide how to show progress before
TensorFlow starts.

>>> person_watching()  # doctest: +SKIP
True
"""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel (a notebook, JupyterLab, Colab, VS Code's), whose
    cells show output as it comes though its stdout is no terminal; False in a terminal
    IPython or plain Python.

    >>> in_notebook()
    False
    """
    ipython = sys.modules.get("IPython")  # never imported here: a notebook has it loaded
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    # Kernel shells (ipykernel's ZMQInteractiveShell, Colab's) have a kernel; the terminal's not.
    return getattr(shell, "kernel", None) is not None


def person_watching() -> bool:
    """True where a person sees the output as it comes: stderr or stdout is a terminal, or a
    notebook kernel runs this; False for pipes, log files and batch jobs.

    >>> person_watching()  # doctest: +SKIP
    False
    """
    return in_notebook() or any(_is_terminal(stream) for stream in (sys.stderr, sys.stdout))


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # None, a closed stream, a replacement object
        return False
