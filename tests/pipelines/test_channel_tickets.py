"""Channel tickets end to end (``--granularity=channel``): the tests' residual user model and a
MobileNetV2-style one through IMP, a kill and resume, the random_reinit and random_prune
controls, stability analysis, and an export whose shrunk network computes the ticket's logits.

Small on purpose: 5 classes of 20x20x3 images, 2 rounds of 60 iterations.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.monitoring.tensorboard import logged_tags
from lth_tf.pruning.masks import surviving_count
from tests.helpers import (
    assert_one_line_error,
    run_killed_after_a_checkpoint,
    run_main,
    run_pipeline,
)
from tests.pipelines.test_custom_model import assert_same_rounds
from tests.user_model import residual_net, shapes_arrays, write_shapes_npz

RATES = {"conv": 0.3, "fc": 0.4}  # no output rate: the scores' layer keeps its units
FLAGS = [
    "--granularity=channel",
    "--rounds=2",
    "--learning_rate=0.01",
    "--iterations=60it",
    "--eval_every=20it",
    "--rewind=10it",
    "--prune_rates=" + ",".join(f"{kind}={rate}" for kind, rate in RATES.items()),
    "--notensorboard",
]
# residual_net's channel groups: the residual add ties stem and pointwise; hidden is alone.
GROUPS = {("stem/kernel", "pointwise/kernel"): "conv", ("hidden/kernel",): "fc"}


def imp(*args: str):
    return run_main("pipelines.imp", *args, "--noprogress", tensorflow=True)


def channels(mask: np.ndarray) -> np.ndarray:
    """A kernel mask's 0/1 vector of output channels; asserts the mask is whole channels."""
    vector = mask.reshape(-1, mask.shape[-1]).max(axis=0)
    assert np.all(mask == vector), "the mask prunes parts of channels"
    return vector


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("channels")
    npz = write_shapes_npz(root / "shapes.npz")
    common = ["--model=tests.user_model:residual_net", f"--dataset=npz:{npz}", *FLAGS]
    return SimpleNamespace(root=root, npz=npz, out=root / "runs", flags=common)


@pytest.fixture(scope="module")
def channel_run(files):
    result = imp(*files.flags, f"--output_dir={files.out}", "--experiment_name=residual")
    assert result.returncode == 0, result.stderr
    return files.out / "residual"


def test_rounds_prune_whole_channels_of_tied_layers_at_the_kinds_rates(channel_run):
    experiment = lth_tf.Experiment(channel_run)
    assert experiment.rounds == [0, 1, 2]
    previous = None
    for row, pruning_round in zip(experiment.results, experiment.rounds, strict=True):
        masks, weights = experiment.masks(pruning_round), experiment.weights(pruning_round)
        surviving = {}
        for kernels, kind in GROUPS.items():
            vectors = [channels(masks[k]) for k in kernels]
            for vector in vectors[1:]:  # the operands of the residual add keep the same channels
                np.testing.assert_array_equal(vector, vectors[0])
            sparsity = 1 - (1 - RATES[kind]) ** pruning_round
            assert vectors[0].sum() == surviving_count(vectors[0].size, sparsity)
            if previous is not None:
                assert np.all(vectors[0] <= channels(previous[kernels[0]]))
            surviving[kind] = surviving.get(kind, 0) + len(kernels) * int(vectors[0].sum())
        assert masks["logits/kernel"].all()  # the layer producing the scores is never pruned
        # A pruned channel's bias, batch norm γ/β and depthwise slice are exactly zero.
        dead = channels(masks["stem/kernel"]) == 0
        for name in ("stem_bn/gamma", "stem_bn/beta", "depthwise_bn/gamma", "pointwise/bias"):
            assert np.all(weights[name][dead] == 0), name
        assert np.all(weights["depthwise/depthwise_kernel"][:, :, dead] == 0)
        assert np.all(weights["hidden/bias"][channels(masks["hidden/kernel"]) == 0] == 0)
        assert (row.channels_conv, row.channels_fc) == (surviving["conv"], surviving["fc"])
        if pruning_round > 0:
            assert row.shrunk_parameters < experiment.results[0].shrunk_parameters
        previous = masks
    assert experiment.results[0].test_accuracy > 0.5  # it learns (chance is 20%)


def test_the_shrunk_model_and_its_export_compute_the_tickets_logits(channel_run, tmp_path):
    experiment = lth_tf.Experiment(channel_run)
    masked, small = experiment.model(2), experiment.model(2, shrunk=True)
    images = shapes_arrays()["x_test"].astype(np.float32)
    np.testing.assert_allclose(small(images).numpy(), masked(images).numpy(), rtol=1e-4, atol=1e-4)
    assert small.get_layer("stem").filters == small.get_layer("pointwise").filters < 8
    assert small.count_params() == experiment.results[2].shrunk_parameters

    report = experiment.export(2, output_dir=tmp_path)
    shrunk = report["shrunk"]
    assert shrunk["parameters"] == small.count_params() < report["dense"]["parameters"]["total"]
    assert shrunk["multiply_adds"] < report["dense"]["multiply_adds"]
    assert shrunk["channels"]["stem"] == small.get_layer("stem").filters
    folder = tmp_path / "residual" / "round_02"
    for file in ("ticket_shrunk.tflite", "ticket_shrunk_int8.tflite"):
        assert (folder / file).read_bytes()
        figures = shrunk["files"][file]
        assert figures["median_latency_us"] > 0 and not any(figures["sparse_tensors"].values())
    keras_accuracy = report["ticket"]["keras_test_accuracy"]
    # LiteRT's float kernels round differently: a near-tie may flip (1 of 200 images).
    floats = shrunk["files"]["ticket_shrunk.tflite"]["litert_test_accuracy"]
    assert abs(floats - keras_accuracy) <= 0.005 + 1e-9
    integers = shrunk["files"]["ticket_shrunk_int8.tflite"]["litert_test_accuracy"]
    assert abs(integers - keras_accuracy) <= 0.05
    assert report["comparison"]["shrunk_parameters_vs_dense"] < 1


@pytest.fixture(scope="module")
def weight_run(files):
    """The user model with the default --granularity=weight: round 0 of 5 iterations."""
    data = shapes_arrays(train=100, test=40)
    return lth_tf.find_tickets(
        residual_net,
        (data["x_train"], data["y_train"]),
        (data["x_test"], data["y_test"]),
        output_dir=files.root / "weights",
        rounds=0,
        iterations="5it",
        tensorboard=False,
    )


def test_a_weight_ticket_does_not_shrink(weight_run):
    assert weight_run.results[0].shrunk_parameters is None
    with pytest.raises(lth_tf.LthError, match="only channel tickets shrink"):
        weight_run.model(0, shrunk=True)


def test_a_killed_channel_run_resumes_to_the_uninterrupted_results(files, channel_run):
    flags = [*files.flags, f"--output_dir={files.out}", "--experiment_name=killed", "--noprogress"]
    run_killed_after_a_checkpoint(*flags)
    assert (files.out / "killed" / "round_01" / "checkpoint.npz").exists()
    assert imp(*flags[:-1]).returncode == 0
    assert_same_rounds(files.out / "killed", channel_run)


def test_controls_of_a_channel_experiment_keep_its_channel_counts(channel_run):
    parent = lth_tf.Experiment(channel_run)
    for control in ("random_prune", "random_reinit"):
        result = imp(f"--branch_of={channel_run}", f"--control={control}")
        assert result.returncode == 0, result.stderr
        branch = lth_tf.Experiment(channel_run.parent / f"{channel_run.name}-{control}")
        for pruning_round in (1, 2):
            mine, theirs = branch.masks(pruning_round), parent.masks(pruning_round)
            for kernels in GROUPS:
                vectors = [channels(mine[k]) for k in kernels]
                np.testing.assert_array_equal(vectors[0], vectors[-1])
                if control == "random_reinit":  # the same masks
                    np.testing.assert_array_equal(vectors[0], channels(theirs[kernels[0]]))
                assert vectors[0].sum() == channels(theirs[kernels[0]]).sum()
            weights = branch.weights(pruning_round)
            assert np.all(weights["stem_bn/gamma"][channels(mine["stem/kernel"]) == 0] == 0)


def test_stability_analysis_runs_on_a_channel_ticket(channel_run, files):
    from lth_tf.data.sources import load_dataset
    from lth_tf.execution import Execution
    from lth_tf.stability.analysis import run_stability
    from lth_tf.stability.plan import plan_stability

    plan = plan_stability(channel_run, 1, seeds=2, points=3, bn_batches=2)
    data = load_dataset(f"npz:{files.npz}")
    options = Execution(show_progress=False, steps_per_execution=10, jit_compile=True)
    [result] = run_stability(plan, data, options)
    assert len(result.path_errors) == 3 and np.isfinite(result.instability)
    # Each copy trained the round's channel ticket: its pruned channels stayed exactly zero.
    copy = io.read_npz(next((channel_run / "stability").rglob("copy_seed*.npz")))
    dead = channels(lth_tf.Experiment(channel_run).masks(1)["stem/kernel"]) == 0
    assert dead.any() and np.all(copy["stem_bn/beta"][dead] == 0)


def test_a_mobilenet_v2_style_model_runs_two_channel_rounds_and_shrinks_exactly(files):
    result = imp(
        "--model=tests.user_model:mobilenet_v2_style",
        *files.flags[1:],
        f"--output_dir={files.out}",
        "--experiment_name=mobilenet",
    )
    assert result.returncode == 0, result.stderr
    experiment = lth_tf.Experiment(files.out / "mobilenet")
    masks = experiment.masks(2)
    # Both residual adds tie their operands: stem with block1's projection, block2's with 3's.
    for a, b in (("stem", "block1_project"), ("block2_project", "block3_project")):
        kept = [channels(masks[f"{name}/kernel"]) for name in (a, b)]
        np.testing.assert_array_equal(kept[0], kept[1])
        assert 0 < kept[0].sum() < len(kept[0])
    images = shapes_arrays()["x_test"].astype(np.float32)
    masked, small = experiment.model(2), experiment.model(2, shrunk=True)
    np.testing.assert_allclose(small(images).numpy(), masked(images).numpy(), rtol=1e-4, atol=1e-4)
    assert small.count_params() < 0.7 * experiment.model(0).count_params()


def test_a_conv_whose_channels_reach_a_reshape_trains_whole_with_one_log_line(files, caplog):
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        result = imp(
            "--model=tests.user_model:reshaped_net",
            *files.flags[1:],
            "--rounds=1",
            "--tensorboard",
            f"--output_dir={files.out}",
            "--experiment_name=reshaped",
        )
    assert result.returncode == 0, result.stderr
    lines = [r.getMessage() for r in caplog.records if "keep all their channels" in r.getMessage()]
    # One line per build of the model (the run builds it once).
    assert len(lines) == 1 and "into_reshape (reaches reshape (Reshape))" in lines[0], lines
    masks = lth_tf.Experiment(files.out / "reshaped").masks(1)
    assert masks["into_reshape/kernel"].all()
    tags = logged_tags(files.out / "reshaped" / "tensorboard" / "summary")
    assert {("round/shrunk_parameters", 1), ("round/channels_conv", 0)} <= tags
    assert channels(masks["pooled/kernel"]).sum() == surviving_count(6, RATES["conv"])


def test_channel_rounds_on_two_mirrored_replicas(files, tmp_path):
    result = run_pipeline(
        "pipelines.imp",
        *files.flags,
        "--rounds=1",
        "--strategy=mirrored",
        "--virtual_cpus=2",
        "--noprogress",
        f"--output_dir={tmp_path}",
        "--experiment_name=mirrored",
    )
    assert result.returncode == 0, result.stderr
    experiment = lth_tf.Experiment(tmp_path / "mirrored")
    masks, weights = experiment.masks(1), experiment.weights(1)
    dead = channels(masks["stem/kernel"]) == 0
    assert dead.sum() == 8 - surviving_count(8, RATES["conv"])
    assert np.array_equal(channels(masks["pointwise/kernel"]), ~dead)
    for name in ("stem_bn/gamma", "stem_bn/beta", "pointwise/bias"):
        assert np.all(weights[name][dead] == 0), name


def test_lenet_channel_rounds_under_xla_keep_pruned_units_at_zero(mnist_data, tmp_path):
    from lth_tf.execution import Execution
    from lth_tf.lottery.imp import run_imp
    from tests.helpers import lenet_hparams

    hparams = lenet_hparams(rounds=2, pruning={"granularity": "channel"})
    options = Execution(
        show_progress=False, jit_compile=True, steps_per_execution=10, tensorboard=False
    )
    root = run_imp(hparams, tmp_path, "lenet", options, data=mnist_data).root
    experiment = lth_tf.Experiment(root)
    assert io.read_json(experiment.path / "sessions.json")[0]["xla_training"]
    for pruning_round in (1, 2):
        masks, weights = experiment.masks(pruning_round), experiment.weights(pruning_round)
        for layer, units in (("fc1", 300), ("fc2", 100)):
            alive = channels(masks[f"{layer}/kernel"])
            assert alive.sum() == surviving_count(units, 1 - 0.8**pruning_round)
            assert np.all(weights[f"{layer}/bias"][alive == 0] == 0)
            assert np.any(weights[f"{layer}/bias"][alive == 1] != 0)
    assert experiment.results[2].channels_fc == surviving_count(300, 0.36) + surviving_count(
        100, 0.36
    )


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--granularity=channel", "--block_size=4x1"], "--block_size=4x1 prunes blocks"),
        (["--granularity=filter"], "unknown granularity 'filter'"),
    ],
)
def test_bad_granularity_combinations_are_one_line(flags, reason, tmp_path):
    result = run_main("pipelines.imp", "--model=lenet300_100", *flags, f"--output_dir={tmp_path}")
    assert_one_line_error(result, reason)


def test_channel_granularity_is_part_of_the_experiments_identity():
    from lth_tf.experiment import default_experiment_name
    from lth_tf.models import paper_defaults
    from tests.helpers import imp_hparams

    defaults = paper_defaults("conv4", "fashion_mnist")

    def name(*flags: str) -> str:
        return default_experiment_name(imp_hparams("--model=conv4", *flags), defaults)

    # The default (weight) keeps every earlier experiment's name; channel is another experiment.
    assert name("--granularity=weight") == name() != name("--granularity=channel")


def test_the_report_draws_channel_tickets_against_their_shrunk_size(channel_run, tmp_path):
    result = run_main(
        "pipelines.report",
        f"--experiments={channel_run}",
        f"--output={tmp_path / 'cost'}",
        "--x_axis=shrunk_multiply_adds",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cost.png").read_bytes().startswith(b"\x89PNG")
    rows = io.read_csv(tmp_path / "cost.csv")
    costs = [int(row["shrunk_multiply_adds"]) for row in rows]
    assert costs == sorted(costs, reverse=True) and costs[-1] < costs[0]


def test_the_report_refuses_a_shrunk_axis_for_weight_tickets(weight_run, tmp_path):
    result = run_main(
        "pipelines.report",
        f"--experiments={weight_run.path}",
        f"--output={tmp_path / 'r'}",
        "--x_axis=shrunk_parameters",
    )
    assert_one_line_error(result, "has no shrunk network")


def test_the_console_scripts_help_lists_the_pipelines_flags():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "lth-imp"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert "--granularity: weight (unstructured" in shown.stdout
    # Help asked for is a success (absl's own exit status is 1); -h asks for it too.
    assert shown.returncode == 0, shown.stderr
    short = subprocess.run([script, "-h"], capture_output=True, text=True, timeout=120)
    assert (short.returncode, short.stdout) == (0, shown.stdout)
    assert "--rounds: Pruning rounds" in shown.stdout  # an integer flag, defined by a helper
    # A pipeline's own number flags (defined through pipelines.common) are in its help.
    export = Path(sys.executable).parent / "lth-export"
    shown = subprocess.run([export, "-helpshort"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "--tolerance:" in shown.stdout
    assert "--arm_examples:" in shown.stdout
