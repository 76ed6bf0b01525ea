"""Magnitude masks: exact counts, nesting, ties."""

import numpy as np

from lth_tf.pruning.masks import layerwise_masks, magnitude_mask, percent_remaining


def test_mask_keeps_exactly_the_largest_surviving_magnitudes():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(300, 100)).astype(np.float32)
    mask = magnitude_mask(weights, np.ones_like(weights), sparsity=0.2)
    assert mask.sum() == 24_000
    assert np.abs(weights[mask == 1]).min() >= np.abs(weights[mask == 0]).max()


def test_masks_are_nested_over_rounds_even_when_pruned_weights_grow_back():
    rng = np.random.default_rng(1)
    mask = np.ones((50, 40), np.float32)
    for pruning_round in range(1, 8):
        # Weights at pruned positions are large here: they must still never come back.
        weights = rng.normal(size=mask.shape) * np.where(mask == 1, 1.0, 100.0)
        new = magnitude_mask(weights, mask, sparsity=1 - 0.8**pruning_round)
        assert np.all(new <= mask)
        assert abs(new.sum() - 2000 * 0.8**pruning_round) <= 1
        mask = new


def test_ties_are_broken_by_position_and_counts_stay_exact():
    weights = np.ones(10, np.float32)
    mask = magnitude_mask(weights, np.ones(10, np.float32), sparsity=0.3)
    assert mask.tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]


def test_layerwise_uses_each_weights_own_sparsity():
    weights = {"a": np.arange(10.0), "b": np.arange(20.0)}
    ones = {k: np.ones_like(v) for k, v in weights.items()}
    masks = layerwise_masks(weights, ones, {"a": 0.5, "b": 0.1})
    assert masks["a"].sum() == 5 and masks["b"].sum() == 18
    assert percent_remaining(masks) == 100 * 23 / 30


def test_mask_equals_a_stable_sort_by_magnitude_with_many_ties():
    # The definition: stable sort of the survivors by decreasing magnitude, keep the first k.
    rng = np.random.default_rng(2)
    for _ in range(200):
        shape = tuple(rng.integers(1, 30, size=2))
        weights = rng.integers(-3, 4, size=shape).astype(np.float32)  # mostly ties
        weights[rng.random(shape) < 0.05] = np.nan  # a diverged weight ranks last
        mask = (rng.random(shape) < rng.random()).astype(np.float32)
        sparsity = float(rng.random())
        keep = min(max(round(weights.size * (1 - sparsity)), 1), int(mask.sum()))
        scores = np.where(mask.reshape(-1) > 0, np.abs(weights.reshape(-1)), -1.0)
        expected = np.zeros(weights.size, np.float32)
        expected[np.argsort(-scores, kind="stable")[:keep]] = 1
        got = magnitude_mask(weights, mask, sparsity)
        assert got.reshape(-1).tolist() == expected.tolist()


def test_a_fully_pruned_mask_stays_empty():
    mask = magnitude_mask(np.ones(4, np.float32), np.zeros(4, np.float32), sparsity=0.5)
    assert mask.tolist() == [0, 0, 0, 0]
