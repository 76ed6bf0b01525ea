"""Magnitude masks, computed in NumPy so that counts are exact and masks nested.

TF-MOT's own mask update keeps every weight whose magnitude ties the threshold; here the k
largest surviving weights are kept exactly (ties broken by position), which makes the sparsity
of a layer exact and a pruned weight never come back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lth_tf.errors import LthError

if TYPE_CHECKING:
    from lth_tf.config import PruningHparams
    from lth_tf.pruning.channels import ChannelPlan


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
    keep = min(surviving_count(weights.size, sparsity), int(np.count_nonzero(mask)))
    new_mask = np.zeros(weights.size, dtype=mask.dtype)
    if keep == 0:
        return new_mask.reshape(weights.shape)
    scores = np.where(mask.reshape(-1) > 0, np.abs(weights.reshape(-1)), -1.0)
    # A NaN weight (a diverged round) ranks below everything, as it would in a sort.
    scores = np.nan_to_num(scores, nan=-2.0)
    # The keep-th largest score, in linear time (a sort took most of a round's pruning time).
    threshold = np.partition(scores, scores.size - keep)[scores.size - keep]
    above = scores > threshold
    # Among weights tied at the threshold the earlier positions survive, deterministically.
    ties = np.flatnonzero(scores == threshold)[: keep - int(np.count_nonzero(above))]
    new_mask[above] = 1
    new_mask[ties] = 1
    return new_mask.reshape(weights.shape)


def block_magnitude_mask(
    weights: np.ndarray, mask: np.ndarray, sparsity: float, block: tuple[int, int]
) -> np.ndarray:
    """Like :func:`magnitude_mask`, but keeps or prunes whole blocks of a rank-2 kernel.

    A block's score is the mean magnitude of its weights; ``sparsity`` of the blocks is pruned
    (counted in blocks: ``round(blocks * (1 - sparsity))`` survive), only blocks alive in
    ``mask`` can survive, and ties go to the earlier block (row-major). Edge blocks of a kernel
    whose shape is not a multiple of ``block`` are partial. ``block=(1, 1)`` is exactly
    :func:`magnitude_mask`.

    >>> w = np.array([[0.1, 2.0], [0.2, 3.0], [5.0, 0.1], [0.1, 0.1]])
    >>> block_magnitude_mask(w, np.ones_like(w), sparsity=0.5, block=(2, 1)).tolist()
    [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    """
    if tuple(block) == (1, 1):
        return magnitude_mask(weights, mask, sparsity)
    if weights.ndim != 2:
        raise ValueError(f"block pruning needs a rank-2 kernel, got shape {weights.shape}")
    (rows, cols), (block_rows, block_cols) = weights.shape, block
    grid = (-(-rows // block_rows), -(-cols // block_cols))
    padding = ((0, grid[0] * block_rows - rows), (0, grid[1] * block_cols - cols))

    def per_block(values: np.ndarray) -> np.ndarray:
        blocks = np.pad(values, padding).reshape(grid[0], block_rows, grid[1], block_cols)
        return blocks.sum(axis=(1, 3))

    alive = mask > 0
    scores = per_block(np.abs(weights) * alive) / per_block(np.ones(weights.shape))
    block_mask = magnitude_mask(scores, (per_block(alive) > 0).astype(mask.dtype), sparsity)
    expanded = np.repeat(np.repeat(block_mask, block_rows, axis=0), block_cols, axis=1)
    # Times the old mask: a block that was partly pruned can never grow back.
    return (expanded[:rows, :cols] * alive).astype(mask.dtype)


def layerwise_masks(
    weights: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    sparsities: dict[str, float],
    blocks: dict[str, tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """One mask per weight, each at its own target sparsity.

    Weights named in ``blocks`` are pruned in blocks of that shape
    (:func:`block_magnitude_mask`), the others weight by weight (:func:`magnitude_mask`).
    """
    blocks = blocks or {}
    return {
        name: block_magnitude_mask(
            weights[name], masks[name], sparsities[name], blocks.get(name, (1, 1))
        )
        for name in weights
    }


def global_masks(
    weights: dict[str, np.ndarray], masks: dict[str, np.ndarray], sparsity: float
) -> dict[str, np.ndarray]:
    """One magnitude threshold over all of ``weights``: ``sparsity`` of their total is pruned.

    Exactly ``round(total * (1 - sparsity))`` weights survive network-wide (the largest
    magnitudes among the survivors of ``masks``, so masks are nested; ties go to the earlier
    position, in the order of ``weights``), however unevenly that leaves the layers.

    >>> w = {"a": np.array([0.5, 0.4]), "b": np.array([0.1, 0.2, 3.0, 0.3])}
    >>> m = global_masks(w, {k: np.ones_like(v) for k, v in w.items()}, sparsity=0.5)
    >>> m["a"].tolist(), m["b"].tolist()
    ([1.0, 1.0], [0.0, 0.0, 1.0, 0.0])
    """
    names = list(weights)
    sizes = [weights[name].size for name in names]
    flat_weights = np.concatenate([weights[name].reshape(-1) for name in names])
    flat_masks = np.concatenate([masks[name].reshape(-1) for name in names])
    flat = magnitude_mask(flat_weights, flat_masks, sparsity)
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    return {
        name: piece.reshape(weights[name].shape) for name, piece in zip(names, pieces, strict=True)
    }


def random_masks(
    masks: dict[str, np.ndarray], counts: dict[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Keeps ``counts[name]`` weights of each mask, chosen uniformly among its survivors.

    The random-pruning control: the same number of weights per layer as a ticket, in random
    places. Only survivors of ``masks`` can be kept, so masks are nested. Layers are drawn in
    sorted name order, so a seeded ``rng`` gives the same masks every time.

    >>> out = random_masks({"a": np.ones(10)}, {"a": 3}, np.random.default_rng(0))
    >>> int(out["a"].sum())
    3
    """
    out = {}
    for name in sorted(masks):
        alive = np.flatnonzero(masks[name].reshape(-1) > 0)
        if counts[name] > alive.size:
            raise ValueError(f"{name}: cannot keep {counts[name]} of {alive.size} survivors")
        keep = rng.choice(alive, size=counts[name], replace=False)
        mask = np.zeros(masks[name].size, dtype=masks[name].dtype)
        mask[keep] = 1
        out[name] = mask.reshape(masks[name].shape)
    return {name: out[name] for name in masks}


def percent_remaining(masks: dict[str, np.ndarray]) -> float:
    """Percentage of the weights of these masks still alive.

    IMP reports it over the layers it prunes (see :func:`counted_masks`).

    >>> percent_remaining({"a": np.ones(3), "b": np.zeros(1)})
    75.0
    """
    alive = sum(float(mask.sum()) for mask in masks.values())
    total = sum(mask.size for mask in masks.values())
    return 100.0 * alive / total


def _pruned_names(
    kinds: dict[str, str], pruning: PruningHparams, layers: dict[str, str] | None
) -> list[str]:
    """The weights IMP prunes: their layer's rate (its own, else its kind's) is not 0."""
    layers = layers or {}
    return [name for name, kind in kinds.items() if pruning.is_pruned(kind, layers.get(name))]


def check_finite_weights(weights: dict[str, np.ndarray], source: str) -> None:
    """Refuses weights holding NaN or inf: a magnitude ranking of them means nothing (NaN sorts
    anywhere, inf always survives), so masks from a diverged round would be arbitrary.

    >>> check_finite_weights({"fc1/kernel": np.array([1.0, np.nan])}, "round 0's weights")
    Traceback (most recent call last):
    lth_tf.errors.LthError: round 0's weights hold NaN or inf (1 of 2 values of fc1/kernel): \
masks cannot be ranked from them; that round diverged, so start a new experiment with a lower \
--learning_rate
    """
    for name, values in weights.items():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise LthError(
                f"{source} hold NaN or inf ({bad} of {values.size} values of {name}): masks "
                "cannot be ranked from them; that round diverged, so start a new experiment "
                "with a lower --learning_rate"
            )


def imp_masks(
    weights: dict[str, np.ndarray],
    previous: dict[str, np.ndarray],
    kinds: dict[str, str],
    sparsities: dict[str, float],
    pruning: PruningHparams,
    layers: dict[str, str] | None = None,
    source: str = "the trained weights",
    channels: ChannelPlan | None = None,
) -> dict[str, np.ndarray]:
    """The next masks of IMP, ``layerwise`` or ``global``, at the round's target sparsities.

    With a ``channels`` plan (``--granularity=channel``) the units ranked are whole channels
    (:meth:`lth_tf.pruning.channels.ChannelPlan.magnitude_masks`).

    Global pruning pools every layer whose rate is not 0 (its kind's, or its own where
    ``pruning.rates`` names it; ``layers`` maps weight names to layer names, as
    :attr:`lth_tf.pruning.wrapping.PrunedModel.layers`) under one threshold; the others keep
    their masks (all ones: they are never pruned). Layerwise pruning cuts Dense kernels in
    ``pruning.block_shape`` blocks: TFLite has fast sparse kernels for FullyConnected blocks
    alone.

    >>> from lth_tf.config import PruneRates, PruningHparams
    >>> w = {"a/kernel": np.array([1.0, 2.0]), "b/kernel": np.array([3.0, 0.5])}
    >>> ones = {k: np.ones(2) for k in w}
    >>> rates = PruneRates(fc=0.5, layers=(("b", 0.0),))
    >>> imp_masks(w, ones, {"a/kernel": "fc", "b/kernel": "fc"}, {"a/kernel": 0.5,
    ...           "b/kernel": 0.0}, PruningHparams(rates))["a/kernel"].tolist()
    [0.0, 1.0]
    """
    check_finite_weights(weights, source)  # ``source`` names them in the message
    if channels is not None:
        return channels.magnitude_masks(weights, previous, sparsities, pruning.scope)
    if pruning.scope == "global":
        pooled = _pruned_names(kinds, pruning, layers)
        masks = {name: previous[name] for name in weights}
        if pooled:
            # Every pooled layer's schedule carries the same, network-wide target.
            masks |= global_masks(
                {name: weights[name] for name in pooled},
                {name: previous[name] for name in pooled},
                sparsities[pooled[0]],
            )
        return masks
    blocks = {n: pruning.block_shape for n, kind in kinds.items() if kind in ("fc", "output")}
    return layerwise_masks(weights, previous, sparsities, blocks)


def counted_masks(
    masks: dict[str, np.ndarray],
    kinds: dict[str, str],
    pruning: PruningHparams,
    layers: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """The masks ``percent_remaining`` counts: of the layers IMP prunes (all, if it prunes none).

    For lenet and the conv nets that is every conv and dense layer; resnet20 and the VGGs leave
    their output layer dense, and it is not counted; nor is a layer whose own rate is 0
    (``layers`` as for :func:`imp_masks`).
    """
    pruned = set(_pruned_names(kinds, pruning, layers))
    counted = {n: m for n, m in masks.items() if n in pruned}
    return counted or masks
