"""``python -m pipelines.imp`` end to end: bad input, kill-and-resume, a 2-replica run."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lth_tf import io
from tests.helpers import ROOT, run_pipeline

SMALL_RUN = ["--model=lenet300_100", "--dataset=mnist", "--noprogress"]


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--model=nope"], "unknown model 'nope'"),
        (["--prune_rates=fc=1.5"], "fc=1.5 is not in [0, 1)"),
        (["--rewind=soon"], "'soon' is not a step"),
        (["--strategy=warp"], "unknown strategy 'warp'"),
        (["--dataset=imagenet"], "unknown dataset 'imagenet'"),
        (["--iterations=0"], "--iterations must be more than 0"),
        (["--mixed_precision=half"], "--mixed_precision: unknown 'half'"),
    ],
)
def test_bad_flags_exit_nonzero_with_one_line(flags, reason, tmp_path):
    result = run_pipeline("pipelines.imp", *flags, f"--output_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and reason in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_data_fails_fast_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    began = time.monotonic()
    result = run_pipeline(
        "pipelines.imp", "--dataset=mnist", f"--data_dir={empty}", f"--output_dir={tmp_path}"
    )
    assert time.monotonic() - began < 60
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot load dataset 'mnist'" in result.stderr and str(empty) in result.stderr


def test_rewind_past_round_0_is_refused(idx_dir, tmp_path):
    result = run_pipeline(
        "pipelines.imp",
        *SMALL_RUN,
        f"--data_dir={idx_dir}",
        "--iterations=50",
        "--rewind=10ep",
        "--rounds=1",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 2 and "past the end of round 0" in result.stderr


def _comparable(experiment):
    rows = io.read_csv(experiment / "results.csv")
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def test_run_killed_mid_round_resumes_to_the_uninterrupted_results(idx_dir, tmp_path):
    flags = [
        *SMALL_RUN,
        f"--data_dir={idx_dir}",
        "--rounds=2",
        "--iterations=300",
        "--eval_every=20",
        "--rewind=30it",
        f"--output_dir={tmp_path}",
    ]
    whole = run_pipeline("pipelines.imp", *flags, "--experiment_name=whole")
    assert whole.returncode == 0, whole.stderr

    cmd = [sys.executable, "-m", "pipelines.imp", *flags, "--experiment_name=killed"]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed" / "round_01" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), "the run never checkpointed round 1"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(io.read_csv(tmp_path / "killed" / "results.csv")) == 1  # only round 0 finished

    resumed = run_pipeline("pipelines.imp", *flags, "--experiment_name=killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumes at iteration" in resumed.stdout
    assert _comparable(tmp_path / "killed") == _comparable(tmp_path / "whole")
    for pruning_round in range(3):
        for file in ("masks.npz", "weights.npz"):
            a = io.read_npz(tmp_path / "whole" / f"round_{pruning_round:02d}" / file)
            b = io.read_npz(tmp_path / "killed" / f"round_{pruning_round:02d}" / file)
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])


def test_two_replica_mirrored_run_on_virtual_cpus(idx_dir, tmp_path):
    result = run_pipeline(
        "pipelines.imp",
        *SMALL_RUN,
        f"--data_dir={idx_dir}",
        "--rounds=2",
        "--iterations=40",
        "--strategy=mirrored",
        "--virtual_cpus=2",
        f"--output_dir={tmp_path}",
        "--experiment_name=mirrored",
    )
    assert result.returncode == 0, result.stderr
    assert len(io.read_csv(tmp_path / "mirrored" / "results.csv")) == 3
    rates = {"fc1/kernel": 0.2, "fc2/kernel": 0.2, "output/kernel": 0.1}
    for pruning_round in range(3):
        masks = io.read_npz(tmp_path / "mirrored" / f"round_{pruning_round:02d}" / "masks.npz")
        weights = io.read_npz(tmp_path / "mirrored" / f"round_{pruning_round:02d}" / "weights.npz")
        for name, rate in rates.items():
            assert abs(masks[name].sum() - masks[name].size * (1 - rate) ** pruning_round) <= 1
            assert np.all(weights[name][masks[name] == 0] == 0)
