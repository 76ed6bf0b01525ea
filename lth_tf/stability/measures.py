"""The stability measures, in NumPy (no TensorFlow): mixtures along the path between two
copies, the error barrier (instability) and the L2 distance between surviving weights
(Frankle et al. 2020).

>>> instability([10.0, 14.5, 11.0])
4.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# Variables by name, as lth_tf.pruning.wrapping.snapshot gives them.
Snapshot = dict[str, np.ndarray]

# Frankle et al. (2020): a network is stable when the error barrier is below 2 points.
STABLE_BELOW = 2.0
DISTANCE_OVER = (
    "surviving prunable weights: the kernels of conv and dense layers where the round's mask is "
    "1 (biases and normalisation parameters excluded)"
)
DISTANCE_NORMALISATION = "||a - b||_2 / ((||a||_2 + ||b||_2) / 2)"


def mixtures(points: int) -> list[float]:
    """``points`` evenly spaced mixture weights in [0, 1]; the ends are exactly 0 and 1.

    >>> mixtures(5)
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return [i / (points - 1) for i in range(points)]


def interpolate(a: Snapshot, b: Snapshot, alpha: float) -> Snapshot:
    """``(1 - alpha) * a + alpha * b`` in each variable's dtype; alpha 0 gives ``a`` exactly
    and alpha 1 gives ``b`` exactly (pruned weights, 0 in both, stay exactly 0).

    >>> interpolate({"w": np.array([0.0, 2.0])}, {"w": np.array([4.0, 2.0])}, 0.25)["w"]
    array([1., 2.])
    """
    mixed = {}
    for name, value in a.items():
        if np.issubdtype(value.dtype, np.floating):
            keep, take = value.dtype.type(1.0 - alpha), value.dtype.type(alpha)
            mixed[name] = keep * value + take * b[name]
        else:
            mixed[name] = value  # e.g. integer counters: nothing to mix
    return mixed


def surviving_weights(weights: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray]):
    """The prunable weights where the mask is 1, as one float64 vector (keys in sorted order)."""
    return np.concatenate(
        [
            np.asarray(weights[name], np.float64)[np.asarray(masks[name]) > 0]
            for name in sorted(masks)
        ]
    )


def l2_distance(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray]
) -> tuple[float, float]:
    """(normalised, raw) L2 distance between two networks' surviving prunable weights.

    Normalised by the mean of the two norms, so networks of any size and sparsity compare:
    0 is identical, about 1.41 is two unrelated vectors of the same norm.

    >>> masks = {"k": np.array([1, 1, 0])}  # the third weight is pruned: it does not count
    >>> l2_distance({"k": np.array([3.0, 4, 9])}, {"k": np.array([4.0, -3, 7])}, masks)
    (1.4142135623730951, 7.0710678118654755)
    """
    va, vb = surviving_weights(a, masks), surviving_weights(b, masks)
    raw = float(np.linalg.norm(va - vb))
    scale = (np.linalg.norm(va) + np.linalg.norm(vb)) / 2
    return (raw / float(scale) if scale > 0 else 0.0), raw


def instability(path_errors: Sequence[float]) -> float:
    """The error barrier: the largest error along the path minus the mean error of its ends.

    >>> instability([10.0, 14.5, 11.0])
    4.0
    """
    return round(float(max(path_errors) - (path_errors[0] + path_errors[-1]) / 2), 9)


def mean_error(values: Iterable[float]) -> float:
    """A mean of errors, rounded to 9 decimals: 14.935 rather than 14.934999999999999.

    >>> mean_error([14.93, 14.94])
    14.935
    """
    values = list(values)
    return round(sum(values) / len(values), 9)
