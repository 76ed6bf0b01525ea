"""The emulated ARM LiteRT: XNNPack's sparse inference runs on a sparse MobileNet-shaped file
(and not on its dense twin), ARM outputs equal Keras's, and what is missing is one line.

The runtime is set up once in the default cache (``$LTH_TF_ARM_CACHE``), ~15-30 s the first
time: it needs root, apt and PyPI, as the CI machine has.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import lth_tf  # noqa: F401  (environment for TensorFlow, before anything imports it)
from lth_tf.errors import LthError
from lth_tf.export import arm
from lth_tf.export.tflite import float_tflite

BUILTIN = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
# XNNPack runs a 1x1 convolution sparse only when more than 2/3 of its weights are zero.
ZERO_FRACTION = 0.9


def mobilenet_shaped(zero_fraction: float) -> tf_keras.Model:
    """A tiny net of the shape XNNPack's sparse path needs: a 3x3 stride-2 stem padded 1 on
    every side (``same`` on an even input pads 0 before, 1 after, and the path never starts), a
    depthwise 3x3, 1x1 convolutions (``zero_fraction`` of their weights exactly 0), global
    average pooling, a Dense head."""
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3))
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, layers.Dense(10)(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer) is layers.Conv2D and layer.kernel_size == (1, 1):
            kernel, bias = layer.get_weights()
            kernel[rng.random(kernel.shape) < zero_fraction] = 0
            layer.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def runtime() -> arm.ArmRuntime:
    return arm.arm_runtime()


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, tuple[tf_keras.Model, bytes]]:
    """``sparse`` and ``dense`` nets with their float .tflite files (weights stored sparse)."""
    built = {}
    for name, zero_fraction in [("sparse", ZERO_FRACTION), ("dense", 0.0)]:
        model = mobilenet_shaped(zero_fraction)
        saved = tmp_path_factory.mktemp(name) / "saved_model"
        model.save(str(saved), save_format="tf")
        built[name] = (model, float_tflite(saved))
    return built


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)


def test_sparse_inference_runs_on_the_sparse_file_only(runtime, twins, images):
    ran = {name: arm.kernels_that_ran(runtime, twins[name][1], images[:1]) for name in twins}
    assert arm.sparse_inference_ran(ran["sparse"]), ran["sparse"]
    assert any("dwconv2d_chw" in kernel for kernel in ran["sparse"]), ran["sparse"]
    assert not arm.sparse_inference_ran(ran["dense"]), ran["dense"]
    assert ran["dense"], "no micro-kernel found at all: the symbol mapping is broken"


def test_outputs_on_arm_are_the_keras_outputs(runtime, twins, images):
    model, content = twins["sparse"]
    files = {"xnnpack": content, "builtin": content, "dense": twins["dense"][1]}
    inputs = dict.fromkeys(files, images)
    # One emulator run: the sparse file under XNNPACK and under the builtin kernels alone.
    timing = {"timing_rounds": 2, "timing_invocations": 2, "timing_warmup": 1}
    result = arm.run_on_arm(runtime, files, inputs, resolvers={"builtin": BUILTIN}, **timing)
    expected = {"xnnpack": model(images).numpy(), "dense": twins["dense"][0](images).numpy()}
    expected["builtin"] = expected["xnnpack"]
    for name, outputs in expected.items():
        got = result[name]["outputs"]
        assert got.dtype == np.float32 and got.shape == (3, 10), name
        np.testing.assert_allclose(got, outputs, rtol=1e-4, atol=1e-5, err_msg=name)
        medians = result[name]["round_medians_us"]
        assert len(medians) == 2 and min(medians) > 0 and result[name]["median_us"] > 0, name


def test_wrong_input_dtype_says_how_to_prepare_it(runtime, twins, images):
    with pytest.raises(LthError, match="to_input"):
        arm.run_on_arm(runtime, {"m": twins["sparse"][1]}, {"m": images.astype(np.uint8)})


def test_a_failing_guest_is_one_line_naming_the_file(runtime, twins, images):
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def batch_of_one(x):
        return tf.reshape(x, [2, 2])  # any other batch cannot be reshaped so

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [batch_of_one.get_concrete_function()], batch_of_one
    )
    files = {"fine": twins["sparse"][1], "batch_of_one": converter.convert()}
    inputs = {"fine": images, "batch_of_one": np.ones((3, 4), np.float32)}
    with pytest.raises(LthError, match="while running 'batch_of_one'") as raised:
        arm.run_on_arm(runtime, files, inputs, timing_rounds=0)
    assert "\n" not in str(raised.value)

    broken = dataclasses.replace(runtime, cpu="no-such-cpu")  # qemu refuses to start
    with pytest.raises(LthError, match="no-such-cpu") as raised:
        arm.run_on_arm(broken, {"fine": files["fine"]}, {"fine": images}, timing_rounds=0)
    assert "\n" not in str(raised.value)


def test_a_file_where_the_cache_should_be_is_one_line(tmp_path):
    (tmp_path / "cache").write_text("not a directory")
    for cache in (tmp_path / "cache", tmp_path / "cache" / "arm"):
        with pytest.raises(LthError, match="not a directory") as raised:
            arm.arm_runtime(cache)
        message = str(raised.value)
        assert "\n" not in message and arm.ARM_CACHE_ENV in message and "move it" in message


def test_missing_qemu_without_root_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither qemu nor apt-get on it
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LthError, match="apt-get install qemu-user-static") as raised:
        arm.arm_runtime(tmp_path / "cache")
    assert "\n" not in str(raised.value)


def test_the_cache_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(arm.ARM_CACHE_ENV, str(tmp_path / "arm"))
    assert arm.default_cache_dir() == tmp_path / "arm"
    monkeypatch.delenv(arm.ARM_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert arm.default_cache_dir() == tmp_path / "xdg" / "lth_tf" / "arm64-litert"


# --- the export's ARM check -------------------------------------------------------------------


def sparse_file(build, tmp_path, zero_fraction: float = 0.85) -> tuple[tf_keras.Model, bytes]:
    """``build((20, 20, 3), 5)`` with ``zero_fraction`` of its 1x1 weights zero and batch norm
    statistics that are not the identity, and its float .tflite (weights stored sparse)."""
    tf_keras.utils.set_random_seed(0)
    model = build((20, 20, 3), 5)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer) is tf_keras.layers.Conv2D and layer.kernel_size == (1, 1):
            weights[0] = weights[0] * (rng.random(weights[0].shape) >= zero_fraction)
        elif isinstance(layer, tf_keras.layers.BatchNormalization):
            weights[2] = rng.uniform(-0.5, 0.5, weights[2].shape)  # moving mean
            weights[3] = rng.uniform(0.5, 1.5, weights[3].shape)  # moving variance
        layer.set_weights(weights)
    model.save(str(tmp_path / "saved_model"), save_format="tf")
    return model, float_tflite(tmp_path / "saved_model")


def test_the_arm_check_marks_the_graph_xnnpack_gets_wrong_on_arm_not_shippable(runtime, tmp_path):
    """An explicitly padded stem with ``same`` stride-2 depthwise convolutions, stored sparse:
    XNNPack runs part of it sparse on ARM and computes other outputs than on x86 (and Keras).
    The rebuilt form ``--prune_for=xnnpack`` trains (symmetric padding everywhere) is exact."""
    from lth_tf.export.arm_check import check_on_arm
    from lth_tf.export.options import ExportOptions
    from lth_tf.pruning.xnnpack import symmetric_padding
    from tests.user_model import xnnpack_mixed_padding

    images = np.random.default_rng(2).uniform(0, 255, (6, 20, 20, 3)).astype(np.float32)
    labels = np.arange(6) % 5
    wrong, wrong_file = sparse_file(xnnpack_mixed_padding, tmp_path / "wrong")
    fixed, changes = symmetric_padding(wrong)
    assert changes  # the stride-2 depthwise: 'same' on 10x10
    fixed.save(str(tmp_path / "fixed"), save_format="tf")
    fixed_file = float_tflite(tmp_path / "fixed")
    options = ExportOptions(arm_timing_rounds=1, arm_timing_invocations=1)
    checked = check_on_arm(
        runtime,
        {"wrong/ticket.tflite": wrong_file, "fixed/ticket.tflite": fixed_file},
        {"wrong": wrong.predict(images, verbose=0), "fixed": fixed.predict(images, verbose=0)},
        images,
        labels,
        options,
    )["files"]
    bad, good = checked["wrong/ticket.tflite"], checked["fixed/ticket.tflite"]
    assert bad["sparse_inference"] and good["sparse_inference"]
    assert not bad["shippable"]
    assert "outputs differ from its outputs on this machine" in bad["not_shippable_because"]
    assert good["shippable"] and good["not_shippable_because"] is None
    assert good["accuracy"] == good["keras_accuracy"]


def test_a_damaged_runtime_is_noticed_before_a_run_blames_the_model(tmp_path):
    """The set-up records every file's size: a truncated or deleted file is named (and
    arm_runtime sets the root up again instead of letting the guest crash on it)."""
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3.11").write_bytes(b"x" * 100)
    (root / "lib.so").write_bytes(b"y" * 10)
    (root / arm.STAMP).write_text(json.dumps(arm._pins() | {"files": arm._file_sizes(root)}))
    assert arm._damage(root) is None
    (root / "usr" / "bin" / "python3.11").write_bytes(b"x" * 7)
    assert arm._damage(root) == "usr/bin/python3.11 is 7 bytes, 100 when set up"
    (root / "lib.so").unlink()
    assert arm._damage(root) == "lib.so is missing"
