"""Deploying tickets: stripped weights, TFLite vs Keras, int8, block-sparse storage, choosing the
round, bad input. The experiments are conftest's ``lenet_runs``."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import tf_keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, ExperimentDir, RoundResult
from lth_tf.export.deploy import ExportOptions, check_dataset, export_ticket
from lth_tf.export.ticket import choose_best_round, open_ticket
from tests.helpers import run_pipeline, tiny_dataset

QUICK = ExportOptions(
    representative_examples=100, latency_invocations=50, latency_warmup=10, latency_examples=10
)


@pytest.fixture(scope="module")
def exported(lenet_runs, idx_dir, tmp_path_factory):
    """``python -m pipelines.export --round=best`` on the unstructured run: (directory, stdout)."""
    out = tmp_path_factory.mktemp("saved_models")
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={lenet_runs / 'plain'}",
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
        "ticket_fp16.tflite",
        "ticket_int8.tflite",
        "export.json",
    }
    assert "round 2: the sparsest finished round" in stdout
    assert "at most 100 points below round 0's" in stdout
    assert not list(directory.parent.glob(".*")), "a staging directory was left behind"


def test_each_files_line_says_how_its_weights_are_stored(exported):
    directory, stdout = exported
    files = json.loads((directory / "export.json").read_text())["ticket"]["files"]
    line = next(line for line in stdout.splitlines() if line.strip().startswith("ticket.tflite"))
    sparse = sum(files["ticket.tflite"]["sparse_tensors"].values())
    assert line.endswith(f"| {sparse} tensors stored sparse" if sparse else "| stored dense")
    for name in ("ticket_fp16.tflite", "ticket_int8.tflite"):
        line = next(line for line in stdout.splitlines() if line.strip().startswith(name))
        storage = files[name]["weight_storage"].split(":")[0]
        assert line.endswith(f"| stored {storage}"), line


def test_exported_weights_carry_exactly_the_masks_zeros(exported, lenet_runs):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    assert not [layer for layer in model.layers if "prune" in type(layer).__name__.lower()]
    variables = {v.name.rsplit(":", 1)[0]: v.numpy() for v in model.variables}
    masks = io.read_npz(lenet_runs / "plain" / "round_02" / "masks.npz")
    trained = io.read_npz(lenet_runs / "plain" / "round_02" / "weights.npz")
    assert set(variables) == set(trained)
    for name, mask in masks.items():
        np.testing.assert_array_equal(variables[name] == 0, mask == 0, err_msg=name)
        assert 0.2 < mask.mean() < 0.5, name  # really pruned
    for name, value in trained.items():
        np.testing.assert_array_equal(variables[name], value, err_msg=name)


def test_float_tflite_gives_the_keras_outputs_on_raw_pixels(exported, mnist_data):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    pixels = mnist_data.test_images  # uint8 0..255, as the dataset stores them
    expected = model.predict(pixels.astype(np.float32), batch_size=500, verbose=0)
    logits, interpreter = run_tflite(directory / "ticket.tflite", pixels)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_int8_tflite_takes_uint8_pixels_and_predicts_like_keras(exported, mnist_data):
    directory, _ = exported
    model = tf_keras.models.load_model(directory / "saved_model", compile=False)
    expected = model.predict(mnist_data.test_images.astype(np.float32), batch_size=500, verbose=0)
    outputs, interpreter = run_tflite(
        directory / "ticket_int8.tflite",
        mnist_data.test_images,
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


def test_export_json_reports_files_accuracies_and_latencies(exported, lenet_runs, mnist_data):
    directory, _ = exported
    report = json.loads((directory / "export.json").read_text())
    assert report["round"] == 2 and report["block_size"] == "1x1"
    assert report["experiment_id"] == ExperimentDir(lenet_runs / "plain").identity is not None
    assert report["data"]["test_examples"] == len(mnist_data.test_labels) == 500
    ticket, dense = report["ticket"], report["dense"]
    assert dense["round"] == 0 and dense["percent_remaining"] == 100.0
    rows = {int(r["round"]): r for r in io.read_csv(lenet_runs / "plain" / "results.csv")}
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
        assert dense["files"][file]["sparse_tensors"]["sparse"] == 0
    # fc1, fc2, output kernels (the int8 file's storage: _assert_never_larger_or_slower)
    assert ticket["files"]["ticket.tflite"]["sparse_tensors"]["sparse"] == 3
    floats, ints = ticket["files"]["ticket.tflite"], ticket["files"]["ticket_int8.tflite"]
    assert floats["litert_test_accuracy"] == pytest.approx(ticket["keras_test_accuracy"], abs=0.002)
    assert ints["litert_test_accuracy"] == pytest.approx(ticket["keras_test_accuracy"], abs=0.05)
    assert floats["input"]["dtype"] == "float32" and ints["input"]["dtype"] == "uint8"
    assert floats["bytes"] < 0.45 * dense["files"]["ticket.tflite"]["bytes"]
    assert report["comparison"]["int8_size_vs_float_ticket"] == pytest.approx(
        ints["bytes"] / floats["bytes"], abs=1e-4
    )
    assert ticket["files"]["saved_model"]["bytes"] > 0
    _assert_never_larger_or_slower(ints, dense["files"]["ticket_int8.tflite"])


def _assert_never_larger_or_slower(ints: dict, dense_ints: dict) -> None:
    """The default storage choice: the int8 ticket stored sparse only when that is smaller and,
    timed side by side when the choice was made, no slower; else dense, the dense export's
    size. Which one wins depends on the machine's kernels: both outcomes are checked."""
    candidates = ints["storage_candidates"]
    sparse, dense = candidates["sparse"], candidates["dense"]
    assert ints["bytes"] <= dense_ints["bytes"]
    if ints["weight_storage"].startswith("sparse"):
        assert ints["bytes"] == sparse["bytes"] < dense["bytes"]
        assert sparse["median_latency_us"] <= dense["median_latency_us"]
        assert ints["sparse_tensors"]["sparse"] > 0
    else:
        assert ints["weight_storage"].startswith("dense: ")
        assert ints["bytes"] == dense["bytes"] and ints["sparse_tensors"]["sparse"] == 0
        assert ints["op_resolver"] == "AUTO"  # runs under LiteRT's default options
        if sparse["bytes"] < dense["bytes"]:  # smaller, yet slower
            assert sparse["median_latency_us"] > dense["median_latency_us"]
            assert "int8_storage=smallest" in ints["weight_storage"]


def test_smallest_int8_storage_keeps_the_sparse_file_and_says_what_runs_it(
    lenet_runs, mnist_data, tmp_path
):
    """At 25% of the weights sparse int8 storage is smaller than dense; ``smallest`` keeps it
    whatever its speed, and it needs LiteRT's builtin kernels (XNNPack cannot prepare it)."""
    plain = lenet_runs / "plain"
    options = dataclasses.replace(QUICK, int8_storage="smallest")
    ticket, dense = open_ticket(plain, 2), open_ticket(plain, 0)
    report = export_ticket(ticket, dense, mnist_data, tmp_path, options)
    ints = report["ticket"]["files"]["ticket_int8.tflite"]
    dense_ints = report["dense"]["files"]["ticket_int8.tflite"]
    assert ints["weight_storage"].startswith("sparse")
    assert ints["bytes"] == ints["storage_candidates"]["sparse"]["bytes"] < dense_ints["bytes"]
    assert ints["sparse_tensors"]["sparse"] == 3
    assert ints["op_resolver"] == "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    assert ints["litert_test_accuracy"] == pytest.approx(
        report["ticket"]["keras_test_accuracy"], abs=0.05
    )
    forced = export_ticket(
        ticket,
        dense,
        mnist_data,
        tmp_path / "dense",
        dataclasses.replace(QUICK, int8_storage="dense"),
    )["ticket"]["files"]["ticket_int8.tflite"]
    assert forced["bytes"] == dense_ints["bytes"] and forced["sparse_tensors"]["sparse"] == 0


def test_an_unknown_int8_storage_is_refused_with_the_choices():
    with pytest.raises(LthError, match=r"int8_storage='tiny': choose one of auto \(sparse where"):
        ExportOptions(int8_storage="tiny")


def test_an_int8_ticket_is_never_larger_than_the_dense_int8_export(
    lenet_runs, idx_dir, tmp_path, capsys
):
    """At 50% of the weights an index per surviving weight costs more than the zeros it saves:
    the int8 ticket is stored dense, the size of the dense export, and runs under LiteRT's
    default options (the XNNPack delegate)."""
    import lth_tf

    report = lth_tf.Experiment(lenet_runs / "plain").export(1, tmp_path, data_dir=str(idx_dir))
    # verbose: the round and why first, as lth-export prints them.
    assert capsys.readouterr().out.startswith("Exporting round 1, as asked\n")
    ticket, dense = report["ticket"]["files"], report["dense"]["files"]
    ints = ticket["ticket_int8.tflite"]
    assert ticket["ticket.tflite"]["sparse_tensors"]["sparse"] == 3  # float: sparse pays off
    assert ints["weight_storage"].startswith("dense: ")
    assert ints["sparse_tensors"] == {"sparse": 0, "block_sparse": 0}
    # The same file as the dense export's but for its weights' values.
    assert ints["bytes"] <= dense["ticket_int8.tflite"]["bytes"]
    assert ints["op_resolver"] == "AUTO"
    assert ints["litert_test_accuracy"] == pytest.approx(
        report["ticket"]["keras_test_accuracy"], abs=0.01
    )


def test_block_sparse_ticket_is_stored_in_the_blocks_the_fast_kernel_runs(
    lenet_runs, mnist_data, tmp_path
):
    ticket = open_ticket(lenet_runs / "blocks", 2)
    report = export_ticket(
        ticket, open_ticket(lenet_runs / "blocks", 0), mnist_data, tmp_path, QUICK
    )
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
    """Rounds whose final weights score ``accuracies``; at their early stops, 5 points more."""
    zero = dict.fromkeys(RESULT_COLUMNS, 0)
    return [
        RoundResult.from_row(
            zero
            | {
                "round": r,
                "percent_remaining": 100 * 0.8**r,
                "test_accuracy": a,
                "early_stop_test_accuracy": a + 0.05 * (r > 0),
            }
        )
        for r, a in enumerate(accuracies)
    ]


def test_best_is_the_sparsest_round_whose_exported_weights_are_within_the_tolerance():
    rows = _rows(0.900, 0.910, 0.896, 0.890, 0.8951, 0.80)
    chosen, reason = choose_best_round(rows, tolerance=0.5)
    assert chosen == 4
    # The weights it ships are those at the end of training: chosen by their accuracy, not by
    # the early stop's (round 5's 85% there is within 5 points of round 0's 90%, not its 80%).
    assert "weights as exported (at the end of training) score at most 0.5 points below" in reason
    assert "(89.51% against 90.00%)" in reason
    assert "sparser rounds fall short: 5 (80.00%)" in reason
    assert choose_best_round(rows, tolerance=5)[0] == 4
    assert choose_best_round(rows, tolerance=10)[0] == 5
    assert choose_best_round(rows, tolerance=0.0)[0] == 1
    assert choose_best_round(rows[:1], tolerance=0.5)[0] == 0


def test_export_refuses_a_dataset_other_than_the_experiments(lenet_runs):
    ticket = open_ticket(lenet_runs / "plain", 1)
    with pytest.raises(LthError, match="pass --data_dir"):
        check_dataset(ticket, tiny_dataset())


@pytest.mark.parametrize(
    "where, selection, reason",
    [
        ("missing", {}, "missing does not exist"),
        ("not_an_experiment", {}, "is not an lth_tf experiment (no hparams.json)"),
        # The folder that holds experiments (a sweep's, --output_dir): pass one of them.
        ("", {}, "it holds experiments: pass one of them, e.g. "),
        ("unfinished", {"pruning_round": "2"}, "round 2 of"),
        ("unfinished", {"pruning_round": "7"}, "has no round 7 (it runs rounds 0-2)"),
        ("other_version", {}, "written by another lth_tf version (format 99"),
        ("unfinished", {"pruning_round": "last"}, "'last' is neither a round number"),
        ("unfinished", {"tolerance": -1.0}, "--tolerance must be a finite number >= 0"),
        ("unfinished", {"tolerance": float("nan")}, "--tolerance must be a finite number >= 0"),
        ("unfinished", {"tolerance": float("inf")}, "--tolerance must be a finite number >= 0"),
    ],
)
def test_bad_input_is_refused_with_one_line(broken, where, selection, reason):
    # What pipelines.export checks before TensorFlow starts (its --round and --tolerance);
    # tests/pipelines/test_export.py runs one of these through the command line.
    with pytest.raises(LthError) as caught:
        open_ticket(broken / where, **selection)
    message = str(caught.value)
    assert reason in message and "\n" not in message, message
    if where == "unfinished" and selection == {"pruning_round": "2"}:
        assert "has not finished; finished rounds: 0-1" in message


def test_a_stop_between_the_two_renames_puts_the_earlier_export_back(tmp_path, monkeypatch):
    from lth_tf.export.destination import move_into_place

    destination, staged, trash = tmp_path / "round_01", tmp_path / "new", tmp_path / "trash"
    destination.mkdir()
    (destination / "export.json").write_text("earlier")
    staged.mkdir()
    renames = []
    real_rename = type(staged).rename

    def stopped_at_the_second(self, target):
        renames.append(target)
        if len(renames) == 2:  # Ctrl-C right after the earlier export went aside
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(type(staged), "rename", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        move_into_place(staged, destination, trash)
    monkeypatch.undo()
    assert (destination / "export.json").read_text() == "earlier"


def test_staging_folders_of_killed_exports_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess

    from lth_tf.export.destination import remove_stale_staging, staging_prefix

    dead = subprocess.Popen(["true"])  # a process that ran and is gone
    dead.wait()
    destination = tmp_path / "e" / "round_02"
    host = staging_prefix(destination).split(".")[2].rpartition("_")[0]
    stale = tmp_path / "e" / f".round_02.{host}_{dead.pid}.k3j2"
    live = tmp_path / "e" / f".round_02.{host}_{os.getpid()}.x9y8"
    other_round = tmp_path / "e" / f".round_03.{dead.pid}.a1b2"  # named before hosts were
    # Another machine's, in a shared folder: its process ids are not this machine's to judge.
    elsewhere = tmp_path / "e" / f".round_04.another-host_{dead.pid}.c3d4"
    for folder in (stale, live, other_round, elsewhere):
        (folder / "ticket").mkdir(parents=True)
    # Killed between its two renames: the export it replaced goes back where it was.
    (other_round / "previous").mkdir()
    (other_round / "previous" / "export.json").write_text("{}")
    # Another round's, left by a killed export of it, goes too: only a rerun of that round's
    # export would have removed it.
    assert remove_stale_staging(destination) == [stale, other_round]
    assert not stale.exists() and live.exists() and not other_round.exists()
    assert elsewhere.exists()
    assert (tmp_path / "e" / "round_03" / "export.json").read_text() == "{}"


def _times_determinant(images):
    """A layer LiteRT has no kernel for: it multiplies by the determinant of each image."""
    import tensorflow as tf

    return images * tf.linalg.det(images[..., 0])[:, None, None, None]


def test_a_model_litert_cannot_convert_is_one_line_naming_the_op(tmp_path):
    from lth_tf.export.stripped import save_saved_model
    from lth_tf.export.tflite import float_tflite, int8_tflite

    inputs = tf_keras.Input((4, 4, 1))
    x = tf_keras.layers.Lambda(_times_determinant)(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(x)))
    save_saved_model(model, tmp_path / "saved_model")
    reason = r"cannot write the .* of this model \(no LiteRT kernel for MatrixDeterminant\)"
    with pytest.raises(LthError, match=reason):
        float_tflite(tmp_path / "saved_model")
    with pytest.raises(LthError, match=reason):
        int8_tflite(tmp_path / "saved_model", np.zeros((2, 4, 4, 1), np.float32))


def test_a_layer_litert_cannot_convert_is_named(tmp_path, capfd):
    # An LSTM has no full-integer kernels: the converter's error names its ops inside the
    # layer's function, after a location longer than the message; the line names the layer to
    # replace, and the converter's own lines on stderr are not shown.
    from lth_tf.export.stripped import save_saved_model
    from lth_tf.export.tflite import int8_tflite

    inputs = tf_keras.Input((6, 3))
    lstm = tf_keras.layers.LSTM(4, name="my_lstm")(inputs)
    save_saved_model(tf_keras.Model(inputs, tf_keras.layers.Dense(2)(lstm)), tmp_path / "sm")
    capfd.readouterr()
    with pytest.raises(
        LthError,
        match=r"cannot write the full-integer int8 \.tflite of this model \('tf\.\w+' op .*\): "
        r"replace layer '\w+/my_lstm' to export the model$",
    ):
        int8_tflite(
            tmp_path / "sm",
            np.random.default_rng(0).random((4, 6, 3), np.float32),
            uint8_input=False,
        )
    assert "loc(" not in capfd.readouterr().err


# --- the verdict: which file to ship -------------------------------------------------------


def test_export_ends_with_the_verdict_whose_ratios_are_export_jsons(exported):
    from lth_tf.export.verdict import speed_word

    directory, stdout = exported
    report = json.loads((directory / "export.json").read_text())
    ((machine, entry),) = report["verdict"]["targets"].items()
    assert machine == report["latency"]["machine"]
    assert "Which file to ship" in stdout and f"on {machine}:" in stdout
    files = {f["file"]: f for f in entry["files"]}
    assert set(files) == {"ticket.tflite", "ticket_fp16.tflite", "ticket_int8.tflite"}
    for name, verdict in files.items():
        mine, dense = report["ticket"]["files"][name], report["dense"]["files"][name]
        speedup = dense["median_latency_us"] / mine["median_latency_us"]
        assert verdict["speedup_vs_dense"] == pytest.approx(speedup, rel=1e-3)
        assert verdict["size_vs_dense"] == pytest.approx(mine["bytes"] / dense["bytes"], rel=1e-3)
        assert len(verdict["round_speedups"]) == len(mine["round_latencies_us"])
        assert verdict["speed"] == speed_word(verdict["round_speedups"])
        assert f"{name:<26} {mine['bytes'] / 1000:8.1f} KB" in stdout
        assert f"{verdict['speedup_vs_dense']:.2f}x as fast" in stdout
    shippable = [f for f in files.values() if f["shippable"]]
    assert entry["smallest_shippable"] == min(shippable, key=lambda f: f["bytes"])["file"]
    fastest = min(f["median_latency_us"] for f in shippable)
    assert entry["as_fast_shippable"][0] == entry["fastest_shippable"]
    assert set(entry["as_fast_shippable"]) == {
        f["file"] for f in shippable if f["median_latency_us"] <= fastest * 1.05
    }
    if not entry["any_faster_than_dense"]:
        assert report["verdict"]["advice"] and "no file is faster than the dense" in stdout


def test_the_fp16_ticket_is_half_the_float_bytes_and_as_accurate(exported):
    directory, _ = exported
    report = json.loads((directory / "export.json").read_text())
    files = report["ticket"]["files"]
    half, full = files["ticket_fp16.tflite"], files["ticket.tflite"]
    assert half["bytes"] == (directory / "ticket_fp16.tflite").stat().st_size
    assert half["bytes"] < 0.7 * full["bytes"]
    assert half["weight_storage"].split(":")[0] in ("sparse", "dense")
    assert abs(half["litert_test_accuracy"] - full["litert_test_accuracy"]) <= 0.001
    assert half["input"]["dtype"] == "float32"


@pytest.mark.parametrize(
    "rounds, word",
    [
        ([1.0] * 10, "same speed"),  # identical files
        ([1.02, 1.03, 1.01], "same speed"),  # always ahead, by less than the band
        ([0.9, 1.4, 1.3], "same speed"),  # one round disagrees
        ([1.2, 1.3, 1.1], "faster"),
        ([0.5, 0.6, 0.55], "slower"),
    ],
)
def test_a_difference_inside_the_timings_spread_is_same_speed(rounds, word):
    from lth_tf.export.verdict import speed_word

    assert speed_word(rounds) == word


@pytest.mark.parametrize("granularity, offered", [("weight", True), ("channel", False)])
def test_the_verdict_offers_blocks_only_where_the_experiment_can_take_them(granularity, offered):
    from lth_tf.export.verdict import advice

    context = {
        "granularity": granularity,
        "prune_for": "any",
        "block_size": "1x1",
        "has_conv": False,
        "dense_weight_fraction": 1.0,
        "xnnpack_shaped": False,
        "percent_remaining": 20.0,
    }
    hints = advice(context, arm_ran=False)
    assert any(hint.startswith("--block_size=4x1") for hint in hints) is offered
    assert hints[-1] == "more rounds: this ticket keeps 20.0% of its weights"


def test_arm_options_are_checked_by_type():
    with pytest.raises(LthError, match=r"arm='no': give True or False"):
        ExportOptions(arm="no")
    with pytest.raises(LthError, match=r"arm_examples=2.5: give a whole number of at least 1"):
        ExportOptions(arm=True, arm_examples=2.5)
    assert ExportOptions(arm=True, arm_examples=np.int64(5)).arm_examples == 5


def test_an_export_of_another_experiment_of_the_same_name_is_not_replaced(lenet_runs, tmp_path):
    # Every sweep names its members rewind0it-seed0, ...: two sweeps' exports meet by name.
    from lth_tf.export.destination import check_replaceable, export_dir

    ticket = open_ticket(lenet_runs / "plain", 1)
    destination = export_dir(tmp_path, ticket)
    destination.mkdir(parents=True)
    earlier = destination / "export.json"
    check_replaceable(destination, ticket)  # nothing there yet
    mine = str(ticket.experiment.root.resolve())
    for report, replaceable in [
        ({"experiment_id": ticket.experiment.identity, "experiment": "/moved/plain"}, True),
        ({"experiment": mine}, True),  # written before ids
        ({"experiment_id": "another", "experiment": "/other/sweep/plain"}, False),
        ({"experiment": "/other/sweep/plain"}, False),
    ]:
        earlier.write_text(json.dumps(report))
        if replaceable:
            check_replaceable(destination, ticket)
            continue
        with pytest.raises(LthError) as refused:
            check_replaceable(destination, ticket)
        assert str(refused.value) == (
            f"{destination} holds the export of another experiment (/other/sweep/plain); choose "
            f"another --output_dir, or delete {destination} to replace it"
        )


def test_an_export_never_replaces_the_experiments_own_round_or_a_folder_of_the_users(
    lenet_runs, mnist_data, tmp_path
):
    # --output_dir=the folder that holds the experiment: <output_dir>/plain/round_01 is the
    # round itself, which replacing would delete (its weights and masks). Refused, untouched.
    runs = tmp_path / "runs"
    experiment = shutil.copytree(lenet_runs / "plain", runs / "plain")
    before = sorted(p.name for p in (experiment / "round_01").iterdir())
    ticket, dense = open_ticket(experiment, 1), open_ticket(experiment, 0)
    with pytest.raises(LthError, match=r"round_01 is inside the experiment .*choose an"):
        export_ticket(ticket, dense, mnist_data, runs, QUICK)
    # The experiment's folder itself (or one inside it) as --output_dir: refused too.
    for inside in (experiment, experiment / "round_00"):
        with pytest.raises(LthError, match=f"is inside the experiment {experiment}"):
            export_ticket(ticket, dense, mnist_data, inside, QUICK)
    assert not (experiment / "plain").exists() and not (experiment / "round_00" / "plain").exists()
    assert sorted(p.name for p in (experiment / "round_01").iterdir()) == before
    assert open_ticket(experiment, 1).round == 1
    # A folder of the user's where the export would go: kept too.
    theirs = tmp_path / "out" / "plain" / "round_01"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(LthError, match=r"round_01 exists and holds no export \(export.json\)"):
        export_ticket(ticket, dense, mnist_data, tmp_path / "out", QUICK)
    assert (theirs / "notes.txt").read_text() == "mine"
    # A file of the user's, or a link, where the export's folder goes: kept.
    shutil.rmtree(theirs)
    theirs.write_text("mine")
    with pytest.raises(LthError, match=r"round_01 is a file, where the export's folder goes"):
        export_ticket(ticket, dense, mnist_data, tmp_path / "out", QUICK)
    assert theirs.read_text() == "mine"
    theirs.unlink()
    theirs.symlink_to(experiment / "round_01")
    with pytest.raises(LthError, match=r"round_01 is a link, where the export's folder goes"):
        export_ticket(ticket, dense, mnist_data, tmp_path / "out", QUICK)
    assert sorted(p.name for p in (experiment / "round_01").iterdir()) == before


def test_files_within_the_band_of_the_fastest_are_named_as_fast():
    """A 0.1 us lead is a drift, not a win: the verdict names every file that close."""
    from lth_tf.export.verdict import target_verdict, verdict_lines

    def timed(name, us, shippable=True):
        return {
            "file": name,
            "bytes": 1000,
            "size_vs_dense": 1.0,
            "median_latency_us": us,
            "speedup_vs_dense": 1.0,
            "round_speedups": [1.0],
            "speed": "same speed",
            "shippable": shippable,
            "not_shippable_because": None if shippable else "wrong answers",
        }

    close = target_verdict([timed("a.tflite", 13.7), timed("b.tflite", 13.6), timed("c", 32.2)])
    assert close["fastest_shippable"] == "b.tflite"
    assert close["as_fast_shippable"] == ["b.tflite", "a.tflite"]
    clear = target_verdict([timed("a.tflite", 5.0), timed("b.tflite", 6.4)])
    assert clear["as_fast_shippable"] == ["a.tflite"]
    unshippable = target_verdict([timed("a.tflite", 5.0, False), timed("b.tflite", 5.1)])
    assert unshippable["as_fast_shippable"] == ["b.tflite"]
    lines = verdict_lines({"targets": {"this machine": close}, "advice": []})
    assert (
        "    smallest shippable: a.tflite; fastest shippable: b.tflite, a.tflite (the same speed, "
        "within 5%)" in lines
    )
    lines = verdict_lines({"targets": {"this machine": clear}, "advice": []})
    assert "    smallest shippable: a.tflite; fastest shippable: a.tflite" in lines
