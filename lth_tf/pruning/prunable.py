"""Which layers of a tf_keras model IMP prunes, as which kind, and which models it refuses.

TF-MOT decides what can be pruned: its ``PruneRegistry`` names, per built-in layer class, the
weights its wrapper masks (``kernel`` of Dense and the convolutions, only ``pointwise_kernel`` of
SeparableConv1D/2D, nothing of DepthwiseConv2D). Here a layer is

- ``conv``: a convolution (any ``Conv`` subclass) with a weight TF-MOT prunes;
- ``fc``: a Dense layer (TF-MOT prunes its ``kernel``);
- ``output``: the conv or Dense layer producing the logits, found by walking back from the
  model's output through weightless one-input layers (Activation, Softmax, Flatten, Reshape,
  Dropout, global pooling...);
- left ``dense``: it has trainable kernels but TF-MOT prunes none as a conv or dense kernel
  (DepthwiseConv2D, Conv1DTranspose, a Dense subclass, Embedding, RNNs, custom layers...);
- nothing: no trainable weights, or only normalisation parameters (batch norm is never pruned).

>>> found = find_prunable(model)  # doctest: +SKIP
>>> found.kinds  # doctest: +SKIP
{'conv1': 'conv', 'sep': 'conv', 'head': 'output'}
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator

import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer
from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf.errors import LthError

KERAS_3_MESSAGE = (
    "this is a Keras 3 model; TF-MOT needs Keras 2: build it with tf_keras "
    "(`import tf_keras as keras`) and save it from there"
)
# Normalisation parameters are scales and shifts, not connections: never pruned, not listed.
_NORMALIZATION = (
    tf_keras.layers.BatchNormalization,
    tf_keras.layers.LayerNormalization,
    tf_keras.layers.GroupNormalization,
)
# Activations whose outputs are neither logits nor softmax probabilities: the multi-class
# cross-entropy of either reading would be wrong.
_SQUASHING = {"sigmoid", "hard_sigmoid", "tanh", "softsign"}


@dataclasses.dataclass(frozen=True)
class Prunable:
    """What :func:`find_prunable` found: ``kinds`` (layer name -> ``conv``/``fc``/``output``),
    ``weights`` (layer name -> the attributes TF-MOT prunes, e.g. ``('pointwise_kernel',)``) and
    ``dense`` (names of layers with kernels that stay dense, in model order)."""

    kinds: dict[str, str]
    weights: dict[str, tuple[str, ...]]
    dense: list[str]


def check_model(model: object) -> None:
    """Refuses, with one line, a model TF-MOT cannot wrap: Keras 3, subclassed, unbuilt,
    nested or with several outputs. Shared layers are fine (one wrapper, one mask, every call).

    >>> check_model(tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)]))
    """
    keras3 = sys.modules.get("keras")
    keras3_model = getattr(keras3, "Model", None)
    if (
        isinstance(keras3_model, type)
        and isinstance(model, keras3_model)
        and not isinstance(model, tf_keras.Model)
    ):
        raise LthError(KERAS_3_MESSAGE)
    if not isinstance(model, tf_keras.Model):
        raise LthError(f"expected a tf_keras model, got {type(model).__name__}")
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, tf_keras.Sequential):
            raise LthError(
                f"Sequential model {model.name!r} is not built: start it with "
                "keras.Input(shape=...) so that TF-MOT can clone it"
            )
        raise LthError(
            "TF-MOT wraps only Sequential and functional tf_keras models; "
            f"{type(model).__name__} {model.name!r} is subclassed: rebuild it as "
            "keras.Model(inputs, outputs) from its layers"
        )
    if len(model.outputs) != 1:
        raise LthError(
            f"model {model.name!r} has {len(model.outputs)} outputs; IMP trains one "
            "classification output: build a model with only the logits (or softmax) output"
        )
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            # TF-MOT would clone the inner model apart from the outer one, with its own
            # wrappers; flat models keep one name and one mask per weight.
            raise LthError(
                f"layer {layer.name!r} of {model.name!r} is itself a model, which TF-MOT does "
                f"not wrap inside another: flatten it, calling the layers of {layer.name!r} on "
                f"the outer model's tensors instead of {layer.name!r} itself"
            )


def _pruned_weights(layer: tf_keras.layers.Layer) -> tuple[str, ...]:
    """The weights TF-MOT's wrapper masks in a conv or Dense ``layer`` (attribute names), or ()."""
    if not isinstance(layer, Conv | tf_keras.layers.Dense):
        return ()
    if isinstance(layer, PrunableLayer):  # a custom layer that names its own prunable weights
        prunable = {id(weight) for weight in layer.get_prunable_weights()}
        return tuple(name for name, value in vars(layer).items() if id(value) in prunable)
    if not PruneRegistry.supports(layer):  # exact classes only: a subclass of Dense is not
        return ()
    # Conv and Dense classes are plain registry entries (not RNNs or attention).
    return tuple(PruneRegistry._weight_names(layer))


def _backwards_from_output(model: tf_keras.Model) -> Iterator[tf_keras.layers.Layer]:
    """The layers from the model's output back through weightless one-input layers, ending
    with the first layer that has weights or several inputs (all of them yielded)."""
    layer, node_index, _ = model.outputs[0]._keras_history
    while True:
        yield layer
        inputs = layer._inbound_nodes[node_index].keras_inputs
        if layer.weights or len(inputs) != 1:
            return
        layer, node_index, _ = inputs[0]._keras_history


def find_prunable(model: tf_keras.Model) -> Prunable:
    """The layers of ``model`` IMP prunes, by kind, and those that stay dense.

    >>> model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, name="a"),
    ...                              tf_keras.layers.Dense(2, name="b")])
    >>> find_prunable(model).kinds
    {'a': 'fc', 'b': 'output'}
    """
    check_model(model)
    kinds, weights, dense = {}, {}, []
    for layer in model.layers:
        names = _pruned_weights(layer)
        if names:
            kinds[layer.name] = "fc" if isinstance(layer, tf_keras.layers.Dense) else "conv"
            weights[layer.name] = names
        elif layer.trainable_weights and not isinstance(layer, _NORMALIZATION):
            dense.append(layer.name)
    last = list(_backwards_from_output(model))[-1]
    if last.name in kinds:
        kinds[last.name] = "output"
    return Prunable(kinds, weights, dense)


def _activation_name(layer: tf_keras.layers.Layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return None if activation is None else getattr(activation, "__name__", str(activation))


def outputs_probabilities(model: tf_keras.Model) -> bool:
    """True when ``model`` ends in a softmax (a layer's ``activation="softmax"``, an
    ``Activation("softmax")`` or a ``Softmax`` layer), False for logits; a sigmoid or other
    squashing output is refused.

    >>> head = tf_keras.layers.Dense(3, activation="softmax")
    >>> outputs_probabilities(tf_keras.Sequential([tf_keras.Input((4,)), head]))
    True
    """
    check_model(model)
    for layer in _backwards_from_output(model):
        if isinstance(layer, tf_keras.layers.Softmax):
            return True
        name = _activation_name(layer)
        if name == "softmax":
            return True
        if name in _SQUASHING:
            raise LthError(
                f"model {model.name!r} ends in a {name} ({layer.name!r}): multi-class "
                "cross-entropy needs logits or softmax probabilities; end it in a linear or "
                "softmax layer"
            )
        if name not in (None, "linear"):
            # Another activation (relu...) applied to the logits: they stay logits.
            return False
    return False
