"""LeNet-300-100: the fully-connected network of the LTH paper."""

from __future__ import annotations

import tf_keras as keras

from lth_tf.models.layers import pixel_input


def lenet300_100(input_shape: tuple[int, ...], num_classes: int):
    """FC 300 -> FC 100 -> FC ``num_classes``, ReLU, Glorot-normal init, logits out.

    >>> lenet300_100((28, 28, 1), 10).count_params()
    266610
    """
    inputs, x = pixel_input(input_shape)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, width in enumerate((300, 100), start=1):
        x = keras.layers.Dense(
            width, activation="relu", kernel_initializer="glorot_normal", name=f"fc{index}"
        )(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_normal", name="output")(x)
    return keras.Model(inputs, outputs, name="lenet300_100")
