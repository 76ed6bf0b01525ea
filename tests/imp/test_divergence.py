"""Divergence: a non-finite loss stops the round with one line and records nothing of it; masks
are never ranked from non-finite weights; the early stop is always an evaluated iteration."""

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest

from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.lottery.imp import run_imp
from lth_tf.pruning.masks import imp_masks
from lth_tf.stability.plan import plan_stability
from lth_tf.training.chunks import ChunkLength
from lth_tf.training.loop import Callback, Diverged, EarlyStop, TrainingProgress, train
from lth_tf.training.trainer import Evaluation
from tests.helpers import QUIET, lenet_hparams
from tests.tf_helpers import half_pruned_lenet

NAN = math.nan


def test_a_diverging_round_stops_with_one_line_and_records_nothing(tmp_path, data):
    hparams = lenet_hparams(training={"learning_rate": 1e30})
    with pytest.raises(LthError) as caught:
        run_imp(hparams, tmp_path, "diverged", QUIET, data=data)
    message = str(caught.value)
    # The first compiled call whose loss is NaN: under --steps_per_execution=auto the first
    # two calls train one iteration each.
    assert message.startswith("round 0 diverged at iteration 2 ("), message
    assert "lower --learning_rate (now 1e+30) or add --warmup" in message
    assert "\n" not in message
    root = tmp_path / "diverged"
    assert not (root / "round_00" / "weights.npz").exists()
    assert ExperimentDir(root).completed_rounds() == set()
    # A rerun stops at the same point again rather than resuming into the NaN...
    with pytest.raises(LthError, match="round 0 diverged at iteration 2 "):
        run_imp(hparams, tmp_path, "diverged", QUIET, data=data)
    # ...and an experiment without a finished round cannot be analysed.
    with pytest.raises(LthError, match="round 0 of .* has not finished"):
        plan_stability(root, 0)


def test_masks_are_never_ranked_from_non_finite_weights():
    weights = {"fc/kernel": np.array([1.0, np.inf, 0.5, 2.0])}
    ones = {"fc/kernel": np.ones(4)}
    kinds, sparsities = {"fc/kernel": "fc"}, {"fc/kernel": 0.5}
    pruning = lenet_hparams().pruning
    assert imp_masks({"fc/kernel": np.arange(4.0)}, ones, kinds, sparsities, pruning)[
        "fc/kernel"
    ].tolist() == [0, 0, 1, 1]
    with pytest.raises(LthError) as caught:
        imp_masks(weights, ones, kinds, sparsities, pruning, source="round 3's weights")
    assert str(caught.value).startswith("round 3's weights hold NaN or inf (1 of 4 values of fc")


def test_the_early_stop_is_an_evaluated_iteration_even_when_a_loss_is_nan():
    stop = EarlyStop()
    assert stop.iteration is None
    stop.update(Evaluation(100, NAN, 0.1, NAN, NAN))
    assert stop.iteration == 100  # not 0, which was never evaluated
    stop.update(Evaluation(200, 0.7, 0.8, 0.7, 0.81))
    stop.update(Evaluation(300, 0.9, 0.8, 0.9, 0.79))
    assert (stop.iteration, stop.test_accuracy) == (200, 0.81)


class _FakeTrainer:
    """Chunk losses from a list; what :func:`train` needs of a Trainer, no TensorFlow."""

    def __init__(self, losses):
        self.losses = iter(losses)
        self.training = SimpleNamespace(batch_size=1)
        self.chunk_length = ChunkLength(10)

    def batches_from(self, iteration, seed):
        return None

    def train_steps(self, stream, steps):
        return next(self.losses) * steps, 0


class _Seen(Callback):
    def __init__(self):
        self.stops = []

    def on_chunk(self, chunk, progress):
        self.stops.append(chunk.stop)


def test_a_nan_chunk_is_raised_before_any_callback_sees_it():
    seen = _Seen()
    with pytest.raises(Diverged) as caught:
        train(_FakeTrainer([1.0, 0.5, NAN, 0.1]), TrainingProgress(), 40, [seen])
    assert (caught.value.iteration, caught.value.what) == (30, "training loss")
    assert seen.stops == [10, 20]  # no checkpoint callback can have saved iteration 30


def test_an_exploding_finite_loss_is_warned_about_once(caplog):
    with caplog.at_level(logging.WARNING, logger="lth_tf"):
        train(_FakeTrainer([1.0, 2.0, 11.0, 50.0]), TrainingProgress(), 40)
    warnings = [r.getMessage() for r in caplog.records if "may be diverging" in r.getMessage()]
    assert len(warnings) == 1 and "to 11 (iterations 20-30)" in warnings[0], warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lth_tf"):
        train(_FakeTrainer([1.0, 2.0, 9.0, 0.5]), TrainingProgress(), 40)
    assert not [r for r in caplog.records if "may be diverging" in r.getMessage()]


def test_imp_refuses_to_rank_masks_from_a_rounds_non_finite_weights(tmp_path, data):
    from lth_tf import io
    from lth_tf.lottery.controls import ControlContext, get_control

    hparams = lenet_hparams(rounds=1)
    experiment = run_imp(hparams, tmp_path, "finished", QUIET, data=data)
    weights = io.read_npz(experiment.weights(0))
    weights["fc2/kernel"][0, 0] = np.nan  # as a round that diverged unnoticed would leave them
    io.write_npz(experiment.weights(0), weights)
    with pytest.raises(LthError) as caught:
        get_control("none").masks(ControlContext(experiment, hparams), 1, half_pruned_lenet())
    assert str(caught.value).startswith(
        f"round 0's weights ({experiment.weights(0)}) hold NaN or inf (1 of "
    ), caught.value


def test_a_weight_that_is_not_finite_is_divergence_whatever_the_loss_says(data):
    # A ReLU may turn NaN into 0 (it does in oneDNN on some CPUs): the loss then stays finite
    # while a weight is NaN. Here the evaluation is made to say so on every machine.
    from lth_tf.builder import build_run
    from lth_tf.training.loop import Chunk, EvaluateEvery

    trainer = build_run(lenet_hparams(), data).trainer
    trainer.evaluate = lambda iteration, test=True: Evaluation(iteration, 0.5, 0.9, 0.5, 0.9)
    evaluate = EvaluateEvery(trainer, every=10)
    evaluate.on_chunk(Chunk(0, 10, 0.5, 0.9, False), TrainingProgress(10))
    kernel = next(name for name in trainer.pruned.rewindable if name.endswith("kernel"))
    variable = trainer.pruned.rewindable[kernel]
    variable.assign(np.where(np.arange(variable.shape[-1]) == 3, np.inf, variable.numpy()))
    with pytest.raises(Diverged) as caught:
        evaluate.on_chunk(Chunk(10, 20, 0.5, 0.9, False), TrainingProgress(20))
    assert (caught.value.iteration, caught.value.what) == (20, f"weight {kernel}")
    assert caught.value.value == np.inf
