"""How a run executes: one :class:`Execution` for the pipelines, the Python API, the stability
analysis and sweeps. Nothing in it changes which experiment a run is (its name and
``hparams.json`` do not hold it); ``jit_compile`` and ``mixed_precision`` change the last bits of
the numbers, not what they mean.

>>> Execution(jit_compile=False, steps_per_execution=10, tensorboard=False).show_progress
True
>>> Execution(steps_per_execution=0)
Traceback (most recent call last):
lth_tf.errors.LthError: --steps_per_execution must be an integer >= 1 or auto, got 0

Imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from lth_tf.config import (
    JitCompile,
    StepsPerExecution,
    check_jit_compile,
    check_steps_per_execution,
)
from lth_tf.errors import LthError

# What --mixed_precision computes in (float32 weights either way); None is float32.
MIXED_PRECISIONS = ("float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a run computes, where it reads its data and what it shows while it trains.

    Each field is the flag of the same name (``show_progress`` is ``--progress``); the
    pipelines build it with ``pipelines.common.execution_from_flags``.
    """

    # True (XLA wherever it compiles), False (never) or "auto": a new experiment times both at
    # its start and keeps the faster; a resume, a branch and a stability analysis train as the
    # experiment chose (its sessions.json), so their numbers match its run bit for bit.
    jit_compile: JitCompile = "auto"
    # Iterations per compiled call: a count, or "auto" (about a second's worth, at most 100).
    steps_per_execution: StepsPerExecution = "auto"
    # "float16" (with loss scaling, for GPUs) or "bfloat16" (TPUs, CPUs): compute in 16 bits,
    # keep float32 weights. None (or "float32", which becomes None): float32.
    mixed_precision: str | None = None
    # Folder with the raw dataset files or a TFDS data_dir (None: the default places).
    data_dir: str | None = None
    # A progress line within each round (the Python API: only when a person watches).
    show_progress: bool = True
    # <experiment>/tensorboard/ and accuracy_vs_sparsity.png (only the chief of a multi-worker
    # run writes them).
    tensorboard: bool = True
    # Measure the test split at every evaluation, not only where a result needs it.
    test_every_evaluation: bool = False
    # The stability analysis: how often a copy in training is checkpointed (0: every chunk).
    checkpoint_seconds: float = 60.0
    # Under XLA on one device, a chunk's steps compile into one program (False: one per step,
    # kept so benchmarks can compare the two on each machine).
    xla_whole_chunk: bool = True

    def __post_init__(self) -> None:
        check_jit_compile(self.jit_compile, "--jit_compile")
        check_steps_per_execution(self.steps_per_execution)
        if self.mixed_precision == "float32":
            object.__setattr__(self, "mixed_precision", None)
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISIONS:
            raise LthError(
                f"--mixed_precision: unknown {self.mixed_precision!r}; choose float16 (GPUs), "
                "bfloat16 (TPUs, CPUs) or float32"
            )
        seconds = self.checkpoint_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            seconds = math.nan
        if not seconds >= 0:
            raise LthError(
                "checkpoint_seconds must be a number of seconds >= 0, got "
                f"{self.checkpoint_seconds!r}"
            )

    def resumed(
        self, recorded_xla: bool | None, recorded_chunk_length: int | None = None
    ) -> Execution:
        """``jit_compile="auto"`` becomes what an experiment recorded (``sessions.json``'s
        ``xla_training``), so a resume, a branch or an analysis trains as it did; an explicit
        True or False, or nothing recorded, stays as it is. ``steps_per_execution="auto"``
        likewise takes the recorded ``chunk_length``: the resumed calls end where the
        uninterrupted run's did, so its per-call training curve (TensorBoard) goes on the same.

        >>> Execution(jit_compile="auto").resumed(recorded_xla=False).jit_compile
        False
        >>> Execution(jit_compile=True).resumed(recorded_xla=False).jit_compile
        True
        >>> Execution().resumed(None, recorded_chunk_length=37).steps_per_execution
        37
        """
        changes: dict[str, object] = {}
        if self.jit_compile == "auto" and recorded_xla is not None:
            changes["jit_compile"] = recorded_xla
        if self.steps_per_execution == "auto" and recorded_chunk_length:
            changes["steps_per_execution"] = recorded_chunk_length
        return dataclasses.replace(self, **changes) if changes else self
