"""One way to build a run: the network (model, weight decay, TF-MOT wrappers) and its trainer.

IMP, the stability analysis, export, the benchmark and the tests all build here. That is what
makes a stability copy 0 the experiment's own training bit for bit: both come out of
:func:`build_run` with the same hyperparameters, so they start from the same initial weights
and train with the same step.

>>> run = build_run(hparams, data)  # doctest: +SKIP
>>> run.trainer.evaluate(0).val_accuracy  # doctest: +SKIP
0.1
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras

from lth_tf.config import ExperimentHparams
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.models import ModelSpec, get_model
from lth_tf.models.layers import add_weight_decay, initialise_batch_norm
from lth_tf.models.registry import MODELS, check_input_shape
from lth_tf.pruning.wrapping import PrunedModel, Snapshot, snapshot, variable_key, wrap_model
from lth_tf.pruning.xnnpack import symmetric_padding
from lth_tf.steps import iterations_per_epoch
from lth_tf.training.precision import mixed_precision_policy
from lth_tf.training.trainer import Trainer


@dataclasses.dataclass
class Run:
    """A built run: the wrapped network and the trainer that trains it (``trainer.strategy``)."""

    pruned: PrunedModel
    trainer: Trainer


def build_registered(
    spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int
) -> tf_keras.Model:
    """``spec.build``; for the registry's own nets, examples they cannot take are a user error
    in one line (a user's model is checked against the data where it is loaded or built).

    >>> build_registered(get_model("conv2"), (784,), 10)  # doctest: +SKIP
    Traceback (most recent call last):
    lth_tf.errors.LthError: --model=conv2 takes images (height, width, channels), ...
    """
    if spec.name not in MODELS:
        return spec.build(input_shape, num_classes)
    check_input_shape(spec.name, input_shape)
    try:
        return spec.build(input_shape, num_classes)
    except ValueError as error:  # Keras: a layer whose input is too small (pooled to nothing)
        text = " ".join(str(error).split())
        raise LthError(
            f"--model={spec.name} cannot run on examples of shape {tuple(input_shape)} "
            f"({text[:200]}); give larger images (32x32 and 28x28 fit every registered net)"
        ) from None


def build_network(
    hparams: ExperimentHparams,
    input_shape: tuple[int, ...],
    num_classes: int,
    for_training: bool = True,
    model: ModelSpec | None = None,
) -> PrunedModel:
    """The model with the experiment's weight decay, inside TF-MOT pruning wrappers.

    ``model`` is what builds it (default: the registry's, by name; an experiment's own is
    :func:`lth_tf.provenance.experiment_model`). Build it inside the strategy's scope.
    ``for_training=False`` leaves the weight decay out (a regulariser means nothing to an
    exported ticket).
    """
    spec = model or get_model(hparams.model.name)
    network = build_registered(spec, input_shape, num_classes)
    if hparams.pruning.prune_for == "xnnpack":
        # The same rebuild the experiment announced and recorded when it started
        # (lth_tf.provenance.xnnpack_record): XNNPack's sparse kernels need symmetric padding.
        network, _ = symmetric_padding(network)
    initialise_batch_norm(network, hparams.model.batchnorm_init, hparams.training.seed)
    if for_training:
        add_weight_decay(network, hparams.training.weight_decay)
    return wrap_model(network, hparams.pruning.rates, hparams.pruning.granularity)


def build_run(
    hparams: ExperimentHparams,
    data: ImageDataset,
    strategy: tf.distribute.Strategy | None = None,
    execution: Execution = Execution(),
    remask_every_step: bool = False,
    model: ModelSpec | None = None,
    planned_iterations: int | None = None,
) -> Run:
    """Seeds, builds the network under the precision policy and strategy, and its trainer.

    The seed is set right before the model is built, so the initial weights are a function of
    ``hparams.training.seed`` alone. Op determinism is switched on for the process: a resume
    (or a stability copy) must retrain exactly what the first run trained. Under
    ``jit_compile="auto"`` the trainer times XLA against plain training for a run of
    ``planned_iterations`` (see :meth:`lth_tf.training.trainer.Trainer.choose_xla`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    tf_keras.utils.set_random_seed(hparams.training.seed)
    tf.config.experimental.enable_op_determinism()
    with mixed_precision_policy(execution.mixed_precision), strategy.scope():
        pruned = build_network(hparams, data.input_shape, data.num_classes, model=model)
    per_epoch = iterations_per_epoch(len(data.train_labels), hparams.training.batch_size)
    trainer = Trainer(
        pruned,
        data,
        # The optimizer knows no dataset size: hand it the schedule in iterations.
        hparams.training.schedule_in_iterations(per_epoch),
        strategy,
        jit_compile=execution.jit_compile,
        steps_per_execution=execution.steps_per_execution,
        remask_every_step=remask_every_step,
        xla_whole_chunk=execution.xla_whole_chunk,
        planned_iterations=planned_iterations,
    )
    return Run(pruned, trainer)


def untrained_values(
    hparams: ExperimentHparams, data: ImageDataset, seed: int, model: ModelSpec | None = None
) -> Snapshot:
    """The model's variables as built under ``seed``, untrained: under the experiment's own
    seed they are its theta_0, under another a fresh draw (random_reinit's start).

    Keys are those of :attr:`PrunedModel.rewindable`: wrapping keeps the layers' variables.
    """
    tf_keras.utils.set_random_seed(seed)
    spec = model or get_model(hparams.model.name)
    network = spec.build_fresh(data.input_shape, data.num_classes)
    initialise_batch_norm(network, hparams.model.batchnorm_init, seed)
    return snapshot({variable_key(v): v for v in network.variables})
