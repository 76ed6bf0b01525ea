"""Compiled training and evaluation of a pruned model under a ``tf.distribute`` strategy.

One :class:`Trainer` serves every round of an experiment: the model, the optimizer and the
compiled functions are built once, and a new round only resets values (masks, weights,
optimizer slots), so nothing is retraced between rounds.

Pruned weights stay exactly zero: gradients are multiplied by the mask before the optimizer
sees them, and since every round starts with zeroed optimizer slots, Adam's and momentum's
updates at pruned positions are exactly zero too. TF-MOT alone does not do this: it re-masks on
the next forward pass, after the optimizer has already moved pruned weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import tensorflow as tf
import tf_keras

from lth_tf.config import TrainingHparams
from lth_tf.data.pipeline import evaluation_batches, training_batches
from lth_tf.data.sources import ImageDataset
from lth_tf.pruning.wrapping import PrunedModel, Snapshot, restore, snapshot, variable_key


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Validation and test metrics at one iteration."""

    iteration: int
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float


@dataclasses.dataclass
class EarlyStop:
    """The paper's early-stopping measure: the iteration of minimum validation loss.

    >>> stop = EarlyStop()
    >>> stop.update(Evaluation(100, 0.5, 0.9, 0.6, 0.88))
    >>> stop.update(Evaluation(200, 0.7, 0.9, 0.7, 0.9))
    >>> stop.iteration, stop.test_accuracy
    (100, 0.88)
    """

    val_loss: float = math.inf
    iteration: int = 0
    test_accuracy: float = math.nan

    def update(self, evaluation: Evaluation) -> None:
        if evaluation.val_loss < self.val_loss:
            self.val_loss = evaluation.val_loss
            self.iteration = evaluation.iteration
            self.test_accuracy = evaluation.test_accuracy


class RoundObserver(Protocol):
    """Watches one round train, e.g. to log it (:mod:`lth_tf.monitoring.tensorboard`).

    Both calls come between compiled chunks of iterations, never per step.
    """

    def on_train_chunk(self, iteration: int, loss: float, accuracy: float) -> None:
        """Mean training loss and accuracy of the chunk of iterations ending at ``iteration``."""

    def on_evaluation(self, evaluation: Evaluation) -> None:
        """An evaluation, before its checkpoint is saved (so a resume never skips one)."""


@dataclasses.dataclass
class RoundProgress:
    """Everything besides variables that a checkpoint must hold to resume a round exactly."""

    iteration: int = 0
    train_seconds: float = 0.0
    evaluations: list[Evaluation] = dataclasses.field(default_factory=list)

    @property
    def early_stop(self) -> EarlyStop:
        stop = EarlyStop()
        for evaluation in self.evaluations:
            stop.update(evaluation)
        return stop

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RoundProgress:
        evaluations = [Evaluation(**item) for item in data["evaluations"]]
        return cls(data["iteration"], data["train_seconds"], evaluations)


def xla_can_train(model: tf_keras.Model) -> bool:
    """Whether XLA can compile this model's training step under op determinism.

    XLA has no deterministic max-pooling gradient, and runs must stay deterministic to resume
    exactly, so models with max pooling train without XLA (their evaluation still uses it).
    """
    return not any(isinstance(layer, tf_keras.layers.MaxPooling2D) for layer in model.submodules)


def make_optimizer(training: TrainingHparams) -> tf_keras.optimizers.Optimizer:
    if training.optimizer == "adam":
        return tf_keras.optimizers.Adam(training.learning_rate)
    return tf_keras.optimizers.SGD(training.learning_rate, momentum=training.momentum)


class Trainer:
    """Trains and evaluates one :class:`PrunedModel`; build it inside nothing, it enters the scope.

    ``steps_per_execution`` iterations run inside one compiled call (fewer Python round trips);
    ``jit_compile`` compiles the training step with XLA.
    """

    def __init__(
        self,
        pruned: PrunedModel,
        data: ImageDataset,
        training: TrainingHparams,
        strategy: tf.distribute.Strategy,
        jit_compile: bool = False,
        steps_per_execution: int = 100,
    ):
        self.pruned = pruned
        self.data = data
        self.training = training
        self.strategy = strategy
        self.steps_per_execution = steps_per_execution
        model = pruned.model
        self._trainable = model.trainable_variables
        masks_by_weight = {id(pruned.weights[name]): mask for name, mask in pruned.masks.items()}
        self._gradient_masks = [masks_by_weight.get(id(v)) for v in self._trainable]
        with strategy.scope():
            self.optimizer = make_optimizer(training)
            self.optimizer.build(self._trainable)
        self._optimizer_zeros = [
            np.zeros(v.shape, v.dtype.as_numpy_dtype) for v in self.optimizer.variables
        ]
        self._val = strategy.experimental_distribute_dataset(
            evaluation_batches(data.val_images, data.val_labels)
        )
        self._test = strategy.experimental_distribute_dataset(
            evaluation_batches(data.test_images, data.test_labels)
        )
        self._step = tf.function(
            self._replica_train_step, jit_compile=jit_compile and xla_can_train(model)
        )
        self._train_chunk = tf.function(self._train_chunk_impl)
        self._eval_step = tf.function(self._replica_eval_step, jit_compile=jit_compile)
        self._evaluate = tf.function(self._evaluate_impl)

    # -- compiled pieces -------------------------------------------------------------------

    def _replica_train_step(self, images: tf.Tensor, labels: tf.Tensor):
        with tf.GradientTape() as tape:
            logits = self.pruned.model(images, training=True)
            per_example = tf_keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
            # Divide by the *global* batch: gradients are summed across replicas.
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.training.batch_size
            )
            if self.pruned.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.pruned.model.losses))
        gradients = tape.gradient(loss, self._trainable)
        gradients = [
            gradient if mask is None else gradient * mask
            for gradient, mask in zip(gradients, self._gradient_masks, strict=True)
        ]
        self.optimizer.apply_gradients(zip(gradients, self._trainable, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct

    def _train_chunk_impl(self, iterator, steps: tf.Tensor):
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        for _ in tf.range(steps):
            per_replica = self.strategy.run(self._step, args=next(iterator))
            loss_sum += self.strategy.reduce("SUM", per_replica[0], axis=None)
            correct += self.strategy.reduce("SUM", per_replica[1], axis=None)
        return loss_sum, correct

    def _replica_eval_step(self, images: tf.Tensor, labels: tf.Tensor):
        logits = self.pruned.model(images, training=False)
        per_example = tf_keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
        count = tf.cast(tf.size(labels), tf.float32)
        return tf.reduce_sum(per_example), tf.reduce_sum(correct), count

    def _evaluate_impl(self, dataset):
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

    def reset_optimizer(self) -> None:
        """Fresh optimizer state (step counter and slots), without new variables to trace."""
        for variable, zeros in zip(self.optimizer.variables, self._optimizer_zeros, strict=True):
            variable.assign(zeros)

    def evaluate_split(self, split: str) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole ``val`` or ``test`` split."""
        loss_sum, correct, count = self._evaluate(self._val if split == "val" else self._test)
        return float(loss_sum) / float(count), float(correct) / float(count)

    def evaluate(self, iteration: int) -> Evaluation:
        val_loss, val_accuracy = self.evaluate_split("val")
        test_loss, test_accuracy = self.evaluate_split("test")
        return Evaluation(iteration, val_loss, val_accuracy, test_loss, test_accuracy)

    def batches_from(self, iteration: int):
        """A distributed iterator over the training stream, starting at ``iteration``."""
        dataset = training_batches(
            self.data.train_images,
            self.data.train_labels,
            self.training.batch_size,
            seed=self.training.seed,
            start_iteration=iteration,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    def train_steps(self, iterator, steps: int) -> tuple[float, float]:
        """Runs ``steps`` iterations; returns the summed example loss and correct count."""
        loss_sum, correct = self._train_chunk(iterator, tf.constant(steps, tf.int64))
        return float(loss_sum), float(correct)

    # -- checkpoints -----------------------------------------------------------------------

    def state(self) -> Snapshot:
        """Every model variable (masks included) and every optimizer variable."""
        model_vars = {variable_key(v): v for v in self.pruned.model.variables}
        state = snapshot(model_vars)
        for index, variable in enumerate(self.optimizer.variables):
            state[f"optimizer/{index}"] = np.array(variable.numpy())
        return state

    def load_state(self, state: Snapshot) -> None:
        restore({variable_key(v): v for v in self.pruned.model.variables}, state)
        restore({f"optimizer/{i}": v for i, v in enumerate(self.optimizer.variables)}, state)


def train_round(
    trainer: Trainer,
    iterations: int,
    eval_every: int,
    progress: RoundProgress,
    on_checkpoint: Callable[[RoundProgress], None],
    on_iteration: dict[int, Callable[[], None]] | None = None,
    progress_bar: tf_keras.utils.Progbar | None = None,
    observer: RoundObserver | None = None,
) -> RoundProgress:
    """Trains from ``progress.iteration`` to ``iterations``, evaluating every ``eval_every``.

    After each evaluation ``on_checkpoint(progress)`` runs (the caller saves a checkpoint);
    ``on_iteration[i]`` runs once the model has trained exactly ``i`` iterations (the rewind point).
    ``observer`` sees every chunk's training metrics and every evaluation.
    """
    on_iteration = on_iteration or {}
    iterator = trainer.batches_from(progress.iteration)
    batch = trainer.training.batch_size
    while progress.iteration < iterations:
        start = progress.iteration
        next_eval = (start // eval_every + 1) * eval_every
        stops = [iterations, next_eval, start + trainer.steps_per_execution]
        stops += [i for i in on_iteration if i > start]
        stop = min(stops)
        began = time.perf_counter()
        loss_sum, correct = trainer.train_steps(iterator, stop - start)
        progress.train_seconds += time.perf_counter() - began
        progress.iteration = stop
        if stop in on_iteration:
            on_iteration[stop]()
        examples = (stop - start) * batch
        if observer is not None:
            observer.on_train_chunk(stop, loss_sum / examples, correct / examples)
        if stop % eval_every == 0 or stop == iterations:
            trainer.pruned.apply_masks()
            progress.evaluations.append(trainer.evaluate(stop))
            if observer is not None:
                observer.on_evaluation(progress.evaluations[-1])
            on_checkpoint(progress)
        if progress_bar is not None:
            values = [("loss", loss_sum / examples), ("accuracy", correct / examples)]
            if progress.evaluations:
                values.append(("test_accuracy", progress.evaluations[-1].test_accuracy))
            progress_bar.update(stop, values=values)
    return progress
