"""The README's Python API example runs as written."""

from __future__ import annotations

import re

from tests.helpers import ROOT

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
