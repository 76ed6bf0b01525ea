"""A callback for the multi-worker test, passed with ``--callback``: on worker 1 of
``TF_CONFIG``'s cluster it makes ``time.perf_counter`` run :data:`SKEW` times fast, so that
worker times every compiled call as that much slower than worker 0 does. What a timing decides
(iterations per call under ``--steps_per_execution=auto``) must still be the same on both, or
their all-reduces stop matching and the run hangs.
"""

from __future__ import annotations

import json
import os
import time

from lth_tf.callbacks import RunCallback

# lenet300_100 trains an iteration in a few milliseconds here, which "auto" caps at 100 per
# call; 50 times that is a few tenths of a second, about 5 per call.
SKEW = 50.0


class SkewedClock(RunCallback):
    def __init__(self) -> None:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
        if task.get("index") == 1:
            real = time.perf_counter
            began = real()
            time.perf_counter = lambda: began + SKEW * (real() - began)
