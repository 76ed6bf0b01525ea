"""The README's Python API example runs as written, and its Quickstart sample output is what
``make run`` prints (docs/quickstart_sample.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from lth_tf import io
from tests.helpers import ROOT

QUICKSTART_SAMPLE = ROOT / "docs" / "quickstart_sample.py"
MARKER = "<!-- api-example: tests/test_readme.py runs this block -->"


def readme_api_example() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER) + len(MARKER) :]
    match = re.match(r"\s*```python\n(.*?)```", after, re.S)
    assert match, "the API example's python block must follow its marker"
    return match.group(1)


def test_the_readme_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_api_example(), "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[:3]] == ["round 0", "round 1", "round 2"]
    assert "Which file to ship: size and speed against the dense export" in "\n".join(printed)
    int8_accuracy = float(printed[-1])
    assert 0.5 < int8_accuracy <= 1.0  # 10 classes: chance is 0.1
    assert (tmp_path / "runs" / "api_demo" / "model.keras").exists()
    assert (tmp_path / "saved_models" / "api_demo" / "round_02" / "ticket_int8.tflite").exists()
    # "Calling it again with the same arguments resumes": the finished rounds, as they were.
    exec(compile(readme_api_example(), "README.md (Python API)", "exec"), {})
    assert capsys.readouterr().out.splitlines()[:3] == printed[:3]
    assert len(io.read_csv(tmp_path / "runs" / "api_demo" / "results.csv")) == 3


def quickstart_sample():
    """docs/quickstart_sample.py as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("quickstart_sample", QUICKSTART_SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quickstart_sample_is_what_make_run_prints_in_rounds_0_and_1():
    # Rounds 0-1 of the Makefile's run: command (8-10 s on 2 busy cores); round 10's line by
    # its format. Accuracies within 1.5 points, the seconds by format (the script's rules).
    result = subprocess.run(
        [sys.executable, str(QUICKSTART_SAMPLE), "--check", "--rounds=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agrees with the run (rounds 0-1 compared, round 10 by format)" in result.stdout


# A sample as the README shows it, and the lines a 1-round run of it prints.
SAMPLE = """Experiment: runs/quickstart
round  0 | 100.00% of weights remain | test 85.28% | early stop at 1000: test 85.28% | 2.1 s
round  1 |  80.04% of weights remain | test 84.67% | early stop at 700: test 85.48% | 1.8 s
...
round 10 |  10.83% of weights remain | test 86.58% | early stop at 1000: test 86.58% | 1.7 s
"""
RUN_OF_1_ROUND = SAMPLE.splitlines()[:3]


@pytest.mark.parametrize(
    "shown, printed, agrees",
    [
        ("1.8 s", "12.3 s", True),  # seconds: by format
        ("test 84.67%", "test 83.20%", True),  # 1.47 points
        ("test 84.67%", "test 83.10%", False),  # 1.57 points
        ("test 85.48%", "test 86.99%", False),  # early stop's, 1.51 points
        ("80.04%", "80.05%", False),  # weights remaining: exact
        ("at 700: test 85.48%", "at 800: test 85.60%", True),  # another float path
        ("at 700: test 85.48%", "at 800: test 85.48%", False),  # the same floats
        ("at 700: test 85.48%", "at 750: test 85.60%", False),  # not an evaluation
        ("at 700: test 85.48%", "at 1100: test 85.60%", False),  # past the round
        ("test 84.67%", "test 84.7%", False),  # a run line's format: its decimals,
        ("round  1 |  80", "round 1 |  80", False),  # its padding
        ("test 86.58% | 1.7", "test 86.6% | 1.7", False),  # a round not run: its format
        ("round 10", "round  9", False),  # not the Makefile's last round
        ("...\n", "", False),
        ("runs/quickstart", "runs/demo", False),
    ],
)
def test_the_quickstart_check_allows_what_another_cpu_prints_and_no_more(shown, printed, agrees):
    script = quickstart_sample()
    readme = SAMPLE.replace(shown, printed, 1).splitlines()
    assert readme != SAMPLE.splitlines()
    problems, inexact = script.disagreements(readme, RUN_OF_1_ROUND, 10, 1000)
    assert not problems if agrees else problems
    if agrees:  # the check says which lines are not the run's to the digit
        assert inexact == ([] if shown == "1.8 s" else ["round 1"])
    assert script.disagreements(SAMPLE.splitlines(), RUN_OF_1_ROUND, 10, 1000) == ([], [])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--rounds=0"], "--rounds must be 1 to 10"),
        (["--rounds=11", "--check"], "--rounds must be 1 to 10"),
        (["--rounds=x"], "invalid int value: 'x'"),
        (["--rounds=1"], "--rounds is for --check"),
        (["--chek"], "unrecognized arguments: --chek"),
    ],
)
def test_a_bad_quickstart_sample_argument_is_one_line_before_anything_runs(arguments, message):
    result = subprocess.run(
        [sys.executable, str(QUICKSTART_SAMPLE), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("--rounds=10 --iterations=2ep", "--iterations as a plain positive number, not '2ep'"),
        ("--rounds=abc --iterations=1000", "--rounds as a plain positive number, not 'abc'"),
        ("--rounds=10 --iterations=1000 --experiment_name='open", "does not parse"),
    ],
)
def test_a_makefile_whose_run_command_the_sample_cannot_read_is_one_line(tmp_path, recipe, message):
    script = quickstart_sample()
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "run := not the target\n"
        f"run: setup\n\t$(BIN)/python -m pipelines.imp --model=lenet300_100 {recipe}\n"
    )
    with pytest.raises(script.UserError, match=message):
        arguments = script.make_run_arguments(makefile)
        script.count_flag(arguments, "rounds")
        script.count_flag(arguments, "iterations")
