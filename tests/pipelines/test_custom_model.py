"""A model and data of the user's own, end to end: ``--model=FILE.keras`` and
``--model=package.module:function`` on ``--dataset=npz:PATH`` through the CLI, the same through
the Python API (bit-identical), export to LiteRT-verified tickets, a kill and resume, changed
files refused, and each bad input refused in one line.

The model (:mod:`tests.user_model`) has a residual add, batch norm, a depthwise conv and a
Dense head that is not named ``output``; the data is 5 classes of 20x20x3 uint8 images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.pruning.masks import surviving_count
from tests.helpers import (
    assert_one_line_error,
    run_killed_after_a_checkpoint,
    run_main,
    run_pipeline,
)
from tests.user_model import CLASSES, IMAGE_SHAPE, residual_net, shapes_arrays, write_shapes_npz

RATES = {"conv": 0.3, "fc": 0.4, "output": 0.2}
# Which kind each prunable kernel of residual_net is: the head is found as the output layer.
# The depthwise conv stays dense: TF-MOT registers DepthwiseConv2D with no weight to prune.
KINDS = {
    "stem/kernel": "conv",
    "pointwise/kernel": "conv",
    "hidden/kernel": "fc",
    "logits/kernel": "output",
}
SETTINGS = {
    "rounds": 2,
    "learning_rate": 0.01,
    "iterations": "100it",
    "eval_every": "25it",
    "rewind": "10it",
    "prune_rates": ",".join(f"{kind}={rate}" for kind, rate in RATES.items()),
    # Round 1 replays round 0's batches, so the stability analysis's copy 0 (the dense
    # network's data order) retrains it exactly.
    "data_order": "fixed",
}
FLAGS = [f"--{name}={value}" for name, value in SETTINGS.items()]


def _save_model(path, seed=0, classes=CLASSES):
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    residual_net(IMAGE_SHAPE, classes).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The user's files: ``net.keras`` (untrained, seed 0) and ``shapes.npz``."""
    root = tmp_path_factory.mktemp("user")
    return SimpleNamespace(
        root=root,
        keras=_save_model(root / "net.keras"),
        npz=write_shapes_npz(root / "shapes.npz"),
        out=root / "runs",
    )


def imp(*args: str) -> subprocess.CompletedProcess:
    """``python -m pipelines.imp args`` in this process."""
    return run_main("pipelines.imp", *args, "--noprogress", tensorflow=True)


@pytest.fixture(scope="module")
def keras_cli(files):
    """``--model=net.keras --dataset=npz:shapes.npz`` through the CLI."""
    result = imp(
        f"--model={files.keras}",
        f"--dataset=npz:{files.npz}",
        *FLAGS,
        f"--output_dir={files.out}",
        "--experiment_name=keras_cli",
    )
    assert result.returncode == 0, result.stderr
    return files.out / "keras_cli"


def _comparable(experiment):
    rows = io.read_csv(experiment / "results.csv")
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def assert_same_rounds(a, b, rounds=range(3)):
    """Bit-identical results rows, masks and trained weights."""
    assert _comparable(a) == _comparable(b)
    for pruning_round in rounds:
        for file in ("masks.npz", "weights.npz"):
            mine = io.read_npz(a / f"round_{pruning_round:02d}" / file)
            theirs = io.read_npz(b / f"round_{pruning_round:02d}" / file)
            assert mine.keys() == theirs.keys()
            for name in mine:
                np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def assert_exact_nested_sparsities(path):
    """Rounds 0-2 done; each kernel keeps exactly its kind's share, inside the last mask."""
    experiment = lth_tf.Experiment(path)
    assert experiment.rounds == [0, 1, 2]
    previous = None
    for pruning_round in experiment.rounds:
        masks = experiment.masks(pruning_round)
        assert set(masks) == set(KINDS)
        for name, kind in KINDS.items():
            sparsity = 1 - (1 - RATES[kind]) ** pruning_round
            assert int(masks[name].sum()) == surviving_count(masks[name].size, sparsity), name
            if previous is not None:
                assert np.all(masks[name] <= previous[name]), f"{name} is not nested"
        weights = experiment.weights(pruning_round)
        for name, mask in masks.items():
            assert np.all(weights[name][mask == 0] == 0), name
        previous = masks
    # The model learns the shapes (chance is 20%).
    assert experiment.results[0].test_accuracy > 0.5


def test_a_keras_file_finishes_its_rounds_with_exact_nested_sparsities(files, keras_cli):
    assert_exact_nested_sparsities(keras_cli)
    # The experiment keeps the model it started from, byte for byte.
    assert (keras_cli / "model.keras").read_bytes() == files.keras.read_bytes()
    saved = io.read_json(keras_cli / "hparams.json")
    assert saved["model"]["kind"] == "keras_file"
    assert saved["data"]["provenance"]["kind"] == "npz"
    assert saved["data"]["num_classes"] == CLASSES


def test_the_api_on_the_same_model_object_gives_the_cli_results_bit_for_bit(files, keras_cli):
    import tf_keras

    model = tf_keras.models.load_model(files.keras, compile=False)

    def find_tickets():
        return lth_tf.find_tickets(
            model,
            dataset=f"npz:{files.npz}",
            output_dir=files.out,
            experiment_name="keras_api",
            tensorboard=False,
            **SETTINGS,
        )

    experiment = find_tickets()
    assert experiment.path == files.out / "keras_api"
    assert_exact_nested_sparsities(experiment.path)
    assert_same_rounds(experiment.path, keras_cli)
    # Called again with the same arguments: every round is done, nothing retrains.
    again = find_tickets()
    assert [r.train_seconds for r in again.results] == [r.train_seconds for r in experiment.results]


def test_a_builder_through_the_cli_and_through_the_api_on_arrays_agree(files):
    cli = imp(
        "--model=tests.user_model:residual_net",
        f"--dataset=npz:{files.npz}",
        *FLAGS,
        f"--output_dir={files.out}",
        "--experiment_name=builder_cli",
        "--notensorboard",
    )
    assert cli.returncode == 0, cli.stderr
    saved = io.read_json(files.out / "builder_cli" / "hparams.json")
    assert saved["model"]["kind"] == "builder" and len(saved["model"]["architecture"]) == 64
    arrays = shapes_arrays()
    experiment = lth_tf.find_tickets(
        residual_net,
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        output_dir=files.out,
        experiment_name="builder_api",
        tensorboard=False,
        **SETTINGS,
    )
    # In-memory arrays are kept with the experiment; the validation hold-out is the npz's.
    assert (experiment.path / "data.npz").exists()
    assert experiment.hparams.dataset.name.startswith("arrays:")
    assert_exact_nested_sparsities(files.out / "builder_cli")
    assert_same_rounds(experiment.path, files.out / "builder_cli")


def test_stability_and_report_work_from_a_user_model_experiment_alone(files, keras_cli):
    result = run_pipeline(
        "pipelines.stability",
        f"--experiment_dir={keras_cli}",
        "--round=1",
        "--seeds=2",
        "--points=3",
        "--noprogress",
    )
    assert result.returncode == 0, result.stderr
    # Copy 0 takes the experiment's seed (the data order round 1 replays under fixed): rebuilt
    # from the directory, it retrains round 1
    # (from the rewind point, iteration 10) exactly.
    copy = io.read_npz(keras_cli / "stability" / "round_01" / "rewind_10it" / "copy_seed0.npz")
    for name, value in io.read_npz(keras_cli / "round_01" / "weights.npz").items():
        np.testing.assert_array_equal(copy[name], value, err_msg=name)
    report = run_pipeline(
        "pipelines.report", f"--experiments={keras_cli}", f"--output={files.root / 'cmp'}"
    )
    assert report.returncode == 0, report.stderr
    assert len(io.read_csv(files.root / "cmp.csv")) == 3


def test_a_tfds_dataset_other_than_the_builtin_ones_trains_through_the_cli(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from lth_tf.data import tfds_source

    # mock_data never counts a dataset as prepared: the (offline) network probe must pass.
    monkeypatch.setattr(tfds_source, "probe_network", lambda url, timeout=3.0: (True, "mock"))
    with tfds.testing.mock_data(num_examples=120):
        result = imp(
            "--model=tests.user_model:residual_net",
            "--dataset=tfds:cifar100",
            f"--data_dir={tmp_path}",
            "--rounds=1",
            "--iterations=20it",
            "--rewind=5it",
            f"--output_dir={tmp_path / 'runs'}",
            "--experiment_name=cifar100",
            "--notensorboard",
        )
    assert result.returncode == 0, result.stderr
    saved = io.read_json(tmp_path / "runs" / "cifar100" / "hparams.json")
    provenance = saved["data"]["provenance"]
    assert provenance["kind"] == "tfds" and provenance["name"] == "cifar100"
    assert provenance["version"] and provenance["splits"]["test"] == "test"
    assert saved["data"]["num_classes"] == 100 and saved["data"]["input_shape"] == [32, 32, 3]
    masks = lth_tf.Experiment(tmp_path / "runs" / "cifar100").masks(1)
    assert masks["logits/kernel"].shape == (16, 100)


def test_export_of_a_user_model_writes_litert_verified_float_and_int8_tickets(files, keras_cli):
    export_dir = files.root / "saved_models"
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={keras_cli}",
        "--round=2",
        f"--output_dir={export_dir}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((export_dir / "keras_cli" / "round_02" / "export.json").read_text())
    ticket = report["ticket"]
    assert ticket["keras_test_accuracy"] == pytest.approx(ticket["recorded_test_accuracy"])
    floats, ints = ticket["files"]["ticket.tflite"], ticket["files"]["ticket_int8.tflite"]
    # LiteRT's float kernels (XNNPack) round differently from TensorFlow's, so a near-tie may
    # flip on some CPU: at most one of the 200 test images.
    assert abs(floats["litert_test_accuracy"] - ticket["keras_test_accuracy"]) <= 0.005 + 1e-9
    assert abs(ints["litert_test_accuracy"] - ticket["keras_test_accuracy"]) <= 0.05
    assert ints["input"]["dtype"] == "uint8"


def test_a_killed_user_model_run_resumes_to_the_uninterrupted_results(files, keras_cli):
    flags = [
        f"--model={files.keras}",
        f"--dataset=npz:{files.npz}",
        *FLAGS,
        f"--output_dir={files.out}",
        "--experiment_name=killed",
        "--noprogress",
    ]
    run_killed_after_a_checkpoint(*flags)
    assert (files.out / "killed" / "round_01" / "checkpoint.npz").exists()
    resumed = imp(*flags[:-1])
    assert resumed.returncode == 0, resumed.stderr
    sessions = io.read_json(files.out / "killed" / "sessions.json")
    assert [(s["first_round"], s["resumes_mid_round"]) for s in sessions] == [(0, False), (1, True)]
    assert_same_rounds(files.out / "killed", keras_cli)


def test_a_changed_model_file_or_npz_under_an_existing_experiment_is_refused(files, tmp_path):
    model, npz = _save_model(tmp_path / "mine.keras"), write_shapes_npz(tmp_path / "mine.npz")
    flags = [
        f"--model={model}",
        f"--dataset=npz:{npz}",
        "--rounds=0",
        "--iterations=10it",
        f"--output_dir={tmp_path / 'runs'}",
        "--experiment_name=mine",
        "--notensorboard",
    ]
    assert imp(*flags).returncode == 0
    original_model, original_npz = model.read_bytes(), npz.read_bytes()

    _save_model(model, seed=1)
    assert_one_line_error(imp(*flags), f"{model} changed since")
    _save_model(model, classes=3)  # named as a change, not as too few outputs for the labels
    assert_one_line_error(imp(*flags), f"{model} changed since")
    model.write_bytes(original_model)

    arrays = shapes_arrays()
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % CLASSES
    np.savez(npz, **arrays)
    assert_one_line_error(imp(*flags), "changed since")
    npz.write_bytes(original_npz)
    assert imp(*flags).returncode == 0  # restored: the finished experiment is accepted

    # Started through a link that later points at another file: the message names that file.
    link, other = tmp_path / "link.keras", _save_model(tmp_path / "other.keras", seed=1)
    link.symlink_to(model)
    linked = [f"--model={link}", *flags[1:-2], "--experiment_name=linked", "--notensorboard"]
    assert imp(*linked).returncode == 0
    link.unlink()
    link.symlink_to(other)
    assert_one_line_error(imp(*linked), f"{link} (a link, now to {other}) changed since")


def _keras3_file(path):
    """A model saved by Keras 3 (the ``keras`` package), in a process of its own, with a layer
    that does not convert to tf_keras (``RandomFlip``; docs/your-own-model.md "Keras 3 models")."""
    script = (
        "import keras; m = keras.Sequential([keras.Input((20, 20, 3)), "
        "keras.layers.RandomFlip(name='flip'), keras.layers.Flatten(), keras.layers.Dense(5)]); "
        f"m.save({str(path)!r})"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    return path


@pytest.mark.parametrize(
    "case, reason",
    [
        ("keras3", "layer 'flip' (RandomFlip) is not one lth_tf converts"),
        ("lengths", "y_train"),
        ("labels", "predicts 5 classes"),
        ("no_function", "has no function 'nothing'"),
        ("no_module", "cannot import no_such_module"),
        # What is wrong with --model comes first, before what it makes other flags need.
        ("no_module_nor_dataset", "cannot import no_such_module"),
        ("no_submodule_nor_dataset", "cannot import tests.no_such_module"),
        ("raises", "the builder raised ValueError: no such layer size"),
        ("named_scores", "returns a dict ('scores'); IMP here trains on the class scores as one"),
        ("sigmoid_scores", "ends in a sigmoid"),
        ("spatial_scores", r"gives outputs of shape (20, 20, 5) per example; IMP here trains"),
        ("missing_file", "does not exist"),
        ("unknown_layer", "no prunable layer of 'residual_net' has that name"),
        ("no_dataset", "needs --dataset"),
    ],
)
def test_bad_models_and_data_exit_with_one_line(case, reason, files, tmp_path):
    model, npz = str(files.keras), f"npz:{files.npz}"
    if case == "keras3":
        model = str(_keras3_file(tmp_path / "k3.keras"))
    elif case == "lengths":
        arrays = shapes_arrays()
        npz = f"npz:{write_shapes_npz(tmp_path / 'bad.npz', y_train=arrays['y_train'][:-3])}"
    elif case == "labels":
        labels = shapes_arrays()["y_train"].copy()
        labels[:10] = 6  # 7 classes for a model with 5 outputs
        npz = f"npz:{write_shapes_npz(tmp_path / 'bad.npz', y_train=labels)}"
    elif case == "no_function":
        model = "tests.user_model:nothing"
    elif case in ("no_module", "no_module_nor_dataset"):
        model = "no_such_module:build"
    elif case == "no_submodule_nor_dataset":
        model = "tests.no_such_module:build"
    elif case in ("raises", "named_scores", "sigmoid_scores", "spatial_scores"):
        model = f"tests.user_model:{case}"
    elif case == "missing_file":
        model = str(tmp_path / "nothing.keras")
    flags = [f"--model={model}", "--rounds=0", "--iterations=10it"]
    if case not in ("no_dataset", "no_module_nor_dataset", "no_submodule_nor_dataset"):
        flags.append(f"--dataset={npz}")
    if case == "unknown_layer":
        flags.append("--prune_rates=conv=0.2,head=0")
    result = imp(*flags, f"--output_dir={tmp_path / 'runs'}")
    assert_one_line_error(result, reason)
    # Refused before anything was written: the same command, fixed, starts cleanly.
    assert not (tmp_path / "runs").exists()


def test_a_builder_module_whose_own_code_raises_is_not_sent_to_look_for_it(
    files, tmp_path, monkeypatch
):
    # Found where Python looks, so "run from the directory that holds it" would not help.
    module = tmp_path / "lth_raises_on_import.py"
    module.write_text("import sys\n\nraise RuntimeError('module import fails')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    flags = ["--rounds=0", "--iterations=10it", f"--dataset=npz:{files.npz}"]
    result = imp("--model=lth_raises_on_import:build", *flags, f"--output_dir={tmp_path / 'r'}")
    assert_one_line_error(
        result,
        "--model=lth_raises_on_import:build: importing lth_raises_on_import raised RuntimeError: "
        f"module import fails ({module}:3); fix the module",
    )


def test_a_damaged_or_missing_model_copy_says_where_to_restore_it_from(files, keras_cli, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(keras_cli, copy)
    (copy / "model.keras").write_bytes((copy / "model.keras").read_bytes()[:1000])
    with pytest.raises(lth_tf.LthError, match=f"is damaged: restore it from {files.keras}"):
        lth_tf.Experiment(copy).model(2)
    (copy / "model.keras").unlink()
    with pytest.raises(lth_tf.LthError, match=f"no model.keras.*restore it from {files.keras}"):
        lth_tf.Experiment(copy).model(2)
    wrongs = (("2", "a round is a number"), (-1, "has no round -1"), (9, "no round 9"))
    for wrong, message in wrongs:
        with pytest.raises(lth_tf.LthError, match=message):
            lth_tf.Experiment(keras_cli).masks(wrong)
    # The API's own name for where the path came from, not a command-line flag.
    with pytest.raises(lth_tf.LthError, match=r"^Experiment: \S+nowhere does not exist; pass"):
        lth_tf.Experiment(tmp_path / "nowhere")
    # A round as numpy gives it is a round; model() says what masks() says of a wrong one.
    experiment = lth_tf.Experiment(keras_cli)
    assert experiment.masks(np.int64(1)).keys() == experiment.masks(1).keys()
    with pytest.raises(lth_tf.LthError, match="has no round -1"):
        experiment.model(-1)


def test_a_model_object_built_again_resumes_and_one_of_other_weights_is_refused(files, tmp_path):
    # A notebook cell run twice builds the model again: same seed, same weights, but Keras
    # numbers its unnamed layers anew (conv2d_1 for conv2d). That is the experiment's model.
    import tf_keras as keras

    def build(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input(IMAGE_SHAPE)
        x = keras.layers.Conv2D(4, 3, strides=2)(keras.layers.Rescaling(1 / 255)(inputs))
        return keras.Model(
            inputs, keras.layers.Dense(CLASSES)(keras.layers.Flatten()(x)), name="net"
        )

    settings = {
        "dataset": f"npz:{files.npz}",
        "iterations": "10it",
        "rewind": "0",
        "output_dir": tmp_path,
        "experiment_name": "object",
        "tensorboard": False,
        "progress": False,
    }
    first = build(0)
    lth_tf.find_tickets(first, rounds=0, **settings)
    again = build(0)
    assert [layer.name for layer in again.layers] != [layer.name for layer in first.layers]
    assert lth_tf.find_tickets(again, rounds=1, **settings).rounds == [0, 1]
    masks = io.read_npz(tmp_path / "object" / "round_01" / "masks.npz")
    assert set(masks) == {f"{layer.name}/kernel" for layer in first.layers[2:5:2]}
    with pytest.raises(lth_tf.LthError, match="the model object differs from the one .* started"):
        lth_tf.find_tickets(build(1), rounds=2, **settings)
    # The same object with another setting: that setting is named, not the model.
    with pytest.raises(lth_tf.LthError, match=r"other hyperparameters \(training.learning_rate"):
        lth_tf.find_tickets(again, rounds=2, learning_rate=0.5, **settings)


def test_api_refusals_are_one_line_errors(files, tmp_path):
    import tensorflow as tf

    arrays = shapes_arrays()
    endless = tf.data.Dataset.from_tensor_slices((arrays["x_train"], arrays["y_train"])).repeat()
    with pytest.raises(lth_tf.LthError, match="infinite"):
        lth_tf.find_tickets(residual_net, endless, (arrays["x_test"], arrays["y_test"]))
    with pytest.raises(lth_tf.LthError, match="not a directory"):
        lth_tf.find_tickets(
            residual_net,
            (arrays["x_train"], arrays["y_train"]),
            (arrays["x_test"], arrays["y_test"]),
            output_dir=files.npz,  # a file
            **SETTINGS,
        )
    # Its copy, model.keras, would name code outside Keras, which a .keras file may not: said
    # before the experiment is written, not later as a "damaged" copy.
    import tf_keras as keras

    inputs = keras.Input(IMAGE_SHAPE)
    doubled = keras.layers.Lambda(lambda x: 2.0 * x)(inputs)
    lambda_net = keras.Model(inputs, keras.layers.Dense(CLASSES)(keras.layers.Flatten()(doubled)))
    with pytest.raises(lth_tf.LthError, match="names the module '.*'; its experiment keeps it"):
        lth_tf.find_tickets(
            lambda_net, dataset=f"npz:{files.npz}", output_dir=tmp_path / "lambda", **SETTINGS
        )
    assert not (tmp_path / "lambda").exists()

    class Doubled(keras.layers.Layer):  # unregistered, as a notebook's class is saved
        def call(self, x):
            return 2.0 * x

    Doubled.__module__ = "__main__"
    notebook_net = keras.Model(
        inputs, keras.layers.Dense(CLASSES)(keras.layers.Flatten()(Doubled()(inputs)))
    )
    with pytest.raises(lth_tf.LthError, match="does not load back from a .keras file \\(Cannot"):
        lth_tf.find_tickets(
            notebook_net, dataset=f"npz:{files.npz}", output_dir=tmp_path / "class", **SETTINGS
        )
    assert not (tmp_path / "class").exists()
    with pytest.raises(
        lth_tf.LthError, match=r"^rounds \(--rounds\): \[1\] is a list; it takes an"
    ):
        lth_tf.find_tickets(residual_net, dataset=f"npz:{files.npz}", rounds=[1])
    for callbacks in (5, "metric"):
        with pytest.raises(lth_tf.LthError, match="give a list of lth_tf.callbacks.RunCallback"):
            lth_tf.find_tickets(residual_net, dataset=f"npz:{files.npz}", callbacks=callbacks)


def test_an_api_export_where_no_folder_can_be_is_one_line(files, keras_cli):
    # The CLI's wrapper says it in one line; the API's export does too (an LthError).
    with pytest.raises(lth_tf.LthError, match=r"shapes.npz.*: not a directory \("):
        lth_tf.Experiment(keras_cli).export(1, output_dir=files.npz / "out", verbose=False)


def test_a_gone_model_file_goes_on_from_the_experiments_copy(files, tmp_path, monkeypatch, caplog):
    # The user moved or deleted the .keras file an experiment started from: the experiment's
    # copy is what it trains from anyway, so the same command goes on, by any spelling of that
    # path, to what it would have given with the file there.
    shutil.copy(files.keras, tmp_path / "gone.keras")
    sha = hashlib.sha256(files.keras.read_bytes()).hexdigest()
    common = [f"--dataset=npz:{files.npz}", "--iterations=10it", "--rewind=0", "--notensorboard"]
    started = [f"--model={tmp_path / 'gone.keras'}", *common, f"--output_dir={tmp_path / 'a'}"]
    assert imp(*started, "--rounds=0").returncode == 0
    whole = [f"--model={files.keras}", *common, f"--output_dir={tmp_path / 'b'}"]
    assert imp(*whole, "--rounds=1").returncode == 0
    (tmp_path / "gone.keras").unlink()
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        resumed = imp("--model=./gone.keras", *common, "--output_dir=a", "--rounds=1")
    assert resumed.returncode == 0, resumed.stderr
    (line,) = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert line.startswith("gone.keras is gone: a/gone-shapes-")
    assert line.endswith(f" goes on from its copy model.keras (of the file's sha256 {sha[:8]}…)")
    (a,), (b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    assert_same_rounds(a, b, rounds=range(2))
    # Other settings: refused, without first saying that it goes on.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        other = imp(
            "--model=./gone.keras",
            *common,
            "--learning_rate=0.5",
            "--output_dir=a",
            f"--experiment_name={a.name}",
        )
    assert other.returncode == 2 and "other hyperparameters" in other.stderr
    assert not [r for r in caplog.records if "is gone" in r.getMessage()]
    # Its copy replaced by another model: not what the rounds trained from, refused.
    copy = a / "model.keras"
    kept = copy.read_bytes()
    _save_model(copy, seed=1)
    assert_one_line_error(
        imp("--model=./gone.keras", *common, "--output_dir=a", "--rounds=2"),
        "gone.keras is gone, and ",
    )
    copy.write_bytes(kept)
    # Under --recipe=compiled the file itself is read, even to resume: put it back.
    assert_one_line_error(
        run_main("pipelines.imp", "--model=./gone.keras", "--recipe=compiled", *common[:1]),
        "--recipe=compiled reads the model's compiled optimizer",
    )
    # Moved rather than deleted, and named by its new path: the same bytes, the same experiment.
    shutil.copy(files.keras, tmp_path / "moved.keras")
    moved = imp("--model=moved.keras", *common, "--output_dir=a", "--rounds=2")
    assert moved.returncode == 0, moved.stderr
    assert list((tmp_path / "a").iterdir()) == [a]
    assert lth_tf.Experiment(a).rounds == [0, 1, 2]
    # No experiment started from it: the missing file is the error it always was, before
    # TensorFlow starts (run_main fails the test if it would), and before a sweep's Ray does.
    assert_one_line_error(
        run_main("pipelines.imp", "--model=./gone.keras", *common, "--output_dir=c"),
        "--model=gone.keras: does not exist; pass a model saved with",
    )
    assert not (tmp_path / "c").exists()
    from lth_tf.sweep import plan_sweep

    with pytest.raises(lth_tf.LthError, match="--model=gone.keras: does not exist"):
        plan_sweep(tmp_path / "sweep", "gone.keras", f"npz:{files.npz}", seeds=[0])
    (tmp_path / "sweep").mkdir()
    shutil.copytree(a, tmp_path / "sweep" / "rewind0it-seed0")  # a member that has its copy
    member = {"changes": {"iterations": "10it"}, "seeds": [0], "rewinds": ["0"]}
    plan = plan_sweep(tmp_path / "sweep", "gone.keras", f"npz:{files.npz}", **member)
    assert [m.name for m in plan.members] == ["rewind0it-seed0"]


def test_files_named_by_another_path_resume_the_same_experiment(files, tmp_path, monkeypatch):
    # Started with paths relative to the working directory, rerun with absolute ones (a script,
    # another shell): the same files, so the same experiment, by its default name or a given one.
    monkeypatch.chdir(files.root)
    relative = ["--model=net.keras", "--dataset=npz:shapes.npz", "--iterations=10it"]
    absolute = [f"--model={files.keras}", f"--dataset=npz:{files.npz}", "--iterations=10it"]
    out = f"--output_dir={tmp_path}"
    assert imp(*relative, "--rounds=0", "--rewind=0", out).returncode == 0
    (started,) = tmp_path.iterdir()
    resumed = imp(*absolute, "--rounds=1", "--rewind=0", out)
    assert resumed.returncode == 0, resumed.stderr
    assert list(tmp_path.iterdir()) == [started]
    assert [row["round"] for row in io.read_csv(started / "results.csv")] == ["0", "1"]
    named = [out, "--experiment_name=named", "--rewind=0"]
    assert imp(*absolute, "--rounds=0", *named).returncode == 0
    assert imp(*relative, "--rounds=1", *named).returncode == 0
    assert len(io.read_csv(tmp_path / "named" / "results.csv")) == 2
    # ./net.keras is net.keras too.
    dotted = ["--model=./net.keras", "--dataset=npz:./shapes.npz", "--iterations=10it"]
    assert imp(*dotted, "--rounds=2", "--rewind=0", out).returncode == 0
    assert sorted(tmp_path.iterdir()) == sorted([started, tmp_path / "named"])
    assert len(io.read_csv(started / "results.csv")) == 3
    # From another folder, by a path relative to it, and through a link: the same files.
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.keras").symlink_to(files.keras)
    monkeypatch.chdir(elsewhere)
    moved = [f"--dataset=npz:{os.path.relpath(files.npz)}", "--iterations=10it", "--rewind=0"]
    assert imp("--model=link.keras", *moved, "--rounds=3", out).returncode == 0
    assert (
        imp(f"--model={os.path.relpath(files.keras)}", *moved, "--rounds=3", *named[:2]).returncode
        == 0
    )
    assert sorted(tmp_path.iterdir()) == sorted([started, tmp_path / "named"])
    assert len(io.read_csv(started / "results.csv")) == 4
    assert len(io.read_csv(tmp_path / "named" / "results.csv")) == 4
