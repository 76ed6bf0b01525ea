"""Progress over training, as a loop callback (the loop itself prints nothing).

On a terminal or in a notebook's cell it is Keras's progress bar; anywhere else (a log file, a
pipe, a batch job) it is one plain line per tenth of the training, with a timestamp and the
speed, so a log holds no carriage returns or backspaces.

>>> train(trainer, progress, 1000, [..., ProgressBar(500, 1000, "Round 1")])  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time
from collections.abc import Callable

import tf_keras

from lth_tf.monitoring.watching import in_notebook
from lth_tf.training.loop import Callback, Chunk, TrainingProgress

# A plain line whenever another tenth of the training is done.
PLAIN_LINES = 10
_SHORT = {"accuracy": "acc", "val_accuracy": "val", "test_accuracy": "test"}


def speed(rate: float) -> str:
    """Iterations per second, as s/it below 1 it/s (a slow conv net would read ``0 it/s``).

    >>> speed(812.4), speed(3.25), speed(0.25), speed(0.0)
    ('812 it/s', '3.2 it/s', '4.0 s/it', '0 it/s')
    """
    if rate >= 10:
        return f"{rate:.0f} it/s"
    if rate >= 1:
        return f"{rate:.1f} it/s"
    if rate > 0:
        return f"{1 / rate:.1f} s/it"
    return "0 it/s"


class ProgressBar(Callback):
    """Progress over iterations ``start`` to ``stop``; ``title`` (printed first) gets the global
    range when training starts past 0, e.g. "Round 1: iterations 500 to 1000".

    It counts the iterations trained in this call (0 to stop - start), so its averages, speed
    and time left are those of this training; it shows each chunk's training loss and accuracy,
    the last validation accuracy, and the test accuracy once the end measured it. ``plain``
    (default: when stdout is neither a terminal nor a notebook's) prints lines instead of
    redrawing a bar.
    """

    def __init__(self, start: int, stop: int, title: str | None = None, plain: bool | None = None):
        if title is not None:
            print(title if start == 0 else f"{title}: iterations {start} to {stop}")
        self.start, self.stop, self.title = start, stop, title or "training"
        # A notebook's stdout is no terminal, but its cell redraws a bar as a terminal does.
        self.plain = not (sys.stdout.isatty() or in_notebook()) if plain is None else plain
        self.began = time.monotonic()
        self.next_line = 1
        self.bar = None
        if not self.plain:
            self.bar = tf_keras.utils.Progbar(
                stop - start,
                stateful_metrics=["val_accuracy", "test_accuracy"],
                unit_name="iteration",
                interval=0.5,
            )

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        values = [("loss", chunk.loss), ("accuracy", chunk.accuracy)]
        if progress.evaluations:
            latest = progress.evaluations[-1]
            # Without a validation split (--holdout=0) the test split is measured instead.
            if not math.isnan(latest.val_accuracy):
                values.append(("val_accuracy", latest.val_accuracy))
            if chunk.last or math.isnan(latest.val_accuracy):
                values.append(("test_accuracy", latest.test_accuracy))
        if self.bar is not None:
            self.bar.update(chunk.stop - self.start, values=values)
            return
        done = (chunk.stop - self.start) / max(self.stop - self.start, 1)
        if done * PLAIN_LINES < self.next_line and not chunk.last:
            return
        self.next_line = int(done * PLAIN_LINES) + 1
        print(self.line(chunk.stop, values), flush=True)

    def line(self, iteration: int, values: list[tuple[str, float]]) -> str:
        """``12:03:07 Round 1: 5500/10000 (55%) 812 it/s | loss 0.3102 acc 0.9100 val 0.8512``"""
        seconds = max(time.monotonic() - self.began, 1e-9)
        rate = (iteration - self.start) / seconds
        percent = 100 * (iteration - self.start) / max(self.stop - self.start, 1)
        clock = datetime.datetime.now().strftime("%H:%M:%S")
        # Short names keep the line under 100 columns.
        figures = " ".join(f"{_SHORT.get(name, name)} {value:.4f}" for name, value in values)
        return (
            f"{clock} {self.title}: {iteration}/{self.stop} ({percent:.0f}%) {speed(rate)} | "
            f"{figures}"
        )


# An estimate is worth a line only for a run a person might not wait for.
LONG_RUN_SECONDS = 300.0
# Measured past the first chunk (which includes tracing and compiling) over at least this long.
ESTIMATE_AFTER_SECONDS = 10.0


class RunEstimate(Callback):
    """Says once, early in a long run, about how long the rest of it will take: the iterations
    left in this round (to ``stop``) and ``later_iterations`` (the rounds after it) at the speed
    measured so far, evaluations included, compilation not (the first chunk is left out).

    >>> RunEstimate(1000, 9000).text(12_000, 100.0)
    'Estimated time left: about 2 min (12,000 iterations at 100 it/s, evaluations included).'
    """

    def __init__(self, stop: int, later_iterations: int, log: Callable[[str], None] | None = None):
        self.stop, self.later_iterations = stop, later_iterations
        self.log = log or logging.getLogger("lth_tf").info
        self.first: tuple[int, float] | None = None
        self.done = False

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        if self.done:
            return
        now = time.monotonic()
        if self.first is None:
            self.first = (chunk.stop, now)
            return
        iterations, seconds = chunk.stop - self.first[0], now - self.first[1]
        if seconds < ESTIMATE_AFTER_SECONDS and not chunk.last:
            return
        self.done = True
        rate = iterations / max(seconds, 1e-9)
        left = self.later_iterations + (self.stop - chunk.stop)
        if left / rate >= LONG_RUN_SECONDS:
            self.log(self.text(left, rate))

    @staticmethod
    def text(iterations: int, rate: float) -> str:
        seconds = iterations / rate
        hours, minutes = divmod(round(seconds / 60), 60)
        span = f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"
        return (
            f"Estimated time left: about {span} ({iterations:,} iterations at {speed(rate)}, "
            "evaluations included)."
        )
