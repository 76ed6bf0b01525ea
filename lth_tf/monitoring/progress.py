"""A progress bar over training, as a loop callback (the loop itself prints nothing).

>>> train(trainer, progress, 1000, [..., ProgressBar("Round 1", 0, 1000)])  # doctest: +SKIP
"""

from __future__ import annotations

import tf_keras

from lth_tf.loop import Callback, Chunk, TrainingProgress


class ProgressBar(Callback):
    """Keras's Progbar over iterations ``start`` to ``stop``, in global iteration numbers.

    Shows each chunk's training loss and accuracy, the last validation accuracy, and the test
    accuracy once the last evaluation measured it.
    """

    def __init__(self, title: str, start: int, stop: int):
        print(title if start == 0 else f"{title}: iterations {start} to {stop}")
        self.bar = tf_keras.utils.Progbar(
            stop,
            stateful_metrics=["val_accuracy", "test_accuracy"],
            unit_name="iteration",
            interval=0.5,
        )

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        values = [("loss", chunk.loss), ("accuracy", chunk.accuracy)]
        if progress.evaluations:
            values.append(("val_accuracy", progress.evaluations[-1].val_accuracy))
            if chunk.last:
                values.append(("test_accuracy", progress.evaluations[-1].test_accuracy))
        self.bar.update(chunk.stop, values=values)
