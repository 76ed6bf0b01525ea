"""A model and a dataset of the tests' own, as an engineer would bring them: a functional
network with a residual add, batch norm and a depthwise conv, and an npz of 5 classes of 20x20x3
images. ``tests.user_model:residual_net`` is also what ``--model=`` imports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = 5
IMAGE_SHAPE = (20, 20, 3)


def residual_net(input_shape: tuple[int, ...], num_classes: int):
    """Rescaling -> conv -> BN -> [depthwise conv -> BN -> conv 1x1] + shortcut -> GAP -> head.

    The head is named ``logits``, not ``output``: the output layer is found by position.
    """
    import tf_keras as keras

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    shortcut = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(shortcut)
    x = keras.layers.BatchNormalization(name="depthwise_bn")(x)
    x = keras.layers.ReLU(name="depthwise_relu")(x)
    x = keras.layers.Conv2D(8, 1, name="pointwise")(x)
    x = keras.layers.Add(name="residual")([x, shortcut])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="residual_net")


def mobilenet_v2_style(input_shape: tuple[int, ...], num_classes: int):
    """A small MobileNetV2-style network: a stride-2 stem, inverted residual blocks (1x1
    expansion, 3x3 depthwise, linear 1x1 projection, residual add where shapes allow), a 1x1
    head, global pooling and a Dense classifier; batch norm and ReLU6 throughout."""
    import tf_keras as keras

    layers = keras.layers

    def conv_bn(x, filters: int, kernel: int, name: str, strides: int = 1, relu: bool = True):
        x = layers.Conv2D(filters, kernel, strides, "same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    def block(x, expansion: int, filters: int, strides: int, name: str):
        channels = x.shape[-1]
        y = conv_bn(x, channels * expansion, 1, f"{name}_expand")
        y = layers.DepthwiseConv2D(3, strides, "same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
        y = conv_bn(y, filters, 1, f"{name}_project", relu=False)
        if strides == 1 and channels == filters:
            y = layers.Add(name=f"{name}_add")([x, y])
        return y

    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    x = conv_bn(x, 16, 3, "stem", strides=2)
    x = block(x, 2, 16, 1, "block1")
    x = block(x, 4, 24, 2, "block2")
    x = block(x, 4, 24, 1, "block3")
    x = conv_bn(x, 64, 1, "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2_style")


def reshaped_net(input_shape: tuple[int, ...], num_classes: int):
    """Two convs side by side: one whose channels reach a Reshape (they stay whole under
    --granularity=channel) and one that goes through pooling to the head (pruned)."""
    import tf_keras as keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    pooled = layers.Conv2D(6, 3, padding="same", activation="relu", name="pooled")(x)
    pooled = layers.GlobalAveragePooling2D(name="pool")(pooled)
    reshaped = layers.Conv2D(2, 5, strides=5, name="into_reshape")(x)
    reshaped = layers.Reshape((-1,), name="reshape")(reshaped)
    x = layers.Concatenate(name="features")([pooled, reshaped])
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name="reshaped_net")


def raises(input_shape: tuple[int, ...], num_classes: int):
    """A builder with a bug."""
    raise ValueError("no such layer size")


def named_scores(input_shape: tuple[int, ...], num_classes: int):
    """A model whose class scores come out under a name, as a dict: refused."""
    import tf_keras as keras

    inputs = keras.Input(input_shape, name="image")
    scores = keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, {"scores": scores}, name="named_scores")


def spatial_scores(input_shape: tuple[int, ...], num_classes: int):
    """A model with a score per class at every pixel (no pooling before its head): refused."""
    import tf_keras as keras

    inputs = keras.Input(input_shape, name="image")
    return keras.Model(inputs, keras.layers.Dense(num_classes)(inputs), name="spatial_scores")


def sigmoid_scores(input_shape: tuple[int, ...], num_classes: int):
    """A model that ends in a sigmoid, which multi-class cross-entropy cannot train: refused."""
    import tf_keras as keras

    inputs = keras.Input(input_shape, name="image")
    flat = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="sigmoid")(flat))


def shapes_arrays(train: int = 400, test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Class c is an 8x8 square of colour c (one of 5) at a random place on noise, uint8."""
    rng = np.random.default_rng(seed)
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]) * 240

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, CLASSES, count)
        images = rng.integers(0, 60, (count, *IMAGE_SHAPE)).astype(np.uint8)
        for image, label in zip(images, labels, strict=True):
            row, col = rng.integers(0, 12, 2)
            image[row : row + 8, col : col + 8] = colours[label]
        return images, labels.astype(np.int64)

    x_train, y_train = split(train)
    x_test, y_test = split(test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_shapes_npz(path: Path, **arrays_changed: np.ndarray) -> Path:
    """:func:`shapes_arrays` written to ``path``, with any array replaced."""
    np.savez(path, **{**shapes_arrays(), **arrays_changed})
    return path


def xnnpack_mobilenet(input_shape: tuple[int, ...], num_classes: int):
    """A small MobileNetV2-shaped network padded as keras.applications pads: a stride-2
    ``padding='same'`` stem and ``correct_pad``-style ZeroPadding2D before the stride-2
    depthwise conv, both asymmetric on even sizes (XNNPack's sparse path needs them symmetric:
    :func:`lth_tf.pruning.xnnpack.symmetric_padding`). 1x1 kernels are 86% of the conv weights."""
    return _xnnpack_net(input_shape, num_classes)


def xnnpack_breaks_standard_conv(input_shape: tuple[int, ...], num_classes: int):
    """:func:`xnnpack_mobilenet` with a standard 3x3 Conv2D ``conv3`` before the head."""
    return _xnnpack_net(input_shape, num_classes, breaks="standard_conv")


def xnnpack_breaks_dense_before_mean(input_shape: tuple[int, ...], num_classes: int):
    """:func:`xnnpack_mobilenet` with a Dense layer ``fc`` on the feature map, before the pool."""
    return _xnnpack_net(input_shape, num_classes, breaks="dense_before_mean")


def xnnpack_mixed_padding(input_shape: tuple[int, ...], num_classes: int):
    """:func:`xnnpack_mobilenet` with an explicit ZeroPadding2D(1) + 'valid' stem but a stride-2
    ``DepthwiseConv2D(padding='same')`` (asymmetric on even sizes)."""
    return _xnnpack_net(input_shape, num_classes, breaks="mixed_padding")


def _xnnpack_net(input_shape: tuple[int, ...], num_classes: int, breaks: str | None = None):
    import tf_keras as keras

    layers = keras.layers

    def conv_bn(x, filters: int, name: str, relu: bool = True):
        x = layers.Conv2D(filters, 1, use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    def correct_pad(size: int) -> tuple[int, int]:
        # keras.applications.imagenet_utils.correct_pad for a 3x3 kernel
        return (0, 1) if size % 2 == 0 else (1, 1)

    def block(x, filters: int, strides: int, name: str):
        channels = x.shape[-1]
        y = conv_bn(x, channels * 4, f"{name}_expand")
        if strides == 2 and breaks == "mixed_padding":
            y = layers.DepthwiseConv2D(3, 2, "same", use_bias=False, name=f"{name}_dw")(y)
        elif strides == 2:
            pads = (correct_pad(y.shape[1]), correct_pad(y.shape[2]))
            y = layers.ZeroPadding2D(pads, name=f"{name}_pad")(y)
            y = layers.DepthwiseConv2D(3, 2, "valid", use_bias=False, name=f"{name}_dw")(y)
        else:
            y = layers.DepthwiseConv2D(3, 1, "same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
        y = conv_bn(y, filters, f"{name}_project", relu=False)
        if strides == 1 and channels == filters:
            y = layers.Add(name=f"{name}_add")([x, y])
        return y

    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    if breaks == "mixed_padding":
        x = layers.ZeroPadding2D(1, name="stem_pad")(x)
        x = layers.Conv2D(16, 3, 2, "valid", use_bias=False, name="stem")(x)
    else:
        x = layers.Conv2D(16, 3, 2, "same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    x = block(x, 16, 1, "block1")
    x = block(x, 24, 2, "block2")
    x = block(x, 24, 1, "block3")
    if breaks == "standard_conv":
        x = layers.Conv2D(24, 3, padding="same", use_bias=False, name="conv3")(x)
        x = layers.BatchNormalization(name="conv3_bn")(x)
        x = layers.ReLU(6.0, name="conv3_relu")(x)
    x = conv_bn(x, 256, "head")
    if breaks == "dense_before_mean":
        x = layers.Dense(32, activation="relu", name="fc")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"xnnpack_{breaks or 'mobilenet'}")


def xnnpack_no_pointwise(input_shape: tuple[int, ...], num_classes: int):
    """A stem and a depthwise convolution, pooled: XNNPack's rules hold, but there is no 1x1
    convolution for its sparse kernels to run."""
    import tf_keras as keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
    x = layers.Conv2D(8, 3, 2, "valid", activation="relu", name="stem")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="depthwise")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name="no_pointwise")
