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


@pytest.mark.parametrize(
    "content",
    ["[]", "{}", '{"members": null}', '{"members": [1]}', '{"members": [{"name": "../../a"}]}'],
)
def test_a_sweep_json_of_another_shape_or_naming_folders_elsewhere_is_damaged(content, tmp_path):
    # lth-sweep refuses the same file; the report must not crash on it, nor follow ../ out of
    # the sweep directory.
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(content)
    result = run_main("pipelines.report", f"--experiments={tmp_path / 'sweep'}", "--output=x")
    assert_one_line_error(result, "sweep.json is damaged (not a list of named members)")


def test_a_sweep_json_that_lists_a_member_twice_is_damaged_not_the_flag(tmp_path):
    (tmp_path / "sweep").mkdir()
    twice = '{"members": [{"name": "seed0"}, {"name": "seed1"}, {"name": "seed0"}]}'
    (tmp_path / "sweep" / "sweep.json").write_text(twice)
    result = run_main("pipelines.report", f"--experiments={tmp_path / 'sweep'}", "--output=x")
    assert_one_line_error(result, "sweep.json is damaged (it lists member seed0 twice)")


def test_an_experiment_with_a_comma_in_its_name_is_offered_a_glob(tmp_path):
    (tmp_path / "a,b,c").mkdir()
    result = run_main("pipelines.report", f"--experiments={tmp_path / 'a,b,c'}", "--output=x")
    assert_one_line_error(result, f"--experiments='{tmp_path / 'a?b?c'}'")


def test_an_empty_entry_in_experiments_is_not_the_working_directory(tmp_path):
    result = run_main("pipelines.report", f"--experiments={tmp_path},", "--output=x")
    assert_one_line_error(result, "--experiments: empty entry in")
