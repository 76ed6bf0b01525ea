"""Pieces shared by the model builders."""

from __future__ import annotations

import types

import numpy as np
import tensorflow as tf
import tf_keras as keras

from lth_tf.errors import LthError
from lth_tf.pruning.prunable import find_prunable


def pixel_input(input_shape: tuple[int, ...]):
    """An input taking raw pixel values (0..255) and scaling them to [0, 1] inside the model.

    Keeping the scaling in the graph means an exported ticket takes pixels as a device has them.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


# He-normal initialisation and PyTorch's BN constants (momentum 0.1 = Keras 0.9, epsilon 1e-5),
# as the papers' CIFAR ResNets and VGGs were trained (open_lth).
KERNEL_INIT = "he_normal"
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv_bn(x, filters: int, kernel: int, stride: int, name: str):
    """Conv (no bias) then batch norm, named ``<name>`` and ``<name>_bn``."""
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=KERNEL_INIT,
        name=name,
    )(x)
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)


def initialise_batch_norm(model, how: str, seed: int) -> int:
    """Sets ``model``'s batch-norm weights as ``--batchnorm_init=how`` says; returns how many
    layers it set.

    ``"fixed"`` leaves them as built; ``"uniform"`` draws each gamma from U[0, 1) and sets each
    beta to 0 (open_lth's ``bn_initializers.uniform``), from a NumPy generator seeded by ``seed``,
    layer after layer in the order of ``model.weights``: the same seed gives the same theta_0.

    >>> from lth_tf.models.resnet import resnet20
    >>> model = resnet20((32, 32, 3), 10)
    >>> initialise_batch_norm(model, "uniform", seed=0)
    21
    >>> gamma = model.get_layer("conv1_bn").gamma.numpy()
    >>> bool(gamma.min() >= 0 and gamma.max() < 1 and gamma.std() > 0)
    True
    """
    if how == "fixed":
        return 0
    order = {id(weight): index for index, weight in enumerate(model.weights)}
    layers = [
        layer
        for layer in model.submodules
        if isinstance(layer, keras.layers.BatchNormalization)
        and (layer.gamma is not None or layer.beta is not None)
    ]
    layers.sort(key=lambda layer: order[id(layer.gamma if layer.gamma is not None else layer.beta)])
    rng = np.random.default_rng([seed, 0xB4])  # its own stream: other weights stay as built
    for layer in layers:
        if layer.gamma is not None:
            layer.gamma.assign(rng.random(layer.gamma.shape, dtype=np.float32))
        if layer.beta is not None:
            layer.beta.assign(np.zeros(layer.beta.shape, np.float32))
    return len(layers)


def add_weight_decay(model, weight_decay: float) -> None:
    """Adds ``weight_decay / 2 * sum(kernel ** 2)`` of each prunable kernel to the losses.

    The prunable kernels are those :func:`lth_tf.pruning.prunable.find_prunable` finds: every
    conv (a SeparableConv's pointwise kernel, the one TF-MOT prunes) and Dense kernel. Its
    gradient is ``weight_decay * kernel``: PyTorch's SGD ``weight_decay``, which the papers
    used. Biases and batch norm are not decayed. A pruned weight is zero, so it adds nothing.
    The Trainer adds ``model.losses`` to the loss; this also works once the model is wrapped.

    >>> import tf_keras
    >>> model = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1, "linear",
    ...                              kernel_initializer="ones")])
    >>> add_weight_decay(model, 0.1)
    >>> round(float(model.losses[0]), 6)
    0.1
    """
    if weight_decay <= 0:
        return
    for name, attributes in find_prunable(model).weights.items():
        layer = model.get_layer(name)
        for kernel in [getattr(layer, attribute) for attribute in attributes]:
            layer.add_loss(
                lambda kernel=kernel: 0.5 * weight_decay * tf.reduce_sum(tf.square(kernel))
            )


def rebuilt_layer(layer, changes: dict, flag: str, consequence: str, alternative: str = ""):
    """A new, unbuilt ``layer`` from its config with ``changes``; a layer whose config does not
    rebuild it is one line: ``{flag}: layer ... does not rebuild ..., so {consequence}``.

    >>> rebuilt_layer(dense, {"units": 4}, "--granularity=channel", "...").units  # doctest: +SKIP
    4
    """
    config = {**layer.get_config(), **changes}
    try:
        return type(layer).from_config(config)
    except Exception as error:  # noqa: BLE001 - a user's layer class can raise anything
        first = error
    # A Python function given as an argument (a lambda activation) is saved as bytecode that
    # from_config does not read back: the new layer gets the function itself.
    for key in config:
        if isinstance(getattr(layer, key, None), types.FunctionType):
            config[key] = getattr(layer, key)
    try:
        return type(layer).from_config(config)
    except Exception:  # noqa: BLE001
        reason = f"{type(first).__name__}: {first}".splitlines()[0][:200]
        raise LthError(
            f"{flag}: layer {layer.name!r} ({type(layer).__name__}) does not rebuild from its "
            f"configuration ({reason}), so {consequence}; give its class a "
            f"get_config()/from_config() that round-trip{alternative}"
        ) from None
