"""Rewinding as the papers define it: a round rewound to iteration k trains k -> T."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from lth_tf import io
from lth_tf.callbacks import RunCallback
from lth_tf.config import PruneRates, TrainingHparams
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.legacy import ROUNDS_KEY
from lth_tf.lottery.imp import run_imp
from lth_tf.models import resolve_steps
from lth_tf.training.optimizers import make_optimizer
from lth_tf.training.schedules import WarmupStepDecay
from tests.helpers import QUIET, lenet_hparams

# The rounds' rewind point k; training in compiled chunks of 7 iterations.
K = "12it"
IN_CHUNKS_OF_7 = dataclasses.replace(QUIET, steps_per_execution=7)


# Plain SGD (no slots), nothing pruned: round 1 is round 0's training from k on.
SCHEDULES = {
    "constant": {},
    # Warmup ends and the rate drops on either side of k = 12.
    "warmup_and_drops": {"warmup": "8it", "lr_drops": "10it,20it"},
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_an_unpruned_rewound_round_is_round_0_from_k_on_bit_for_bit(tmp_path, data, schedule):
    hparams = lenet_hparams(
        rewind=K,
        # fixed: round 1 replays round 0's batches (per_round gives it its own).
        training=dict(
            optimizer="sgd",
            learning_rate=0.05,
            momentum=0.0,
            data_order="fixed",
            **SCHEDULES[schedule],
        ),
    )
    hparams = dataclasses.replace(
        hparams, pruning=dataclasses.replace(hparams.pruning, rates=PruneRates())
    )
    experiment = run_imp(hparams, tmp_path, "e", IN_CHUNKS_OF_7, data=data)
    dense, rewound = io.read_npz(experiment.weights(0)), io.read_npz(experiment.weights(1))
    assert dense.keys() == rewound.keys()
    for name in dense:
        np.testing.assert_array_equal(rewound[name], dense[name], err_msg=name)
    # And not trivially: the rewind point is not the end of training.
    point = io.read_npz(experiment.rewind_point)
    assert not np.array_equal(point["fc1/kernel"], dense["fc1/kernel"])
    # The evaluations the two rounds share are the same numbers too.
    first = {int(r["iteration"]): r for r in io.read_csv(experiment.evaluations(0))}
    second = io.read_csv(experiment.evaluations(1))
    for row in second:
        assert row["val_loss"] == first[int(row["iteration"])]["val_loss"]


def test_a_rewound_round_trains_t_minus_k_iterations_and_counts_globally(tmp_path, data):
    experiment = run_imp(
        lenet_hparams(rounds=2, rewind=K), tmp_path, "e", IN_CHUNKS_OF_7, data=data
    )
    rows = experiment.read_results()
    assert [r.iterations for r in rows] == [30, 18, 18]
    assert [int(r["iteration"]) for r in io.read_csv(experiment.evaluations(0))] == [10, 20, 30]
    for pruning_round in (1, 2):
        evaluations = io.read_csv(experiment.evaluations(pruning_round))
        iterations = [int(r["iteration"]) for r in evaluations]
        assert iterations == [20, 30]  # the first evaluation after k = 12, on the global grid
        assert rows[pruning_round].early_stop_iteration in (20, 30)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_first_step_of_a_rewound_round_uses_the_schedules_rate_at_k(optimizer):
    training = TrainingHparams(optimizer, learning_rate=0.1, warmup="10it", lr_drops="20it")
    schedule = WarmupStepDecay(0.1, warmup=10, drops=[20], factor=0.1)
    start = tf.Variable(0, dtype=tf.int64)
    for k in (0, 5, 12, 25):
        start.assign(k)
        # A fresh optimizer, as a round gets: its own step counter at 0 (Adam's bias
        # correction starts over), the schedule at k.
        weight = tf.Variable([0.0])
        step = make_optimizer(training, start)
        step.apply_gradients([(tf.constant([1.0]), weight)])
        assert int(step.iterations) == 1
        # SGD moves by the rate; Adam's first step, bias-corrected, by the rate too.
        assert -float(weight[0]) == pytest.approx(float(schedule(k)), rel=1e-5)


class _KillInRound1(RunCallback):
    """Interrupts round 1 in the chunk after its evaluation at iteration 20 (checkpoint saved)."""

    def on_chunk(self, context, chunk):
        if context.pruning_round == 1 and chunk.stop > 20:
            raise KeyboardInterrupt


def test_a_rewound_round_killed_mid_way_resumes_to_the_uninterrupted_weights(tmp_path, data):
    hparams = lenet_hparams(
        rewind=K,
        training=dict(optimizer="sgd", learning_rate=0.05, momentum=0.9, warmup="15it"),
    )
    whole = run_imp(hparams, tmp_path, "whole", IN_CHUNKS_OF_7, data=data)
    with pytest.raises(KeyboardInterrupt):
        run_imp(hparams, tmp_path, "killed", IN_CHUNKS_OF_7, data=data, callbacks=[_KillInRound1()])
    killed = ExperimentDir(tmp_path / "killed")
    assert killed.checkpoint(1).exists() and not killed.weights(1).exists()
    run_imp(hparams, tmp_path, "killed", IN_CHUNKS_OF_7, data=data)
    expected, resumed = io.read_npz(whole.weights(1)), io.read_npz(killed.weights(1))
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)
    assert io.read_csv(killed.evaluations(1)) == io.read_csv(whole.evaluations(1))


def _as_old_lth_tf(experiment: ExperimentDir, killed_in_round: int | None = None) -> None:
    """Rewrites a finished experiment as an older lth_tf left it (optionally killed mid-round)."""
    saved = io.read_json(experiment.hparams)
    saved.pop(ROUNDS_KEY, None)
    io.write_json(experiment.hparams, saved)
    if killed_in_round is not None:
        rows = [r for r in experiment.read_results() if r.round < killed_in_round]
        experiment.results.unlink()
        for row in rows:
            experiment.write_result(row)
        experiment.weights(killed_in_round).unlink()
        io.write_npz(experiment.checkpoint(killed_in_round), {"unused": np.zeros(1)})


def test_an_experiment_whose_rewound_rounds_trained_the_old_way_is_refused(tmp_path, data):
    hparams = lenet_hparams(rewind=K)
    experiment = run_imp(hparams, tmp_path, "old", IN_CHUNKS_OF_7, data=data)
    _as_old_lth_tf(experiment)
    # Finished: a rerun trains nothing and is let through, still marked as old.
    run_imp(hparams, tmp_path, "old", IN_CHUNKS_OF_7, data=data)
    assert ROUNDS_KEY not in io.read_json(experiment.hparams)
    # A branch of it would train its rounds unlike the parent's.
    from lth_tf.lottery.branches import branch_of

    with pytest.raises(LthError, match="older lth_tf"):
        branch_of(experiment.root, "random_prune")
    # Killed in round 1: resuming it under k -> T would mix the two procedures.
    _as_old_lth_tf(experiment, killed_in_round=1)
    with pytest.raises(LthError, match="older lth_tf.*new --experiment_name"):
        run_imp(hparams, tmp_path, "old", IN_CHUNKS_OF_7, data=data)


def test_the_refusal_is_one_line_for_the_command_line(tmp_path, data):
    # The wrapper prints it as pipelines.imp's only stderr line (tests/pipelines/test_imp.py).
    hparams = lenet_hparams(rewind=K)
    run_imp(hparams, tmp_path, "old", IN_CHUNKS_OF_7, data=data)
    _as_old_lth_tf(ExperimentDir(tmp_path / "old"), killed_in_round=1)
    with pytest.raises(LthError) as caught:
        run_imp(hparams, tmp_path, "old", IN_CHUNKS_OF_7, data=data)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and "older lth_tf" in lines[0], lines


def test_an_old_experiment_without_rewound_rounds_resumes_and_is_marked(tmp_path, data):
    # Rewind 0 trains the same either way: nothing to refuse.
    hparams = lenet_hparams(rounds=2, rewind="0it")
    experiment = run_imp(hparams, tmp_path, "reset", IN_CHUNKS_OF_7, data=data)
    # As if killed during round 2 (its row and weights are not there yet), without a
    # checkpoint: the resume retrains round 2.
    _as_old_lth_tf(experiment, killed_in_round=2)
    experiment.checkpoint(2).unlink()
    run_imp(hparams, tmp_path, "reset", IN_CHUNKS_OF_7, data=data)
    assert ROUNDS_KEY in json.loads(experiment.hparams.read_text())
    assert len(experiment.read_results()) == 3


def test_a_rewind_point_at_the_end_of_training_is_refused_when_rounds_follow():
    with pytest.raises(LthError, match="would train nothing"):
        resolve_steps(lenet_hparams(rewind="30it"), 600)
    assert resolve_steps(lenet_hparams(rounds=0, rewind="30it"), 600).rewind_iteration == 30
