"""Whether XLA compiles the training and evaluation steps: what the model allows, and what
``--jit_compile=auto`` times (:meth:`lth_tf.training.trainer.Trainer.choose_xla`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import tensorflow as tf
import tf_keras

if TYPE_CHECKING:
    from lth_tf.training.trainer import BatchSource

_MAX_POOLING = (
    tf_keras.layers.MaxPooling1D,
    tf_keras.layers.MaxPooling2D,
    tf_keras.layers.MaxPooling3D,
)


def xla_evaluates_faster() -> bool:
    """Whether XLA compiles the evaluation step (with ``jit_compile`` on or ``"auto"``).

    With a GPU it does. On a CPU-only machine even lenet300_100's evaluation (batches of 1,000)
    ran 1.5x slower under XLA. (Training is measured instead: :meth:`Trainer.choose_xla`.)
    """
    return bool(tf.config.list_logical_devices("GPU"))


# A run whose plain training takes less than this pays more for XLA's compilation (seconds on a
# CPU for a conv net, and up to half a minute to time) than XLA could save: "auto" then trains
# without XLA and measures nothing more.
XLA_PAYS_AFTER_SECONDS = 300.0
# XLA is timed over longer runs only when one iteration of it took less than this many times
# one plain iteration (resnet20 and a MobileNetV2-style net took 37x and 74x on 2 CPU cores).
XLA_WORTH_TIMING = 2.0


def seconds_per_iteration(stream: BatchSource, steps: int, chunk: int) -> float:
    """Seconds per iteration of ``steps`` training iterations of ``stream``, ``chunk`` per
    compiled call (as a run calls it)."""
    began = time.perf_counter()
    for start in range(0, steps, chunk):
        stream.train(min(chunk, steps - start))
    return (time.perf_counter() - began) / steps


def xla_can_train(model: tf_keras.Model) -> bool:
    """Whether XLA can compile this model's training step under op determinism.

    XLA has no deterministic max-pooling gradient, and runs must stay deterministic to resume
    exactly, so models with max pooling train without XLA (their evaluation still uses it).
    """
    return not any(isinstance(layer, _MAX_POOLING) for layer in model.submodules)
