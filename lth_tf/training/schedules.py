"""Learning-rate schedules: linear warmup, then step decay (the deep networks') or cosine decay.

It is driven by ``optimizer.iterations`` plus the iteration training started at
(:class:`FromIteration`): a round rewound to iteration k starts a fresh optimizer (zero
moments, and Adam's bias correction from its first step) with the schedule at its value for
iteration k, as the papers train k -> T (the ``lr_rewind`` control too: Renda et al.'s
learning-rate rewinding).

:class:`WarmupStepDecay` is registered with Keras, so a saved configuration of it loads back
as a real schedule (the trainer's optimizer is never saved: checkpoints hold its variables).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="lth_tf")
class WarmupStepDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate``, reached linearly over ``warmup`` steps, times ``factor`` per drop passed.

    The update of step ``i`` (0-based) uses ``min(1, (i + 1) / warmup)`` of the rate, so the
    first update is not wasted and step ``warmup - 1`` uses the full rate; from step ``d`` of
    ``drops`` on, the rate is multiplied by ``factor``.

    >>> schedule = WarmupStepDecay(0.1, warmup=10, drops=[20, 30], factor=0.1)
    >>> [round(float(schedule(i)), 6) for i in (0, 9, 19, 20, 30)]
    [0.01, 0.1, 0.1, 0.01, 0.001]
    """

    def __init__(
        self,
        learning_rate: float,
        warmup: int = 0,
        drops: Sequence[int] = (),
        factor: float = 0.1,
    ):
        self.learning_rate = float(learning_rate)
        self.warmup = int(warmup)
        self.drops = [int(d) for d in drops]
        self.factor = float(factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.learning_rate, tf.float32)
        if self.drops:
            passed = tf.reduce_sum(tf.cast(step >= tf.constant(self.drops, tf.float32), tf.float32))
            rate = rate * tf.pow(tf.constant(self.factor, tf.float32), passed)
        if self.warmup > 0:
            rate = rate * tf.minimum(1.0, (step + 1.0) / float(self.warmup))
        return rate

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "warmup": self.warmup,
            "drops": list(self.drops),
            "factor": self.factor,
        }


@tf_keras.utils.register_keras_serializable(package="lth_tf")
class WarmupCosineDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """``--lr_schedule=cosine``: ``learning_rate`` reached linearly over ``warmup`` steps (as
    :class:`WarmupStepDecay` warms up), then a cosine decay to 0 at step ``total``, the end of
    the round.

    >>> schedule = WarmupCosineDecay(0.1, warmup=10, total=110)
    >>> [round(float(schedule(i)), 6) for i in (0, 9, 10, 60, 110)]
    [0.01, 0.1, 0.1, 0.05, 0.0]
    """

    def __init__(self, learning_rate: float, warmup: int = 0, total: int = 1):
        self.learning_rate = float(learning_rate)
        self.warmup = int(warmup)
        self.total = int(total)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = float(max(1, self.total - self.warmup))
        progress = tf.clip_by_value((step - float(self.warmup)) / decay_steps, 0.0, 1.0)
        rate = self.learning_rate * 0.5 * (1.0 + tf.cos(np.pi * progress))
        if self.warmup > 0:
            rate = rate * tf.minimum(1.0, (step + 1.0) / float(self.warmup))
        return rate

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "warmup": self.warmup, "total": self.total}


class FromIteration(tf_keras.optimizers.schedules.LearningRateSchedule):
    """``schedule`` at ``start + step``: keeps "where the schedule is" apart from "how many
    steps this optimizer has taken" (Adam's bias correction reads the latter).

    ``start`` is a variable, so a new round moves it without retracing the training step.

    >>> start = tf.Variable(20, dtype=tf.int64)
    >>> schedule = FromIteration(WarmupStepDecay(0.1, drops=[20], factor=0.1), start)
    >>> round(float(schedule(0)), 6)  # the optimizer's step 0 is iteration 20
    0.01
    """

    def __init__(self, schedule: tf_keras.optimizers.schedules.LearningRateSchedule, start):
        self.schedule = schedule
        self.start = start

    def __call__(self, step):
        return self.schedule(tf.cast(step, tf.int64) + self.start)

    def get_config(self) -> dict:
        # The start is where training is, not part of the schedule: saved as the schedule.
        return self.schedule.get_config()
