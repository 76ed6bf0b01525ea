"""CIFAR VGGs with batch norm (Simonyan & Zisserman 2015, as adapted to CIFAR-10 in the LTH papers).

3x3 convs, each followed by BN and ReLU, in five groups separated by 2x2 max pooling, then global
average pooling and the ``output`` layer (no hidden fully-connected layers). Pooling pads odd
sizes ("same"), so any input size builds: 32 -> 16 -> 8 -> 4 -> 2, 28 -> 14 -> 7 -> 4 -> 2.
"""

from __future__ import annotations

import tf_keras as keras

from lth_tf.models.layers import KERNEL_INIT, conv_bn, pixel_input

# Filters per conv; "M" is a max pool.
PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512),
    ),
}


def _cifar_vgg(name: str, input_shape, num_classes: int):
    inputs, x = pixel_input(input_shape)
    conv_index, pool_index = 0, 0
    for item in PLANS[name]:
        if item == "M":
            pool_index += 1
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{pool_index}")(x)
        else:
            conv_index += 1
            x = conv_bn(x, int(item), 3, 1, f"conv{conv_index}")
            x = keras.layers.ReLU(name=f"conv{conv_index}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=KERNEL_INIT, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def vgg16(input_shape: tuple[int, ...], num_classes: int):
    """VGG-16 with BN for CIFAR: 13 convs (64 to 512 filters), then FC 10.

    >>> vgg16((32, 32, 3), 10).get_layer("conv13").filters
    512
    """
    return _cifar_vgg("vgg16", input_shape, num_classes)


def vgg19(input_shape: tuple[int, ...], num_classes: int):
    """VGG-19 with BN for CIFAR: 16 convs (64 to 512 filters), then FC 10; 20.0M conv weights."""
    return _cifar_vgg("vgg19", input_shape, num_classes)
