"""Compiled training and evaluation of a pruned model under a ``tf.distribute`` strategy.

One :class:`Trainer` serves every round of an experiment: the model, the optimizer and the
compiled functions are built once, and a new round only resets values (masks, weights,
optimizer slots), so nothing is retraced between rounds.

Pruned weights stay exactly zero: gradients are multiplied by the mask before the optimizer
sees them, and since every round starts with fresh optimizer slots, Adam's and momentum's
updates at pruned positions are exactly zero too. TF-MOT alone does not do this: it re-masks on
the next forward pass, after the optimizer has already moved pruned weights. Because masking
the gradient already keeps pruned weights at zero, the training step runs the *unwrapped*
model (the same layers and variables) and skips the wrappers' per-call ``weight * mask``
assignment, which under a distribution strategy is also an all-reduce of every pruned weight
on every forward pass. ``remask_every_step=True`` restores TF-MOT's behaviour, for comparison.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import tensorflow as tf
import tf_keras

from lth_tf import io
from lth_tf.config import (
    StepsPerExecution,
    TrainingHparams,
    check_jit_compile,
)
from lth_tf.data.pipeline import (
    EVAL_BATCH_SIZE,
    augmentation,
    evaluation_batches,
    gather_batch,
    stream_indices,
    training_batches,
)
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError
from lth_tf.pruning.prunable import outputs_probabilities
from lth_tf.pruning.wrapping import (
    PrunedModel,
    Snapshot,
    check_restorable,
    restore,
    snapshot,
    variable_key,
)
from lth_tf.recipe import is_user_augmentation
from lth_tf.training.chunks import MAX_AUTO_STEPS, ChunkLength
from lth_tf.training.optimizers import example_losses, loss_spec, make_optimizer
from lth_tf.training.precision import computes_in_float16
from lth_tf.training.strategies import agreed_seconds
from lth_tf.training.xla import (
    XLA_PAYS_AFTER_SECONDS,
    XLA_WORTH_TIMING,
    seconds_per_iteration,
    xla_can_train,
    xla_evaluates_faster,
)

_SCHEDULE_START_KEY = "schedule/start"
log = logging.getLogger("lth_tf")


class _TrainerRetracingFilter(logging.Filter):
    """Drops TensorFlow's warning that a :class:`Trainer` method "triggered tf.function
    retracing": every run (a sweep worker's next member, a stability copy) builds a Trainer of
    its own, whose functions trace once each, and TensorFlow counts traces by the method's
    code. The same warning of any other function (a user's) stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = f" of <{__name__}.Trainer object at "
        return not ("triggered tf.function retracing" in message and ours in message)


logging.getLogger("tensorflow").addFilter(_TrainerRetracingFilter())


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Validation and test metrics at one iteration; test ones are NaN where not measured.

    :class:`lth_tf.training.loop.EvaluateEvery` measures the test split only where a result
    needs it (the early stop, the round's last iteration), unless asked for it at every
    evaluation. Without a validation split (``--holdout=0``) the validation metrics are NaN and
    the test split is measured at every evaluation.
    """

    iteration: int
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    # The scalars the run's callbacks reported (lth_tf.callbacks), by name.
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)


def _on_device(images: np.ndarray, labels: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """The split as tensors on the default device (a GPU when there is one), pixels as uint8."""
    return tf.identity(tf.constant(images)), tf.identity(tf.constant(labels, tf.int64))


class BatchSource(Protocol):
    """A position in the training stream; ``train(steps)`` runs the next ``steps`` batches and
    returns their summed example loss and correct count."""

    def train(self, steps: int) -> tuple[float, float]: ...


class DeviceBatches:
    """Batches built inside the compiled loop from the training set held on every replica:
    batch i is :func:`lth_tf.data.pipeline.stream_indices` of ``(seed, i)``."""

    def __init__(self, run_chunk: Callable, iteration: int, seed: int):
        self._run_chunk = run_chunk
        self.iteration = iteration
        self.seed = seed

    def train(self, steps: int) -> tuple[float, float]:
        loss_sum, correct = self._run_chunk(
            tf.constant(self.iteration, tf.int64),
            tf.constant(steps, tf.int64),
            tf.constant(self.seed, tf.int64),
        )
        self.iteration += steps
        return float(loss_sum), float(correct)


class DatasetBatches:
    """Batches read from a distributed ``tf.data`` iterator (the same batches, for TPUs)."""

    def __init__(self, run_chunk: Callable, iterator: Iterator):
        self._run_chunk = run_chunk
        self._iterator = iterator

    def train(self, steps: int) -> tuple[float, float]:
        loss_sum, correct = self._run_chunk(self._iterator, tf.constant(steps, tf.int64))
        return float(loss_sum), float(correct)


class EvaluationSplit(Protocol):
    def measure(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole split."""


class DeviceSplit:
    """A split held on the device as tensors, measured by one compiled call."""

    def __init__(self, run: Callable, images: np.ndarray, labels: np.ndarray):
        self._run = run
        self._tensors = _on_device(images, labels)

    def measure(self) -> tuple[float, float]:
        loss_sum, correct, count = self._run(*self._tensors)
        return float(loss_sum) / float(count), float(correct) / float(count)


class DistributedSplit:
    """A split read as a distributed dataset of evaluation batches (several replicas)."""

    def __init__(
        self,
        run: Callable,
        strategy: tf.distribute.Strategy,
        images: np.ndarray,
        labels: np.ndarray,
    ):
        self._run = run
        self._dataset = strategy.experimental_distribute_dataset(evaluation_batches(images, labels))

    def measure(self) -> tuple[float, float]:
        loss_sum, correct, count = self._run(self._dataset)
        return float(loss_sum) / float(count), float(correct) / float(count)


class Trainer:
    """Trains and evaluates one :class:`PrunedModel`; build it inside nothing, it enters the scope.

    ``steps_per_execution`` iterations run inside one compiled call (fewer Python round trips;
    "auto": about a second's worth, sized from the first timed call, :class:`ChunkLength`);
    ``jit_compile`` (:data:`JitCompile`: True, False or "auto", which times both) compiles the
    step with XLA: on one device the whole chunk of steps as one
    program (``xla_whole_chunk``; else one program per step), the forward and
    backward pass under a multi-replica strategy (the gradient all-reduce and the update stay
    outside XLA). Under a ``mixed_float16`` Keras policy the loss is scaled dynamically.
    ``from_logits`` is False when the model ends in a softmax
    (:func:`lth_tf.pruning.prunable.outputs_probabilities`): the cross-entropy, in training and
    evaluation, then reads its outputs as probabilities.
    """

    def __init__(
        self,
        pruned: PrunedModel,
        data: ImageDataset,
        training: TrainingHparams,
        strategy: tf.distribute.Strategy,
        jit_compile: bool = False,
        steps_per_execution: StepsPerExecution = "auto",
        remask_every_step: bool = False,
        xla_whole_chunk: bool = True,
        planned_iterations: int | None = None,
    ):
        self.pruned = pruned
        self.data = data
        self.training = training
        self.strategy = strategy
        self.chunk_length = ChunkLength(steps_per_execution)
        self._forward_model = pruned.model if remask_every_step else pruned.unwrapped
        # A softmax head outputs probabilities: the cross-entropy then takes them as such.
        self.from_logits = not outputs_probabilities(pruned.unwrapped)
        self.loss = loss_spec(training)
        if self.loss.from_logits is False and self.from_logits:
            log.warning(
                "The compiled loss takes the model's outputs as probabilities "
                "(from_logits=False), but the model ends without a softmax; it trains so, as "
                "Keras would: compile with from_logits=True if they are logits."
            )
        elif training.compiled and self.loss.from_logits is None and self.from_logits:
            # compile(loss="sparse_categorical_crossentropy") serialises no from_logits.
            log.info(
                "The compiled loss, given by name, does not say whether the model's outputs "
                "are logits; the model ends without a softmax, so it trains on them as logits "
                "(Keras would take them as probabilities: compile with the loss's class and "
                "from_logits=False for that)."
            )
        # None, CIFAR's or the user's fn(images, labels, seed), applied to every batch.
        self.augment = augmentation(training.augment)
        self._trainable = self._forward_model.trainable_variables
        masks_by_weight = {id(weight): mask for weight, mask in pruned.masked}
        self._gradient_masks = [masks_by_weight.get(id(v)) for v in self._trainable]
        if remask_every_step:
            pruned.allow_wrapped_training_calls()
        self._loss_scaling = computes_in_float16(pruned.unwrapped)
        with strategy.scope():
            # The iteration the optimizer's step 0 trains (k for a round rewound to k).
            self.schedule_start = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.optimizer = make_optimizer(training, self.schedule_start)
            if self._loss_scaling:
                self.optimizer = tf_keras.mixed_precision.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self._trainable)
        # A fresh round restores these (zero slots and step, the loss scale's starting value).
        self._optimizer_initial = [np.array(v.numpy()) for v in self.optimizer.variables]
        replicas = strategy.num_replicas_in_sync
        if training.batch_size % replicas:
            raise LthError(
                f"--batch_size={training.batch_size} does not split evenly over {replicas} "
                "replicas; use a multiple of the replica count"
            )
        check_jit_compile(jit_compile)  # also "auto"
        self._splits = self._evaluation_splits(jit_compile)
        self._whole_chunk = xla_whole_chunk
        # Whether XLA can compile the training step at all (see xla_can_train).
        self.xla_possible = (
            xla_can_train(pruned.unwrapped)
            # A user's augmentation may use ops XLA cannot compile (tf.image's, py_function).
            and not is_user_augmentation(training.augment)
        )
        # Each kind of step is traced at most once, whatever choose_xla tries.
        self._batch_sources: dict[bool, Callable[[int, int], BatchSource]] = {}
        # What XLA compiles in the end: sessions.json says, with xla_timing when it was measured.
        self.xla_timing: dict[str, float] | None = None
        self.xla_training = jit_compile is True and self.xla_possible
        if jit_compile == "auto" and self.xla_possible:
            self.choose_xla(planned_iterations)
        self._batch_source = self._source(self.xla_training)

    def _source(self, xla: bool) -> Callable[[int, int], BatchSource]:
        if xla not in self._batch_sources:
            self._batch_sources[xla] = self._training_batches(xla, self._whole_chunk)
        return self._batch_sources[xla]

    def choose_xla(self, planned_iterations: int | None = None) -> bool:
        """Trains a few iterations with XLA and without, keeps the faster, and restores every
        weight and optimizer variable: the run then trains as if it had been told the choice.

        A run of ``planned_iterations`` too short to pay for XLA's compilation (under
        :data:`XLA_PAYS_AFTER_SECONDS` of plain training) is not compiled at all.
        ``xla_timing`` keeps the seconds per iteration.

        >>> trainer.choose_xla(planned_iterations=50_000)  # doctest: +SKIP
        False
        >>> trainer.xla_timing  # doctest: +SKIP
        {'plain': 0.217, 'xla': 0.451}
        """
        state = self.state()
        sized = self.chunk_length.sized
        seed, chunk = self.training.seed, self.chunk_length.current if sized else MAX_AUTO_STEPS

        def timed(stream: BatchSource, steps: int) -> float:
            # The same figure on every worker of a multi-worker run, so all choose alike.
            return agreed_seconds(self.strategy, seconds_per_iteration(stream, steps, chunk))

        plain = self._source(False)(0, seed)
        plain.train(1)  # traces
        timing = {"plain": timed(plain, 2)}
        planned = math.inf if planned_iterations is None else planned_iterations
        if self.xla_possible and timing["plain"] * planned >= XLA_PAYS_AFTER_SECONDS:
            xla = self._source(True)(0, seed)
            xla.train(1)  # compiles
            # One call of one iteration each first: XLA's CPU convolutions inside a compiled
            # loop can be 40x slower (resnet20), and such a model is not worth timing longer.
            # Both calls carry the same dispatch cost, which is most of a small net's step.
            timing = {"plain": timed(plain, 1), "xla": timed(xla, 1)}
            if timing["xla"] < XLA_WORTH_TIMING * timing["plain"]:
                # Close: about half a second each, both alike, interleaved against drift.
                steps = min(chunk, max(2, math.ceil(0.5 / timing["plain"])))
                xla.train(steps)  # XLA compiles per chunk length
                times: dict[str, list[float]] = {"plain": [], "xla": []}
                for _ in range(2):
                    times["plain"].append(timed(plain, steps))
                    times["xla"].append(timed(xla, steps))
                timing = {kind: min(seconds) for kind, seconds in times.items()}
        self.load_state(state)
        self.xla_timing = {name: round(seconds, 6) for name, seconds in timing.items()}
        self.xla_training = timing.get("xla", math.inf) < timing["plain"]
        self._batch_source = self._source(self.xla_training)
        self.chunk_length.size(timing["xla" if self.xla_training else "plain"])
        return self.xla_training

    def _evaluation_splits(self, jit_compile: bool) -> dict[str, EvaluationSplit]:
        """The ``val`` and ``test`` splits, each measured by one compiled call."""
        data, strategy = self.data, self.strategy
        if strategy.num_replicas_in_sync == 1:
            # The splits sit on the device and one compiled call runs a whole split: no
            # iterator per evaluation, which at 5,000 examples costs more than the forward pass.
            self.xla_evaluation = bool(jit_compile) and xla_evaluates_faster()
            self._eval_step = tf.function(self._replica_eval_step, jit_compile=self.xla_evaluation)
            measure = tf.function(self._evaluate_on_device)
            splits = {
                "val": DeviceSplit(measure, data.val_images, data.val_labels),
                "test": DeviceSplit(measure, data.test_images, data.test_labels),
            }
            return {k: v for k, v in splits.items() if k != "val" or self.has_validation}
        # Not XLA: it refuses variables placed on another replica's device here.
        self.xla_evaluation = False
        self._eval_step = tf.function(self._replica_eval_step)
        measure = tf.function(self._evaluate_distributed)
        splits = {
            "val": DistributedSplit(measure, strategy, data.val_images, data.val_labels),
            "test": DistributedSplit(measure, strategy, data.test_images, data.test_labels),
        }
        return {k: v for k, v in splits.items() if k != "val" or self.has_validation}

    def _training_batches(
        self, jit_train: bool, whole_chunk: bool
    ) -> Callable[[int, int], BatchSource]:
        """What :meth:`batches_from` makes, with the step functions it needs compiled."""
        strategy, data = self.strategy, self.data
        on_one_device = strategy.num_replicas_in_sync == 1
        tpu = isinstance(strategy, tf.distribute.TPUStrategy)
        one_program = on_one_device and jit_train and whole_chunk and not tpu
        if one_program:
            # The whole chunk's steps as one XLA program (gather, forward, backward, update,
            # step after step): 1.4-1.8x the images/s of one program per step for
            # lenet300_100 on 2 CPU cores, with the same weights bit for bit here.
            self._step = self._replica_train_step
            self._step_on_indices = self._gather_and_train
            self._gradients = self._replica_gradients
            self._compiled_steps = tf.function(self._train_steps_on_indices, jit_compile=True)
        elif on_one_device:
            self._step = tf.function(self._replica_train_step, jit_compile=jit_train)
            self._step_on_indices = tf.function(self._gather_and_train, jit_compile=jit_train)
            self._gradients = self._replica_gradients
        else:
            # The update all-reduces across replicas, which XLA cannot compile here.
            self._step = self._replica_train_step
            self._step_on_indices = self._gather_and_train
            self._gradients = tf.function(self._replica_gradients, jit_compile=jit_train)
        if tpu:
            # TPUs read the tf.data stream.
            chunk = tf.function(self._train_chunk_impl)
            return lambda iteration, seed: DatasetBatches(chunk, self._dataset(iteration, seed))
        # Elsewhere every replica holds the training set and builds its batches inside the
        # compiled loop: no input pipeline to start, feed or tear down each round (tearing down
        # a tf.data iterator alone took 0.2-5 s here).
        self._train_images, self._train_labels = (
            strategy.experimental_distribute_values_from_function(
                lambda _, tensor=tensor: tf.identity(tensor)
            )
            for tensor in (tf.constant(data.train_images), tf.constant(data.train_labels))
        )
        if one_program:
            chunk = tf.function(self._train_chunk_as_one_program)
        else:
            chunk = tf.function(self._train_chunk_on_device_impl)
        return lambda iteration, seed: DeviceBatches(chunk, iteration, seed)

    def _dataset(self, iteration: int, seed: int) -> Iterator:
        dataset = training_batches(
            self.data.train_images,
            self.data.train_labels,
            self.training.batch_size,
            seed=seed,
            start_iteration=iteration,
            augment=self.augment,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    # -- compiled pieces -------------------------------------------------------------------

    def _replica_gradients(self, images: tf.Tensor, labels: tf.Tensor):
        """Masked gradients of one replica's batch, its summed example loss and correct count."""
        with tf.GradientTape() as tape:
            logits = tf.cast(self._forward_model(images, training=True), tf.float32)
            per_example = example_losses(self.loss, labels, logits, self.from_logits)
            # Divide by the *global* batch: gradients are summed across replicas.
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.training.batch_size
            )
            if self._forward_model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self._forward_model.losses))
            if self._loss_scaling:
                loss = self.optimizer.get_scaled_loss(loss)
        gradients = tape.gradient(loss, self._trainable)
        if self._loss_scaling:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        gradients = [
            gradient if mask is None else gradient * mask
            for gradient, mask in zip(gradients, self._gradient_masks, strict=True)
        ]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
        return gradients, tf.reduce_sum(per_example), correct

    def _replica_train_step(self, images: tf.Tensor, labels: tf.Tensor):
        gradients, loss_sum, correct = self._gradients(images, labels)
        self.optimizer.apply_gradients(zip(gradients, self._trainable, strict=True))
        return loss_sum, correct

    def _replica_step_on_indices(
        self,
        iteration: tf.Tensor,
        seed: tf.Tensor,
        indices: tf.Tensor,
        images: tf.Tensor,
        labels: tf.Tensor,
    ):
        """One replica's step on its share of the global batch at ``indices``."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            # Every replica takes its slice of the same global batch, so a run's batches do
            # not depend on the number of replicas.
            share = self.training.batch_size // replicas
            start = tf.distribute.get_replica_context().replica_id_in_sync_group * share
            indices = indices[start : start + share]
        return self._step_on_indices(iteration, seed, indices, images, labels)

    def _gather_and_train(
        self,
        iteration: tf.Tensor,
        seed: tf.Tensor,
        indices: tf.Tensor,
        images: tf.Tensor,
        labels: tf.Tensor,
    ):
        batch = gather_batch(images, labels, indices, iteration, seed, self.augment)
        return self._step(*batch)

    def _chunk_indices(self, start: tf.Tensor, steps: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """[steps, batch] training-set indices of the chunk's batches, from iteration start."""
        batch = self.training.batch_size
        positions = start * batch + tf.range(steps * batch, dtype=tf.int64)
        num_examples = len(self.data.train_labels)
        # The whole chunk's example order at once: a handful of ops per chunk, not per step.
        return tf.reshape(stream_indices(positions, num_examples, seed), [steps, batch])

    def _train_chunk_as_one_program(self, start: tf.Tensor, steps: tf.Tensor, seed: tf.Tensor):
        # The example order stays outside XLA, which has no kernel for index_shuffle.
        indices = self._chunk_indices(start, steps, seed)
        return self._compiled_steps(
            start, steps, seed, indices, self._train_images, self._train_labels
        )

    def _train_steps_on_indices(
        self,
        start: tf.Tensor,
        steps: tf.Tensor,
        seed: tf.Tensor,
        indices: tf.Tensor,
        images: tf.Tensor,
        labels: tf.Tensor,
    ):
        """``steps`` training steps on one device, batch ``step`` at ``indices[step]``."""
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for step in tf.range(steps):
            step_loss, step_correct = self._gather_and_train(
                start + step, seed, indices[step], images, labels
            )
            loss_sum += step_loss
            correct += step_correct
        return loss_sum, correct

    def _train_chunk_on_device_impl(self, start: tf.Tensor, steps: tf.Tensor, seed: tf.Tensor):
        indices = self._chunk_indices(start, steps, seed)
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for step in tf.range(steps):
            per_replica = self.strategy.run(
                self._replica_step_on_indices,
                args=(start + step, seed, indices[step], self._train_images, self._train_labels),
            )
            loss_sum += self.strategy.reduce("SUM", per_replica[0], axis=None)
            correct += self.strategy.reduce("SUM", per_replica[1], axis=None)
        return loss_sum, correct

    def _train_chunk_impl(self, iterator, steps: tf.Tensor):
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for _ in tf.range(steps):
            per_replica = self.strategy.run(self._step, args=next(iterator))
            loss_sum += self.strategy.reduce("SUM", per_replica[0], axis=None)
            correct += self.strategy.reduce("SUM", per_replica[1], axis=None)
        return loss_sum, correct

    def _replica_eval_step(self, images: tf.Tensor, labels: tf.Tensor):
        logits = tf.cast(self._forward_model(images, training=False), tf.float32)
        per_example = example_losses(self.loss, labels, logits, self.from_logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
        count = tf.cast(tf.size(labels), tf.float32)
        return tf.reduce_sum(per_example), tf.reduce_sum(correct), count

    def _evaluate_on_device(self, images: tf.Tensor, labels: tf.Tensor):
        """(summed loss, correct, count) over a whole split, in batches of EVAL_BATCH_SIZE."""
        count = images.shape[0]
        full = count // EVAL_BATCH_SIZE
        loss_sum, correct = tf.constant(0.0), tf.constant(0.0)
        for index in tf.range(full):
            start = index * EVAL_BATCH_SIZE
            batch_loss, batch_correct, _ = self._eval_step(
                images[start : start + EVAL_BATCH_SIZE], labels[start : start + EVAL_BATCH_SIZE]
            )
            loss_sum += batch_loss
            correct += batch_correct
        if count % EVAL_BATCH_SIZE:
            batch_loss, batch_correct, _ = self._eval_step(
                images[full * EVAL_BATCH_SIZE :], labels[full * EVAL_BATCH_SIZE :]
            )
            loss_sum += batch_loss
            correct += batch_correct
        return loss_sum, correct, tf.constant(float(count))

    def _evaluate_distributed(self, dataset):
        loss_sum, correct, count = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        for images, labels in dataset:
            batch_loss, batch_correct, batch_count = self.strategy.run(
                self._eval_step, args=(images, labels)
            )
            loss_sum += self.strategy.reduce("SUM", batch_loss, axis=None)
            correct += self.strategy.reduce("SUM", batch_correct, axis=None)
            count += self.strategy.reduce("SUM", batch_count, axis=None)
        return loss_sum, correct, count

    # -- round-level API -------------------------------------------------------------------

    def reset_optimizer(self, schedule_start: int = 0) -> None:
        """Fresh optimizer state (step counter and slots), without new variables to trace; the
        learning-rate schedule continues from iteration ``schedule_start``."""
        for variable, value in zip(self.optimizer.variables, self._optimizer_initial, strict=True):
            variable.assign(value)
        self.schedule_start.assign(schedule_start)

    def evaluate_split(self, split: str) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole ``val`` or ``test`` split."""
        return self._splits[split].measure()

    @property
    def has_validation(self) -> bool:
        """Whether the data has a validation split (``--holdout=0`` leaves none)."""
        return len(self.data.val_labels) > 0

    def evaluate(self, iteration: int, test: bool = True) -> Evaluation:
        """Validation metrics (NaN without a validation split), and test metrics unless ``test``
        is False (then NaN)."""
        no_val = (math.nan, math.nan)
        val_loss, val_accuracy = self.evaluate_split("val") if self.has_validation else no_val
        test_loss, test_accuracy = self.evaluate_split("test") if test else (math.nan, math.nan)
        return Evaluation(iteration, val_loss, val_accuracy, test_loss, test_accuracy)

    def batches_from(self, iteration: int, seed: int | None = None) -> BatchSource:
        """The training stream from ``iteration`` on, for :meth:`train_steps` to consume.

        ``seed`` orders the data (default: the hyperparameters' seed); another seed is another
        data order over the same examples, as stability analysis needs.
        """
        return self._batch_source(iteration, self.training.seed if seed is None else seed)

    def train_steps(self, stream: BatchSource, steps: int) -> tuple[float, float]:
        """Runs ``steps`` iterations in one compiled call (at most ``chunk_length.current``);
        returns the summed example loss and correct count."""
        began = time.perf_counter()
        result = stream.train(steps)
        seconds = time.perf_counter() - began
        if not self.chunk_length.sized:
            # Every worker of a multi-worker run sizes its calls from the same figure.
            seconds = agreed_seconds(self.strategy, seconds)
        self.chunk_length.timed(steps, seconds)
        return result

    # -- checkpoints -----------------------------------------------------------------------

    def state(self) -> Snapshot:
        """Every model variable (masks included), every optimizer variable, the schedule's start."""
        model_vars = {variable_key(v): v for v in self.pruned.model.variables}
        state = snapshot(model_vars)
        for index, variable in enumerate(self.optimizer.variables):
            state[f"optimizer/{index}"] = np.array(variable.numpy())
        state[_SCHEDULE_START_KEY] = np.array(self.schedule_start.numpy())
        return state

    def load_state(self, state: Snapshot) -> None:
        """Restores :meth:`state`'s variables; a ValueError names one that is not finite.

        An evaluation stops a diverging round before its checkpoint. A momentum that overflowed
        on the chunk before is refused too: the rerun after deleting the checkpoint diverges
        where the first run did, and says so then, instead of training on NaN weights.
        """
        model_variables = {variable_key(v): v for v in self.pruned.model.variables}
        optimizer_variables = {f"optimizer/{i}": v for i, v in enumerate(self.optimizer.variables)}
        names = (model_variables.keys() | optimizer_variables.keys()) & state.keys()
        odd = io.not_finite(state, sorted(names))
        if odd is not None:
            raise ValueError(f"{odd} is not finite everywhere")
        # Saved from these variables: another width (float16 for float32) is an edit, and would
        # be cast without a word.
        check_restorable({**model_variables, **optimizer_variables}, state, exact_dtype=True)
        for name in sorted(optimizer_variables.keys() & state.keys()):
            value = np.asarray(state[name])
            if value.dtype.kind in "iu" and (value < 0).any():  # a step count
                raise ValueError(f"{name} counts {value.min()} steps")
        restore(model_variables, state)
        restore(optimizer_variables, state)
        # Checkpoints from before k -> T rounds: every round's schedule started at 0.
        self.schedule_start.assign(int(state.get(_SCHEDULE_START_KEY, 0)))
