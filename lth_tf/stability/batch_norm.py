"""Batch-norm statistics recomputed from fixed training batches, for the networks a stability
analysis mixes: a mixture of two trained copies has activation statistics of its own, which
neither copy's moving averages describe.

>>> BatchNormStatistics(model, training_batches(...).take(100)).recompute()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf
import tf_keras

_BATCH_NORM = (
    tf_keras.layers.BatchNormalization,
    tf_keras.layers.experimental.SyncBatchNormalization,
)


def batch_norm_layers(model: tf_keras.Model) -> list[tf_keras.layers.Layer]:
    """Every batch-norm layer of ``model``, nested ones included."""
    return [layer for layer in model.submodules if isinstance(layer, _BATCH_NORM)]


class BatchNormStatistics:
    """Recomputes every batch-norm layer's moving mean and variance from fixed training batches:
    the average of the per-batch statistics, as a moving average with no decay would give.

    >>> BatchNormStatistics(model, training_batches(...).take(100)).recompute()  # doctest: +SKIP
    """

    def __init__(self, model: tf_keras.Model, batches: tf.data.Dataset):
        self.model = model
        self.layers = batch_norm_layers(model)
        self.batches = batches
        statistics = [
            v for layer in self.layers for v in (layer.moving_mean, layer.moving_variance)
        ]
        self._sums = [
            (v, tf.Variable(tf.zeros_like(v), trainable=False, name="sum")) for v in statistics
        ]
        self._accumulate = tf.function(self._accumulate_impl)

    def recompute(self) -> None:
        with self._momentum_zero():
            for _, total in self._sums:
                total.assign(tf.zeros_like(total))
            count = 0
            for images, _ in self.batches:
                self._accumulate(images)
                count += 1
            for statistic, total in self._sums:
                statistic.assign(total / count)

    def _accumulate_impl(self, images: tf.Tensor) -> None:
        # With momentum 0 a training call stores this batch's statistics; the reads below come
        # after that update (tf.function orders ops on the same variable).
        self.model(images, training=True)
        for statistic, total in self._sums:
            total.assign_add(statistic)

    @contextlib.contextmanager
    def _momentum_zero(self) -> Iterator[None]:
        # Keras reads the momentum when it traces the call, so it is 0 while the function traces.
        saved = [layer.momentum for layer in self.layers]
        for layer in self.layers:
            layer.momentum = 0.0
        try:
            yield
        finally:
            for layer, momentum in zip(self.layers, saved, strict=True):
                layer.momentum = momentum
