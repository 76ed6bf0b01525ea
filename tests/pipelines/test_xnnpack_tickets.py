"""``--prune_for=xnnpack`` end to end: a MobileNet-shaped model of the tests' own with
keras.applications-style asymmetric stride-2 padding is rebuilt symmetric, pruned past XNNPack's
2/3 zeros in its 1x1 convolutions, and its ticket runs XNNPack's sparse kernels on an emulated
ARM; models that break the sparse-subgraph rules are refused before anything is written.

Small on purpose: 5 classes of 20x20x3 images, 4 rounds of 20 iterations. No timing is
asserted (the figures are in docs/export.md and the issue notes).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

import lth_tf
from lth_tf import io
from tests.helpers import assert_one_line_error, run_main
from tests.user_model import write_shapes_npz

FLAGS = [
    "--prune_for=xnnpack",
    "--rounds=4",
    "--iterations=20it",
    "--eval_every=10it",
    "--rewind=0it",
    # 1 - 0.65**r of the 1x1 weights: 35%, 58%, 73% (round 3: past 2/3), 82%.
    "--prune_rates=conv=0.35,fc=0.2,output=0.1",
    "--notensorboard",
]


def imp(*args: str):
    return run_main("pipelines.imp", *args, "--noprogress", tensorflow=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("xnnpack")
    npz = write_shapes_npz(root / "shapes.npz")
    return SimpleNamespace(root=root, npz=npz, out=root / "runs")


@pytest.fixture(scope="module")
def xnnpack_run(files):
    """The run, and the log lines it wrote."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler, logger = Keep(), logging.getLogger("lth_tf")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = imp(
            "--model=tests.user_model:xnnpack_mobilenet",
            f"--dataset=npz:{files.npz}",
            *FLAGS,
            f"--output_dir={files.out}",
            "--experiment_name=mobilenet",
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(root=files.out / "mobilenet", log=records)


@pytest.mark.parametrize(
    "builder, layer, fix",
    [
        ("xnnpack_breaks_standard_conv", "'conv3'", "DepthwiseConv2D"),
        ("xnnpack_breaks_dense_before_mean", "'fc'", "GlobalAveragePooling2D"),
    ],
)
def test_a_model_that_breaks_the_rules_is_one_line_naming_the_layer_before_any_directory(
    files, builder, layer, fix
):
    out = files.root / f"refused-{builder}"
    result = imp(
        f"--model=tests.user_model:{builder}",
        f"--dataset=npz:{files.npz}",
        *FLAGS,
        f"--output_dir={out}",
    )
    assert_one_line_error(result, "--prune_for=xnnpack: ")
    assert layer in result.stderr and fix in result.stderr
    assert not out.exists()


def test_a_ticket_whose_1x1_convolutions_would_never_be_sparse_is_refused(files):
    out = files.root / "refused-dense"
    common = [f"--dataset=npz:{files.npz}", *FLAGS, f"--output_dir={out}"]
    result = imp("--model=tests.user_model:xnnpack_no_pointwise", *common)
    assert_one_line_error(result, "has no 1x1 convolution between the stem 'stem' and")
    result = imp("--model=tests.user_model:xnnpack_mobilenet", *common, "--prune_rates=conv=0")
    assert_one_line_error(result, "leaves every 1x1 convolution dense")
    assert not out.exists()


def test_a_registered_net_is_refused_too_and_channel_granularity_with_it():
    result = imp("--model=conv2", "--dataset=fashion_mnist", "--prune_for=xnnpack")
    assert_one_line_error(result, "--prune_for=xnnpack: ")
    result = imp("--model=conv2", "--prune_for=xnnpack", "--granularity=channel")
    assert_one_line_error(result, "drop one of the two")
    result = imp("--model=conv2", "--prune_for=arm")
    assert_one_line_error(result, "unknown target 'arm'; choose one of any, xnnpack")


def test_asymmetric_stride_2_padding_is_rebuilt_symmetric_announced_and_recorded(xnnpack_run):
    record = io.read_json(xnnpack_run.root / "hparams.json")
    changes = record["model"]["xnnpack"]["symmetric_padding"]
    assert [change.split(":")[0] for change in changes] == ["stem", "block2_dw"]
    assert "pads 0 before and 1 after" in changes[0]
    assert record["model"]["xnnpack"]["sparse_subgraph"]["stem"] == "stem"
    assert record["hparams"]["pruning"]["prune_for"] == "xnnpack"
    announced = [line for line in xnnpack_run.log if "pad symmetrically" in line]
    assert len(announced) == 1 and "stem" in announced[0]
    # The ticket is the rebuilt architecture: the stem has its own symmetric pad.
    model = lth_tf.Experiment(xnnpack_run.root).model(2)
    pad = model.get_layer("stem_pad")
    assert pad.padding == ((1, 1), (1, 1)) and model.get_layer("stem").padding == "valid"


def test_results_count_the_1x1_zeros_and_the_log_marks_the_first_round_past_two_thirds(
    xnnpack_run, files
):
    rows = lth_tf.Experiment(xnnpack_run.root).results
    zeros = [row.xnnpack_1x1_zeros for row in rows]
    assert zeros[0] == 0.0
    for pruning_round, fraction in enumerate(zeros):
        # Layerwise exact counts: each 1x1 kernel keeps round(0.65**r * size) weights or so.
        assert fraction == pytest.approx(1 - 0.65**pruning_round, abs=0.01)
    marks = [line for line in xnnpack_run.log if "past 2/3" in line]
    assert len(marks) == 1 and marks[0].startswith("round  3 |")
    report = run_main(
        "pipelines.report",
        f"--experiments={xnnpack_run.root}",
        f"--output={files.root / 'report'}",
    )
    assert report.returncode == 0, report.stderr
    assert "XNNPack runs its tickets sparse on ARM from round 3" in report.stdout


def test_the_ticket_runs_sparse_on_arm_and_exactly_and_the_dense_round_does_not(
    xnnpack_run, tmp_path
):
    report = lth_tf.Experiment(xnnpack_run.root).export(
        4, tmp_path, arm=True, arm_examples=40, verbose=False
    )
    arm = report["arm"]["files"]
    ticket, dense = arm["ticket/ticket.tflite"], arm["dense/ticket.tflite"]
    assert ticket["sparse_inference"] and not dense["sparse_inference"]
    assert any("spmm" in kernel for kernel in ticket["kernels"])
    assert ticket["shippable"] and ticket["accuracy"] == ticket["keras_accuracy"]
    assert arm["ticket/ticket_fp16.tflite"]["sparse_inference"]
    assert report["arm"]["examples"] == 40
    assert set(report["verdict"]["targets"]) == {
        report["latency"]["machine"],
        "arm64, emulated",
    }
    on_arm = {f["file"]: f for f in report["verdict"]["targets"]["arm64, emulated"]["files"]}
    assert on_arm["ticket.tflite"]["speedup_vs_dense"] == pytest.approx(
        dense["median_us"] / ticket["median_us"], rel=1e-3
    )
    assert len(on_arm["ticket.tflite"]["round_speedups"]) == len(ticket["round_medians_us"])
