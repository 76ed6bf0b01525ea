"""Channel tickets (``--granularity=channel``): which output channels must go together, and masks
that prune whole channels.

The unit of pruning is one output channel of a convolution (Conv1D/2D/3D, the pointwise kernel of
SeparableConv) or one unit of a hidden Dense layer; the layer producing the scores keeps all of
its units. Channels that the functional graph ties together form one *group*, ranked and pruned
as one (what Torch-Pruning's dependency graph does for PyTorch):

- the operands of Add, Subtract, Multiply, Average, Maximum and Minimum (transitively, so a
  ResNet's or MobileNet's residual chain is one group);
- Concatenate along the channels (each operand's group keeps its offset);
- layers that keep channels: batch norm, activations with f(0) = 0, Dropout, pooling, padding,
  cropping, upsampling and ``DepthwiseConv2D`` (depth multiplier 1), whose slice goes with its
  channel;
- ``Flatten`` -> ``Dense``: the Dense rows of a channel at every spatial position.

A group whose channels reach anything else (Reshape, Permute, a custom layer, a layer shared
between calls, an activation with f(0) != 0 such as sigmoid, the model's output...) keeps all its
channels: a pruned channel must be exactly 0 wherever it goes, and only these layers are known to
keep it 0. Such layers are listed once in the log.

The masks are still TF-MOT's kernel masks, only their shape is whole channels; a pruned channel's
bias and the batch-norm γ and β (and depthwise slices) that follow it are masked too
(:meth:`ChannelPlan.channel_masks`), so its output is exactly 0 before and after the activation.

>>> plan = channel_plan(model, find_prunable(model))  # doctest: +SKIP
>>> [group.producers for group in plan.prunable]  # doctest: +SKIP
[('stem', 'pointwise'), ('hidden',)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf.pruning.masks import global_masks, magnitude_mask, random_masks
from lth_tf.pruning.prunable import Prunable

L = tf_keras.layers
# f(0) = 0: a pruned (zero) channel stays exactly zero through these activations.
ZERO_PRESERVING = {
    "linear", "relu", "relu6", "elu", "selu", "tanh", "swish", "silu", "gelu", "leaky_relu",
    "softsign", "mish", "hard_swish", "hard_silu",
}  # fmt: skip
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Keep channels and hold no per-channel parameter: a zero channel stays zero.
_PASS_THROUGH = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.ActivityRegularization,
)  # fmt: skip
# Elementwise and parameter-free: also fine between Flatten and Dense.
_ELEMENTWISE = (L.Dropout, L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.ActivityRegularization)
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The channels of a tensor: ``segments`` of (group index, channel count), in order (several
    after a Concatenate); ``positions`` > 1 after a Flatten: channel c at spatial position p is
    element ``p * channels + c``."""

    segments: tuple[tuple[int, int], ...]
    positions: int = 1

    @property
    def channels(self) -> int:
        return sum(size for _, size in self.segments)

    def kept(self, keep: list[np.ndarray]) -> np.ndarray:
        """Indices of this tensor's last axis that survive, given each group's kept channels.

        >>> Layout(((0, 2), (1, 3))).kept([np.array([1]), np.array([0, 2])]).tolist()
        [1, 2, 4]
        """
        offsets = np.cumsum([0] + [size for _, size in self.segments])[:-1]
        pieces = zip(self.segments, offsets, strict=True)
        per_position = np.concatenate([offset + keep[g] for (g, _), offset in pieces])
        per_position = per_position.astype(np.int64)
        return (np.arange(self.positions)[:, None] * self.channels + per_position).reshape(-1)

    def alive(self, alive: list[np.ndarray]) -> np.ndarray:
        """This tensor's 0/1 channel vector (before any Flatten), from each group's."""
        return np.concatenate([alive[group] for group, _ in self.segments])


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned as one: ``producers`` (layers, in model order) whose output channel c is
    the group's channel c, the ``kernels`` they are pruned by (``conv1/kernel``), the channel
    count, and ``whole``: why it keeps every channel (``None``: it is pruned)."""

    producers: tuple[str, ...]
    kernels: tuple[str, ...]
    size: int
    whole: str | None = None


@dataclasses.dataclass(frozen=True)
class ChannelPlan:
    """What :func:`channel_plan` found: every group, each layer's input layout (what shrinking
    slices its input side by) and output layout, and the variables masked with their channels
    (``channel_variables``: variable key -> (layout, axis))."""

    groups: tuple[ChannelGroup, ...]
    inputs: dict[str, Layout]
    outputs: dict[str, Layout]
    channel_variables: dict[str, tuple[Layout, int]]

    @property
    def prunable(self) -> list[int]:
        """Indices of the groups IMP prunes."""
        return [i for i, g in enumerate(self.groups) if g.whole is None and g.producers]

    @property
    def whole_layers(self) -> dict[str, str]:
        """Channel-prunable layers left whole, and why (for the log)."""
        return {
            layer: group.whole
            for group in self.groups
            if group.whole is not None
            for layer in group.producers
        }

    def alive(self, masks: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each group's 0/1 channel vector, read off its first producer's kernel mask."""
        out = []
        for index, group in enumerate(self.groups):
            if index in self.prunable:
                mask = masks[group.kernels[0]]
                out.append((mask.reshape(-1, group.size).max(axis=0) > 0).astype(np.float32))
            else:
                out.append(np.ones(group.size, np.float32))
        return out

    def kernel_masks(
        self, alive: list[np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """``masks`` with every prunable group's kernels set to its channel vector in ``alive``."""
        out = dict(masks)
        for index in self.prunable:
            for kernel in self.groups[index].kernels:
                shape = masks[kernel].shape
                out[kernel] = np.broadcast_to(alive[index], shape).astype(masks[kernel].dtype)
        return out

    def channel_masks(
        self, masks: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
    ) -> dict[str, np.ndarray]:
        """The masks of the biases, batch-norm γ/β and depthwise slices of pruned channels
        (variable key -> 0/1 array of ``shapes[key]``), from the kernel ``masks``."""
        alive = self.alive(masks)
        out = {}
        for name, (layout, axis) in self.channel_variables.items():
            vector = layout.alive(alive)
            shape = [1] * len(shapes[name])
            shape[axis] = -1
            out[name] = np.broadcast_to(vector.reshape(shape), shapes[name]).astype(np.float32)
        return out

    def surviving(self, masks: dict[str, np.ndarray], kinds: dict[str, str]) -> dict[str, int]:
        """Surviving channels per layer kind, summed over the channel-prunable layers
        (``kinds``: kernel key -> kind, as :attr:`PrunedModel.kinds`)."""
        alive = self.alive(masks)
        counts: dict[str, int] = {}
        for index, group in enumerate(self.groups):
            for kernel in group.kernels:
                kind = kinds[kernel]
                counts[kind] = counts.get(kind, 0) + int(alive[index].sum())
        return counts

    def magnitude_masks(
        self,
        weights: dict[str, np.ndarray],
        previous: dict[str, np.ndarray],
        sparsities: dict[str, float],
        scope: str,
    ) -> dict[str, np.ndarray]:
        """IMP's next masks, channel by channel: each group keeps the channels of largest
        score (the mean magnitude of their kernel slices, over every producer of the group),
        ``layerwise`` at the group's sparsity (the lowest of its layers') or ``global`` over
        all pruned groups' channels. Exact counts, ties to the earlier channel, nested; under
        ``global`` a group never loses its last channel."""
        alive = self.alive(previous)
        scores, targets = {}, {}
        for index in self.prunable:
            group = self.groups[index]
            slices = [np.abs(weights[k]).reshape(-1, group.size) for k in group.kernels]
            total = sum(values.sum(axis=0) for values in slices)
            rows = sum(weights[k].size // group.size for k in group.kernels)
            scores[index] = total / rows
            targets[index] = min(sparsities[k] for k in group.kernels)
        new_alive = list(alive)
        if scope == "global":
            pooled = [i for i in self.prunable if targets[i] > 0]
            if pooled:
                kept = global_masks(
                    {str(i): scores[i] for i in pooled},
                    {str(i): alive[i] for i in pooled},
                    targets[pooled[0]],
                )
                for i in pooled:
                    new_alive[i] = kept[str(i)]
                    if not new_alive[i].any():
                        # A group without channels would cut the network in two: it keeps
                        # its best channel (one over the network-wide count).
                        best = np.where(alive[i] > 0, scores[i], -1.0).argmax()
                        new_alive[i][best] = 1
        else:
            for i in self.prunable:
                new_alive[i] = magnitude_mask(scores[i], alive[i], targets[i])
        return self.kernel_masks(new_alive, previous)

    def random_masks(
        self,
        previous: dict[str, np.ndarray],
        parent: dict[str, np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """The random-pruning control: as many channels per group as ``parent`` keeps, chosen
        uniformly among the survivors of ``previous`` (nested)."""
        alive, parent_alive = self.alive(previous), self.alive(parent)
        names = [str(i) for i in self.prunable]
        kept = random_masks(
            {n: alive[int(n)] for n in names},
            {n: int(parent_alive[int(n)].sum()) for n in names},
            rng,
        )
        new_alive = list(alive)
        for name in names:
            new_alive[int(name)] = kept[name]
        return self.kernel_masks(new_alive, previous)


class _Groups:
    """Union-find over channel groups, each with its producers, size and why it stays whole."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.producers: list[list[str]] = []
        self.whole: list[str | None] = []

    def new(self, size: int, producer: str | None = None, whole: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.producers.append([producer] if producer else [])
        self.whole.append(whole)
        return len(self.parent) - 1

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.producers[a] += self.producers[b]
            self.whole[a] = self.whole[a] or self.whole[b]

    def fix(self, layout: Layout, reason: str) -> None:
        for group, _ in layout.segments:
            root = self.find(group)
            self.whole[root] = self.whole[root] or reason


def _activation(layer: tf_keras.layers.Layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return None if activation is None else getattr(activation, "__name__", str(activation))


def _keeps_zero(layer: tf_keras.layers.Layer) -> bool:
    """Whether the layer's own activation (if any) maps 0 to 0."""
    name = _activation(layer)
    return name is None or name in ZERO_PRESERVING


def _channels_last(layer: tf_keras.layers.Layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _follows_channels(layer: tf_keras.layers.Layer, rank: int) -> bool:
    """Whether ``layer`` keeps its input's channels and a zero channel zero."""
    if isinstance(layer, L.BatchNormalization):
        return list(layer.axis) in ([rank - 1], [-1])
    if isinstance(layer, L.DepthwiseConv2D | L.DepthwiseConv1D):
        return layer.depth_multiplier == 1 and _channels_last(layer) and _keeps_zero(layer)
    if isinstance(layer, L.Activation):
        return _activation(layer) in ZERO_PRESERVING
    if isinstance(layer, L.ReLU):
        return float(layer.threshold) == 0.0
    if isinstance(layer, L.LeakyReLU | L.ELU):
        return True
    return isinstance(layer, _PASS_THROUGH) and _channels_last(layer)


def _producer_problem(layer: tf_keras.layers.Layer, pruned: tuple[str, ...]) -> str | None:
    """Why a conv or Dense layer TF-MOT prunes cannot have its output channels pruned."""
    if isinstance(layer, _TRANSPOSED) or pruned not in (("kernel",), ("pointwise_kernel",)):
        return f"{type(layer).__name__} is not channel-pruned"
    if isinstance(layer, Conv) and (not _channels_last(layer) or layer.groups != 1):
        return "a grouped or channels_first convolution"
    if not _keeps_zero(layer):
        name = _activation(layer)
        if name in tf_keras.activations.__dict__:
            return f"its activation {name}(0) != 0"
        return f"its activation {name} is not one known to map 0 to 0"
    return None


def _history(tensor: tf.Tensor) -> tuple[int, int, int]:
    layer, node_index, tensor_index = tensor._keras_history
    return id(layer), node_index, tensor_index


def channel_plan(model: tf_keras.Model, prunable: Prunable) -> ChannelPlan:
    """The channel groups of ``model`` (a Sequential or functional tf_keras model).

    >>> import tf_keras as k
    >>> from lth_tf.pruning.prunable import find_prunable
    >>> x = k.Input((8, 8, 3)); a = k.layers.Conv2D(4, 3, name="a")(x)
    >>> b = k.layers.Conv2D(4, 1, name="b")(a); y = k.layers.Add()([a, b])
    >>> out = k.layers.Dense(2, name="out")(k.layers.Flatten()(y))
    >>> model = k.Model(x, out)
    >>> [g.producers for g in channel_plan(model, find_prunable(model)).groups if g.producers]
    [('a', 'b')]
    """
    groups = _Groups()
    layouts: dict[tuple[int, int, int], Layout] = {}
    inputs: dict[str, Layout] = {}
    outputs: dict[str, Layout] = {}
    calls: dict[int, int] = {}
    nodes = [
        node
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
    ]
    for node in nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    channel_variables: dict[str, tuple[Layout, int]] = {}
    followers: list[tuple[tf_keras.layers.Layer, Layout]] = []
    producers: list[tf_keras.layers.Layer] = []

    def fixed_output(shape: tf.TensorShape, reason: str, producer: str | None = None) -> Layout:
        channels = int(shape[-1]) if shape.rank and shape[-1] is not None else 0
        return Layout(((groups.new(channels, producer, reason), channels),))

    for node in nodes:
        layer = node.layer
        outs = tf.nest.flatten(node.outputs)
        ins = [layouts[_history(t)] for t in node.keras_inputs]
        shapes = [t.shape for t in node.keras_inputs]
        name, kind = layer.name, prunable.kinds.get(layer.name)
        where = f"reaches {name} ({type(layer).__name__})"
        out: Layout | None = None
        if not ins:  # an Input layer
            out = fixed_output(outs[0].shape, "its channels meet the model's input")
        elif len(outs) != 1 or calls[id(layer)] > 1:
            reason = "called more than once" if calls[id(layer)] > 1 else where
            for layout in ins:
                groups.fix(layout, reason)
            producer = name if kind in ("conv", "fc") else None
            out = fixed_output(outs[0].shape, reason, producer)
        elif kind is not None and len(ins) == 1:
            layout = ins[0]
            flat_ok = isinstance(layer, L.Dense)
            if layout.positions > 1 and not flat_ok:
                groups.fix(layout, where)
            inputs[name] = layout
            problem = _producer_problem(layer, prunable.weights[name])
            size = int(outs[0].shape[-1])
            if problem is not None and not problem.startswith("its activation"):
                groups.fix(layout, where)  # its input side is not sliced channel by channel
            if kind == "output":
                out = fixed_output(outs[0].shape, "the model's output layer")
            elif problem is not None:
                out = fixed_output(outs[0].shape, problem, name)
            else:
                group = groups.new(size, name)
                producers.append(layer)
                out = Layout(((group, size),))
        elif len(ins) == 1 and ins[0].positions == 1 and _follows_channels(layer, shapes[0].rank):
            inputs[name] = out = ins[0]
            followers.append((layer, ins[0]))
        elif len(ins) == 1 and isinstance(layer, _ELEMENTWISE) and _follows_channels(layer, 2):
            inputs[name] = out = ins[0]
        elif isinstance(layer, L.Flatten) and len(ins) == 1 and _channels_last(layer):
            positions = math.prod(int(d) for d in shapes[0][1:-1]) if shapes[0].rank > 2 else 1
            layout = ins[0]
            inputs[name] = out = Layout(layout.segments, layout.positions * positions)
        elif isinstance(layer, _MERGES) and _same_boundaries(ins):
            for layout in ins[1:]:
                for (a, _), (b, _) in zip(ins[0].segments, layout.segments, strict=True):
                    groups.union(a, b)
            out = ins[0]
        elif (
            isinstance(layer, L.Concatenate)
            and layer.axis in (-1, shapes[0].rank - 1)
            and all(layout.positions == 1 for layout in ins)
        ):
            out = Layout(tuple(segment for layout in ins for segment in layout.segments))
        else:
            for layout in ins:
                groups.fix(layout, where)
            out = fixed_output(outs[0].shape, where)
        outputs[name] = out
        layouts[_history(outs[0])] = out
    for tensor in model.outputs:
        groups.fix(layouts[_history(tensor)], "reaches the model's output")

    # Renumber the roots 0..n-1, in order of first appearance.
    roots: dict[int, int] = {}
    for index in range(len(groups.parent)):
        roots.setdefault(groups.find(index), len(roots))

    def renumber(layout: Layout) -> Layout:
        segments = tuple((roots[groups.find(g)], size) for g, size in layout.segments)
        return Layout(segments, layout.positions)

    order = {layer.name: i for i, layer in enumerate(model.layers)}
    final = []
    for root in roots:
        names = tuple(sorted(groups.producers[root], key=order.get))
        kernels = tuple(_key(getattr(model.get_layer(n), prunable.weights[n][0])) for n in names)
        final.append(ChannelGroup(names, kernels, groups.size[root], groups.whole[root]))
    inputs = {n: renumber(layout) for n, layout in inputs.items()}
    outputs = {n: renumber(layout) for n, layout in outputs.items()}
    prunable_groups = {i for i, g in enumerate(final) if g.whole is None and g.producers}

    def touches(layout: Layout) -> bool:
        return any(group in prunable_groups for group, _ in layout.segments)

    for layer in producers:
        layout = outputs[layer.name]
        if touches(layout) and getattr(layer, "bias", None) is not None:
            channel_variables[_key(layer.bias)] = (layout, 0)
    for layer, layout in followers:
        layout = renumber(layout)
        if not touches(layout):
            continue
        # The moving mean too: a batch norm without γ (scale=False) maps 0 to -mean/σ + β.
        for attribute in ("gamma", "beta", "moving_mean", "bias"):
            variable = getattr(layer, attribute, None)
            if variable is not None:
                channel_variables[_key(variable)] = (layout, 0)
        if isinstance(layer, L.DepthwiseConv2D | L.DepthwiseConv1D):
            kernel = layer.depthwise_kernel
            channel_variables[_key(kernel)] = (layout, len(kernel.shape) - 2)
    return ChannelPlan(tuple(final), inputs, outputs, channel_variables)


def _same_boundaries(layouts: Iterable[Layout]) -> bool:
    layouts = list(layouts)
    first = layouts[0]
    return all(
        layout.positions == first.positions
        and [size for _, size in layout.segments] == [size for _, size in first.segments]
        for layout in layouts
    )


def _key(variable: tf.Variable) -> str:
    return variable.name.rsplit(":", 1)[0]
