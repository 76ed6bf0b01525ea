"""How the loop cuts training into compiled calls (:func:`lth_tf.training.loop.train`), with a fake
trainer: a call ends at the stop, where a callback wants one, or after the trainer's
:class:`ChunkLength`; under "auto" the first two calls train one iteration each (tracing,
then timing) and the rest about a second's worth, 1 to 100."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lth_tf.errors import LthError
from lth_tf.training.chunks import MAX_AUTO_STEPS, ChunkLength
from lth_tf.training.loop import Callback, SnapshotAt, TrainingProgress, train

# What the first call pays on top of its iterations: tracing and compiling the step.
TRACING_SECONDS = 5.0


class _FakeTrainer:
    """What :func:`train` needs of a Trainer; each call "takes" ``seconds_per_iteration``."""

    def __init__(self, steps_per_execution, seconds_per_iteration=0.01):
        self.chunk_length = ChunkLength(steps_per_execution)
        self.training = SimpleNamespace(batch_size=2, seed=0)
        self.seconds_per_iteration = seconds_per_iteration
        self.calls: list[int] = []

    def batches_from(self, iteration, seed):
        return iteration

    def train_steps(self, stream, steps):
        assert steps <= self.chunk_length.current
        seconds = steps * self.seconds_per_iteration + (0 if self.calls else TRACING_SECONDS)
        self.calls.append(steps)
        self.chunk_length.timed(steps, seconds)
        return 0.5 * steps * 2, steps


class _EvaluateEvery(Callback):
    def __init__(self, every):
        self.every = every
        self.stops: list[int] = []

    def next_stop(self, iteration):
        return (iteration // self.every + 1) * self.every

    def on_chunk(self, chunk, progress):
        self.stops.append(chunk.stop)


def test_calls_end_at_evaluations_snapshots_the_count_and_the_stop():
    trainer, every, snapped = _FakeTrainer(4), _EvaluateEvery(7), []
    snapshot = SnapshotAt([10], snapped.append)
    progress = train(trainer, TrainingProgress(), 30, [every, snapshot])
    assert every.stops == [4, 7, 10, 14, 18, 21, 25, 28, 30]
    assert trainer.calls == [4, 3, 3, 4, 4, 3, 4, 3, 2]
    assert snapped == [10] and progress.iteration == 30


@pytest.mark.parametrize(
    "seconds_per_iteration, calls",
    [
        (0.25, [1, 1, 4, 4, 4, 4, 2]),  # a slow conv net: a second is 4 iterations
        (0.001, [1, 1, MAX_AUTO_STEPS, MAX_AUTO_STEPS, 48]),  # a fast net: 100, as before auto
        (3.0, [1] * 5),  # slower than a second an iteration: one a call
    ],
)
def test_auto_sizes_calls_to_about_a_second_after_one_traced_and_one_timed(
    seconds_per_iteration, calls
):
    trainer = _FakeTrainer("auto", seconds_per_iteration)
    train(trainer, TrainingProgress(), sum(calls))
    assert trainer.calls == calls


def test_auto_is_sized_once_and_a_count_never():
    length = ChunkLength("auto")
    length.size(0.1)  # Trainer.choose_xla's timing, when it timed one
    length.timed(1, 0.001)
    length.timed(1, 0.001)
    assert length.current == 10
    fixed = ChunkLength(7)
    fixed.timed(1, 60.0)
    fixed.timed(1, 60.0)
    fixed.size(60.0)
    assert fixed.current == 7


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "fast"])
def test_a_count_that_is_not_a_positive_integer_or_auto_is_refused(value):
    with pytest.raises(LthError, match="--steps_per_execution must be an integer >= 1 or auto"):
        ChunkLength(value)
