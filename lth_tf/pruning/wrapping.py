"""Wrap a Keras model in TF-MOT pruning wrappers and reach the variables IMP works on.

Everything is keyed by variable name without the ``:0`` suffix (``fc1/kernel``), which is also
the key in ``masks.npz`` and in every weight snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude,
)
from tensorflow_model_optimization.sparsity import keras as sparsity

from lth_tf.config import PruneRates
from lth_tf.errors import LthError
from lth_tf.pruning.channels import ChannelPlan, channel_plan
from lth_tf.pruning.prunable import Prunable, find_prunable
from lth_tf.pruning.schedule import IterativeSparsity
from lth_tf.pruning.shrink import check_rebuildable

Snapshot = dict[str, np.ndarray]
logger = logging.getLogger("lth_tf")

try:  # TensorFlow's internal autograph switch; without it, wrapping only takes longer.
    from tensorflow.python.autograph.core import ag_ctx

    def _autograph_off() -> contextlib.AbstractContextManager:
        return ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED)

except ImportError:  # pragma: no cover - another TensorFlow layout
    _autograph_off = contextlib.nullcontext


def variable_key(variable: tf.Variable) -> str:
    """``dense/kernel:0`` -> ``dense/kernel``."""
    return variable.name.rsplit(":", 1)[0]


@dataclasses.dataclass
class PrunedModel:
    """A model inside TF-MOT pruning wrappers, with handles on the variables IMP touches.

    ``weights`` and ``masks`` share keys (the prunable kernels); ``rewindable`` is every model
    variable except the wrappers' own bookkeeping (masks, thresholds, step counters), so biases
    and normalisation statistics are rewound with the kernels. ``unwrapped`` is the model the
    wrappers were put around: the same layer objects, so the same variables, without the
    wrappers' per-call re-masking (see :class:`lth_tf.training.trainer.Trainer` for why that is
    safe).
    ``layers`` names each prunable weight's layer (``sep/pointwise_kernel`` -> ``sep``), for
    per-layer rates (:meth:`lth_tf.config.PruneRates.for_layer`).

    With ``--granularity=channel``, ``channels`` is the model's
    :class:`~lth_tf.pruning.channels.ChannelPlan` and ``channel_masks`` masks the biases,
    batch-norm parameters and depthwise slices of pruned channels (key: the variable's), kept
    in step with the kernel masks by :meth:`set_masks`; they mask values and gradients as the
    kernel masks do.
    """

    model: tf_keras.Model
    wrappers: list[PruneLowMagnitude]
    weights: dict[str, tf.Variable]
    masks: dict[str, tf.Variable]
    kinds: dict[str, str]
    rewindable: dict[str, tf.Variable]
    unwrapped: tf_keras.Model
    layers: dict[str, str] = dataclasses.field(default_factory=dict)
    channels: ChannelPlan | None = None
    channel_masks: dict[str, tf.Variable] = dataclasses.field(default_factory=dict)

    @property
    def masked(self) -> list[tuple[tf.Variable, tf.Variable]]:
        """Every (variable, mask) pair: the prunable kernels, then the channel-masked others."""
        pairs = [(self.weights[name], mask) for name, mask in self.masks.items()]
        return pairs + [(self.rewindable[name], m) for name, m in self.channel_masks.items()]

    @property
    def schedules(self) -> dict[str, IterativeSparsity]:
        return {
            variable_key(weight): wrapper.pruning_schedule
            for wrapper in self.wrappers
            for weight, _, _ in wrapper.pruning_vars
        }

    def set_round(self, pruning_round: int) -> None:
        """Points every wrapper's schedule at ``pruning_round`` and restarts its step counter."""
        for wrapper in self.wrappers:
            wrapper.pruning_schedule.pruning_round = pruning_round
            # The wrapper increments, then asserts the counter is >= 1 on every training call.
            wrapper.pruning_step.assign(0)

    def allow_wrapped_training_calls(self) -> None:
        """Lets the wrapped model itself train (TF-MOT's per-call re-masking, for comparison):
        each wrapper counts its calls and refuses a training call before its first step."""
        for wrapper in self.wrappers:
            wrapper.pruning_step.assign(max(int(wrapper.pruning_step.numpy()), 0))

    def target_sparsities(self) -> dict[str, float]:
        """Each prunable weight's sparsity for the current round, as its schedule says."""
        return {name: schedule.sparsity for name, schedule in self.schedules.items()}

    def get_masks(self) -> Snapshot:
        return snapshot(self.masks)

    def set_masks(self, masks: Snapshot) -> None:
        restore(self.masks, masks)
        if self.channels is not None:
            shapes = {name: tuple(mask.shape) for name, mask in self.channel_masks.items()}
            restore(self.channel_masks, self.channels.channel_masks(masks, shapes))

    def apply_masks(self) -> None:
        """Zeroes pruned weights (an optimizer step or an assignment may have revived them)."""
        for weight, mask in self.masked:
            weight.assign(weight * mask)

    def pruned_nonzero(self) -> int:
        """How many pruned positions hold a non-zero weight (0 whenever masking is right)."""
        return sum(
            int(np.count_nonzero(weight.numpy()[mask.numpy() == 0])) for weight, mask in self.masked
        )

    def rewind_to(self, point: Snapshot) -> None:
        """Sets every rewindable variable to ``point``, pruned positions to exactly zero."""
        masks = self.get_masks() | snapshot(self.channel_masks)
        for name, variable in self.rewindable.items():
            value = point[name]
            if name in masks:
                value = value * masks[name]
            variable.assign(value)


def check_wrappable(model: tf_keras.Model, rates: PruneRates) -> Prunable:
    """The model's prunable layers; a model TF-MOT cannot wrap, or a rate for a layer it does
    not have, is a user error (checked before an experiment directory is made)."""
    found = find_prunable(model)
    if not found.kinds:
        raise LthError(
            f"model {model.name!r} has no layer TF-MOT prunes (a convolution or Dense layer); "
            "IMP needs at least one: add one, or use another model"
        )
    unknown = sorted(set(dict(rates.layers)) - set(found.kinds))
    if unknown:
        raise LthError(
            f"--prune_rates: {', '.join(unknown)}: no prunable layer of {model.name!r} has "
            f"that name; its prunable layers are {', '.join(found.kinds) or 'none'}"
        )
    return found


_SAID_DENSE: set[str] = set()


def wrap_model(
    model: tf_keras.Model, rates: PruneRates, granularity: str = "weight"
) -> PrunedModel:
    """Wraps every prunable layer (:func:`lth_tf.pruning.prunable.find_prunable`) with
    ``prune_low_magnitude`` and its rate (its own if ``rates`` names it, else its kind's).
    ``granularity="channel"`` adds the model's channel plan and channel masks.

    The wrapped model shares its layers' variables with ``model``; a layer called at several
    places gets one wrapper, so one mask for all of them. Build and wrap inside the
    distribution strategy's scope.

    >>> conv2 = get_model("conv2").build((32, 32, 3), 10)  # doctest: +SKIP
    >>> wrap_model(conv2, PruneRates(conv=0.1, fc=0.2)).kinds["conv1/kernel"]  # doctest: +SKIP
    'conv'
    """
    found = check_wrappable(model, rates)
    dense = ", ".join(f"{name} ({type(model.get_layer(name)).__name__})" for name in found.dense)
    # Said once per process: an export wraps the ticket and the dense round 0 alike.
    if dense and dense not in _SAID_DENSE:
        _SAID_DENSE.add(dense)
        logger.info(
            "%d layer(s) stay dense, TF-MOT prunes no conv or dense kernel of them: %s",
            len(found.dense),
            dense,
        )

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        kind = found.kinds.get(layer.name)
        if kind is None:
            return layer
        schedule = IterativeSparsity(rate=rates.for_layer(layer.name, kind))
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

    # Keras runs each wrapper's call once here to connect the layers, converting TF-MOT's call
    # with autograph first: 0.5 s a run (lenet300_100) for code that needs no conversion (it
    # is plain graph code; a tf.function that calls the model later still converts it).
    with _autograph_off():
        wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    wrappers = [layer for layer in wrapped.layers if isinstance(layer, PruneLowMagnitude)]
    weights, masks, kinds, layers, bookkeeping = {}, {}, {}, {}, set()
    for wrapper in wrappers:
        bookkeeping.add(id(wrapper.pruning_step))
        for weight, mask, threshold in wrapper.pruning_vars:
            name = variable_key(weight)
            weights[name], masks[name] = weight, mask
            kinds[name], layers[name] = found.kinds[wrapper.layer.name], wrapper.layer.name
            bookkeeping.update((id(mask), id(threshold)))
    rewindable = {variable_key(v): v for v in wrapped.variables if id(v) not in bookkeeping}
    if len(rewindable) != len([v for v in wrapped.variables if id(v) not in bookkeeping]):
        raise ValueError("variable names are not unique; give every layer a distinct name")
    plan, channel_masks = None, {}
    if granularity == "channel":
        check_rebuildable(model)
        plan = channel_plan(model, found)
        _log_whole_layers(plan, model)
        _warn_group_rates(plan, found, rates)
        channel_masks = {
            name: tf.Variable(np.ones(rewindable[name].shape, np.float32), trainable=False)
            for name in plan.channel_variables
        }
    return PrunedModel(
        wrapped, wrappers, weights, masks, kinds, rewindable, unwrapped=model, layers=layers,
        channels=plan, channel_masks=channel_masks,
    )  # fmt: skip


def _warn_group_rates(plan: ChannelPlan, found: Prunable, rates: PruneRates) -> None:
    """A warning for each group whose layers were given different rates: its channels go
    together, so the group prunes at the lowest of them."""
    for index in plan.prunable:
        producers = plan.groups[index].producers
        layer_rates = {name: rates.for_layer(name, found.kinds[name]) for name in producers}
        if len(set(layer_rates.values())) > 1:
            lowest = min(layer_rates.values())
            logger.warning(
                "--granularity=channel: %s share their channels (one pruning group), so all "
                "of them prune at the lowest of their rates, %g, not at %s",
                ", ".join(producers),
                lowest,
                ", ".join(f"{n}={r:g}" for n, r in layer_rates.items() if r != lowest),
            )


def _log_whole_layers(plan: ChannelPlan, model: tf_keras.Model) -> None:
    """One line listing the layers whose channels all stay, and why."""
    whole = plan.whole_layers
    if whole:
        logger.info(
            "%d layer(s) keep all their channels (--granularity=channel prunes only channels "
            "that stay exactly zero wherever they go): %s",
            len(whole),
            "; ".join(f"{name} ({why})" for name, why in whole.items()),
        )
    if not plan.prunable:
        logger.warning(
            "--granularity=channel: no channel of %r can be pruned; every round keeps the "
            "dense network",
            model.name,
        )


def snapshot(variables: dict[str, tf.Variable]) -> Snapshot:
    """NumPy copies (the variables themselves keep changing)."""
    return {name: np.array(variable.numpy()) for name, variable in variables.items()}


def restore(variables: dict[str, tf.Variable], values: Snapshot) -> None:
    """Assigns ``values`` by name, once :func:`check_restorable` finds them all fit."""
    check_restorable(variables, values)
    for name, variable in variables.items():
        variable.assign(values[name])


def check_restorable(
    variables: dict[str, tf.Variable], values: Snapshot, exact_dtype: bool = False
) -> None:
    """A KeyError or ValueError for the first variable that ``values`` lacks, or holds in
    another shape or another kind of number (integers for a float variable would be cast
    silently); ``exact_dtype``: or another width (float16 for float32), for values saved from
    these very variables."""
    for name, variable in variables.items():
        if name not in values:
            raise KeyError(f"no saved value for variable {name!r}")
        value = np.asarray(values[name])
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"saved {name!r} has shape {value.shape}, the model's is {variable.shape}"
            )
        wanted = np.dtype(variable.dtype.as_numpy_dtype)
        if value.dtype != wanted if exact_dtype else value.dtype.kind != wanted.kind:
            raise ValueError(
                f"saved {name!r} holds {value.dtype} values, the model's are {variable.dtype.name}"
            )
