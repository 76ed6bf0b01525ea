"""How many iterations one compiled call trains: ``--steps_per_execution``, a count or
``auto`` (about a second's worth). Imports no TensorFlow.

>>> ChunkLength(20).current
20
"""

from __future__ import annotations

from lth_tf.config import StepsPerExecution, check_steps_per_execution

# --steps_per_execution=auto: a compiled call trains about this long, so Ctrl-C (which waits for
# the call to return) and the progress line answer within about a second on a slow model...
AUTO_CHUNK_SECONDS = 1.0
# ...and at most this many iterations: the fixed default auto replaced, which a fast model
# (lenet300_100: about 1 ms an iteration) still runs a call, as before.
MAX_AUTO_STEPS = 100


def auto_steps_per_execution(seconds_per_iteration: float) -> int:
    """Iterations per compiled call under ``--steps_per_execution=auto``: about
    :data:`AUTO_CHUNK_SECONDS` of training, 1 to :data:`MAX_AUTO_STEPS`.

    >>> auto_steps_per_execution(0.2), auto_steps_per_execution(0.001), auto_steps_per_execution(4)
    (5, 100, 1)
    """
    if not seconds_per_iteration > 0:
        return MAX_AUTO_STEPS
    return max(1, min(MAX_AUTO_STEPS, int(AUTO_CHUNK_SECONDS / seconds_per_iteration)))


class ChunkLength:
    """How many iterations one compiled call trains: ``steps_per_execution``, or under "auto"
    one until a call has been timed, then about :data:`AUTO_CHUNK_SECONDS`' worth.

    The first call traces (or compiles) the step and is not timed; the second sizes every later
    one. Where calls end changes no result: batch i is batch i whatever call trains it.

    >>> length = ChunkLength("auto")
    >>> length.timed(1, 3.0); length.timed(1, 0.25); length.current  # traced, then timed
    4
    >>> ChunkLength(20).current
    20
    """

    def __init__(self, steps_per_execution: StepsPerExecution):
        self.requested = check_steps_per_execution(steps_per_execution)
        self._length = None if self.requested == "auto" else self.requested
        self._untimed_calls = 0

    @property
    def current(self) -> int:
        return self._length or 1

    @property
    def sized(self) -> bool:
        return self._length is not None

    def timed(self, steps: int, seconds: float) -> None:
        """One call of ``steps`` iterations took ``seconds``."""
        if self._length is None:
            self._untimed_calls += 1
            if self._untimed_calls > 1:
                self.size(seconds / steps)

    def size(self, seconds_per_iteration: float) -> None:
        """Under "auto", sizes the calls from a measured speed (once; a count stays as it is)."""
        if self._length is None:
            self._length = auto_steps_per_execution(seconds_per_iteration)
