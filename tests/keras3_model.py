"""Keras 3 models of the tests' own (the ``keras`` package, not tf_keras): the residual net of
:mod:`tests.user_model` built with Keras 3 layers, and one with a layer that does not convert.
``tests.keras3_model:residual_net`` is also what ``--model=`` imports."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def residual_net(input_shape: tuple[int, ...], num_classes: int):
    """Rescaling -> conv -> BN -> [depthwise conv -> BN -> conv 1x1] + shortcut -> GAP -> head,
    as :func:`tests.user_model.residual_net`, in Keras 3."""
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    shortcut = layers.ReLU(name="stem_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(shortcut)
    x = layers.BatchNormalization(name="depthwise_bn")(x)
    x = layers.ReLU(name="depthwise_relu")(x)
    x = layers.Conv2D(8, 1, name="pointwise")(x)
    x = layers.Add(name="residual")([x, shortcut])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="residual_net_k3")


def with_unsupported_layer(input_shape: tuple[int, ...], num_classes: int):
    """A Keras 3 model with a layer outside the conversion table (``RandomFlip``)."""
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.RandomFlip(name="flip")(inputs)
    x = layers.Flatten(name="flat")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name="flipping")


def save_keras3(path: Path, builder=residual_net, shape=(20, 20, 3), classes=5, seed=0) -> Path:
    """``builder``'s model, seeded, saved by Keras 3 as ``path``; its BN statistics are moved off
    their initial values so that a conversion that drops them shows."""
    keras.utils.set_random_seed(seed)
    model = builder(shape, classes)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [gamma, beta, rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, variance.shape)]
            )
    model.save(path)
    return path
