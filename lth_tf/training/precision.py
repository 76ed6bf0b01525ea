"""Mixed precision: models built under a ``mixed_float16`` or ``mixed_bfloat16`` policy compute
in 16 bits and keep float32 weights (``--mixed_precision``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tf_keras

MIXED_PRECISION = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def mixed_precision_policy(name: str | None) -> Iterator[None]:
    """Builds models inside it with ``mixed_<name>`` (float32 weights, 16-bit compute).

    ``None`` or ``"float32"`` leaves the policy alone. The previous policy is restored after.

    >>> with mixed_precision_policy("bfloat16"):
    ...     model = build()  # doctest: +SKIP
    """
    if name in (None, "float32"):
        yield
        return
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(MIXED_PRECISION[name])
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def computes_in_float16(model: tf_keras.Model) -> bool:
    """Whether any layer computes in float16 (its gradients then need loss scaling)."""
    return any(
        layer.dtype_policy.compute_dtype == "float16"
        for layer in model.submodules
        if isinstance(layer, tf_keras.layers.Layer)
    )
