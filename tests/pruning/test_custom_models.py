"""Models users bring: which layers are pruned as which kind, wrapping, masks and rewinding of
depthwise/separable convolutions, per-layer rates, softmax heads, and the models refused."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from lth_tf.config import PruneRates, PruningHparams, TrainingHparams
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError
from lth_tf.models import MODELS
from lth_tf.models.layers import add_weight_decay
from lth_tf.pruning.masks import counted_masks, imp_masks, surviving_count
from lth_tf.pruning.prunable import find_prunable, outputs_probabilities
from lth_tf.pruning.wrapping import snapshot, wrap_model
from lth_tf.training.trainer import Trainer
from lth_tf.training.xla import xla_can_train
from tests.helpers import ROOT

INPUT_SHAPE = (20, 20, 3)
RATES = PruneRates(conv=0.2, fc=0.5, output=0.1)
# TF-MOT prunes only the pointwise kernel of a SeparableConv2D, nothing of a DepthwiseConv2D.
KINDS = {
    "stem/kernel": "conv",
    "sep/pointwise_kernel": "conv",
    "fc/kernel": "fc",
    "head/kernel": "output",
}


def residual_net(head_activation: str | None = None) -> keras.Model:
    """A small functional net with a residual Add, batch norm, depthwise and separable convs,
    and a head not called "output", for 20x20x3 images and 5 classes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(5, activation=head_activation, name="head")(x)
    return keras.Model(inputs, outputs, name="residual_net")


def test_kinds_come_from_tf_mot_and_the_head_is_found_without_its_name():
    found = find_prunable(residual_net())
    assert found.kinds == {"stem": "conv", "sep": "conv", "fc": "fc", "head": "output"}
    assert found.weights["sep"] == ("pointwise_kernel",)
    assert found.dense == ["dw"], "batch norm is not listed, the depthwise conv is"


def test_the_output_is_found_through_weightless_layers_after_the_head():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(3, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(5, name="logits"),
            keras.layers.Dropout(0.1),
            keras.layers.Reshape((5,)),
        ]
    )
    assert find_prunable(model).kinds == {"conv": "conv", "logits": "output"}


def old_layer_kind(layer: keras.layers.Layer) -> str | None:
    """What lth_tf recognised before find_prunable (Conv2D, Dense, the output by its name)."""
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "output" if layer.name == "output" else "fc"
    return None


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_models_keep_their_kinds(name):
    shape = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}[MODELS[name].dataset]
    model = MODELS[name].build(shape, 10)
    old = {layer.name: old_layer_kind(layer) for layer in model.layers}
    found = find_prunable(model)
    assert found.kinds == {layer: kind for layer, kind in old.items() if kind is not None}
    assert found.dense == []


def test_wrapping_wraps_the_prunable_layers_and_logs_the_dense_ones_once(caplog):
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        pruned = wrap_model(residual_net(), RATES)
    assert pruned.kinds == KINDS
    assert pruned.layers["sep/pointwise_kernel"] == "sep"
    assert len(pruned.wrappers) == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "lth_tf"]
    assert len(lines) == 1 and "dw (DepthwiseConv2D)" in lines[0]
    for dense in ("dw/depthwise_kernel", "sep/depthwise_kernel", "stem_bn/moving_mean"):
        assert dense in pruned.rewindable and dense not in pruned.masks


def test_masks_have_exact_sparsities_and_rewinding_keeps_separable_kernels_masked():
    pruned = wrap_model(residual_net(), RATES)
    start = snapshot(pruned.rewindable)
    pruned.set_round(2)
    sparsities = pruned.target_sparsities()
    assert sparsities["sep/pointwise_kernel"] == pytest.approx(1 - 0.8**2)
    weights = snapshot(pruned.weights)
    masks = imp_masks(
        weights, pruned.get_masks(), pruned.kinds, sparsities, PruningHparams(RATES), pruned.layers
    )
    for name, mask in masks.items():
        assert mask.sum() == surviving_count(mask.size, sparsities[name]), name
    pruned.set_masks(masks)
    pruned.rewind_to(start)
    assert pruned.pruned_nonzero() == 0
    sep = pruned.unwrapped.get_layer("sep")
    np.testing.assert_array_equal(
        sep.pointwise_kernel.numpy(), start["sep/pointwise_kernel"] * masks["sep/pointwise_kernel"]
    )
    np.testing.assert_array_equal(sep.depthwise_kernel.numpy(), start["sep/depthwise_kernel"])
    images = np.random.default_rng(0).uniform(size=(2, *INPUT_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(
        pruned.model(images, training=False), pruned.unwrapped(images, training=False), atol=1e-6
    )


def test_a_layers_own_rate_drives_its_schedule_and_masks():
    rates = PruneRates.parse("sep=0.6,head=0", base=RATES)
    pruned = wrap_model(residual_net(), rates)
    pruned.set_round(1)
    sparsities = pruned.target_sparsities()
    assert sparsities["sep/pointwise_kernel"] == pytest.approx(0.6)
    assert sparsities["stem/kernel"] == pytest.approx(0.2)
    assert sparsities["head/kernel"] == 0
    pruning = PruningHparams(rates)
    masks = imp_masks(
        snapshot(pruned.weights), pruned.get_masks(), pruned.kinds, sparsities, pruning,
        pruned.layers,
    )  # fmt: skip
    kept = masks["sep/pointwise_kernel"]
    assert kept.sum() == surviving_count(kept.size, 0.6)
    assert masks["head/kernel"].all()
    assert "head/kernel" not in counted_masks(masks, pruned.kinds, pruning, pruned.layers)


def test_a_layer_left_dense_under_global_pruning_is_neither_pooled_nor_counted():
    rates = PruneRates.parse("conv=0.2,fc=0.2,output=0.2,head=0")
    pruning = PruningHparams(rates, scope="global")
    pruned = wrap_model(residual_net(), rates)
    pruned.set_round(2)
    masks = imp_masks(
        snapshot(pruned.weights), pruned.get_masks(), pruned.kinds, pruned.target_sparsities(),
        pruning, pruned.layers,
    )  # fmt: skip
    assert masks["head/kernel"].all()
    pooled = [name for name in masks if name != "head/kernel"]
    total = sum(masks[name].size for name in pooled)
    assert sum(int(masks[name].sum()) for name in pooled) == round(total * 0.8**2)
    counted = counted_masks(masks, pruned.kinds, pruning, pruned.layers)
    assert set(counted) == set(pooled)


def test_per_layer_rates_that_cannot_apply_are_refused():
    with pytest.raises(LthError, match=r"--prune_rates: sep=0.3: --pruning=global .* only be 0"):
        PruningHparams(PruneRates.parse("conv=0.2,sep=0.3"), scope="global")
    with pytest.raises(LthError, match=r"nope: no prunable layer .* are stem, sep, fc, head$"):
        wrap_model(residual_net(), PruneRates.parse("conv=0.2,nope=0.1"))


def test_a_shared_layer_gets_one_mask_applied_at_every_call():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, use_bias=False, name="shared")
    outputs = keras.layers.Dense(3, name="head")(shared(shared(inputs)))
    model = keras.Model(inputs, outputs)
    assert find_prunable(model).kinds == {"shared": "fc", "head": "output"}
    pruned = wrap_model(model, PruneRates(fc=0.5))
    assert len(pruned.wrappers) == 2 and list(pruned.masks) == ["shared/kernel", "head/kernel"]
    mask = np.eye(4, dtype=np.float32)
    pruned.set_masks({"shared/kernel": mask, "head/kernel": np.ones((4, 3), np.float32)})
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    kernel = shared.kernel.numpy() * mask  # as the wrapper will have masked it
    head = model.get_layer("head")
    expected = x @ kernel @ kernel @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(pruned.model(x, training=False), expected, atol=1e-5)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_models_tf_mot_cannot_wrap_are_refused_in_one_line():
    subclassed = Subclassed()
    subclassed(np.zeros((1, 3), np.float32))
    with pytest.raises(LthError, match="^TF-MOT wraps only Sequential and functional tf_keras"):
        wrap_model(subclassed, RATES)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)], name="block")
    inputs = keras.Input((3,))
    nested = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    with pytest.raises(LthError, match="^layer 'block' .* is itself a model.*: flatten it"):
        find_prunable(nested)
    inputs = keras.Input((3,))
    two = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(LthError, match="has 2 outputs"):
        wrap_model(two, RATES)
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(LthError, match="is not built: start it with keras.Input"):
        find_prunable(unbuilt)


def test_a_keras_3_model_is_refused():
    keras3 = pytest.importorskip("keras")
    if keras3.__version__.startswith("2."):
        pytest.skip("the keras package here is Keras 2")
    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    message = (
        "^this is a Keras 3 model; TF-MOT needs Keras 2: build it with tf_keras "
        r"\(`import tf_keras as keras`\) and save it from there$"
    )
    with pytest.raises(LthError, match=message):
        find_prunable(model)
    with pytest.raises(LthError, match=message):
        wrap_model(model, RATES)


def test_importing_lth_tf_after_keras_3_tensorflow_is_refused():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = (
        "import tensorflow\n"
        "try:\n"
        "    import lth_tf\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.startswith("LthError TensorFlow was imported before lth_tf without")
    assert "tf_keras (`import tf_keras as keras`)" in result.stdout


def test_kernels_of_every_conv_kind_are_decayed_and_seen_by_the_xla_checks():
    model = residual_net()
    add_weight_decay(model, 1e-3)
    assert len(model.losses) == 4  # stem, sep's pointwise kernel, fc, head
    depthwise_only = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.DepthwiseConv2D(3), keras.layers.Flatten()]
    )
    pooled_1d = keras.Sequential(
        [keras.Input((8, 2)), keras.layers.MaxPooling1D(), keras.layers.Flatten()]
    )
    assert not xla_can_train(pooled_1d) and xla_can_train(depthwise_only)


@pytest.mark.parametrize(
    "head, probabilities",
    [
        (lambda: [keras.layers.Dense(5, activation="softmax")], True),
        (lambda: [keras.layers.Dense(5), keras.layers.Activation("softmax")], True),
        (lambda: [keras.layers.Dense(5), keras.layers.Softmax(), keras.layers.Flatten()], True),
        (lambda: [keras.layers.Dense(5)], False),
        (lambda: [keras.layers.Dense(5), keras.layers.Activation("log_softmax")], False),
    ],
    ids=["dense-softmax", "activation-softmax", "softmax-layer", "logits", "log-softmax"],
)
def test_softmax_heads_are_recognised(head, probabilities):
    model = keras.Sequential([keras.Input((4,)), *head()])
    assert outputs_probabilities(model) is probabilities


def test_a_sigmoid_head_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="sigmoid")])
    with pytest.raises(LthError, match="ends in a sigmoid .* needs logits or softmax"):
        outputs_probabilities(model)


def test_a_softmax_model_trains_on_the_cross_entropy_of_its_probabilities():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, *INPUT_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 5, size=40).astype(np.int64)
    data = ImageDataset("tiny", images[:24], labels[:24], images[24:32], labels[24:32],
                        images[32:], labels[32:], num_classes=5, source="tests")  # fmt: skip
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="softmax", name="head"),
        ]
    )
    pruned = wrap_model(model, PruneRates(output=0.1))
    # One batch of the whole training set: its summed loss does not depend on the order.
    training = TrainingHparams(batch_size=24, learning_rate=1e-3)
    trainer = Trainer(pruned, data, training, tf.distribute.get_strategy(), steps_per_execution=1)
    assert trainer.from_logits is False
    probabilities = model(data.train_images.astype(np.float32), training=True).numpy()
    expected = -np.log(probabilities[np.arange(24), data.train_labels]).sum()
    as_logits = tf.keras.losses.sparse_categorical_crossentropy(
        data.train_labels, probabilities, from_logits=True
    )
    assert not np.isclose(float(tf.reduce_sum(as_logits)), expected, rtol=1e-3)
    loss_sum, _ = trainer.train_steps(trainer.batches_from(0), 1)
    assert loss_sum == pytest.approx(expected, rel=1e-5)
