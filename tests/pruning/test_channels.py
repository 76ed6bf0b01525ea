"""Channel tickets without training: the groups the graph ties together, channel masks (exact
counts, nested, ties by position, global, random), and shrinking into a smaller network that
computes the masked network's logits, on small models of every shape the plan follows."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tf_keras as keras

from lth_tf.config import PruneRates, PruningHparams
from lth_tf.errors import LthError
from lth_tf.pruning.channels import channel_plan
from lth_tf.pruning.masks import surviving_count
from lth_tf.pruning.prunable import find_prunable
from lth_tf.pruning.shrink import multiply_adds, shrunk_model
from lth_tf.pruning.wrapping import variable_key, wrap_model
from tests.user_model import mobilenet_v2_style, residual_net

layers = keras.layers


def flatten_dense(input_shape=(8, 8, 2), classes=3):
    """conv -> BN -> ReLU -> max pool -> Flatten -> Dropout -> Dense -> Dense (rows by position)."""
    x = inputs = keras.Input(input_shape)
    x = layers.Conv2D(6, 3, padding="same", name="conv")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    x = layers.Dense(7, activation="relu", name="fc")(x)
    return keras.Model(inputs, layers.Dense(classes, name="out")(x))


class Doubling(layers.Layer):
    """A custom layer: the plan cannot know that it keeps a zero channel zero."""

    def call(self, inputs):
        return 2.0 * inputs


def concatenated(input_shape=(8, 8, 2), classes=3):
    """Two convs concatenated (each keeps its offset), a separable conv after them, and a
    sigmoid branch, a Reshape and a custom layer that leave their convs whole."""
    inputs = keras.Input(input_shape)
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inputs)
    b = layers.Conv2D(5, 1, name="b")(inputs)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    gate = layers.Conv2D(6, 1, activation="sigmoid", name="gate")(x)
    x = layers.Multiply(name="gated")([x, gate])
    r = layers.Conv2D(3, 1, name="reshaped")(inputs)
    r = layers.Reshape((8 * 8 * 3,), name="reshape")(r)
    custom = layers.Conv2D(2, 1, name="into_custom")(inputs)
    custom = layers.GlobalMaxPooling2D(name="gmp")(Doubling(name="custom")(custom))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Concatenate(name="features")([x, r, custom])
    return keras.Model(inputs, layers.Dense(classes, name="out")(x))


MODELS = {
    "residual_net": lambda: residual_net((12, 12, 3), 5),
    "mobilenet_v2_style": lambda: mobilenet_v2_style((16, 16, 1), 4),
    "flatten_dense": flatten_dense,
    "concatenated": concatenated,
}


def weights_of(model) -> dict[str, np.ndarray]:
    return {variable_key(v): v.numpy() for v in model.weights}


def randomise_statistics(model, seed: int = 0) -> None:
    """Batch-norm statistics and γ/β as a trained net has them (not 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            for variable in (layer.gamma, layer.beta, layer.moving_mean):
                variable.assign(rng.normal(size=variable.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, size=layer.moving_variance.shape))


def masked_channel_model(build, sparsity: float, seed: int = 0):
    """A model with random weights and statistics, channel-pruned at ``sparsity`` (layerwise),
    its masks applied to kernels and to the channel-masked variables; and its masks and plan."""
    keras.utils.set_random_seed(seed)
    model = build()
    randomise_statistics(model, seed)
    plan = channel_plan(model, find_prunable(model))
    weights = weights_of(model)
    kernels = {k for group in plan.groups for k in group.kernels}
    ones = {k: np.ones(weights[k].shape, np.float32) for k in kernels}
    masks = plan.magnitude_masks(weights, ones, dict.fromkeys(kernels, sparsity), "layerwise")
    shapes = {name: weights[name].shape for name in plan.channel_variables}
    others = plan.channel_masks(masks, shapes)
    for variable in model.weights:
        key = variable_key(variable)
        for mask in (masks.get(key), others.get(key)):
            if mask is not None:
                variable.assign(variable * mask)
    return model, masks, plan


def test_the_user_models_groups_tie_the_residual_add_and_leave_the_output_whole():
    model = residual_net((12, 12, 3), 5)
    plan = channel_plan(model, find_prunable(model))
    pruned = [plan.groups[i] for i in plan.prunable]
    assert [g.producers for g in pruned] == [("stem", "pointwise"), ("hidden",)]
    assert [g.kernels for g in pruned] == [("stem/kernel", "pointwise/kernel"), ("hidden/kernel",)]
    assert "logits" not in {p for g in pruned for p in g.producers}
    # The channel's bias, batch-norm γ/β/mean and depthwise slice go with it.
    assert set(plan.channel_variables) == {
        "pointwise/bias", "hidden/bias", "stem_bn/gamma", "stem_bn/beta", "stem_bn/moving_mean",
        "depthwise/depthwise_kernel", "depthwise_bn/gamma", "depthwise_bn/beta",
        "depthwise_bn/moving_mean",
    }  # fmt: skip
    assert plan.channel_variables["depthwise/depthwise_kernel"][1] == 2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_shrunk_network_computes_the_masked_networks_logits(name):
    model, masks, plan = masked_channel_model(MODELS[name], sparsity=0.5)
    images = np.random.default_rng(1).uniform(0, 255, (16, *model.input_shape[1:]))
    small = shrunk_model(model, masks, plan)
    np.testing.assert_allclose(small(images).numpy(), model(images).numpy(), rtol=1e-4, atol=1e-4)
    assert small.count_params() < model.count_params()
    assert multiply_adds(small) < multiply_adds(model)
    for index in plan.prunable:
        survivors = surviving_count(plan.groups[index].size, 0.5)
        for producer in plan.groups[index].producers:
            assert small.get_layer(producer).weights[-1].shape[-1] == survivors


def test_a_pruned_channel_is_exactly_zero_wherever_it_goes():
    model, masks, plan = masked_channel_model(MODELS["mobilenet_v2_style"], sparsity=0.5)
    images = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 1))
    alive = plan.alive(masks)
    checked = 0
    for layer in model.layers:
        layout = plan.outputs.get(layer.name)
        if layout is None or not any(g in plan.prunable for g, _ in layout.segments):
            continue
        outputs = keras.Model(model.inputs, layer.output)(images).numpy()
        dead = layout.alive(alive) == 0
        assert dead.any()
        assert np.all(outputs[..., dead] == 0), layer.name
        assert np.any(outputs[..., ~dead] != 0), layer.name
        checked += 1
    assert checked > 10


def test_the_operands_of_every_residual_add_keep_the_same_channels():
    model, masks, plan = masked_channel_model(MODELS["mobilenet_v2_style"], sparsity=0.5)
    alive = plan.alive(masks)
    adds = [layer for layer in model.layers if isinstance(layer, layers.Add)]
    assert len(adds) == 2
    for add in adds:
        operands = [t._keras_history.layer.name for t in add.input]
        kept = [plan.outputs[name].alive(alive) for name in operands]
        assert 0 < kept[0].sum() < len(kept[0])
        np.testing.assert_array_equal(kept[0], kept[1], err_msg=add.name)


def test_channel_masks_keep_exact_counts_nest_and_break_ties_by_position():
    model = flatten_dense()
    plan = channel_plan(model, find_prunable(model))
    conv = np.zeros((3, 3, 2, 6), np.float32)
    conv[..., :] = [3.0, 1.0, 1.0, 2.0, 1.0, 5.0]  # three channels tied at 1
    weights = weights_of(model) | {"conv/kernel": conv}
    ones = {k: np.ones(weights[k].shape, np.float32) for k in ("conv/kernel", "fc/kernel")}
    sparsities = {"conv/kernel": 1 / 3, "fc/kernel": 0.2}
    first = plan.magnitude_masks(weights, ones, sparsities, "layerwise")
    channels = first["conv/kernel"].reshape(-1, 6).max(axis=0)
    assert channels.tolist() == [1, 1, 0, 1, 0, 1]  # of the tied three, the first survives
    assert np.all(first["conv/kernel"] == channels)  # whole channels
    assert first["fc/kernel"].reshape(-1, 7).max(axis=0).sum() == surviving_count(7, 0.2)
    # Nested: a pruned channel never comes back, however large it grows.
    conv[..., 2] = 100.0
    sparsities["conv/kernel"] = 0.5
    second = plan.magnitude_masks(weights | {"conv/kernel": conv}, first, sparsities, "layerwise")
    assert second["conv/kernel"].reshape(-1, 6).max(axis=0).tolist() == [1, 0, 0, 1, 0, 1]


def test_global_channel_pruning_ranks_every_groups_channels_together():
    model = flatten_dense()
    plan = channel_plan(model, find_prunable(model))
    weights = weights_of(model)
    weights["conv/kernel"] = np.full((3, 3, 2, 6), 10.0, np.float32)  # above every fc unit
    ones = {k: np.ones(weights[k].shape, np.float32) for k in ("conv/kernel", "fc/kernel")}
    masks = plan.magnitude_masks(weights, ones, dict.fromkeys(ones, 0.5), "global")
    conv, fc = (masks[k].reshape(-1, masks[k].shape[-1]).max(axis=0) for k in ones)
    # round(13 * 0.5) = 6 channels network-wide would all be conv's; fc keeps its best unit,
    # or the network would be cut in two.
    assert conv.sum() == 6 and fc.sum() == 1
    scores = np.abs(weights["fc/kernel"]).mean(axis=0)
    assert fc.argmax() == scores.argmax()


def test_random_channel_masks_keep_the_parents_counts_per_group():
    _, parent, plan = masked_channel_model(MODELS["residual_net"], 0.5)
    ones = {k: np.ones_like(v) for k, v in parent.items()}
    drawn = plan.random_masks(ones, parent, np.random.default_rng(0))
    again = plan.random_masks(ones, parent, np.random.default_rng(0))
    for index in plan.prunable:
        for kernel in plan.groups[index].kernels:
            assert np.array_equal(drawn[kernel], again[kernel])
            counts = [m[kernel].reshape(-1, m[kernel].shape[-1]).max(0) for m in (drawn, parent)]
            assert counts[0].sum() == counts[1].sum() < len(counts[0])
            assert np.all(drawn[kernel] == counts[0])  # whole channels


def test_a_conv_whose_channels_reach_a_reshape_or_sigmoid_stays_whole_in_one_log_line(caplog):
    model = concatenated()
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        pruned = wrap_model(model, PruneRates(conv=0.2, fc=0.2), granularity="channel")
    lines = [r.getMessage() for r in caplog.records if "keep all their channels" in r.getMessage()]
    assert len(lines) == 1
    assert "reshaped (reaches reshape (Reshape))" in lines[0]
    assert "gate (its activation sigmoid(0) != 0)" in lines[0]
    assert "into_custom (reaches custom (Doubling))" in lines[0]
    # sep's channels are multiplied by the gate's: they stay whole with it.
    assert set(pruned.channels.whole_layers) == {"reshaped", "gate", "sep", "into_custom"}
    plan = pruned.channels
    assert sorted(p for i in plan.prunable for p in plan.groups[i].producers) == ["a", "b"]


def test_channel_granularity_with_blocks_is_refused():
    with pytest.raises(LthError, match="--block_size=4x1 .* --granularity=channel"):
        PruningHparams(PruneRates(fc=0.2), block_size="4x1", granularity="channel")
    with pytest.raises(LthError, match="unknown granularity 'filter'"):
        PruningHparams(PruneRates(fc=0.2), granularity="filter")


def lambda_activation(input_shape=(6,), classes=3):
    """A hidden layer with a Python function as its activation, a Lambda layer, and a pruned one."""
    x = inputs = keras.Input(input_shape)
    x = layers.Dense(5, activation=lambda t: keras.activations.relu(t), name="custom_act")(x)
    x = layers.Lambda(lambda t: 2.0 * t, name="twice")(x)
    x = layers.Dense(4, activation="relu", name="fc")(x)
    return keras.Model(inputs, layers.Dense(classes, name="out")(x))


def test_a_function_activation_stays_whole_and_the_rest_shrinks():
    model, masks, plan = masked_channel_model(lambda_activation, sparsity=0.5)
    assert plan.whole_layers["custom_act"] == (
        "its activation <lambda> is not one known to map 0 to 0"
    )
    assert [plan.groups[i].producers for i in plan.prunable] == [("fc",)]
    small = shrunk_model(model, masks, plan)
    images = np.random.default_rng(1).normal(size=(8, 6))
    np.testing.assert_allclose(small(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-5)
    assert small.get_layer("fc").units == 2


class Scaled(layers.Layer):
    """A custom layer whose config does not rebuild it: ``from_config`` cannot take ``scale``."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def get_config(self):
        return {**super().get_config(), "factor": self.scale}

    def call(self, inputs):
        return self.scale * inputs


def test_a_layer_that_does_not_rebuild_from_its_config_is_refused_before_training():
    x = inputs = keras.Input((6,))
    x = Scaled(2.0, name="scaled")(layers.Dense(5, activation="relu", name="fc")(x))
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    with pytest.raises(LthError, match=r"layer 'scaled' \(Scaled\) does not rebuild from its conf"):
        wrap_model(model, PruneRates(fc=0.2), granularity="channel")
    wrap_model(model, PruneRates(fc=0.2))  # weight tickets never rebuild it


def test_different_rates_in_one_group_warn_that_the_lowest_applies(caplog):
    model = residual_net((12, 12, 3), 5)
    rates = PruneRates(conv=0.2, fc=0.2, layers=(("stem", 0.5),))
    with caplog.at_level(logging.WARNING, logger="lth_tf"):
        pruned = wrap_model(model, rates, granularity="channel")
    lines = [r.getMessage() for r in caplog.records if "share their channels" in r.getMessage()]
    assert lines == [
        "--granularity=channel: stem, pointwise share their channels (one pruning group), so all "
        "of them prune at the lowest of their rates, 0.2, not at stem=0.5"
    ]
    assert pruned.channels is not None
