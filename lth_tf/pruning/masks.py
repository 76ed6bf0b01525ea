"""Magnitude masks, computed in NumPy so that counts are exact and masks nested.

TF-MOT's own mask update keeps every weight whose magnitude ties the threshold; here the k
largest surviving weights are kept exactly (ties broken by position), which makes the sparsity
of a layer exact and a pruned weight never come back.
"""

from __future__ import annotations

import numpy as np


def surviving_count(size: int, sparsity: float) -> int:
    """Weights a tensor of ``size`` keeps at ``sparsity`` (never fewer than one).

    >>> surviving_count(1000, 0.36)
    640
    """
    return max(int(round(size * (1.0 - sparsity))), 1)


def magnitude_mask(weights: np.ndarray, mask: np.ndarray, sparsity: float) -> np.ndarray:
    """Keeps the largest-magnitude surviving weights so that ``sparsity`` of the tensor is pruned.

    Only weights alive in ``mask`` can survive, so masks are nested.

    >>> w = np.array([0.5, -3.0, 0.1, 2.0]); m = np.array([1.0, 1.0, 1.0, 0.0])
    >>> magnitude_mask(w, m, sparsity=0.5).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    keep = min(surviving_count(weights.size, sparsity), int(mask.sum()))
    scores = np.where(mask.reshape(-1) > 0, np.abs(weights.reshape(-1)), -1.0)
    # Stable sort on -score: among equal magnitudes the earlier position wins, deterministically.
    order = np.argsort(-scores, kind="stable")
    new_mask = np.zeros(weights.size, dtype=mask.dtype)
    new_mask[order[:keep]] = 1
    return new_mask.reshape(weights.shape)


def layerwise_masks(
    weights: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    sparsities: dict[str, float],
) -> dict[str, np.ndarray]:
    """One :func:`magnitude_mask` per weight, each at its own target sparsity."""
    return {name: magnitude_mask(weights[name], masks[name], sparsities[name]) for name in weights}


def percent_remaining(masks: dict[str, np.ndarray]) -> float:
    """Percentage of all prunable weights still alive.

    >>> percent_remaining({"a": np.ones(3), "b": np.zeros(1)})
    75.0
    """
    alive = sum(float(mask.sum()) for mask in masks.values())
    total = sum(mask.size for mask in masks.values())
    return 100.0 * alive / total
