"""Export settings: calibration and timing sizes, and how the int8 file stores its weights.

No TensorFlow: a pipeline checks them before TensorFlow starts.

>>> ExportOptions(int8_storage="smallest").int8_storage
'smallest'
"""

from __future__ import annotations

import dataclasses
import numbers

from lth_tf.errors import LthError

# How the int8 file stores its weights (``ExportOptions.int8_storage``).
INT8_STORAGE = {
    "auto": "sparse where that is smaller and no slower in LiteRT than dense storage",
    "smallest": "sparse wherever that is smaller, however fast it runs",
    "dense": "always dense, which runs under LiteRT's default options",
}


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How much data calibration and timing use, and how the int8 file stores its weights.

    ``int8_storage`` is one of :data:`INT8_STORAGE`. The default, ``auto``, makes the int8
    ticket never larger and never slower than the dense int8 export: sparse storage is kept
    only when it is both smaller and, timed side by side, no slower.
    """

    representative_examples: int = 500
    latency_invocations: int = 2000
    latency_warmup: int = 200
    latency_threads: int = 1
    latency_examples: int = 100
    # Test examples the int8 file's sparse encoding is checked on (against dense storage).
    storage_check_examples: int = 1000
    int8_storage: str = "auto"
    # Run every file on an emulated ARM LiteRT too (lth_tf.export.arm_check): which kernels
    # ran, accuracy and outputs there, emulated speed against the dense export.
    arm: bool = False
    # Test examples run on the emulated ARM: emulation is 10-100x slower than the host, so a
    # stated subset (the first ones) rather than the whole test set.
    arm_examples: int = 200
    # Emulated timing: interleaved rounds, each file invoked this often per round.
    arm_timing_rounds: int = 5
    arm_timing_invocations: int = 3
    # Also write the ticket as a Keras 3 model, ticket.keras (lth_tf.models.keras3.to_keras3).
    keras3: bool = False

    def __post_init__(self):
        for name in ("arm", "keras3"):
            if not isinstance(getattr(self, name), bool):
                raise LthError(f"{name}={getattr(self, name)!r}: give True or False")
        for name in ("arm_examples", "arm_timing_rounds", "arm_timing_invocations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise LthError(f"{name}={value!r}: give a whole number of at least 1")
            object.__setattr__(self, name, int(value))
        if self.int8_storage not in INT8_STORAGE:
            choices = "; ".join(f"{name} ({what})" for name, what in INT8_STORAGE.items())
            raise LthError(f"int8_storage={self.int8_storage!r}: choose one of {choices}")
