"""The prepared GPU check runs end to end in its dry-run mode (what CI can run: no GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_the_gpu_check_runs_dry_on_a_cpu_and_writes_its_summary(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        cwd=ROOT,
        env=dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    runs = {(run["model"], run["precision"]): run for run in summary["runs"]}
    assert set(runs) == {("lenet300_100", "float32"), ("resnet20", "float32")}
    for run in runs.values():
        assert run["steps"] == 20 and set(run["results"]) == {"fit", "imp_round"}
        assert all(r["images_per_second"] > 0 for r in run["results"].values())
    assert "imp_round" in result.stdout and "x fit" in result.stdout
