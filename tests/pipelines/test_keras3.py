"""A Keras 3 model end to end: ``--model=k3.keras`` (saved by the real ``keras`` 3 package)
runs its rounds from exactly its own weights, ``pipelines.export --keras3`` writes a
``ticket.keras`` that Keras 3 loads in a process without ``TF_USE_LEGACY_KERAS`` and that
computes the tf_keras ticket's outputs; the Python API takes a Keras 3 object and gives a Keras 3
ticket; what does not convert is one line, exit 2, nothing written.

The model (:func:`tests.keras3_model.residual_net`) has a residual add, batch norm and a
depthwise convolution; the data is :mod:`tests.user_model`'s 5 classes of 20x20x3 images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.experiment import ExperimentDir
from lth_tf.io import file_sha256
from lth_tf.models.keras3 import saved_keras_version
from tests.helpers import assert_one_line_error, run_main, run_pipeline
from tests.keras3_model import residual_net, save_keras3, with_unsupported_layer
from tests.user_model import CLASSES, IMAGE_SHAPE, shapes_arrays, write_shapes_npz

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3"):
    pytest.skip("needs the keras 3 package", allow_module_level=True)

FLAGS = [
    "--rounds=2",
    "--iterations=40it",
    "--eval_every=20it",
    "--rewind=0it",  # the rewind point is then theta_0, the weights round 0 starts from
    "--learning_rate=0.01",
    "--prune_rates=conv=0.3,fc=0.4,output=0.2",
    "--notensorboard",
    "--noprogress",
]


def imp(*args: str) -> subprocess.CompletedProcess:
    """``python -m pipelines.imp args`` in this process."""
    return run_main("pipelines.imp", *args, tensorflow=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``k3.keras`` (Keras 3, seeded, BN statistics off their initial values), ``shapes.npz``."""
    root = tmp_path_factory.mktemp("keras3")
    return SimpleNamespace(
        root=root,
        keras=save_keras3(root / "k3.keras"),
        npz=write_shapes_npz(root / "shapes.npz"),
        out=root / "runs",
    )


@pytest.fixture(scope="module")
def experiment(files):
    flags = [f"--model={files.keras}", f"--dataset=npz:{files.npz}", f"--output_dir={files.out}"]
    result = imp(*flags, *FLAGS, "--experiment_name=k3")
    assert result.returncode == 0, result.stderr
    return files.out / "k3"


def _tf_keras_name(path: str) -> str:
    """A Keras 3 variable's path as tf_keras names it (the experiment's files use those names):
    a depthwise convolution's kernel is ``kernel`` in Keras 3, ``depthwise_kernel`` in tf_keras."""
    return "depthwise/depthwise_kernel" if path == "depthwise/kernel" else path


def _by_tf_keras_name(model) -> dict[str, np.ndarray]:
    return {_tf_keras_name(v.path): np.asarray(v.numpy()) for v in model.weights}


def _keras3_weights(path) -> dict[str, np.ndarray]:
    return _by_tf_keras_name(keras.saving.load_model(path, compile=False, safe_mode=True))


def test_a_keras3_file_runs_its_rounds_from_exactly_its_own_weights(files, experiment):
    assert lth_tf.Experiment(experiment).rounds == [0, 1, 2]
    record = io.read_json(experiment / "hparams.json")["model"]
    assert record["kind"] == "keras_file"
    assert record["path"] == str(files.keras.resolve())
    assert record["sha256"] == file_sha256(files.keras)
    conversion = record["keras3"]
    assert conversion["converted_to"] == "tf_keras"
    assert conversion["keras_version"] == keras.__version__
    assert conversion["checked_examples"] == 8 and conversion["max_output_difference"] < 1e-4
    # The experiment's copy is the converted tf_keras model: resume, export, branches load it.
    assert saved_keras_version(experiment / "model.keras").startswith("2")

    theta_0 = _keras3_weights(files.keras)
    start = ExperimentDir(experiment).read_rewind_point()
    assert set(start) == set(theta_0)
    for name, value in theta_0.items():
        np.testing.assert_array_equal(start[name], value, err_msg=name)


def test_export_keras3_writes_a_ticket_that_keras3_loads_alone_with_the_tickets_outputs(
    files, experiment
):
    out = files.root / "saved_models"
    result = run_pipeline(
        "pipelines.export",
        f"--experiment_dir={experiment}",
        "--round=2",
        f"--output_dir={out}",
        "--keras3",
    )
    assert result.returncode == 0, result.stderr
    path = out / "k3" / "round_02" / "ticket.keras"
    assert "ticket.keras" in result.stdout and path.is_file()
    report = json.loads((path.parent / "export.json").read_text())["keras3"]
    assert report["file"] == "ticket.keras" and report["bytes"] == path.stat().st_size
    assert report["checked_examples"] == 200 and report["max_output_difference"] < 1e-4

    # Keras 3 alone: a process where tf.keras is Keras 3 and lth_tf is not imported.
    images = shapes_arrays()["x_test"][:50].astype(np.float32)
    np.save(files.root / "images.npy", images)
    script = (
        "import os, sys, numpy as np, keras\n"
        "assert 'TF_USE_LEGACY_KERAS' not in os.environ and 'lth_tf' not in sys.modules\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "x = np.load(sys.argv[2])\n"
        "arrays = {v.path: np.asarray(v.numpy()) for v in model.weights}\n"
        "arrays['__logits__'] = keras.ops.convert_to_numpy(model(x, training=False))\n"
        "np.savez(sys.argv[3], **arrays)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    loaded = files.root / "loaded.npz"
    command = [sys.executable, "-c", script, str(path), str(files.root / "images.npy"), str(loaded)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=files.root)
    assert done.returncode == 0, done.stderr
    arrays = {_tf_keras_name(name): value for name, value in np.load(loaded).items()}

    ticket = lth_tf.Experiment(experiment).model(2)
    expected = ticket.predict(images, verbose=0)
    np.testing.assert_allclose(arrays.pop("__logits__"), expected, rtol=1e-4, atol=1e-5)
    weights = {v.name.rsplit(":", 1)[0]: v.numpy() for v in ticket.weights}
    assert set(arrays) == set(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)
    for name, mask in lth_tf.Experiment(experiment).masks(2).items():
        assert mask.min() == 0 and np.all(arrays[name][mask == 0] == 0), name


def test_a_changed_keras3_file_is_refused_on_resume(files, experiment):
    flags = [f"--model={files.keras}", f"--dataset=npz:{files.npz}", f"--output_dir={files.out}"]
    original = files.keras.read_bytes()
    try:
        save_keras3(files.keras, seed=1)
        assert_one_line_error(imp(*flags, *FLAGS, "--experiment_name=k3"), "changed since")
    finally:
        files.keras.write_bytes(original)
    assert imp(*flags, *FLAGS, "--experiment_name=k3").returncode == 0  # restored: it resumes


def test_what_does_not_convert_is_one_line_exit_2_and_leaves_no_directory(files, tmp_path):
    bad = save_keras3(tmp_path / "bad.keras", with_unsupported_layer)
    runs = tmp_path / "runs"
    # Refused from its config.json, before TensorFlow starts, in a process of its own.
    result = run_pipeline(
        "pipelines.imp", f"--model={bad}", f"--dataset=npz:{files.npz}", f"--output_dir={runs}"
    )
    assert_one_line_error(result, "layer 'flip' (RandomFlip) is not one lth_tf converts")
    assert not runs.exists()

    # A Keras-3-only option is seen once the model is loaded: still before anything is written.
    def with_lora(input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(inputs)
        outputs = keras.layers.Dense(num_classes, name="head", lora_rank=2)(x)
        return keras.Model(inputs, outputs)

    lora = save_keras3(tmp_path / "lora.keras", with_lora)
    result = imp(f"--model={lora}", f"--dataset=npz:{files.npz}", f"--output_dir={runs}", *FLAGS)
    assert_one_line_error(result, "layer 'head' (Dense): its option lora_rank=2")
    assert not runs.exists()


def test_the_api_takes_a_keras3_object_and_gives_a_keras3_ticket(tmp_path):
    keras.utils.set_random_seed(3)
    model = residual_net(IMAGE_SHAPE, CLASSES)
    theta_0 = _by_tf_keras_name(model)
    arrays = shapes_arrays(train=200, test=100)
    found = lth_tf.find_tickets(
        model,
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        output_dir=tmp_path,
        experiment_name="api",
        tensorboard=False,
        rounds=1,
        iterations="20it",
        eval_every="10it",
        rewind="0it",
        learning_rate=0.01,
    )
    record = io.read_json(found.path / "hparams.json")["model"]
    assert record["kind"] == "python" and record["keras3"]["converted_to"] == "tf_keras"
    start = ExperimentDir(found.path).read_rewind_point()
    for name, value in theta_0.items():
        np.testing.assert_array_equal(start[name], value, err_msg=name)

    ticket = found.model(1, keras3=True)
    assert isinstance(ticket, keras.Model)
    images = arrays["x_test"][:20].astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ticket(images, training=False)),
        found.model(1).predict(images, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )
    weights = _by_tf_keras_name(ticket)
    for name, mask in found.masks(1).items():
        assert np.all(weights[name][mask == 0] == 0), name


def test_a_builder_of_keras3_layers_is_converted_and_recorded(files, tmp_path):
    result = imp(
        "--model=tests.keras3_model:residual_net",
        f"--dataset=npz:{files.npz}",
        f"--output_dir={tmp_path}",
        "--experiment_name=builder",
        "--rounds=0",
        "--iterations=10it",
        "--notensorboard",
        "--noprogress",
    )
    assert result.returncode == 0, result.stderr
    record = io.read_json(tmp_path / "builder" / "hparams.json")["model"]
    assert record["kind"] == "builder" and len(record["architecture"]) == 64
    assert record["keras3"]["converted_to"] == "tf_keras"
    assert lth_tf.Experiment(tmp_path / "builder").rounds == [0]


def test_a_keras3_model_for_other_data_is_refused_in_the_usual_words(files, tmp_path):
    other = save_keras3(tmp_path / "other.keras", shape=(28, 28, 1))
    runs = tmp_path / "runs"
    # One iteration: the default --rewind=1ep is past its end too, which matters less.
    flags = [f"--dataset=npz:{files.npz}", f"--output_dir={runs}", "--iterations=1it"]
    result = imp(f"--model={other}", *flags)
    assert_one_line_error(result, "takes inputs of shape (28, 28, 1)")
    assert not runs.exists()
