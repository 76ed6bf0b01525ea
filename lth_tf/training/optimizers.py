"""The optimizer and the loss of a round, built from the training hyperparameters (a recipe's,
or a compiled model's own): the learning-rate schedule read at the global iteration.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from lth_tf.config import TrainingHparams
from lth_tf.errors import LthError
from lth_tf.recipe import LossSpec, loss_of


class FusedSGD(tf_keras.optimizers.SGD):
    """tf_keras's SGD, each dense update one ``ResourceApplyKerasMomentum`` kernel.

    Keras builds every variable's momentum update from about eight small ops (negate, two
    multiplies, an add, two reads, two assigns). Inside a compiled chunk each op is one more
    executor dispatch: for resnet20's 65 variables some 500 a step, a few percent of a step on
    a CPU. The kernel computes the same arithmetic in the same order (``m = m * momentum -
    gradient * lr``, then ``variable += m``; Nesterov's too), so training gives Keras's own
    SGD's weights (bit for bit on x86; a build whose compiler fuses the multiply-add may round
    a last bit otherwise); its slots, checkpoints and config are SGD's. Sparse gradients, and
    variables under a TPU strategy take Keras's path.

    >>> fused, keras = tf.Variable([1.0, 2.0]), tf.Variable([1.0, 2.0])
    >>> gradient = tf.constant([0.5, -0.25])
    >>> pairs = [(FusedSGD(0.1, 0.9), fused), (tf_keras.optimizers.SGD(0.1, 0.9), keras)]
    >>> for optimizer, weight in pairs:
    ...     for _ in range(3):
    ...         _ = optimizer.apply_gradients([(gradient, weight)])
    >>> import numpy as np
    >>> bool(np.allclose(fused, keras, rtol=1e-6, atol=0)), fused.numpy().tolist() != [1.0, 2.0]
    (True, True)
    """

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or not _kernel_applies():
            return super().update_step(gradient, variable)
        momentum = self.momentums[self._index_dict[self._var_key(variable)]]
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=momentum.handle,
            lr=tf.cast(self.learning_rate, variable.dtype),
            grad=gradient,
            momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=self.nesterov,
        )


def _kernel_applies() -> bool:
    """Whether the kernel can update these in place: anywhere but under a TPU strategy, whose
    per-core packed handles Keras's own ops lower themselves."""
    return not isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy)


def make_optimizer(
    training: TrainingHparams, schedule_start: tf.Variable | None = None, fused: bool = True
) -> tf_keras.optimizers.Optimizer:
    """The round's optimizer; with ``warmup``, ``lr_drops`` or a cosine ``lr_schedule`` its
    rate follows a schedule (a compiled recipe's: the model's own, :func:`compiled_optimizer`).

    ``schedule_start`` (an int64 variable) is the iteration the optimizer's first step trains:
    the schedule is evaluated there, whatever the optimizer's own step counter says.
    SGD is :class:`FusedSGD` (the same arithmetic in fewer ops) unless ``fused`` is False.
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
        return compiled_optimizer(training.compiled, schedule_start, fused)
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
        sgd = FusedSGD if fused else tf_keras.optimizers.SGD
        return sgd(rate, momentum=training.momentum, **arguments)
    optimizer = getattr(tf_keras.optimizers, optimizer_class(training.optimizer))
    return optimizer(rate, **arguments)


def compiled_optimizer(
    compiled: str, schedule_start: tf.Variable | None = None, fused: bool = True
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
    if fused and cls is tf_keras.optimizers.SGD:
        cls = FusedSGD
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
