"""Pieces shared by the model builders."""

from __future__ import annotations


def pixel_input(input_shape: tuple[int, ...]):
    """An input taking raw pixel values (0..255) and scaling them to [0, 1] inside the model.

    Keeping the scaling in the graph means an exported ticket takes pixels as a device has them.
    """
    import tf_keras as keras

    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
