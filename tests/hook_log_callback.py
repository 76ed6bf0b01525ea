"""A callback written outside lth_tf that logs which of its hooks a run calls, for the stability
analysis' tests: each copy's training is a round for it (an IMP run's rounds are logged too).
``iterations`` and ``chunks`` count what the current round trained (state a resume must
restore); at the run's end the log is appended to ``<experiment>/hook_log.txt``, which a test
reads after a pipeline's process ends.
"""

from __future__ import annotations

import numpy as np

from lth_tf.callbacks import CopyResult, RunCallback


class HookLog(RunCallback):
    """``calls``: one line per hook call but ``on_chunk`` (whose count is in the state)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.iterations = 0
        self.chunks = 0
        self.experiment = None
        self.run_first = 0  # the index in calls of this run's first line

    def on_run_start(self, experiment, hparams) -> None:
        self.experiment, self.run_first = experiment, len(self.calls)
        self.calls.append(f"run_start {hparams.model.name}")

    def on_round_start(self, context) -> None:
        self.iterations, self.chunks = 0, 0
        copy = context.stability_copy  # None in an IMP run
        which = "" if copy is None else f" rewind {copy.rewind_iteration} seed {copy.data_seed}"
        self.calls.append(f"round_start round {context.pruning_round}{which}")

    def on_chunk(self, context, chunk) -> None:
        self.iterations += chunk.stop - chunk.start
        self.chunks += 1

    def on_evaluation(self, context, evaluation):
        self.calls.append("evaluation")

    def on_round_end(self, context, result) -> None:
        which = ""
        if isinstance(result, CopyResult):
            which = f" rewind {result.rewind_iteration} seed {result.data_seed}"
        self.calls.append(
            f"round_end round {result.round}{which} trained {result.iterations} seen "
            f"{self.iterations} in {self.chunks} chunks"
        )

    def on_run_end(self) -> None:
        self.calls.append("run_end")
        with open(self.experiment.root / "hook_log.txt", "a") as log:
            log.write("".join(f"{line}\n" for line in self.calls[self.run_first :]))

    def state(self):
        return {"iterations": np.int64(self.iterations), "chunks": np.int64(self.chunks)}

    def load_state(self, state) -> None:
        self.iterations, self.chunks = int(state["iterations"]), int(state["chunks"])
