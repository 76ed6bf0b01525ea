"""Keras 3 models to tf_keras and back (:mod:`lth_tf.models.keras3`): every layer of the table
converts both ways with the same outputs and exactly the same weights; a layer outside the
table, a subclassed model and a Keras-3-only option are each one line naming the layer."""

from __future__ import annotations

import json
import re
import warnings
import zipfile

import numpy as np
import pytest

import lth_tf  # noqa: F401  (environment before TensorFlow)
from lth_tf.errors import LthError
from lth_tf.models import keras3
from lth_tf.models.custom import check_keras_file, load_keras_file
from tests.keras3_model import residual_net, save_keras3, with_unsupported_layer

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3"):
    pytest.skip("needs the keras 3 package", allow_module_level=True)
L = keras.layers


def _perturbed(model):
    """``model`` with every weight moved off its initial value (BN statistics included)."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        values = layer.get_weights()
        if values:
            layer.set_weights([v + rng.uniform(0.05, 0.2, v.shape).astype(v.dtype) for v in values])
            # Normalization computes what it uses from its weights here.
            getattr(layer, "finalize_state", lambda: None)()
    return model


def _many_layers():
    """A functional model of most of the table's image layers, with branches and merges."""
    inputs = keras.Input((12, 12, 3), name="img")
    x = L.Rescaling(1 / 255.0, offset=0.1)(inputs)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(6, 3, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    x = L.BatchNormalization()(x)
    a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    a = L.LeakyReLU(0.2)(a)
    b = L.SeparableConv2D(12, 3, padding="same")(x)
    b = L.PReLU()(b)
    x = L.Add()([a, b])
    x = L.Subtract()([x, b])
    x = L.Multiply()([x, a])
    x = L.Average()([x, a])
    x = L.ELU()(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.LayerNormalization()(x)
    x = L.MaxPooling2D()(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.Dropout(0.3)(x)
    x = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    x = L.Reshape((2, 4))(x)
    x = L.Conv1D(3, 1)(x)
    x = L.ZeroPadding1D(1)(x)
    x = L.Flatten()(x)
    x = L.Dense(5)(x)
    x = L.Activation("tanh")(x)
    x = L.ReLU(max_value=6.0)(x)
    return keras.Model(inputs, L.Softmax()(x), name="many")


def _normalized_sequential():
    normalization = L.Normalization()
    normalization.adapt(np.random.default_rng(0).normal(3, 2, (50, 6)).astype("float32"))
    layers = [keras.Input((6,)), normalization, L.Dense(4, activation="relu"), L.Dense(3)]
    return keras.Sequential(layers, name="seq")


def _embedding():
    inputs = keras.Input((5,), dtype="int32")
    x = L.Embedding(10, 4)(inputs)
    x = L.Conv1D(2, 2)(x)
    return keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling1D()(x)), name="tokens")


def _volumes():
    layers = [
        keras.Input((6, 6, 6, 1)),
        L.Conv3D(2, 3),
        L.MaxPooling3D(),
        L.Conv3DTranspose(2, 2),
        L.GlobalAveragePooling3D(),
        L.Dense(2),
    ]
    return keras.Sequential(layers, name="volumes")


def _sequences():
    """The table's 1D layers, noise and dropout layers, and the other merges."""
    inputs = keras.Input((16, 3))
    x = L.Conv1DTranspose(4, 3, padding="same")(inputs)
    x = L.DepthwiseConv1D(3, padding="same")(x)
    x = L.SeparableConv1D(4, 3)(x)
    x = L.MaxPooling1D()(x)
    x = L.AveragePooling1D(2)(x)
    x = L.UpSampling1D(2)(x)
    x = L.Cropping1D(1)(x)
    x = L.SpatialDropout1D(0.2)(x)
    x = L.GaussianNoise(0.1)(x)
    x = L.GaussianDropout(0.1)(x)
    x = L.Maximum()([x, L.Minimum()([x, L.Permute((1, 2))(x)])])
    x = L.Permute((2, 1))(x)
    x = L.RepeatVector(2)(L.GlobalMaxPooling1D()(x))
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(x)), name="sequences")


def _images_and_volumes():
    """The table's remaining 2D and 3D layers, in a model of two inputs."""
    image, volume = keras.Input((8, 8, 2), name="image"), keras.Input((4, 4, 4, 1), name="vol")
    x = L.UpSampling2D()(image)
    x = L.Cropping2D(2)(x)
    x = L.SpatialDropout2D(0.2)(x)
    x = L.GlobalAveragePooling2D()(x)
    y = L.ZeroPadding3D(1)(volume)
    y = L.AveragePooling3D(2)(y)
    y = L.SpatialDropout3D(0.2)(y)
    y = L.GlobalMaxPooling3D()(y)
    return keras.Model([image, volume], L.Dense(2)(L.Concatenate()([x, y])), name="two_inputs")


def _weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers}


@pytest.mark.parametrize(
    "build",
    [_many_layers, _normalized_sequential, _embedding, _volumes, _sequences, _images_and_volumes],
)
def test_a_keras3_model_converts_to_tf_keras_and_back_exactly(build):
    import tf_keras

    original = _perturbed(build())
    converted = keras3.to_tf_keras(original)
    assert isinstance(converted, tf_keras.Model)
    assert type(converted).__name__ == type(original).__name__
    back = keras3.to_keras3(converted)
    assert isinstance(back, keras.Model)
    for model in (converted, back):
        assert [layer.name for layer in model.layers] == [layer.name for layer in original.layers]
        mine, theirs = _weights(model), _weights(original)
        for name, values in theirs.items():  # exact copies, layer by layer
            assert len(mine[name]) == len(values), name
            for a, b in zip(mine[name], values, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
    rng = np.random.default_rng(2)
    x = [
        rng.uniform(0, 9, (16, *tensor.shape[1:])).astype(tensor.dtype)
        for tensor in original.inputs
    ]
    x = x[0] if len(x) == 1 else x
    expected = keras.ops.convert_to_numpy(original(x, training=False))
    np.testing.assert_allclose(converted(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(x, training=False)), expected, rtol=1e-4, atol=1e-5
    )


def test_inputs_and_outputs_given_by_name_convert_both_ways():
    # keras.Model({"image": x}, {"scores": y, ...}): its config lists its ends as dicts.
    import tf_keras

    image = keras.Input((6, 6, 1), name="image")
    x = L.Flatten()(L.Conv2D(2, 3)(image))
    original = _perturbed(
        keras.Model({"image": image}, {"scores": L.Dense(3)(x), "aux": L.Dense(1)(x)})
    )
    converted = keras3.to_tf_keras(original)
    back = keras3.to_keras3(converted)
    assert isinstance(converted, tf_keras.Model) and isinstance(back, keras.Model)
    assert set(converted.output) == set(back.output) == {"scores", "aux"}
    images = np.random.default_rng(3).uniform(0, 1, (5, 6, 6, 1)).astype(np.float32)
    expected = original({"image": images}, training=False)
    for name in ("scores", "aux"):
        want = keras.ops.convert_to_numpy(expected[name])
        got = converted({"image": images}, training=False)[name].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = keras.ops.convert_to_numpy(back({"image": images}, training=False)[name])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_check_on_the_users_examples_is_recorded():
    model = residual_net((20, 20, 3), 5)
    images = np.random.default_rng(0).integers(0, 255, (30, 20, 20, 3)).astype(np.uint8)
    with keras3.checked_on(images) as check:
        keras3.to_tf_keras(model)
    record = check.record()
    assert record["converted_to"] == "tf_keras" and record["keras_version"] == keras.__version__
    assert record["checked_examples"] == keras3.CHECK_EXAMPLES
    assert 0 <= record["max_output_difference"] < 1e-4


def test_outputs_that_differ_are_one_line():
    one = keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")])
    other = keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")])
    x = np.ones((4, 3), np.float32)
    with pytest.raises(LthError, match="computes other outputs than the original") as raised:
        keras3.check_same_outputs(one, other, x, "the model")
    assert "\n" not in str(raised.value)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="mine")
        self.dense = L.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def _with(layer):
    inputs = keras.Input((4, 4, 3))
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(layer(inputs))))


@pytest.mark.parametrize(
    "build, reason",
    [
        (lambda: with_unsupported_layer((8, 8, 3), 2), "layer 'flip' (RandomFlip) is not one"),
        (lambda: _with(L.LayerNormalization(rms_scaling=True, name="ln")), "rms_scaling=True"),
        (lambda: _with(L.Dense(3, name="lora", lora_rank=2)), "'lora' (Dense): its option lora"),
        (lambda: _with(L.Activation("hard_shrink", name="act")), "'act' (Activation): its act"),
        (lambda: _with(L.Lambda(lambda t: t * 2, name="twice")), "'twice' (Lambda) is not one"),
        (_Subclassed, "is a subclassed Keras 3 model (_Subclassed)"),
    ],
)
def test_what_does_not_convert_is_one_line_naming_the_layer(build, reason):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 deprecates rms_scaling=True
        model = build()
    if isinstance(model, _Subclassed):
        model(np.ones((1, 3), np.float32))
    with pytest.raises(LthError, match=re.escape(reason)) as raised:
        keras3.to_tf_keras(model, "the model")
    assert "\n" not in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_a_keras3_file_is_checked_before_it_loads_and_loads_converted(tmp_path):
    import tf_keras

    path = save_keras3(tmp_path / "k3.keras")
    assert check_keras_file(path) == path
    model = load_keras_file(path)
    assert isinstance(model, tf_keras.Model)
    original = keras.saving.load_model(path, compile=False)
    for name, values in _weights(original).items():
        for a, b in zip(model.get_layer(name).get_weights(), values, strict=True):
            np.testing.assert_array_equal(a, b)

    # A layer outside the table is refused from config.json alone, before TensorFlow.
    bad = save_keras3(tmp_path / "bad.keras", with_unsupported_layer, shape=(8, 8, 3))
    with pytest.raises(LthError, match=r"--model=.*bad.keras: layer 'flip' \(RandomFlip\)"):
        check_keras_file(bad)

    # A Keras 3 file is data: a config naming a module outside Keras is refused unloaded.
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    config["config"]["layers"][1]["module"] = "os"
    entries["config.json"] = json.dumps(config).encode()
    hostile = tmp_path / "hostile.keras"
    with zipfile.ZipFile(hostile, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(LthError, match="names the module 'os'"):
        check_keras_file(hostile)


def test_a_builder_of_keras3_layers_builds_the_same_model_under_the_same_seed():
    import tf_keras

    from lth_tf.models import get_model

    spec = get_model("tests.keras3_model:residual_net")
    built = []
    for seed in (0, 0, 1):
        tf_keras.utils.set_random_seed(seed)
        built.append([w.numpy() for w in spec.build((20, 20, 3), 5).weights])
    assert all(np.array_equal(a, b) for a, b in zip(built[0], built[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(built[0], built[2], strict=True))
