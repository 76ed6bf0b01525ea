"""Conv-2/4/6: the VGG-like convolutional networks of the LTH paper."""

from __future__ import annotations

import tf_keras as keras

from lth_tf.models.layers import pixel_input


def _conv_net(name: str, blocks: tuple[int, ...], input_shape, num_classes: int):
    """Per block two 3x3 same-padding convs then 2x2 max pool; FC 256, 256, output."""
    inputs, x = pixel_input(input_shape)
    conv_index = 0
    for block, filters in enumerate(blocks, start=1):
        for _ in range(2):
            conv_index += 1
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="glorot_normal",
                name=f"conv{conv_index}",
            )(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = keras.layers.Dense(
            256, activation="relu", kernel_initializer="glorot_normal", name=f"fc{index}"
        )(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_normal", name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def conv2(input_shape: tuple[int, ...], num_classes: int):
    """Conv-2: conv 64, 64, pool; FC 256, 256, 10.

    >>> conv2((32, 32, 3), 10).count_params()
    4301642
    """
    return _conv_net("conv2", (64,), input_shape, num_classes)


def conv4(input_shape: tuple[int, ...], num_classes: int):
    """Conv-4: conv 64, 64, pool, 128, 128, pool; FC 256, 256, 10."""
    return _conv_net("conv4", (64, 128), input_shape, num_classes)


def conv6(input_shape: tuple[int, ...], num_classes: int):
    """Conv-6: conv 64, 64, pool, 128, 128, pool, 256, 256, pool; FC 256, 256, 10.

    Builds for any input the datasets give: 28x28x1 pools to 3x3, 32x32x3 to 4x4.
    """
    return _conv_net("conv6", (64, 128, 256), input_shape, num_classes)
