"""Masks: layerwise, global, random and block magnitude masks; exact counts, nesting, ties."""

import numpy as np

from lth_tf.pruning.masks import (
    block_magnitude_mask,
    global_masks,
    layerwise_masks,
    magnitude_mask,
    percent_remaining,
    random_masks,
)
from tests.helpers import blocks_are_whole


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


def test_global_masks_keep_exactly_the_largest_weights_of_the_whole_network_and_nest():
    rng = np.random.default_rng(0)
    # Layers on different scales: one threshold must leave them unequally sparse.
    weights = {
        "a": rng.normal(size=(30, 40)) * 0.1,
        "b": rng.normal(size=(3, 3, 8, 16)),
        "c": rng.normal(size=(500,)) * 3.0,
    }
    total = sum(w.size for w in weights.values())
    masks = {name: np.ones(w.shape, np.float32) for name, w in weights.items()}
    for pruning_round in (1, 2, 3):
        sparsity = 1 - 0.8**pruning_round
        new = global_masks(weights, masks, sparsity)
        alive = sum(int(m.sum()) for m in new.values())
        assert alive == round(total * 0.8**pruning_round)
        kept = np.concatenate([np.abs(weights[n])[new[n] == 1] for n in weights])
        dropped = np.concatenate([np.abs(weights[n])[new[n] == 0] for n in weights])
        assert kept.min() >= dropped.max()
        for name in weights:
            assert np.all(new[name] <= masks[name]), "a pruned weight came back"
            assert new[name].shape == weights[name].shape
        fractions = [new[name].mean() for name in weights]
        assert fractions[0] < fractions[1] < fractions[2]
        masks = new


def test_global_masks_break_ties_by_position_across_layers():
    weights = {"a": np.ones(4), "b": np.ones(4)}
    masks = global_masks(weights, {n: np.ones(4) for n in weights}, sparsity=0.25)
    assert masks["a"].tolist() == [1, 1, 1, 1] and masks["b"].tolist() == [1, 1, 0, 0]


def test_random_masks_keep_exact_counts_among_survivors_and_are_seeded():
    rng = np.random.default_rng(1)
    previous = {"a": (rng.random((20, 30)) < 0.7).astype(np.float32), "b": np.ones(50)}
    counts = {"a": 100, "b": 7}
    first = random_masks(previous, counts, np.random.default_rng(5))
    again = random_masks(previous, counts, np.random.default_rng(5))
    other = random_masks(previous, counts, np.random.default_rng(6))
    for name in previous:
        assert int(first[name].sum()) == counts[name]
        assert np.all(first[name] <= previous[name])
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["a"], other["a"])


def test_block_masks_keep_whole_blocks_exact_counts_and_nest():
    rng = np.random.default_rng(0)
    mask = np.ones((64, 12), np.uint8)
    blocks = 64 // 4 * 12
    for pruning_round in range(1, 8):
        # Big values at pruned positions must never bring a block back.
        weights = rng.normal(size=mask.shape) * np.where(mask == 1, 1.0, 100.0)
        sparsity = 1 - 0.8**pruning_round
        new = block_magnitude_mask(weights, mask, sparsity, (4, 1))
        assert new.dtype == mask.dtype and blocks_are_whole(new, (4, 1))
        assert new.sum() == 4 * round(blocks * 0.8**pruning_round)
        assert np.all(new <= mask)
        mask = new


def test_block_scores_are_mean_magnitudes_and_ties_go_to_the_earlier_block():
    # Column 0: one large weight among tiny ones (mean 0.28); column 1: all medium (mean 0.5).
    weights = np.array([[1.0, 0.5], [0.05, 0.5], [0.05, 0.5], [0.02, 0.5]])
    mask = block_magnitude_mask(weights, np.ones_like(weights), 0.5, (4, 1))
    assert mask[:, 0].tolist() == [0, 0, 0, 0] and mask[:, 1].tolist() == [1, 1, 1, 1]
    ties = block_magnitude_mask(np.ones((8, 2)), np.ones((8, 2)), 0.5, (4, 1))
    assert ties[:4].sum() == 8 and ties[4:].sum() == 0  # row-major: blocks (0,0), (0,1) first


def test_block_1x1_is_unstructured_and_edge_blocks_may_be_partial():
    rng = np.random.default_rng(2)
    weights, ones = rng.normal(size=(30, 7)), np.ones((30, 7), np.float32)
    np.testing.assert_array_equal(
        block_magnitude_mask(weights, ones, 0.6, (1, 1)), magnitude_mask(weights, ones, 0.6)
    )
    partial = block_magnitude_mask(weights, ones, 0.5, (4, 1))  # 8 block rows, the last of 2
    assert blocks_are_whole(np.pad(partial, ((0, 2), (0, 0)), mode="edge"), (4, 1))
    assert 0 < partial.sum() < ones.sum()


def test_layerwise_masks_prune_only_the_named_weights_in_blocks():
    rng = np.random.default_rng(3)
    weights = {"fc/kernel": rng.normal(size=(16, 8)), "conv/kernel": rng.normal(size=(3, 3, 1, 8))}
    ones = {name: np.ones_like(w) for name, w in weights.items()}
    masks = layerwise_masks(weights, ones, {n: 0.5 for n in weights}, {"fc/kernel": (4, 1)})
    assert blocks_are_whole(masks["fc/kernel"], (4, 1))
    np.testing.assert_array_equal(
        masks["conv/kernel"], magnitude_mask(weights["conv/kernel"], ones["conv/kernel"], 0.5)
    )
