"""What the process's stderr shows of the C++ lines lth_tf hides (lth_tf.startup.quiet_stderr)."""

import subprocess
import sys

import pytest

SCRIPT = """
import os
from lth_tf.startup import quiet_stderr
try:
    with quiet_stderr():
        os.write(2, b"C++ start-up chatter\\n")
        raise {error}
except BaseException:
    pass
"""


@pytest.mark.parametrize(
    "error, shown",
    [
        ("RuntimeError('boom')", True),  # a failure: the lines may say why
        ("KeyboardInterrupt", False),  # Ctrl-C: a stop, not a failure they explain
    ],
)
def test_hidden_lines_are_shown_after_a_failure_but_not_after_a_stop(error, shown):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(error=error)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ("C++ start-up chatter" in result.stderr) == shown, result.stderr
