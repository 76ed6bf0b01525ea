"""A channel ticket as a smaller dense network: the same architecture with fewer filters and units,
holding the surviving slices. On any device it runs as fast as its size, with no sparse kernel.

The smaller model is built from the original's layer configs (``clone_model``, so custom layer
classes and Sequential models come along) with each pruned layer's ``filters``/``units`` set to
its surviving channels; the surviving slices of every kernel, bias, batch-norm parameter and
statistic, depthwise kernel and the consumers' input rows are copied in. A pruned channel is
exactly zero in the masked model, so both compute the same logits (to float rounding).

>>> small = shrunk_model(stripped, masks)  # doctest: +SKIP
>>> small.count_params() < stripped.count_params()  # doctest: +SKIP
True
"""

from __future__ import annotations

import math

import numpy as np
import tf_keras
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf.models.layers import rebuilt_layer
from lth_tf.pruning.channels import ChannelPlan, channel_plan
from lth_tf.pruning.prunable import find_prunable

L = tf_keras.layers
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)


def shrunk_model(
    model: tf_keras.Model, masks: dict[str, np.ndarray], plan: ChannelPlan | None = None
) -> tf_keras.Model:
    """``model`` (a plain tf_keras model holding a channel ticket's masked weights) without its
    pruned channels. ``masks`` are the ticket's kernel masks; ``plan`` defaults to the model's
    own :func:`lth_tf.pruning.channels.channel_plan`.

    >>> import tf_keras as k
    >>> x = k.Input((4,)); h = k.layers.Dense(3, name="h")(x); y = k.layers.Dense(2, name="y")(h)
    >>> masks = {"h/kernel": np.array([[1, 0, 1]] * 4), "y/kernel": np.ones((3, 2))}
    >>> shrunk_model(k.Model(x, y), masks).get_layer("h").units
    2
    """
    plan = plan or channel_plan(model, find_prunable(model))
    keep = [np.flatnonzero(alive > 0) for alive in plan.alive(masks)]
    sizes = _sizes(plan, keep)
    small = shrunk_architecture(model, masks, plan)
    for layer in model.layers:
        if not layer.weights:
            continue
        inputs = plan.inputs.get(layer.name)
        kept_in = None if inputs is None else inputs.kept(keep)
        kept_out = plan.outputs[layer.name].kept(keep) if layer.name in sizes else None
        values = [np.array(w.numpy()) for w in layer.weights]
        small.get_layer(layer.name).set_weights(_slices(layer, values, kept_in, kept_out))
    return small


def shrunk_architecture(
    model: tf_keras.Model, masks: dict[str, np.ndarray], plan: ChannelPlan
) -> tf_keras.Model:
    """The smaller network's architecture (fresh weights): each pruned layer's ``filters`` or
    ``units`` set to its surviving channels, everything else as in ``model``'s configs."""
    sizes = _sizes(plan, [np.flatnonzero(alive > 0) for alive in plan.alive(masks)])
    return tf_keras.models.clone_model(
        model, clone_function=lambda layer: _rebuilt(layer, sizes.get(layer.name))
    )


def check_rebuildable(model: tf_keras.Model) -> None:
    """Every layer of ``model`` rebuilds from its configuration, as the shrunk network is
    built: checked before a channel experiment trains, not after its first round."""
    for layer in model.layers:
        _rebuilt(layer, None)


def _rebuilt(layer: tf_keras.layers.Layer, size: int | None) -> tf_keras.layers.Layer:
    """A new, unbuilt ``layer`` from its config, with ``size`` filters or units if given."""
    changes = {}
    if size is not None:
        changes["units" if isinstance(layer, L.Dense) else "filters"] = size
    return rebuilt_layer(
        layer,
        changes,
        "--granularity=channel",
        "the ticket cannot be shrunk into a smaller network",
        ", or use --granularity=weight",
    )


def _sizes(plan: ChannelPlan, keep: list[np.ndarray]) -> dict[str, int]:
    """Surviving channels of each channel-pruned layer."""
    return {
        producer: len(keep[index])
        for index in plan.prunable
        for producer in plan.groups[index].producers
    }


def _slices(
    layer: tf_keras.layers.Layer,
    values: list[np.ndarray],
    kept_in: np.ndarray | None,
    kept_out: np.ndarray | None,
) -> list[np.ndarray]:
    """The surviving part of each of ``layer``'s weights (``layer.weights`` order)."""

    def take(value: np.ndarray, kept: np.ndarray | None, axis: int) -> np.ndarray:
        return value if kept is None else np.take(value, kept, axis=axis)

    if isinstance(layer, DEPTHWISE):  # follows its input's channels: kernel (..., C, 1), bias
        return [take(values[0], kept_in, -2), *(take(v, kept_in, 0) for v in values[1:])]
    if isinstance(layer, _SEPARABLE):  # depthwise (..., C, m), pointwise (1, .., C*m, F), bias
        multiplier = values[0].shape[-1]
        rows = None
        if kept_in is not None:
            rows = (kept_in[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
        pointwise = take(take(values[1], rows, -2), kept_out, -1)
        biases = [take(v, kept_out, 0) for v in values[2:]]
        return [take(values[0], kept_in, -2), pointwise, *biases]
    if isinstance(layer, Conv | L.Dense):  # kernel (..., in, out), bias (out,)
        kernel = take(take(values[0], kept_in, -2), kept_out, -1)
        return [kernel, *(take(v, kept_out, 0) for v in values[1:])]
    if isinstance(layer, L.BatchNormalization):  # gamma, beta, mean, variance: all (C,)
        return [take(v, kept_in, 0) for v in values]
    return values


def multiply_adds(model: tf_keras.Model) -> int:
    """Multiply-adds per example of the convolutions and Dense layers, from their shapes.

    >>> import tf_keras as k
    >>> x = k.Input((8, 8, 3)); y = k.layers.Conv2D(4, 3)(x)
    >>> multiply_adds(k.Model(x, k.layers.Dense(2)(k.layers.Flatten()(y))))
    4176
    """
    total = 0
    for layer in model.layers:
        if not layer.weights or not hasattr(layer, "output_shape"):
            continue
        try:
            out_shape = layer.output_shape
        except AttributeError:  # called more than once: shapes per call
            continue
        outputs = math.prod(int(d) for d in out_shape[1:])
        if isinstance(layer, _SEPARABLE):
            in_channels = int(layer.input_shape[-1])
            positions = outputs // layer.filters
            depthwise = positions * in_channels * layer.depth_multiplier
            total += depthwise * math.prod(layer.kernel_size)
            total += positions * in_channels * layer.depth_multiplier * layer.filters
        elif isinstance(layer, DEPTHWISE):
            total += outputs * math.prod(layer.kernel_size)
        elif isinstance(layer, Conv):
            in_channels = int(layer.input_shape[-1])
            total += outputs * math.prod(layer.kernel_size) * in_channels // layer.groups
        elif isinstance(layer, L.Dense):
            total += outputs * int(layer.input_shape[-1])
    return total
