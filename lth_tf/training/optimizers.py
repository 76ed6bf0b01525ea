"""The optimizer and the loss of a round, built from the training hyperparameters (a recipe's,
or a compiled model's own): the learning-rate schedule read at the global iteration.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from lth_tf.config import TrainingHparams
from lth_tf.errors import LthError
from lth_tf.recipe import LossSpec, loss_of


def make_optimizer(
    training: TrainingHparams, schedule_start: tf.Variable | None = None
) -> tf_keras.optimizers.Optimizer:
    """The round's optimizer; with ``warmup``, ``lr_drops`` or a cosine ``lr_schedule`` its
    rate follows a schedule (a compiled recipe's: the model's own, :func:`compiled_optimizer`).

    ``schedule_start`` (an int64 variable) is the iteration the optimizer's first step trains:
    the schedule is evaluated there, whatever the optimizer's own step counter says.
    The schedule's steps must be iteration counts (resolve epochs first with
    :meth:`TrainingHparams.schedule_in_iterations`). Without warmup or drops the rate is a
    plain constant, exactly as before schedules existed.

    >>> optimizer = make_optimizer(TrainingHparams("sgd", learning_rate=0.1, warmup="10it"))
    >>> round(float(optimizer.learning_rate), 6)  # step 0 of 10 of warmup
    0.01
    """
    from lth_tf.config import parse_steps
    from lth_tf.recipe import optimizer_args, optimizer_class
    from lth_tf.steps import Step
    from lth_tf.training.schedules import FromIteration, WarmupCosineDecay, WarmupStepDecay

    if training.compiled:
        return compiled_optimizer(training.compiled, schedule_start)
    warmup = Step.parse(training.warmup, "--warmup")
    drops = parse_steps(training.lr_drops)
    if any(step.epochs for step in [warmup, *drops]):
        raise ValueError(
            f"warmup={training.warmup!r}, lr_drops={training.lr_drops!r}: resolve epochs first "
            "(TrainingHparams.schedule_in_iterations)"
        )
    rate = training.learning_rate
    if training.lr_schedule == "cosine":
        total = Step.parse(training.iterations)
        if total.epochs:
            raise ValueError("iterations: resolve epochs first (schedule_in_iterations)")
        rate = WarmupCosineDecay(rate, warmup.iterations, total.iterations)
    elif warmup.iterations or drops:
        rate = WarmupStepDecay(
            rate, warmup.iterations, [d.iterations for d in drops], training.lr_drop_factor
        )
    if schedule_start is not None and not isinstance(rate, float):
        rate = FromIteration(rate, schedule_start)
    arguments = optimizer_args(training.optimizer_args, training.optimizer)
    if training.optimizer == "sgd":
        return tf_keras.optimizers.SGD(rate, momentum=training.momentum, **arguments)
    optimizer = getattr(tf_keras.optimizers, optimizer_class(training.optimizer))
    return optimizer(rate, **arguments)


def compiled_optimizer(
    compiled: str, schedule_start: tf.Variable | None = None
) -> tf_keras.optimizers.Optimizer:
    """The optimizer of a compiled recipe (:func:`lth_tf.recipe.compiled_json`), its schedule
    evaluated at ``schedule_start`` plus its own step, as :func:`make_optimizer`'s are.

    >>> recipe = '{"loss": {}, "optimizer": {"class_name": "SGD", "config": {"learning_rate": '
    >>> recipe += '{"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [10], '
    >>> recipe += '"values": [0.1, 0.01]}}}}}'
    >>> optimizer = compiled_optimizer(recipe, tf.Variable(11, dtype=tf.int64))
    >>> round(float(optimizer.learning_rate), 6)  # iteration 11: past the boundary
    0.01
    """
    import json

    from lth_tf.training.schedules import FromIteration

    entry = json.loads(compiled)["optimizer"]
    config = dict(entry["config"])
    rate = config.pop("learning_rate", None)
    if isinstance(rate, dict):
        rate = tf_keras.optimizers.schedules.deserialize(
            {"class_name": rate["class_name"], "config": rate["config"]}
        )
        if schedule_start is not None:
            rate = FromIteration(rate, schedule_start)
    cls = getattr(tf_keras.optimizers, entry["class_name"])
    return cls(**config) if rate is None else cls(learning_rate=rate, **config)


def check_optimizer(training: TrainingHparams) -> None:
    """Builds the round's optimizer once, so a value Keras refuses is one line before the
    experiment directory is made (TensorFlow has started by then)."""
    try:
        make_optimizer(training, tf.Variable(0, dtype=tf.int64))
    except LthError:
        raise
    except (TypeError, ValueError) as error:
        what = "the model's compiled optimizer" if training.compiled else "--optimizer_args"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise LthError(f"{what}: tf_keras refuses it ({first})") from None


def loss_spec(training: TrainingHparams) -> LossSpec:
    """The round's classification loss: a compiled recipe's, else sparse cross-entropy (with
    ``label_smoothing``, categorical on one-hot labels)."""
    if training.compiled:
        return loss_of(training.compiled)
    if training.label_smoothing:
        return LossSpec("categorical", None, training.label_smoothing)
    return LossSpec()


def example_losses(
    spec: LossSpec, labels: tf.Tensor, outputs: tf.Tensor, from_logits: bool
) -> tf.Tensor:
    """Per-example loss of ``outputs`` (float32) for class-index ``labels``; ``from_logits``
    is the model head's, unless the loss says otherwise."""
    if spec.from_logits is not None:
        from_logits = spec.from_logits
    if spec.kind == "sparse":
        return tf_keras.losses.sparse_categorical_crossentropy(
            labels, outputs, from_logits=from_logits
        )
    one_hot = tf.one_hot(labels, tf.shape(outputs)[-1], dtype=outputs.dtype)
    return tf_keras.losses.categorical_crossentropy(
        one_hot, outputs, from_logits=from_logits, label_smoothing=spec.label_smoothing
    )
