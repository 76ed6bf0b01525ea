"""The throughput benchmark: its summary, the pipelines it times, its fit peer, its refusals."""

from __future__ import annotations

import json

import pytest

from tests.helpers import imp_hparams, run_pipeline, run_python

# The benchmark defines absl flags (--model, ...) that the pipelines' own would clash with in
# this process: its summary is printed in a process of its own.
SUMMARY = """
from benchmarks.imp_throughput import print_summary
print_summary({
    "resnet20": {
        "fit": {"images_per_second": 800.0},
        "fit_xla": {"images_per_second": 250.0},
        "imp_round": {"images_per_second": 840.0},
        "torch_peer": {"images_per_second": 600.0, "seconds_per_iteration": 0.213},
    },
    "lenet300_100": {
        "imp_round": {"images_per_second": 90000.0},
        "pipeline": {
            "seconds_per_iteration": 0.08,
            "iterations": [20, 120],
            "peers": {
                "fit": {"seconds_per_iteration": 0.084, "pair_ratios": [1.0, 1.1]},
                "torch_peer": {"seconds_per_iteration": 0.112, "pair_ratios": [1.3, 1.5]},
            },
        },
    },
    "tests.user_model:mobilenet_v2_style": {
        "fit": {"images_per_second": 3000.0},
        "imp_round": {"images_per_second": 2700.0},
    },
})
"""


def test_the_summary_divides_the_imp_round_by_the_best_fit_and_by_the_pytorch_peer():
    result = run_python("-c", SUMMARY)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()[1:]
        if line and not line.startswith("lenet300_100:")
    }
    # 840 / max(800, 250) and 840 / 600.
    assert lines["resnet20"][-2:] == ["1.05x", "1.40x"]
    # No peer and no fit_xla: the best fit is fit, the PyTorch column stays empty.
    assert lines["tests.user_model:mobilenet_v2_style"][-1] == "0.90x"
    assert lines["tests.user_model:mobilenet_v2_style"][2] == "-"
    # The issue's own protocol, when measured: each peer's marginal time / the pipeline's.
    assert (
        "lenet300_100: pipelines.imp --rounds=0, marginal from 20 to 120 iterations: "
        "0.0800 s/it; plain fit 0.0840 s/it: 1.05x (pairs 1.00, 1.10); PyTorch peer 0.1120 "
        "s/it: 1.40x (pairs 1.30, 1.50) (medians; a ratio above 1.00x: the pipeline trains "
        "faster)"
    ) in result.stdout.splitlines()


def test_a_torch_python_that_is_no_program_is_one_line_before_anything_is_timed(tmp_path):
    result = run_pipeline(
        "benchmarks.imp_throughput",
        "--model=lenet300_100",
        f"--torch_python={tmp_path / 'no-python'}",
        timeout=120,
    )
    assert result.returncode == 2  # a user error
    assert "--torch_python=" in result.stderr and "not an executable file" in result.stderr
    assert "Traceback" not in result.stderr
    assert "images/s" not in result.stdout


def test_pipeline_iterations_that_are_not_two_growing_lengths_are_one_line():
    result = run_pipeline(
        "benchmarks.imp_throughput",
        "--model=resnet20",
        "--only=pipeline",
        "--pipeline_iterations=120,20",
        timeout=120,
    )
    assert result.returncode == 2  # a user error, before TensorFlow starts
    assert "--pipeline_iterations=120,20: give two run lengths" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flag, says",
    [
        ("--remaining=0", "--remaining must be a finite number in (0, 1), got 0.0"),
        ("--remaining=nan", "--remaining must be a finite number in (0, 1), got nan"),
        ("--overhead_repeats=0", "--overhead_repeats must be an integer >= 1, got 0"),
        ("--overhead_eval_every=0", "--overhead_eval_every=0: give a length of more than 0"),
    ],
)
def test_a_measurements_bad_setting_is_one_line_naming_its_flag(flag, says):
    result = run_pipeline(
        "benchmarks.imp_throughput", "--model=lenet300_100", "--only=overhead", flag, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: {says}") and result.stderr.count("\n") == 1


COMMAND = """
import json, sys
from benchmarks import imp_throughput as b
b.FLAGS(["imp_throughput", *sys.argv[1:]])
print(json.dumps(b.pipeline_command("resnet20", 120, 128, "/tmp/out")))
"""


def test_the_pipeline_measurement_runs_round_0_as_the_issue_times_it_evaluated_once():
    # The benchmark's flags clash with pipelines.imp's in one process: built in its own.
    result = run_python("-c", COMMAND, "--mixed_precision=bfloat16", "--nojit_compile")
    assert result.returncode == 0, result.stderr[-2000:]
    command = json.loads(result.stdout.splitlines()[-1])
    assert command[1:3] == ["-m", "pipelines.imp"]
    hparams = imp_hparams(*command[3:])
    assert (hparams.model.name, hparams.dataset.name) == ("resnet20", "fashion_mnist")
    assert hparams.pruning.rounds == 0 and hparams.pruning.rewind == "0it"
    # One evaluation, at the end: the short and the long run differ by training alone.
    assert hparams.training.iterations == hparams.training.eval_every == "120it"
    assert (hparams.training.batch_size, hparams.training.augment) == (128, "none")
    # The benchmark's numerics and XLA choice go with it (pipelines.imp parsed them above).
    assert "--mixed_precision=bfloat16" in command and "--jit_compile=false" in command
    assert "--output_dir=/tmp/out" in command


FIT_PEER = """
import sys
from benchmarks import imp_throughput as b
b.FLAGS(sys.argv)
peer = b.fit_peer("lenet300_100", "fit")
seconds = [peer.seconds(n) for n in (3, 300)]
peer.close()
print(*seconds)
"""


def test_plain_fit_serves_beside_the_imp_round_from_a_process_of_its_own():
    # As the benchmark starts it (its own command line, --serve=fit added); lenet at batch 60.
    result = run_python("-c", FIT_PEER, "--model=lenet300_100", "--only=fit,imp_round", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    short, long = (float(s) for s in result.stdout.split())
    # Each answer is the seconds of that many iterations of fit: 100 times as many take longer.
    assert 0 < short < long


def test_plain_fit_is_timed_beside_the_whole_pipelines_as_the_issue_compares_them(tmp_path):
    # The issue's whole comparison in one run: each pipeline pair, then fit's pair right after.
    output = tmp_path / "lenet.json"
    result = run_pipeline(
        "benchmarks.imp_throughput",
        "--model=lenet300_100",
        "--only=pipeline,fit",
        "--repeats=1",
        "--pipeline_iterations=10,60",
        f"--output={output}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pipeline = json.loads(output.read_text())["results"]["pipeline"]
    assert list(pipeline["peers"]) == ["fit"]  # no --torch_python: no PyTorch peer
    fit = pipeline["peers"]["fit"]
    assert len(pipeline["marginals"]) == len(fit["marginals"]) == len(fit["pair_ratios"]) == 1
    # fit served beside the pipelines, not in the benchmark's own process before them.
    assert "fit" not in json.loads(output.read_text())["results"]
