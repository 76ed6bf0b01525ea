"""XNNPack's sparse subgraph (``--prune_for=xnnpack``): the symmetric-padding rebuild, the check
that names the first layer breaking the delegate's rules, and the 1x1 zero fraction, on small
untrained models (no training, one optional .tflite conversion)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import tf_keras as keras

from lth_tf.config import PruneRates
from lth_tf.errors import LthError
from lth_tf.pruning import xnnpack
from lth_tf.pruning.wrapping import wrap_model
from lth_tf.pruning.xnnpack import (
    SparseSubgraph,
    check_sparse_subgraph,
    one_by_one_zero_fraction,
    symmetric_padding,
)
from tests.user_model import (
    mobilenet_v2_style,
    residual_net,
    xnnpack_breaks_dense_before_mean,
    xnnpack_breaks_standard_conv,
    xnnpack_mixed_padding,
    xnnpack_mobilenet,
)

layers = keras.layers
ONE_BY_ONE = (
    "block1_expand", "block1_project", "block2_expand", "block2_project",
    "block3_expand", "block3_project", "head",
)  # fmt: skip


def refusal(model: keras.Model) -> str:
    """``check_sparse_subgraph``'s one-line refusal of ``model``."""
    with pytest.raises(LthError) as caught:
        check_sparse_subgraph(model)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--prune_for=xnnpack: ")
    return message


def net(body=lambda x: x, input_shape=(16, 16, 3), head=None) -> keras.Model:
    """ZeroPadding2D(1) + a valid 3x3 stride-2 stem, ``body``, a 1x1 conv, the mean, a Dense."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
    x = layers.Conv2D(8, 3, 2, "valid", activation="relu", name="stem")(x)
    x = body(x)
    x = layers.Conv2D(16, 1, name="head")(x)
    x = (head or layers.GlobalAveragePooling2D(name="pool"))(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


# -- symmetric_padding -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [20, 32])
def test_rebuild_makes_keras_applications_padding_symmetric(size):
    model = xnnpack_mobilenet((size, size, 3), 5)
    assert "the stem 'stem' (Conv2D 3x3, stride 2) with padding='same'" in refusal(model)
    assert f"on {size}x{size} pads 0 before and 1 after" in refusal(model)

    rebuilt, changes = symmetric_padding(model)

    half = size // 2
    assert changes == [
        f"stem: padding='same' on {size}x{size} pads 0 before and 1 after "
        "-> ZeroPadding2D(1) + 'valid'",
        f"block2_dw: ZeroPadding2D 'block2_pad' pads ((0, 1), (0, 1)) on {half}x{half} "
        "-> ((1, 1), (1, 1))",
    ]
    assert check_sparse_subgraph(rebuilt) == SparseSubgraph("stem", "pool", ONE_BY_ONE)
    assert rebuilt.get_layer("stem").padding == "valid"
    assert rebuilt.get_layer("stem_pad").padding == ((1, 1), (1, 1))
    # Every layer keeps its name, output shape and weights; only the new padding is added.
    names = {layer.name for layer in model.layers}
    assert {layer.name for layer in rebuilt.layers} - names == {"stem_pad"}
    for layer in model.layers:
        new = rebuilt.get_layer(layer.name)
        if layer.name != "block2_pad":  # the one whose output grows by the row it now pads
            assert new.output_shape == layer.output_shape
        for old_weight, new_weight in zip(layer.weights, new.weights, strict=True):
            assert new_weight.name == old_weight.name
            np.testing.assert_array_equal(new_weight.numpy(), old_weight.numpy())
    assert sorted(v.name for v in rebuilt.weights) == sorted(v.name for v in model.weights)
    assert rebuilt.output_shape == model.output_shape
    # Rebuilt, not shared: the original keeps its own layers and padding.
    assert model.get_layer("stem").padding == "same"
    assert rebuilt.get_layer("stem") is not model.get_layer("stem")
    # A second pass has nothing left to change.
    again, more = symmetric_padding(rebuilt)
    assert more == [] and again is rebuilt


def test_odd_sizes_are_symmetric_already_but_refused():
    """On 21x21 SAME pads 1 on every side, so nothing changes; but LiteRT's converter writes
    stride 2 on an odd size as SAME padding, which XNNPack's sparse path never takes."""
    model = xnnpack_mobilenet((21, 21, 3), 5)
    rebuilt, changes = symmetric_padding(model)
    assert changes == [] and rebuilt is model
    message = refusal(model)
    assert message.startswith("--prune_for=xnnpack: the stem 'stem' (Conv2D 3x3, stride 2)")
    assert "has a 21x21 input" in message
    assert "make the image size divisible by 4 (the subgraph has 2 stride-2 layers)" in message


def test_mixed_padding_is_fixed_by_the_rebuild():
    model = xnnpack_mixed_padding((20, 20, 3), 5)
    assert refusal(model).startswith(
        "--prune_for=xnnpack: layer 'block2_dw' (DepthwiseConv2D 3x3, stride 2) with "
        "padding='same' on 10x10 pads 0 before and 1 after; pad 1 on every side: "
        "ZeroPadding2D(1) + padding='valid' (--prune_for=xnnpack rebuilds it so when it starts)"
    )
    rebuilt, changes = symmetric_padding(model)
    assert changes == [
        "block2_dw: padding='same' on 10x10 pads 0 before and 1 after -> ZeroPadding2D(1) + 'valid'"
    ]
    assert rebuilt.get_layer("block2_dw_pad").padding == ((1, 1), (1, 1))
    assert check_sparse_subgraph(rebuilt).one_by_one == ONE_BY_ONE


def test_sequential_models_come_back_functional():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, strides=2, padding="same", name="stem"),
            layers.GlobalAveragePooling2D(name="pool"),
        ],
        name="seq",
    )
    rebuilt, changes = symmetric_padding(model)
    assert len(changes) == 1 and rebuilt.name == "seq"
    assert [layer.name for layer in rebuilt.layers[1:]] == ["stem_pad", "stem", "pool"]
    np.testing.assert_array_equal(
        rebuilt.get_layer("stem").kernel.numpy(), model.get_layer("stem").kernel.numpy()
    )


def test_a_valid_stride_two_layer_without_padding_is_left_to_the_check():
    """Padding it would change its output size: the rebuild leaves it, the check names it."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, 2, "valid", name="stem")(inputs)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D(name="pool")(x))
    assert symmetric_padding(model) == (model, [])
    assert "with padding='valid' on 16x16 pads 0 on every side; pad 1 on every side" in refusal(
        model
    )


# -- check_sparse_subgraph ---------------------------------------------------------------------


def test_mobilenet_v2_style_passes_after_the_rebuild():
    model, _ = symmetric_padding(mobilenet_v2_style((32, 32, 3), 5))
    assert check_sparse_subgraph(model) == SparseSubgraph("stem", "pool", ONE_BY_ONE)


def test_a_stride_one_stem_is_refused():
    assert refusal(residual_net((20, 20, 3), 5)) == (
        "--prune_for=xnnpack: the first convolution 'stem' is 3x3 stride 1 on 3 channels; "
        "XNNPACK's sparse path starts with a 3x3 stride-2 Conv2D on 3 input channels (RGB "
        "images) with padding 1 on every side"
    )


def test_a_standard_convolution_inside_is_refused():
    model, _ = symmetric_padding(xnnpack_breaks_standard_conv((20, 20, 3), 5))
    assert refusal(model) == (
        "--prune_for=xnnpack: layer 'conv3' (Conv2D 3x3, stride 1) is inside XNNPACK's sparse "
        "subgraph (between the stem 'stem' and the spatial mean 'pool'), which takes only 1x1 "
        "convolutions and 3x3/5x5 depthwise ones: make it a DepthwiseConv2D 3x3 + a 1x1 Conv2D"
    )


def test_a_dense_layer_before_the_mean_is_refused():
    model, _ = symmetric_padding(xnnpack_breaks_dense_before_mean((32, 32, 3), 5))
    assert refusal(model) == (
        "--prune_for=xnnpack: layer 'fc' (Dense) comes before the global average pooling "
        "'pool' that ends XNNPACK's sparse subgraph: pool first (GlobalAveragePooling2D), "
        "then Dense"
    )


def test_allowed_layers_inside():
    """Bilinear upsampling, a squeeze-excite Multiply, leaky ReLU, ELU, swish, a separable
    conv (depthwise + 1x1), a stride-1 ZeroPadding2D + 'valid' depthwise, Dropout, batch norm
    away from a conv: all lower to ops in XNNPack's sparse path."""

    def body(x):
        x = layers.BatchNormalization(name="bn")(x)
        x = layers.UpSampling2D(interpolation="bilinear", name="up")(x)
        gate = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
        gate = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(gate)
        x = layers.Multiply(name="gated")([x, gate])
        x = layers.LeakyReLU(name="leaky")(x)
        x = layers.ELU(name="elu")(x)
        x = layers.Activation("swish", name="swish")(x)
        x = layers.SeparableConv2D(8, 5, padding="same", name="sep")(x)
        x = layers.ZeroPadding2D(1, name="dw_pad")(x)
        x = layers.DepthwiseConv2D(3, name="dw")(x)
        return layers.Dropout(0.5, name="drop")(x)

    assert check_sparse_subgraph(net(body)) == SparseSubgraph(
        "stem", "pool", ("excite", "sep", "head")
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            lambda x: layers.MaxPooling2D(name="maxpool")(x),
            "layer 'maxpool' (MaxPooling2D) is inside XNNPACK's sparse subgraph (between the "
            "stem 'stem' and the spatial mean 'pool'), which downsamples only with stride-2 "
            "depthwise convolutions",
        ),
        (
            lambda x: layers.Concatenate(name="cat")([x, layers.ReLU(name="r")(x)]),
            "layer 'cat' (Concatenate) is inside",
        ),
        (
            lambda x: layers.Activation("hard_sigmoid", name="hs")(x),
            "layer 'hs' (Activation hard_sigmoid) is inside XNNPACK's sparse subgraph (between "
            "the stem 'stem' and the spatial mean 'pool'), and its activation hard_sigmoid is "
            "not one of relu,",
        ),
        (
            lambda x: layers.Conv2D(8, 1, activation="tanh", name="c")(x),
            "layer 'c' (Conv2D 1x1, stride 1) is inside",
        ),
        (lambda x: layers.ReLU(threshold=0.5, name="t")(x), "ReLU(threshold=0.5)"),
        (
            lambda x: layers.DepthwiseConv2D(3, 2, "same", name="dw")(x),
            "layer 'dw' (DepthwiseConv2D 3x3, stride 2) with padding='same' on 8x8 pads 0 "
            "before and 1 after",
        ),
        (
            lambda x: layers.Cropping2D(1, name="crop")(x),
            "layer 'crop' (Cropping2D) is inside XNNPACK's sparse subgraph (between the stem "
            "'stem' and the spatial mean 'pool'), which takes only 1x1 convolutions",
        ),
        (
            lambda x: layers.DepthwiseConv2D(3, name="dw")(x),
            "layer 'dw' (DepthwiseConv2D 3x3, stride 1) with padding='valid' on 8x8 pads 0 on "
            "every side; pad 1 on every side",
        ),
        (
            lambda x: layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="m")(x),
            "layer 'm' (DepthwiseConv2D 3x3, stride 1) is inside",
        ),
        (
            lambda x: layers.Conv2D(8, 1, name="c")(layers.ZeroPadding2D(1, name="zp")(x)),
            "layer 'c' (Conv2D 1x1, stride 1) is inside XNNPACK's sparse subgraph (between the "
            "stem 'stem' and the spatial mean 'pool'), where 1x1 convolutions do not pad",
        ),
        (
            lambda x: layers.Reshape((8, 8, 8), name="reshape")(x),
            "layer 'reshape' (Reshape) is inside",
        ),
        (
            lambda x: layers.UpSampling2D(name="up")(x),
            "which upsamples only bilinearly: use interpolation='bilinear', not 'nearest'",
        ),
    ],
)
def test_layers_the_subgraph_does_not_take(body, expected):
    assert expected in refusal(net(body))


def test_stride_two_layers_on_odd_sizes_are_refused():
    """28x28 -> 14x14 -> 7x7: the second stride-2 depthwise conv sees an odd size, where
    LiteRT's converter turns its ZeroPadding2D(1) + 'valid' into SAME padding."""

    def body(x):
        for name in ("dw1", "dw2"):
            x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
            x = layers.DepthwiseConv2D(3, 2, name=name)(x)
        return x

    assert refusal(net(body, input_shape=(28, 28, 3))) == (
        "--prune_for=xnnpack: layer 'dw2' (DepthwiseConv2D 3x3, stride 2) has a 7x7 input: on "
        "an odd size LiteRT's converter writes a stride-2 layer with SAME padding "
        "(ZeroPadding2D + 'valid' too), and XNNPACK's sparse path takes SAME padding only at "
        "stride 1; make the image size divisible by 8 (the subgraph has 3 stride-2 layers), "
        "e.g. 24x24 or 32x32"
    )
    assert check_sparse_subgraph(net(body, input_shape=(32, 32, 3))).one_by_one == ("head",)


def test_custom_and_nested_layers_inside_are_named():
    class Doubling(layers.Layer):
        def call(self, inputs):
            return 2.0 * inputs

    message = refusal(net(lambda x: Doubling(name="double")(x)))
    assert "layer 'double' (Doubling) is inside" in message
    assert "Doubling is a layer class of your own" in message

    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, layers.ReLU()(inner_in), name="block")
    assert "layer 'block' (Functional) is inside" in refusal(net(lambda x: inner(x)))


def test_the_subgraph_leaves_only_through_the_mean():
    inputs = keras.Input((16, 16, 3))
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(8, 3, 2, name="stem")(x)
    side = layers.GlobalMaxPooling2D(name="side")(x)
    x = layers.Conv2D(8, 1, name="head")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Concatenate(name="both")([x, side])
    message = refusal(keras.Model(inputs, layers.Dense(2)(x)))
    assert message.startswith(
        "--prune_for=xnnpack: layer 'side' (GlobalMaxPooling2D) branches off XNNPACK's sparse "
        "subgraph at 'stem'; the subgraph may leave only through the spatial mean 'pool'"
    )

    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, 2, name="stem")(layers.ZeroPadding2D(1)(inputs))
    features = layers.Conv2D(8, 1, name="features")(x)
    logits = layers.Dense(2, name="logits")(layers.GlobalAveragePooling2D(name="pool")(features))
    assert "the model's output 'features' is inside XNNPACK's sparse subgraph" in refusal(
        keras.Model(inputs, [logits, features])
    )


def test_nothing_enters_the_subgraph_but_the_stems_input():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, 2, name="stem")(layers.ZeroPadding2D(1)(inputs))
    other = layers.Conv2D(8, 3, 2, padding="same", name="other")(inputs)
    x = layers.Add(name="add")([x, other])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    assert "layer 'other' (Conv2D 3x3, stride 2) feeds XNNPACK's sparse subgraph" in refusal(
        keras.Model(inputs, x)
    )


def test_models_without_the_subgraphs_ends():
    assert "no GlobalAveragePooling2D after the stem 'stem'" in refusal(
        net(head=layers.Flatten(name="flatten"))
    )
    assert "is 3x3 stride 2 on 1 channel;" in refusal(net(input_shape=(16, 16, 1)))
    vectors = keras.Input((12,))
    assert "has shape (None, 12), not images" in refusal(
        keras.Model(vectors, layers.Dense(2)(vectors))
    )
    images = keras.Input((8, 8, 3))
    flat = layers.Dense(2)(layers.Flatten()(images))
    assert "has no convolution" in refusal(keras.Model(images, flat))


# -- one_by_one_zero_fraction ------------------------------------------------------------------


def test_zero_fraction_counts_exact_zeros_in_the_one_by_one_kernels():
    model, _ = symmetric_padding(xnnpack_mobilenet((20, 20, 3), 5))
    subgraph = check_sparse_subgraph(model)
    sizes = {name: model.get_layer(name).kernel.shape.num_elements() for name in ONE_BY_ONE}
    assert one_by_one_zero_fraction(model, subgraph) == 0.0
    head = model.get_layer("head").kernel
    head.assign(np.where(np.arange(256) < 200, 0.0, head.numpy()))  # 200 of 256 columns
    expand = model.get_layer("block1_expand").kernel
    expand.assign(np.zeros(expand.shape))
    # Not counted: the stem and the depthwise kernels are outside the 2/3 rule.
    model.get_layer("stem").kernel.assign(np.zeros(model.get_layer("stem").kernel.shape))
    expected = (24 * 200 + sizes["block1_expand"]) / sum(sizes.values())
    assert one_by_one_zero_fraction(model, subgraph) == pytest.approx(expected, abs=0)


def test_zero_fraction_reads_masks_through_pruning_wrappers():
    model, _ = symmetric_padding(xnnpack_mobilenet((20, 20, 3), 5))
    pruned = wrap_model(model, PruneRates(conv=0.5, fc=0.2, output=0.1))
    subgraph = check_sparse_subgraph(pruned.model)  # wrapped layers are seen through
    assert subgraph == check_sparse_subgraph(model)
    masks = pruned.get_masks()
    masks["head/kernel"][..., :128] = 0
    pruned.set_masks(masks)
    total = sum(model.get_layer(n).kernel.shape.num_elements() for n in ONE_BY_ONE)
    # The kernel itself is untouched: the wrapped model counts kernel * mask.
    assert one_by_one_zero_fraction(pruned.model, subgraph) == 24 * 128 / total
    assert one_by_one_zero_fraction(model, subgraph) == 0.0
    pruned.apply_masks()
    assert one_by_one_zero_fraction(model, subgraph) == 24 * 128 / total


def test_separable_pointwise_kernels_count():
    def body(x):
        return layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)

    model = net(body)
    subgraph = check_sparse_subgraph(model)
    assert subgraph.one_by_one == ("sep", "head")
    sep = model.get_layer("sep")
    sep.pointwise_kernel.assign(np.zeros(sep.pointwise_kernel.shape))
    assert one_by_one_zero_fraction(model, subgraph) == 64 / (64 + 128)


def test_docstring_examples():
    assert doctest.testmod(xnnpack, optionflags=doctest.ELLIPSIS).failed == 0


# -- LiteRT ------------------------------------------------------------------------------------


def test_litert_keeps_the_rebuilt_padding_explicit_and_symmetric():
    """After the rebuild every stride-2 op of the .tflite is 'VALID' after a PAD of 1 on every
    side, which XNNPack folds into it; 'same' would have stayed SAME (XNNPack resolves SAME
    only at stride 1, and keeps a stride-2 SAME op out of its sparse path)."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import tensorflow as tf

    model, _ = symmetric_padding(xnnpack_mobilenet((20, 20, 3), 5))
    flat = schema.ModelT.InitFromPackedBuf(
        tf.lite.TFLiteConverter.from_keras_model(model).convert(), 0
    )
    graph = flat.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in flat.operatorCodes]
    ops = schema.BuiltinOperator
    producers = {out: op for op in graph.operators for out in op.outputs}
    strided = 0
    for op in graph.operators:
        if codes[op.opcodeIndex] not in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D):
            continue
        if op.builtinOptions.strideH == 1:
            continue
        strided += 1
        assert op.builtinOptions.padding == schema.Padding.VALID
        pad = producers[op.inputs[0]]
        assert codes[pad.opcodeIndex] == ops.PAD
        buffer = flat.buffers[graph.tensors[pad.inputs[1]].buffer].data
        paddings = np.frombuffer(bytes(buffer), np.int32).reshape(4, 2)
        assert paddings.tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
    assert strided == 2
