"""A metric callback written outside lth_tf, as a user would: the surviving weights' norm at
every evaluation and its running mean over the round (state a resume must restore)."""

from __future__ import annotations

import math

import numpy as np

from lth_tf.callbacks import RunCallback


class MaskedWeightNorm(RunCallback):
    """``masked_weight_norm``: the L2 norm of the prunable weights (masked: pruned ones are 0);
    ``mean_masked_weight_norm`` and ``evaluations_seen``: over the round's evaluations so far."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.rounds_ended: list[int] = []

    def on_round_start(self, context) -> None:
        self.total, self.count = 0.0, 0

    def on_evaluation(self, context, evaluation):
        squares = sum(float(np.sum(w.numpy() ** 2)) for w in context.pruned.weights.values())
        norm = math.sqrt(squares)
        self.total += norm
        self.count += 1
        return {
            "masked_weight_norm": norm,
            "mean_masked_weight_norm": self.total / self.count,
            "evaluations_seen": self.count,
        }

    def on_round_end(self, context, result) -> None:
        self.rounds_ended.append(result.round)

    def state(self):
        return {"total": np.float64(self.total), "count": np.int64(self.count)}

    def load_state(self, state) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])
