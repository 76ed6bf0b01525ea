"""``python -m pipelines.export``: the one-line-error wrapper in a real process. What an export
writes (from a real process too) and what it refuses are in tests/export/test_export.py."""

from tests.helpers import assert_one_line_error, run_pipeline


def test_a_refusal_is_one_line_on_stderr_and_exit_2(broken, tmp_path):
    """An LthError is ``error: ...`` alone on stderr, exit status 2, no traceback, and nothing
    is written."""
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={broken / 'unfinished'}",
        "--round=2",
        f"--output_dir={tmp_path}",
    )
    assert_one_line_error(result, "round 2 of")
    assert "has not finished; finished rounds: 0-1" in result.stderr
    assert not any(tmp_path.iterdir())


def test_arm_examples_without_arm_is_one_line(broken, tmp_path):
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={broken / 'unfinished'}",
        "--arm_examples=5",
        f"--output_dir={tmp_path}",
    )
    assert_one_line_error(result, "--arm_examples is for the emulated ARM run: add --arm")
    assert not any(tmp_path.iterdir())
