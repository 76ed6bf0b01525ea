"""The TF-MOT ``PruningSchedule`` of iterative magnitude pruning.

IMP prunes *between* rounds, from the previous round's trained weights, so within a round the
masks are fixed: the schedule never asks the wrapper to recompute them mid-training. What it
carries is the target sparsity of the current round, ``1 - (1 - rate) ** round``, which the
mask computation reads (:func:`lth_tf.pruning.wrapping.target_sparsities`).

It is registered with Keras, so a saved pruned model loads back with a real schedule object
(a custom schedule that is not registered silently comes back as a string and breaks ``fit``).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.sparsity import keras as sparsity

_PACKAGE = "lth_tf"


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class IterativeSparsity(sparsity.PruningSchedule):
    """Target sparsity after ``pruning_round`` rounds of pruning ``rate`` of what survives.

    >>> schedule = IterativeSparsity(rate=0.2, pruning_round=2)
    >>> round(schedule.sparsity, 4)
    0.36
    >>> IterativeSparsity.from_config(schedule.get_config()["config"]).pruning_round
    2
    """

    def __init__(self, rate: float, pruning_round: int = 0):
        self._validate_sparsity(rate, "rate")
        self.rate = float(rate)
        self.pruning_round = int(pruning_round)

    @property
    def sparsity(self) -> float:
        return 1.0 - (1.0 - self.rate) ** self.pruning_round

    def __call__(self, step):
        # Never prune inside a round: masks change only between rounds (see module docstring).
        return tf.constant(False), tf.constant(self.sparsity, dtype=tf.float32)

    def get_config(self) -> dict:
        return {
            "class_name": tf_keras.utils.get_registered_name(type(self)),
            "config": {"rate": self.rate, "pruning_round": self.pruning_round},
        }

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()
