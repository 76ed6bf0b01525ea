"""A progress bar over training, as a loop callback (the loop itself prints nothing).

>>> train(trainer, progress, 1000, [..., ProgressBar(500, 1000, "Round 1")])  # doctest: +SKIP
"""

from __future__ import annotations

import tf_keras

from lth_tf.loop import Callback, Chunk, TrainingProgress


class ProgressBar(Callback):
    """Keras's Progbar over iterations ``start`` to ``stop``; ``title`` (printed first) gets the
    global range when training starts past 0, e.g. "Round 1: iterations 500 to 1000".

    The bar counts the iterations trained in this call (0 to stop - start), so its averages,
    speed and time left are those of this training; it shows each chunk's training loss and
    accuracy, the last validation accuracy, and the test accuracy once the end measured it.
    """

    def __init__(self, start: int, stop: int, title: str | None = None):
        if title is not None:
            print(title if start == 0 else f"{title}: iterations {start} to {stop}")
        self.start = start
        self.bar = tf_keras.utils.Progbar(
            stop - start,
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
        self.bar.update(chunk.stop - self.start, values=values)
