"""XNNPack's sparse inference path (``--prune_for=xnnpack``): which part of a model it runs, and
a rebuild that gives the model the symmetric padding that path needs.

LiteRT's XNNPack delegate runs a float MobileNet-shaped subgraph with sparse 1x1 kernels ("Fast
Sparse ConvNets", Elsen et al. 2020) when it follows the rules of the delegate's README ("Sparse
Inference"), as its source (``xnn_check_nchw_compatibility``) applies them:

- it starts with a Conv2D 3x3, stride 2, padding 1 on every side, on 3 input channels (the stem);
- it ends with the spatial mean (GlobalAveragePooling2D) feeding the classifier;
- inside are only 1x1 Conv2D (stride 1, no padding), DepthwiseConv2D 3x3 or 5x5 (stride 1 or 2,
  padding k//2 on every side, depth multiplier 1; SeparableConv2D is one of each), spatial
  means, bilinear upsampling, Add and Multiply of feature maps, and the unary ops relu, relu6,
  leaky ReLU, elu, sigmoid and hard-swish (batch norm folds into a convolution or becomes a
  Multiply and an Add by per-channel constants; Dropout vanishes);
- no tensor enters it except the stem's input, and it leaves only through the mean;
- at inference, at least 2/3 of its 1x1 kernels' weights are zero
  (:data:`lth_tf.config.XNNPACK_SPARSE_FRACTION`).

Padding is where Keras models most often miss: ``padding='same'`` at stride 2 on an even size
pads 0 before and 1 after. Two more facts decide it, both checked against LiteRT:

- XNNPack turns SAME padding into explicit padding only at stride 1; a stride-2 layer with SAME
  padding never joins the sparse subgraph, even where SAME happens to be symmetric;
- the converter folds ZeroPadding2D into the next convolution as SAME padding whenever they pad
  alike, which at stride 2 is on an odd size. So every stride-2 layer of the subgraph needs an
  even input size and ZeroPadding2D(k//2) + ``padding='valid'``, which the converter then keeps.

>>> model, changes = symmetric_padding(model)  # doctest: +SKIP
>>> check_sparse_subgraph(model)  # doctest: +SKIP
SparseSubgraph(stem='stem', mean='pool', one_by_one=('block1_expand', ..., 'head'))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude,
)
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf.errors import LthError
from lth_tf.models.layers import rebuilt_layer

L = tf_keras.layers
FLAG = "--prune_for=xnnpack"
PREFIX = f"{FLAG}: "
# Activations that LiteRT writes as ops the sparse subgraph takes (RELU, RELU6, LOGISTIC, ELU,
# LEAKY_RELU, HARD_SWISH; swish is LOGISTIC then MUL of two feature maps). Not hard_sigmoid:
# it becomes MUL, ADD, MINIMUM and RELU, and MINIMUM is not one of them.
ACTIVATIONS = frozenset(
    {"linear", "relu", "relu6", "sigmoid", "elu", "leaky_relu", "swish", "silu", "hard_swish"}
)
_ONLY = (
    "which takes only 1x1 convolutions and 3x3/5x5 depthwise ones, batch norm, Add/Multiply, "
    "bilinear upsampling, spatial means and relu/relu6/leaky-relu/elu/sigmoid/swish"
)
_FREE = (  # vanish at inference
    L.Dropout, L.SpatialDropout2D, L.GaussianDropout, L.GaussianNoise, L.AlphaDropout,
    L.ActivityRegularization, L.Identity,
)  # fmt: skip
_POOLS = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalMaxPooling2D)
_RESHAPES = (L.Flatten, L.Reshape, L.Permute, L.RepeatVector)
_MERGES = (L.Subtract, L.Average, L.Maximum, L.Minimum, L.Dot)
_CONVS = (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)


@dataclasses.dataclass(frozen=True)
class SparseSubgraph:
    """The part of a model XNNPack runs sparse: the ``stem`` convolution, the spatial ``mean``
    that ends it and its 1x1 convolutions (``one_by_one``, in graph order; a SeparableConv2D's
    pointwise kernel is one), which need more than
    :data:`lth_tf.config.XNNPACK_SPARSE_FRACTION` zeros."""

    stem: str
    mean: str
    one_by_one: tuple[str, ...]


# -- the graph ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Graph:
    """A functional model's call nodes in graph order (every producer before its consumers),
    with each tensor's producing node and consuming nodes (keyed by ``str(id(tensor))``, as
    Keras' own nodes key them)."""

    nodes: list
    producer: dict
    consumers: dict
    calls: dict[int, int]

    @classmethod
    def of(cls, model: tf_keras.Model) -> _Graph:
        if not getattr(model, "_is_graph_network", False):
            raise LthError(
                f"{PREFIX}model {model.name!r} is not a functional or Sequential model built "
                "on keras.Input(shape=...), so its layers cannot be followed"
            )
        nodes = [
            node
            for depth in sorted(model._nodes_by_depth, reverse=True)
            for node in model._nodes_by_depth[depth]
        ]
        producer, consumers, calls = {}, {}, {}
        for node in nodes:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
            for tensor_id in node.flat_output_ids:
                producer[tensor_id] = node
            for tensor_id in node.flat_input_ids:
                consumers.setdefault(tensor_id, []).append(node)
        return cls(nodes, producer, consumers, calls)

    def parents(self, node) -> list:
        return [self.producer[t] for t in node.flat_input_ids if t in self.producer]

    def children(self, node) -> list:
        return [c for t in node.flat_output_ids for c in self.consumers.get(t, [])]

    def reach(self, start, step) -> set[int]:
        """ids of the nodes ``step`` (parents or children) leads to from ``start``, not it."""
        seen: set[int] = set()
        todo = list(step(start))
        while todo:
            node = todo.pop()
            if id(node) not in seen:
                seen.add(id(node))
                todo.extend(step(node))
        return seen

    def fused_padding(self, node) -> tuple[object, tuple] | None:
        """The ZeroPadding2D node feeding ``node`` and its padding, if it feeds nothing else
        (XNNPack then folds it into the convolution; otherwise it stays a PAD)."""
        if not node.flat_input_ids or node.flat_input_ids[0] not in self.producer:
            return None
        source = self.producer[node.flat_input_ids[0]]
        layer = _inner(source.layer)
        if not isinstance(layer, L.ZeroPadding2D) or not _channels_last(layer):
            return None
        if len(self.consumers.get(node.flat_input_ids[0], [])) != 1:
            return None
        return source, tuple(tuple(int(p) for p in side) for side in layer.padding)


def _inner(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
    """The layer inside a TF-MOT pruning wrapper (the layer itself otherwise)."""
    return layer.layer if isinstance(layer, PruneLowMagnitude) else layer


def _channels_last(layer: tf_keras.layers.Layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _spatial(shape: tf.TensorShape) -> tuple[int | None, int | None]:
    return shape[1], shape[2]


def _size(hw: Iterable[int | None]) -> str:
    return "x".join("?" if n is None else str(n) for n in hw)


# -- padding -----------------------------------------------------------------------------------

Pads = tuple[tuple[int, int], tuple[int, int]]


def _same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """What TensorFlow's SAME padding adds before and after one spatial dimension."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _describe_pads(pads: Pads) -> str:
    (top, bottom), (left, right) = pads
    if (top, bottom) == (left, right):
        if top == bottom:
            return f"pads {top} on every side"
        return f"pads {top} before and {bottom} after"
    return f"pads {top}/{bottom} rows and {left}/{right} columns before/after"


@dataclasses.dataclass(frozen=True)
class _Padding:
    """How a convolution pads in LiteRT: ``pads`` explicit (a fused ZeroPadding2D's plus the
    layer's own) or ``None`` when it stays SAME at stride 2; ``size``: the spatial size before
    any padding; ``how``: the Keras form, for messages."""

    pads: Pads | None
    size: tuple[int | None, int | None]
    how: str
    pad_layer: str | None = None


def _padding(graph: _Graph, node, layer: Conv) -> _Padding:
    kernel, stride, dilation = layer.kernel_size, layer.strides, layer.dilation_rate
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    fused = graph.fused_padding(node)
    if fused is not None:
        source, extra = fused
        size = _spatial(source.keras_inputs[0].shape)
    else:
        extra = ((0, 0), (0, 0))
        size = _spatial(node.keras_inputs[0].shape)
    if layer.padding == "same" and max(stride) > 1:
        own = None  # XNNPack keeps SAME padding at stride 2 (and folds no PAD into it)
    elif layer.padding == "same":
        own = tuple(((e - 1) // 2, e - 1 - (e - 1) // 2) for e in effective)
    else:
        own = ((0, 0), (0, 0))
    how = f"padding={layer.padding!r} on {_size(size)}"
    if fused is not None:
        pad_layer = _inner(fused[0].layer).name
        how = f"ZeroPadding2D {pad_layer!r} {extra} + {how}"
        if own is None:
            return _Padding(None, size, how, pad_layer)
        pads = tuple((a + c, b + d) for (a, b), (c, d) in zip(extra, own, strict=True))
        return _Padding(pads, size, how, pad_layer)
    return _Padding(own, size, how)


def _same_pads(padding: _Padding, layer: Conv) -> Pads | None:
    if None in padding.size:
        return None
    return tuple(
        _same(n, k, s)
        for n, k, s in zip(padding.size, layer.kernel_size, layer.strides, strict=True)
    )


@dataclasses.dataclass(frozen=True)
class _Fix:
    """A shape-preserving change that makes one stride-2 layer pad k//2 on every side: either
    ``padding='valid'`` after a new ZeroPadding2D, or a new padding for its ZeroPadding2D."""

    layer: str
    description: str
    pad: int
    zero_padding: str | None = None  # the ZeroPadding2D to change; None: insert one


def _symmetric_fix(graph: _Graph, node) -> _Fix | None:
    """How :func:`symmetric_padding` changes ``node``'s layer, if at all."""
    layer = node.layer
    if (
        not isinstance(layer, _CONVS)
        or isinstance(layer, L.Conv2DTranspose)
        or tuple(layer.strides) != (2, 2)
        or tuple(layer.dilation_rate) != (1, 1)
        or layer.kernel_size[0] != layer.kernel_size[1]
        or layer.kernel_size[0] % 2 == 0
        or not _channels_last(layer)
        or graph.calls[id(layer)] > 1
    ):
        return None
    kernel = layer.kernel_size[0]
    half = kernel // 2
    symmetric = ((half, half), (half, half))
    padding = _padding(graph, node, layer)
    if None in padding.size:
        return None
    if layer.padding == "same" and padding.pad_layer is None:
        same = _same_pads(padding, layer)
        if all(before == after for before, after in same):
            return None  # an odd size: SAME pads k//2 on every side already
        return _Fix(
            layer.name,
            f"{layer.name}: padding='same' on {_size(padding.size)} {_describe_pads(same)} "
            f"-> ZeroPadding2D({half}) + 'valid'",
            half,
        )
    if layer.padding != "valid" or padding.pad_layer is None or padding.pads == symmetric:
        return None
    if graph.calls[id(graph.fused_padding(node)[0].layer)] > 1:
        return None  # a ZeroPadding2D called elsewhere too: changing it would change that call
    out = [(n + a + b - kernel) // 2 for n, (a, b) in zip(padding.size, padding.pads, strict=True)]
    if out != [(n + 2 * half - kernel) // 2 for n in padding.size]:
        return None  # symmetric padding would change the output size: not a rewrite's to make
    return _Fix(
        layer.name,
        f"{layer.name}: ZeroPadding2D {padding.pad_layer!r} pads {padding.pads} on "
        f"{_size(padding.size)} -> {symmetric}",
        half,
        padding.pad_layer,
    )


# -- symmetric_padding -------------------------------------------------------------------------


class _Reuse:
    """A tensor handed to every consumer: ``Node.map_arguments`` pops one copy per use."""

    def __init__(self, tensor: tf.Tensor) -> None:
        self.tensor = tensor

    def pop(self) -> tf.Tensor:
        return self.tensor


def symmetric_padding(model: tf_keras.Model) -> tuple[tf_keras.Model, list[str]]:
    """``model`` rebuilt so that every stride-2 Conv2D, DepthwiseConv2D and SeparableConv2D pads
    k//2 on every side, with one description per change; ``(model, [])`` itself when none is
    needed.

    ``padding='same'`` where it pads asymmetrically (an even size) becomes a ZeroPadding2D named
    ``<layer>_pad`` + ``padding='valid'``; an asymmetric ZeroPadding2D feeding a ``'valid'``
    layer (keras.applications' ``correct_pad``) becomes symmetric. Only changes that keep every
    output shape are made (checked layer by layer), so every layer keeps its name and weight
    shapes; the weights are copied from ``model``. The outputs differ: the network looks at
    its input one pixel shifted. A Sequential model comes back functional.

    >>> import tf_keras as k
    >>> x = k.Input((8, 8, 3))
    >>> y = k.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(x)
    >>> symmetric_padding(k.Model(x, y))[1]
    ["stem: padding='same' on 8x8 pads 0 before and 1 after -> ZeroPadding2D(1) + 'valid'"]
    """
    graph = _Graph.of(model)
    fixes = {id(node): fix for node in graph.nodes if (fix := _symmetric_fix(graph, node))}
    if not fixes:
        return model, []
    changed = {fix.zero_padding or fix.layer: fix for fix in fixes.values()}
    # The ZeroPadding2D made symmetric is the one layer whose output grows (by a row and a column
    # the stride-2 layer after it never reaches).
    zero_paddings = {fix.zero_padding for fix in fixes.values()}
    clones: dict[int, tf_keras.layers.Layer] = {}
    tensors: dict[str, _Reuse] = {}
    for node in graph.nodes:
        layer = node.layer
        if node.is_input:
            clone = L.InputLayer.from_config(layer.get_config())
            outputs = clone._inbound_nodes[0].outputs
        else:
            if id(layer) not in clones:
                fix = changed.get(layer.name)
                if fix is None:
                    clones[id(layer)] = _rebuilt(layer, {})
                elif fix.zero_padding is not None:
                    clones[id(layer)] = _rebuilt(layer, {"padding": ((fix.pad,) * 2,) * 2})
                else:
                    clones[id(layer)] = _rebuilt(layer, {"padding": "valid"})
            args, kwargs = node.map_arguments(tensors)
            fix = fixes.get(id(node))
            if fix is not None and fix.zero_padding is None:
                pad = L.ZeroPadding2D(fix.pad, name=_free_name(model, f"{layer.name}_pad"))
                args = (pad(args[0]), *args[1:])
            outputs = clones[id(layer)](*args, **kwargs)
        for tensor_id, old, new in zip(
            node.flat_output_ids, tf.nest.flatten(node.outputs), tf.nest.flatten(outputs),
            strict=True,
        ):  # fmt: skip
            if tuple(old.shape) != tuple(new.shape) and layer.name not in zero_paddings:
                raise AssertionError(
                    f"symmetric_padding changed {layer.name!r}'s output shape from "
                    f"{tuple(old.shape)} to {tuple(new.shape)}"
                )
            tensors[tensor_id] = _Reuse(new)
    inputs = tf.nest.map_structure(lambda t: tensors[str(id(t))].tensor, model._nested_inputs)
    outputs = tf.nest.map_structure(lambda t: tensors[str(id(t))].tensor, model._nested_outputs)
    rebuilt = tf_keras.Model(inputs, outputs, name=model.name)
    for layer in model.layers:
        if id(layer) in clones:
            clones[id(layer)].set_weights(layer.get_weights())
    return rebuilt, [fix.description for fix in fixes.values()]


def _free_name(model: tf_keras.Model, name: str) -> str:
    taken = {layer.name for layer in model.layers}
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    return candidate


def _rebuilt(layer: tf_keras.layers.Layer, changes: dict) -> tf_keras.layers.Layer:
    """A new, unbuilt ``layer`` from its config with ``changes``."""
    return rebuilt_layer(layer, changes, FLAG, "its padding cannot be made symmetric")


# -- check_sparse_subgraph ---------------------------------------------------------------------


def _describe(layer: tf_keras.layers.Layer) -> str:
    """``Conv2D 3x3, stride 1``, ``Activation tanh``, ``Dense``..."""
    name = type(layer).__name__
    if isinstance(layer, Conv):
        kernel = "x".join(str(k) for k in layer.kernel_size)
        strides = set(layer.strides)
        stride = str(layer.strides[0]) if len(strides) == 1 else "x".join(map(str, layer.strides))
        return f"{name} {kernel}, stride {stride}"
    if isinstance(layer, L.Activation):
        return f"Activation {_activation_name(layer.activation)}"
    return name


def _activation_name(function: object) -> str:
    return getattr(function, "__name__", str(function))


def _activation_problem(layer: tf_keras.layers.Layer) -> str | None:
    """Why ``layer``'s own activation (a conv's ``activation=``, an Activation, ReLU, ELU
    layer) lowers to an op outside the sparse subgraph; None if it does not."""
    if isinstance(layer, L.ReLU):
        threshold = float(layer.threshold)
        slope = float(layer.negative_slope)
        top = None if layer.max_value is None else float(layer.max_value)
        if threshold != 0:
            return f"ReLU(threshold={threshold:g}) is not one of its ops: use threshold=0"
        if top not in (None, 6.0) or (top is not None and slope != 0):
            return "a ReLU is RELU, RELU6 or LEAKY_RELU there: use max_value=6 or none"
        return None
    if isinstance(layer, L.ELU):
        if float(layer.alpha) != 1.0:
            return f"ELU(alpha={float(layer.alpha):g}) lowers to SELECT: use alpha=1"
        return None
    function = getattr(layer, "activation", None)
    if function is None:
        return None
    name = _activation_name(function)
    if name in ACTIVATIONS:
        return None
    return (
        f"its activation {name} is not one of relu, relu6, leaky_relu, elu, sigmoid, swish "
        "and hard_swish: use one of them"
    )


@dataclasses.dataclass
class _Check:
    """The state of one :func:`check_sparse_subgraph` walk, for its messages."""

    graph: _Graph
    stem: str
    mean: str
    stride_twos: int
    image: tuple[int | None, int | None]

    def inside(self, layer: tf_keras.layers.Layer, rest: str) -> LthError:
        return LthError(
            f"{PREFIX}layer {layer.name!r} ({_describe(layer)}) is inside XNNPACK's sparse "
            f"subgraph (between the stem {self.stem!r} and the spatial mean {self.mean!r}), "
            f"{rest}"
        )

    def even_sizes(self) -> str:
        factor = 2**self.stride_twos
        height = self.image[0] or factor
        lower, upper = height - height % factor, height - height % factor + factor
        sizes = " or ".join(f"{n}x{n}" for n in (lower, upper) if n > 0)
        return (
            f"make the image size divisible by {factor} (the subgraph has {self.stride_twos} "
            f"stride-2 layers), e.g. {sizes}"
        )

    def padding_problem(self, node, layer: Conv, label: str) -> LthError | None:
        """The stem's or a depthwise layer's padding, if it is not k//2 on every side."""
        padding = _padding(self.graph, node, layer)
        half = layer.kernel_size[0] // 2
        wanted = ((half, half), (half, half))
        fix = _symmetric_fix(self.graph, node)
        rebuilds = " (--prune_for=xnnpack rebuilds it so when it starts)" if fix else ""
        advice = f"pad {half} on every side: ZeroPadding2D({half}) + padding='valid'{rebuilds}"
        stride_two = tuple(layer.strides) == (2, 2)
        if stride_two and None in padding.size:
            return LthError(
                f"{PREFIX}{label} has input size {_size(padding.size)}: XNNPACK's sparse path "
                "needs a fixed, even size at every stride-2 layer; give the model a fixed "
                "input shape"
            )
        if padding.pads is None and padding.pad_layer is not None:
            return LthError(
                f"{PREFIX}{label} with {padding.how}: XNNPACK folds no ZeroPadding2D into "
                f"padding='same' at stride 2, and the PAD left is not in its sparse path; {advice}"
            )
        if padding.pads is None:
            same = _same_pads(padding, layer)
            if any(before != after for before, after in same):
                return LthError(
                    f"{PREFIX}{label} with {padding.how} {_describe_pads(same)}; {advice}"
                )
            return self.odd(label, padding)
        if padding.pads != wanted:
            return LthError(
                f"{PREFIX}{label} with {padding.how} {_describe_pads(padding.pads)}; {advice}"
            )
        if stride_two and any(n % 2 for n in padding.size):
            return self.odd(label, padding)
        return None

    def odd(self, label: str, padding: _Padding) -> LthError:
        return LthError(
            f"{PREFIX}{label} has a {_size(padding.size)} input: on an odd size LiteRT's "
            "converter writes a stride-2 layer with SAME padding (ZeroPadding2D + 'valid' too), "
            f"and XNNPACK's sparse path takes SAME padding only at stride 1; {self.even_sizes()}"
        )


def check_sparse_subgraph(model: tf_keras.Model) -> SparseSubgraph:
    """``model``'s XNNPack sparse subgraph, or an :class:`LthError` line naming the first layer
    (in graph order) that keeps XNNPack from running it, and what would fix it. Works on plain
    and TF-MOT-wrapped models (names are the wrapped layers').

    >>> import tf_keras as k
    >>> x = k.Input((8, 8, 3)); y = k.layers.Conv2D(4, 3, padding="same", name="stem")(x)
    >>> y = k.layers.GlobalAveragePooling2D(name="pool")(y)
    >>> check_sparse_subgraph(k.Model(x, y))
    Traceback (most recent call last):
    ...
    lth_tf.errors.LthError: --prune_for=xnnpack: the first convolution 'stem' is 3x3 stride 1 on 3 channels; XNNPACK's sparse path starts with a 3x3 stride-2 Conv2D on 3 input channels (RGB images) with padding 1 on every side
    """  # noqa: E501
    graph = _Graph.of(model)
    images = [t for t in tf.nest.flatten(model.inputs) if t.shape.rank == 4]
    if not images:
        shapes = ", ".join(str(tuple(t.shape)) for t in model.inputs)
        raise LthError(
            f"{PREFIX}the input of {model.name!r} has shape {shapes}, not images (height, "
            "width, channels): XNNPACK's sparse path is for image models"
        )
    stem_node = next((n for n in graph.nodes if _convolutional(_inner(n.layer))), None)
    if stem_node is None:
        raise LthError(
            f"{PREFIX}{model.name!r} has no convolution; XNNPACK's sparse path starts with a "
            "3x3 stride-2 Conv2D on 3 input channels (RGB images)"
        )
    stem = _inner(stem_node.layer)
    if isinstance(stem, tf_keras.Model):
        raise LthError(
            f"{PREFIX}the first convolutions are inside the nested model {stem.name!r}: build "
            "the network flat (call its layers on your own input) so that its layers can be "
            "checked"
        )
    below = graph.reach(stem_node, graph.children)
    means = [
        n
        for n in graph.nodes
        if id(n) in below and isinstance(_inner(n.layer), L.GlobalAveragePooling2D)
    ]
    stride_twos = [
        n
        for n in graph.nodes
        if (id(n) in below or n is stem_node)
        and isinstance(_inner(n.layer), Conv)
        and max(_inner(n.layer).strides) > 1
    ]
    image = _spatial(stem_node.keras_inputs[0].shape) if stem_node.keras_inputs else (None, None)
    mean = _inner(means[-1].layer).name if means else ""
    check = _Check(graph, stem.name, mean, len(stride_twos), image)
    _check_stem(check, stem_node, stem)
    if not means:
        raise LthError(
            f"{PREFIX}no GlobalAveragePooling2D after the stem {stem.name!r}: XNNPACK's sparse "
            "subgraph ends with the spatial mean; pool the features (GlobalAveragePooling2D), "
            "then Dense"
        )
    mean_node = means[-1]
    above_mean = graph.reach(mean_node, graph.parents)
    above_stem = graph.reach(stem_node, graph.parents)
    after_mean = graph.reach(mean_node, graph.children)
    inside = (below & above_mean) | {id(stem_node)}
    one_by_one: list[str] = []
    for node in graph.nodes:
        key, layer = id(node), _inner(node.layer)
        if node is stem_node or key in above_stem:
            continue
        if node is mean_node:
            if not _channels_last(layer):
                raise check.inside(layer, "and must pool a channels_last feature map")
            continue
        if key in after_mean:
            for parent in graph.parents(node):
                if id(parent) in inside:
                    raise LthError(
                        f"{PREFIX}layer {layer.name!r} ({_describe(layer)}) takes "
                        f"{_inner(parent.layer).name!r} from inside XNNPACK's sparse subgraph; "
                        f"the subgraph may leave only through the spatial mean {check.mean!r}: "
                        "take that branch after the mean, or drop it"
                    )
            continue
        if key in inside:
            _check_inside(check, node, layer)
            one_by_one_layer = isinstance(layer, L.SeparableConv2D) or (
                isinstance(layer, L.Conv2D) and tuple(layer.kernel_size) == (1, 1)
            )
            if one_by_one_layer and layer.name not in one_by_one:
                one_by_one.append(layer.name)
        elif key in below:  # below the stem, not above the mean: a branch leaving the subgraph
            parent = next(p for p in graph.parents(node) if id(p) in inside)
            raise LthError(
                f"{PREFIX}layer {layer.name!r} ({_describe(layer)}) branches off XNNPACK's "
                f"sparse subgraph at {_inner(parent.layer).name!r}; the subgraph may leave only "
                f"through the spatial mean {check.mean!r}: take that branch after the mean, or "
                "drop it"
            )
        elif key in above_mean:
            raise LthError(
                f"{PREFIX}layer {layer.name!r} ({_describe(layer)}) feeds XNNPACK's sparse "
                f"subgraph (between the stem {check.stem!r} and the spatial mean {check.mean!r}) "
                "from outside it; only the stem's input may enter it: compute it from the "
                "stem's output, or join it after the mean"
            )
        # Anything else is unrelated to the subgraph (another input's own branch).
    for tensor in tf.nest.flatten(model.outputs):
        source = graph.producer[str(id(tensor))]
        if id(source) in inside:
            raise LthError(
                f"{PREFIX}the model's output {_inner(source.layer).name!r} is inside XNNPACK's "
                f"sparse subgraph; the subgraph may leave only through the spatial mean "
                f"{check.mean!r}: drop that output or take it after the mean"
            )
    return SparseSubgraph(check.stem, check.mean, tuple(one_by_one))


def _convolutional(layer: tf_keras.layers.Layer) -> bool:
    """A convolution, or a nested model holding one."""
    if isinstance(layer, tf_keras.Model):
        return any(_convolutional(_inner(inner)) for inner in layer.layers)
    return isinstance(layer, Conv)


def _check_stem(check: _Check, node, stem: tf_keras.layers.Layer) -> None:
    channels = node.keras_inputs[0].shape[-1] if node.keras_inputs else None
    if (
        type(stem) is not L.Conv2D
        or tuple(stem.kernel_size) != (3, 3)
        or tuple(stem.strides) != (2, 2)
        or tuple(stem.dilation_rate) != (1, 1)
        or stem.groups != 1
        or not _channels_last(stem)
        or channels != 3
    ):
        kind = type(stem).__name__
        shape = "x".join(map(str, stem.kernel_size))
        stride = "x".join(map(str, sorted(set(stem.strides))))
        details = "".join(
            [
                "" if kind == "Conv2D" else f" ({kind})",
                f", dilation {stem.dilation_rate[0]}" if max(stem.dilation_rate) > 1 else "",
                f", {stem.groups} groups" if getattr(stem, "groups", 1) != 1 else "",
                "" if _channels_last(stem) else ", channels_first",
            ]
        )
        plural = "" if channels == 1 else "s"
        raise LthError(
            f"{PREFIX}the first convolution {stem.name!r} is {shape} stride {stride} on "
            f"{channels} channel{plural}{details}; XNNPACK's sparse path starts with a 3x3 "
            "stride-2 Conv2D on 3 input channels (RGB images) with padding 1 on every side"
        )
    problem = check.padding_problem(node, stem, f"the stem {stem.name!r} (Conv2D 3x3, stride 2)")
    if problem is not None:
        raise problem
    activation = _activation_problem(stem)
    if activation is not None:
        raise LthError(
            f"{PREFIX}the stem {stem.name!r} starts XNNPACK's sparse subgraph, but {activation}"
        )


def _check_inside(check: _Check, node, layer: tf_keras.layers.Layer) -> None:
    """Raises for ``layer`` (called at ``node`` inside the subgraph) if XNNPack's sparse
    subgraph does not take it."""
    if isinstance(layer, tf_keras.Model):
        raise check.inside(
            layer, "and is a nested model: build the network flat so that its layers can be checked"
        )
    module = type(layer).__module__
    if not module.startswith("tf_keras."):
        raise check.inside(
            layer,
            f"{_ONLY}, and {type(layer).__name__} is a layer class of your own ({module}): "
            "move it after the global average pooling, or build it from those layers",
        )
    if not _channels_last(layer):
        raise check.inside(layer, "and the sparse subgraph takes only channels_last layers")
    ranks = {t.shape.rank for t in node.keras_inputs}
    if isinstance(layer, L.Dense):
        raise LthError(
            f"{PREFIX}layer {layer.name!r} (Dense) comes before the global average pooling "
            f"{check.mean!r} that ends XNNPACK's sparse subgraph: pool first "
            "(GlobalAveragePooling2D), then Dense"
        )
    if isinstance(layer, Conv):
        _check_convolution(check, node, layer)
    elif isinstance(layer, L.ZeroPadding2D):
        consumers = check.graph.children(node)
        if not (
            len(consumers) == 1
            and isinstance(_inner(consumers[0].layer), _CONVS)
            and check.graph.fused_padding(consumers[0]) is not None
            and not (
                _inner(consumers[0].layer).padding == "same"
                and max(_inner(consumers[0].layer).strides) > 1
            )
        ):
            raise check.inside(
                layer,
                "and it feeds no single convolution with padding='valid' that it would fold "
                "into, so it stays a PAD, which the subgraph does not take: pad only right "
                "before a depthwise convolution with padding='valid'",
            )
    elif isinstance(layer, L.BatchNormalization):
        axes = [int(a) for a in np.atleast_1d(layer.axis)]
        if axes not in ([-1], [3]):
            raise check.inside(layer, "and takes batch norm over the channels (axis=-1) only")
    elif isinstance(layer, L.Activation | L.ReLU | L.ELU):
        problem = _activation_problem(layer)
        if problem is not None:
            raise check.inside(layer, f"and {problem}")
    elif isinstance(layer, L.Add | L.Multiply):
        if ranks != {4}:
            raise check.inside(layer, "which adds and multiplies only 4D feature maps")
    elif isinstance(layer, L.UpSampling2D):
        if layer.interpolation != "bilinear":
            raise check.inside(
                layer,
                f"which upsamples only bilinearly: use interpolation='bilinear', not "
                f"{layer.interpolation!r}",
            )
    elif isinstance(layer, _POOLS):
        raise check.inside(
            layer,
            "which downsamples only with stride-2 depthwise convolutions: use a "
            "DepthwiseConv2D 3x3, stride 2 (ZeroPadding2D(1) + padding='valid') instead",
        )
    elif isinstance(layer, L.Concatenate):
        raise check.inside(
            layer,
            "which joins branches only with Add or Multiply (XNNPACK's sparse path has no "
            "concatenation): add the branches instead",
        )
    elif isinstance(layer, _MERGES):
        raise check.inside(layer, "which joins branches only with Add or Multiply: use one")
    elif isinstance(layer, _RESHAPES):
        raise check.inside(
            layer,
            "which keeps 4D feature maps: remove it, or move it after the global average pooling",
        )
    elif not isinstance(layer, (*_FREE, L.LeakyReLU, L.Rescaling, L.GlobalAveragePooling2D)):
        raise check.inside(
            layer, f"{_ONLY}: move it after the global average pooling, or replace it"
        )


def _check_convolution(check: _Check, node, layer: Conv) -> None:
    name, kernel = layer.name, tuple(layer.kernel_size)
    if type(layer) is L.Conv2D:
        if kernel != (1, 1):
            size = kernel[0] if kernel in ((3, 3), (5, 5)) else 3
            raise check.inside(
                layer,
                "which takes only 1x1 convolutions and 3x3/5x5 depthwise ones: make it a "
                f"DepthwiseConv2D {size}x{size} + a 1x1 Conv2D",
            )
        if tuple(layer.strides) != (1, 1):
            raise check.inside(
                layer,
                "where 1x1 convolutions have stride 1: downsample with a stride-2 "
                "DepthwiseConv2D 3x3 before it instead",
            )
        if layer.groups != 1:
            raise check.inside(layer, "where 1x1 convolutions are not grouped: use groups=1")
        padding = _padding(check.graph, node, layer)
        if padding.pads != ((0, 0), (0, 0)):
            raise check.inside(
                layer,
                f"where 1x1 convolutions do not pad, and it {_describe_pads(padding.pads)} "
                f"({padding.how}): remove the padding",
            )
    elif isinstance(layer, L.DepthwiseConv2D | L.SeparableConv2D):
        if layer.depth_multiplier != 1:
            raise check.inside(layer, "where depthwise convolutions have depth_multiplier=1")
        if kernel not in ((3, 3), (5, 5)):
            raise check.inside(
                layer, "which takes only 3x3 and 5x5 depthwise convolutions: use kernel_size=3 or 5"
            )
        if tuple(layer.dilation_rate) != (1, 1):
            raise check.inside(
                layer, "which takes depthwise convolutions without dilation: use dilation_rate=1"
            )
        if tuple(layer.strides) not in ((1, 1), (2, 2)):
            raise check.inside(layer, "where depthwise convolutions have stride 1 or 2")
        label = f"layer {name!r} ({_describe(layer)})"
        problem = check.padding_problem(node, layer, label)
        if problem is not None:
            raise problem
    else:
        raise check.inside(
            layer,
            "which takes only 1x1 Conv2D and 3x3/5x5 DepthwiseConv2D or SeparableConv2D: "
            "replace it with those",
        )
    problem = _activation_problem(layer)
    if problem is not None:
        raise check.inside(layer, f"and {problem}")


# -- one_by_one_zero_fraction ------------------------------------------------------------------


def one_by_one_zero_fraction(model: tf_keras.Model, subgraph: SparseSubgraph) -> float:
    """The fraction of exactly-zero weights over the kernels of ``subgraph.one_by_one``
    together (a SeparableConv2D's pointwise kernel), in a plain model or inside TF-MOT wrappers
    (there the masked kernel, kernel * mask, is counted). 0.0 without 1x1 convolutions.

    >>> import tf_keras as k
    >>> x = k.Input((4, 4, 2)); y = k.layers.Conv2D(3, 1, name="c", kernel_initializer="zeros")(x)
    >>> one_by_one_zero_fraction(k.Model(x, y), SparseSubgraph("s", "m", ("c",)))
    1.0
    """
    layers: dict[str, tuple[tf_keras.layers.Layer, dict[str, tf.Variable]]] = {}
    for layer in model.layers:
        if isinstance(layer, PruneLowMagnitude):
            masks = {weight.name: mask for weight, mask, _ in layer.pruning_vars}
            layers[layer.layer.name] = (layer.layer, masks)
        else:
            layers.setdefault(layer.name, (layer, {}))
    zeros = total = 0
    for name in subgraph.one_by_one:
        if name not in layers:
            raise LthError(f"{PREFIX}no layer {name!r} in {model.name!r}")
        layer, masks = layers[name]
        kernel = layer.pointwise_kernel if isinstance(layer, L.SeparableConv2D) else layer.kernel
        values = np.asarray(kernel.numpy())
        if kernel.name in masks:
            values = values * masks[kernel.name].numpy()
        zeros += int(values.size - np.count_nonzero(values))
        total += int(values.size)
    return zeros / total if total else 0.0
