"""CIFAR ResNets (He et al. 2016, section 4.2): the "Resnet-18" of the LTH paper is resnet20.

A 3x3 conv with 16 filters, then three stages of residual blocks with 16, 32 and 64 filters
(the second and third start with stride 2), global average pooling and the ``output`` layer.
Each block is conv-BN-ReLU-conv-BN plus the shortcut, then ReLU; where a stage changes the shape,
the shortcut is a strided 1x1 conv with BN. Convolutions have no bias (BN supplies it).
"""

from __future__ import annotations

import tf_keras as keras

from lth_tf.models.layers import KERNEL_INIT, conv_bn, pixel_input


def _cifar_resnet(name: str, depth: int, input_shape, num_classes: int):
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), got {depth}")
    blocks_per_stage = (depth - 2) // 6
    inputs, x = pixel_input(input_shape)
    x = keras.layers.ReLU(name="conv1_relu")(conv_bn(x, 16, 3, 1, "conv1"))
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks_per_stage + 1):
            prefix = f"stage{stage}_block{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, stride, f"{prefix}_shortcut")
            y = keras.layers.ReLU(name=f"{prefix}_relu1")(
                conv_bn(x, filters, 3, stride, f"{prefix}_conv1")
            )
            y = conv_bn(y, filters, 3, 1, f"{prefix}_conv2")
            x = keras.layers.ReLU(name=f"{prefix}_relu2")(
                keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
            )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=KERNEL_INIT, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet20(input_shape: tuple[int, ...], num_classes: int):
    """ResNet-20 for CIFAR: 19 convs in 3 stages of 3 blocks (16/32/64 filters), then FC 10.

    >>> model = resnet20((32, 32, 3), 10)
    >>> sum(int(v.shape.num_elements()) for v in model.trainable_variables if "kernel" in v.name)
    270896
    """
    return _cifar_resnet("resnet20", 20, input_shape, num_classes)
