"""The time estimate of a long run: once, from the speed past the first (compiling) chunk."""

import pytest

from lth_tf.monitoring import progress as progress_module
from lth_tf.monitoring.progress import RunEstimate
from lth_tf.training.loop import Chunk, TrainingProgress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return clock


def _chunks(estimate: RunEstimate, clock: _Clock, stops: list[int], seconds: list[float]):
    for start, stop, elapsed in zip([0, *stops], stops, seconds, strict=False):
        clock.now += elapsed
        chunk = Chunk(start, stop, 1.0, 0.5, stop == estimate.stop)
        estimate.on_chunk(chunk, TrainingProgress(iteration=stop))


def test_a_long_run_is_estimated_once_from_the_speed_after_the_first_chunk(clock):
    lines = []
    estimate = RunEstimate(stop=10_000, later_iterations=90_000, log=lines.append)
    # The first chunk compiles for 60 s; then 100 iterations take 5 s.
    _chunks(estimate, clock, [100, 200, 300, 400], [60.0, 5.0, 5.0, 5.0])
    assert lines == [
        "Estimated time left: about 1 h 23 min (99,700 iterations at 20 it/s, evaluations "
        "included)."
    ]


def test_a_short_run_says_nothing(clock):
    lines = []
    estimate = RunEstimate(stop=1_000, later_iterations=1_000, log=lines.append)
    _chunks(estimate, clock, [100, 200, 300, 400, 500], [60.0, 5.0, 5.0, 5.0, 5.0])
    assert lines == []
