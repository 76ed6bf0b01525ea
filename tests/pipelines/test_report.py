"""``python -m pipelines.report``: its refusals, checked by its main in this process, and once
through a real process for the one-line-error wrapper. What a report holds is in
tests/monitoring/test_monitoring.py."""

import pytest

from tests.helpers import assert_one_line_error, run_main, run_pipeline


def test_a_refusal_is_one_line_on_stderr_and_exit_2():
    """The one-line-error wrapper in a real process: ``error: ...`` alone on stderr, exit
    status 2, no traceback."""
    result = run_pipeline(
        "pipelines.report", "--experiments=/nonexistent/run", "--output=x", timeout=120
    )
    assert_one_line_error(result, "/nonexistent/run does not exist")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--experiments=/nonexistent/run", "--output=x"], "/nonexistent/run does not exist"),
        (["--experiments=", "--output=x"], "give one or more experiment directories"),
        (["--experiments=/nonexistent/run"], "--output: give a path prefix"),
    ],
)
def test_report_pipeline_prints_one_line_errors(flags, message):
    result = run_main("pipelines.report", *flags)
    assert_one_line_error(result, message)
