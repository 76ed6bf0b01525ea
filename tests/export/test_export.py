"""Deploying tickets: stripped weights, TFLite vs Keras, int8, block-sparse masks, bad input."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import tf_keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from lth_tf import io
from lth_tf.config import PruneRates, PruningHparams, parse_block_size
from lth_tf.data.sources import load_dataset
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, RoundResult
from lth_tf.export.deploy import ExportOptions, check_dataset, export_ticket
from lth_tf.export.ticket import choose_best_round, open_ticket
from lth_tf.imp import RunOptions, run_imp
from lth_tf.models import paper_defaults
from lth_tf.pruning.masks import block_magnitude_mask, layerwise_masks, magnitude_mask
from tests.helpers import run_pipeline, tiny_dataset

QUIET = RunOptions(show_progress=False)
QUICK = ExportOptions(
    representative_examples=100, latency_invocations=50, latency_warmup=10, latency_examples=10
)
# After 2 rounds fc kernels keep 25% and the output 49%: every kernel is stored sparse (>= 30%
# zeros), and blocks of 4 input rows are whole.
RATES = PruneRates(fc=0.5, output=0.3)


def lenet_hparams(block_size: str = "1x1"):
    hparams = paper_defaults("lenet300_100", "mnist")
    return dataclasses.replace(
        hparams,
        training=dataclasses.replace(hparams.training, iterations="40it", eval_every="20it"),
        pruning=dataclasses.replace(hparams.pruning, rates=RATES, rounds=2, block_size=block_size),
    )


@pytest.fixture(scope="module")
def data(idx_dir):
    return load_dataset("mnist", str(idx_dir))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Two 2-round lenet experiments on the IDX test data: unstructured and 4x1 blocks."""
    root = tmp_path_factory.mktemp("runs")
    run_imp(lenet_hparams(), root, "plain", QUIET, data=data)
    run_imp(lenet_hparams("4x1"), root, "blocks", QUIET, data=data)
    return root


@pytest.fixture(scope="module")
def exported(runs, idx_dir, tmp_path_factory):
    """``python -m pipelines.export --round=best`` on the unstructured run: (directory, stdout)."""
    out = tmp_path_factory.mktemp("saved_models")
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={runs / 'plain'}",
        "--round=best",
        "--tolerance=100",
        f"--output_dir={out}",
        f"--data_dir={idx_dir}",
    )
    assert result.returncode == 0, result.stderr
    return out / "plain" / "round_02", result.stdout


def run_tflite(path, images, resolver=OpResolverType.AUTO):
    """The file's raw outputs for ``images``, through LiteRT directly (not the project's helper)."""
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], images.astype(source["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), interpreter


def test_export_writes_every_file_and_explains_the_choice(exported):
    directory, stdout = exported
    assert {p.name for p in directory.iterdir()} == {
        "saved_model",
        "ticket.tflite",
        "ticket_int8.tflite",
        "export.json",
    }
    assert "round 2: the sparsest finished round" in stdout
    assert "within 100 points of round 0's" in stdout
    assert not list(directory.parent.glob(".*")), "a staging directory was left behind"


def test_exported_weights_carry_exactly_the_masks_zeros(exported, runs):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    assert not [layer for layer in model.layers if "prune" in type(layer).__name__.lower()]
    variables = {v.name.rsplit(":", 1)[0]: v.numpy() for v in model.variables}
    masks = io.read_npz(runs / "plain" / "round_02" / "masks.npz")
    trained = io.read_npz(runs / "plain" / "round_02" / "weights.npz")
    assert set(variables) == set(trained)
    for name, mask in masks.items():
        np.testing.assert_array_equal(variables[name] == 0, mask == 0, err_msg=name)
        assert 0.2 < mask.mean() < 0.5, name  # really pruned
    for name, value in trained.items():
        np.testing.assert_array_equal(variables[name], value, err_msg=name)


def test_float_tflite_gives_the_keras_outputs_on_raw_pixels(exported, data):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    pixels = data.test_images  # uint8 0..255, as the dataset stores them
    expected = model.predict(pixels.astype(np.float32), batch_size=500, verbose=0)
    logits, interpreter = run_tflite(directory / "ticket.tflite", pixels)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_int8_tflite_takes_uint8_pixels_and_predicts_like_keras(exported, data):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    expected = model.predict(data.test_images.astype(np.float32), batch_size=500, verbose=0)
    outputs, interpreter = run_tflite(
        directory / "ticket_int8.tflite",
        data.test_images,
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    # Scale 1 and zero point 0: a uint8 input value is the pixel value itself.
    assert source["dtype"] == np.uint8 and source["quantization"] == (1.0, 0)
    assert outputs.dtype == np.int8
    scale, zero_point = target["quantization"]
    logits = (outputs.astype(np.float32) - zero_point) * scale
    assert np.mean(logits.argmax(-1) == expected.argmax(-1)) >= 0.95
    assert np.median(np.abs(logits - expected)) < 0.1 * np.abs(expected).max()


def test_export_json_reports_files_accuracies_and_latencies(exported, runs, data):
    directory, _ = exported
    report = json.loads((directory / "export.json").read_text())
    assert report["round"] == 2 and report["block_size"] == "1x1"
    assert report["data"]["test_examples"] == len(data.test_labels) == 500
    ticket, dense = report["ticket"], report["dense"]
    assert dense["round"] == 0 and dense["percent_remaining"] == 100.0
    rows = {int(r["round"]): r for r in io.read_csv(runs / "plain" / "results.csv")}
    assert ticket["percent_remaining"] == float(rows[2]["percent_remaining"])
    # lenet prunes every layer, so the wrapped layers' count agrees with it.
    assert ticket["percent_remaining"] == pytest.approx(
        100 * ticket["prunable_weights"]["remaining"] / ticket["prunable_weights"]["total"]
    )
    assert ticket["parameters"]["total"] == dense["parameters"]["total"] == 266_610
    assert ticket["parameters"]["nonzero"] < 0.4 * ticket["parameters"]["total"]
    assert ticket["keras_test_accuracy"] == pytest.approx(ticket["recorded_test_accuracy"])
    for file in ("ticket.tflite", "ticket_int8.tflite"):
        mine = ticket["files"][file]
        assert mine["bytes"] == (directory / file).stat().st_size
        assert 0 < mine["gzip_bytes"] < mine["bytes"]
        assert mine["median_latency_us"] > 0 and dense["files"][file]["median_latency_us"] > 0
        assert mine["sparse_tensors"]["sparse"] == 3  # fc1, fc2, output kernels
        assert dense["files"][file]["sparse_tensors"]["sparse"] == 0
    floats, ints = ticket["files"]["ticket.tflite"], ticket["files"]["ticket_int8.tflite"]
    assert floats["litert_test_accuracy"] == pytest.approx(ticket["keras_test_accuracy"], abs=0.002)
    assert ints["litert_test_accuracy"] == pytest.approx(ticket["keras_test_accuracy"], abs=0.05)
    assert floats["input"]["dtype"] == "float32" and ints["input"]["dtype"] == "uint8"
    assert floats["bytes"] < 0.45 * dense["files"]["ticket.tflite"]["bytes"]
    assert report["comparison"]["int8_size_vs_float_ticket"] == pytest.approx(
        ints["bytes"] / floats["bytes"], abs=1e-4
    )
    assert ticket["files"]["saved_model"]["bytes"] > 0


def test_block_sparse_ticket_is_stored_in_the_blocks_the_fast_kernel_runs(runs, data, tmp_path):
    ticket = open_ticket(runs / "blocks", 2)
    report = export_ticket(ticket, open_ticket(runs / "blocks", 0), data, tmp_path, QUICK)
    stored = report["ticket"]["files"]["ticket.tflite"]["sparse_tensors"]
    # Every Dense kernel in 1x4 blocks of TFLite's (outputs, inputs) layout: (4, 1) in Keras's.
    assert stored == {"sparse": 3, "block_sparse": 3}
    floats = report["ticket"]["files"]["ticket.tflite"]
    assert floats["litert_test_accuracy"] == pytest.approx(
        report["ticket"]["keras_test_accuracy"], abs=0.002
    )
    assert (tmp_path / "blocks" / "round_02" / "ticket.tflite").exists()


def test_unstructured_ticket_has_no_blocks(exported):
    directory, _ = exported
    report = json.loads((directory / "export.json").read_text())
    assert report["ticket"]["files"]["ticket.tflite"]["sparse_tensors"]["block_sparse"] == 0


# --- choosing the round and refusing bad input -------------------------------------------


def _rows(*accuracies):
    zero = dict.fromkeys(RESULT_COLUMNS, 0)
    return [
        RoundResult.from_row(
            zero | {"round": r, "percent_remaining": 100 * 0.8**r, "early_stop_test_accuracy": a}
        )
        for r, a in enumerate(accuracies)
    ]


def test_best_is_the_sparsest_round_within_the_tolerance_of_round_0():
    rows = _rows(0.900, 0.910, 0.896, 0.890, 0.8951, 0.80)
    chosen, reason = choose_best_round(rows, tolerance=0.5)
    assert chosen == 4
    assert "within 0.5 points of round 0's (90.00%)" in reason
    assert "sparser rounds fall short: 5 (80.00%)" in reason
    assert choose_best_round(rows, tolerance=0.0)[0] == 1
    assert choose_best_round(rows[:1], tolerance=0.5)[0] == 0


def test_export_refuses_a_dataset_other_than_the_experiments(runs):
    ticket = open_ticket(runs / "plain", 1)
    with pytest.raises(LthError, match="pass --data_dir"):
        check_dataset(ticket, tiny_dataset())


@pytest.fixture(scope="module")
def broken(runs, tmp_path_factory):
    """Experiments with an unfinished round 2 and from another format version."""
    root = tmp_path_factory.mktemp("broken")
    unfinished = shutil.copytree(runs / "plain", root / "unfinished")
    (unfinished / "round_02" / "weights.npz").unlink()
    other = shutil.copytree(runs / "plain", root / "other_version")
    saved = io.read_json(other / "hparams.json")
    io.write_json(other / "hparams.json", {**saved, "format_version": 99})
    (root / "not_an_experiment").mkdir()
    return root


@pytest.mark.parametrize(
    "where, flags, reason",
    [
        ("missing", [], "missing does not exist"),
        ("not_an_experiment", [], "is not an lth_tf experiment (no hparams.json)"),
        ("unfinished", ["--round=2"], "round 2 of"),
        ("unfinished", ["--round=7"], "has no round 7 (it runs rounds 0-2)"),
        ("other_version", [], "written by another lth_tf version (format 99"),
        ("unfinished", ["--round=last"], "'last' is neither a round number"),
        ("unfinished", ["--tolerance=-1"], "--tolerance must be 0 or more"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(broken, where, flags, reason, tmp_path):
    result = run_pipeline(
        "pipelines.export", f"--experiment_dir={broken / where}", *flags, f"--output_dir={tmp_path}"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and reason in result.stderr, result.stderr
    if where == "unfinished" and flags == ["--round=2"]:
        assert "has not finished; finished rounds: 0-1" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not any(tmp_path.iterdir())


# --- block magnitude masks ---------------------------------------------------------------


def test_block_size_is_parsed_checked_and_spelled_one_way():
    assert parse_block_size("4x1") == (4, 1)
    assert PruningHparams(block_size="4X1").block_size == "4x1"
    assert PruningHparams().block_shape == (1, 1)
    for bad in ("4by1", "0x1", "4x", "-4x1"):
        with pytest.raises(LthError, match="--block_size"):
            PruningHparams(block_size=bad)


def _blocks_are_whole(mask, block):
    rows, cols = mask.shape
    grid = mask.reshape(rows // block[0], block[0], cols // block[1], block[1])
    return np.all(grid.min(axis=(1, 3)) == grid.max(axis=(1, 3)))


def test_block_masks_keep_whole_blocks_exact_counts_and_nest():
    rng = np.random.default_rng(0)
    mask = np.ones((64, 12), np.uint8)
    blocks = 64 // 4 * 12
    for pruning_round in range(1, 8):
        # Big values at pruned positions must never bring a block back.
        weights = rng.normal(size=mask.shape) * np.where(mask == 1, 1.0, 100.0)
        sparsity = 1 - 0.8**pruning_round
        new = block_magnitude_mask(weights, mask, sparsity, (4, 1))
        assert new.dtype == mask.dtype and _blocks_are_whole(new, (4, 1))
        assert new.sum() == 4 * round(blocks * 0.8**pruning_round)
        assert np.all(new <= mask)
        mask = new


def test_block_scores_are_mean_magnitudes_and_ties_go_to_the_earlier_block():
    # Column 0: one large weight among tiny ones (mean 0.28); column 1: all medium (mean 0.5).
    weights = np.array([[1.0, 0.5], [0.05, 0.5], [0.05, 0.5], [0.02, 0.5]])
    mask = block_magnitude_mask(weights, np.ones_like(weights), 0.5, (4, 1))
    assert mask[:, 0].tolist() == [0, 0, 0, 0] and mask[:, 1].tolist() == [1, 1, 1, 1]
    ties = block_magnitude_mask(np.ones((8, 2)), np.ones((8, 2)), 0.5, (4, 1))
    assert ties[:4].sum() == 8 and ties[4:].sum() == 0  # row-major: blocks (0,0), (0,1) first


def test_block_1x1_is_unstructured_and_edge_blocks_may_be_partial():
    rng = np.random.default_rng(2)
    weights, ones = rng.normal(size=(30, 7)), np.ones((30, 7), np.float32)
    np.testing.assert_array_equal(
        block_magnitude_mask(weights, ones, 0.6, (1, 1)), magnitude_mask(weights, ones, 0.6)
    )
    partial = block_magnitude_mask(weights, ones, 0.5, (4, 1))  # 8 block rows, the last of 2
    assert _blocks_are_whole(np.pad(partial, ((0, 2), (0, 0)), mode="edge"), (4, 1))
    assert 0 < partial.sum() < ones.sum()


def test_layerwise_masks_prune_only_the_named_weights_in_blocks():
    rng = np.random.default_rng(3)
    weights = {"fc/kernel": rng.normal(size=(16, 8)), "conv/kernel": rng.normal(size=(3, 3, 1, 8))}
    ones = {name: np.ones_like(w) for name, w in weights.items()}
    masks = layerwise_masks(weights, ones, {n: 0.5 for n in weights}, {"fc/kernel": (4, 1)})
    assert _blocks_are_whole(masks["fc/kernel"], (4, 1))
    np.testing.assert_array_equal(
        masks["conv/kernel"], magnitude_mask(weights["conv/kernel"], ones["conv/kernel"], 0.5)
    )


def test_block_run_prunes_dense_kernels_in_4x1_blocks_at_the_same_sparsity(runs):
    plain, blocks = runs / "plain", runs / "blocks"
    previous = None
    for pruning_round in range(3):
        masks = io.read_npz(blocks / f"round_{pruning_round:02d}" / "masks.npz")
        unstructured = io.read_npz(plain / f"round_{pruning_round:02d}" / "masks.npz")
        for name, mask in masks.items():
            assert _blocks_are_whole(mask, (4, 1)), name
            rate = RATES.output if name.startswith("output") else RATES.fc
            assert mask.sum() == 4 * round(mask.size / 4 * (1 - rate) ** pruning_round)
            assert abs(int(mask.sum()) - int(unstructured[name].sum())) <= 2
            if previous is not None:
                assert np.all(mask <= previous[name])
        previous = masks
    saved = io.read_json(blocks / "hparams.json")
    assert saved["hparams"]["pruning"]["block_size"] == "4x1"


def test_resume_with_another_block_size_is_refused(runs, data):
    with pytest.raises(LthError, match="block_size: saved '4x1', now '1x1'"):
        run_imp(lenet_hparams("1x1"), runs, "blocks", QUIET, data=data)


def test_convolutions_stay_unstructured_under_block_pruning(tmp_path):
    hparams = paper_defaults("conv2", "cifar10")
    hparams = dataclasses.replace(
        hparams,
        training=dataclasses.replace(hparams.training, iterations="2it", batch_size=20),
        pruning=dataclasses.replace(hparams.pruning, rounds=1, block_size="4x1"),
    )
    data = tiny_dataset(train=60, val=20, test=20, shape=(8, 8, 3))
    experiment = run_imp(hparams, tmp_path, "c2", QUIET, data=data)
    masks = io.read_npz(experiment.masks(1))
    assert abs(masks["conv1/kernel"].sum() - 1728 * 0.9) <= 1
    assert _blocks_are_whole(masks["fc1/kernel"], (4, 1))
    assert masks["fc1/kernel"].sum() == 4 * round(1024 * 256 / 4 * 0.8)
