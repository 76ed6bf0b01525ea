"""--data_order: every round draws its own batches (per_round) or replays round 0's (fixed)."""

import dataclasses
import logging

import numpy as np
import pytest
import tensorflow as tf

from lth_tf import io
from lth_tf.config import ExperimentHparams, PruneRates, TrainingHparams
from lth_tf.data.pipeline import stream_indices
from lth_tf.lottery.imp import run_imp
from tests.helpers import QUIET, as_before_a_field, lenet_hparams

K = 12  # the rewind point of the runs below


def first_batch(training: TrainingHparams, pruning_round: int, examples: int) -> np.ndarray:
    """Indices of the first batch round ``pruning_round`` trains on (iteration k's)."""
    batch = training.batch_size
    positions = tf.range(K * batch, (K + 1) * batch, dtype=tf.int64)
    return stream_indices(positions, examples, training.order_seed(pruning_round)).numpy()


@pytest.mark.parametrize("order", ["per_round", "fixed"])
def test_the_first_batches_of_rounds_1_and_2(order):
    training = TrainingHparams(batch_size=60, seed=5, data_order=order)
    round_0, round_1, round_2 = (first_batch(training, r, 600) for r in range(3))
    if order == "fixed":
        np.testing.assert_array_equal(round_1, round_2)
        np.testing.assert_array_equal(round_1, round_0)
    else:
        assert not np.array_equal(round_1, round_2)
        assert not np.array_equal(round_1, round_0)
        # Round 0 is the same under both: the dense network does not change.
        fixed = dataclasses.replace(training, data_order="fixed")
        np.testing.assert_array_equal(round_0, first_batch(fixed, 0, 600))
    # Another replicate (seed) draws other batches in every round.
    other = dataclasses.replace(training, seed=6)
    assert not np.array_equal(first_batch(other, 1, 600), round_1)


def test_order_seeds_are_one_per_seed_and_round():
    seeds = {
        TrainingHparams(seed=seed).order_seed(r) for seed in (0, 1, 2**31 - 1) for r in range(4)
    }
    assert len(seeds) == 12


def unpruned(hparams: ExperimentHparams) -> ExperimentHparams:
    """Plain SGD and nothing pruned: a round differs from round 0 only by its batches."""
    training = dataclasses.replace(hparams.training, optimizer="sgd", learning_rate=0.05)
    pruning = dataclasses.replace(hparams.pruning, rates=PruneRates())
    return dataclasses.replace(hparams, training=training, pruning=pruning)


def weights(experiment, pruning_round):
    return io.read_npz(experiment.weights(pruning_round))["fc1/kernel"]


@pytest.mark.parametrize("order", ["per_round", "fixed"])
def test_unpruned_rounds_train_on_their_own_batches_only_under_per_round(tmp_path, data, order):
    hparams = unpruned(lenet_hparams(rounds=2, rewind=f"{K}it", training={"data_order": order}))
    experiment = run_imp(hparams, tmp_path, "e", QUIET, data=data)
    dense, first, second = (weights(experiment, r) for r in range(3))
    if order == "fixed":
        np.testing.assert_array_equal(first, dense)
        np.testing.assert_array_equal(second, dense)
    else:
        assert not np.array_equal(first, dense)
        assert not np.array_equal(second, first)
    saved = io.read_json(experiment.hparams)
    assert saved["hparams"]["training"]["data_order"] == order


def test_a_directory_written_before_data_order_resumes_with_round_0s_batches(
    tmp_path, data, caplog
):
    """A directory of an lth_tf before --data_order (its hparams.json has no data_order) is
    found under its name by the same command, and its later rounds replay round 0's batches,
    as they did when it started."""
    hparams = unpruned(lenet_hparams(rounds=0, rewind=f"{K}it"))
    assert hparams.training.data_order == "per_round"
    first = run_imp(hparams, tmp_path, data=data, execution=QUIET)
    as_before_a_field(first.hparams, "training.data_order")

    more = dataclasses.replace(hparams, pruning=dataclasses.replace(hparams.pruning, rounds=2))
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        experiment = run_imp(more, tmp_path, data=data, execution=QUIET)
    assert experiment.root == first.root and [p.name for p in tmp_path.iterdir()] == [
        first.root.name
    ]
    assert "it keeps data_order=fixed" in caplog.text
    np.testing.assert_array_equal(weights(experiment, 1), weights(experiment, 0))
    np.testing.assert_array_equal(weights(experiment, 2), weights(experiment, 0))
    assert "data_order" not in io.read_json(experiment.hparams)["hparams"]["training"]
