"""``jit_compile="auto"``: XLA or not is timed per model and machine, and then kept.

The timing itself must leave no trace: the run trains afterwards exactly as a run told the
choice, and a resume (or a branch, or a stability analysis) keeps the experiment's choice.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from lth_tf import io
from lth_tf.config import TrainingHparams, check_jit_compile
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.experiment import ExperimentDir
from lth_tf.training.trainer import Trainer
from lth_tf.training.xla import XLA_PAYS_AFTER_SECONDS
from tests.helpers import tiny_dataset
from tests.tf_helpers import half_pruned_lenet


def _trained(jit_compile, planned_iterations=None):
    """A half-pruned lenet's weights after 30 iterations, and its trainer."""
    tf.config.experimental.enable_op_determinism()  # as every run does (build_run)
    pruned = half_pruned_lenet()
    trainer = Trainer(
        pruned,
        tiny_dataset(),
        TrainingHparams(),
        tf.distribute.get_strategy(),
        jit_compile,
        steps_per_execution=10,
        planned_iterations=planned_iterations,
    )
    before = {name: w.numpy() for name, w in pruned.weights.items()}
    stream = trainer.batches_from(0)
    for _ in range(3):
        trainer.train_steps(stream, 10)
    after = {name: w.numpy() for name, w in pruned.weights.items()}
    return trainer, before, after


def test_auto_times_both_and_then_trains_exactly_as_told_the_choice():
    auto, before, after = _trained("auto")
    timing = auto.xla_timing
    assert set(timing) == {"plain", "xla"} and all(t > 0 for t in timing.values())
    assert auto.xla_training == (timing["xla"] < timing["plain"])
    # Timing trained the network; choose_xla put every weight (and the optimizer) back.
    _, fresh_before, told_after = _trained(auto.xla_training)
    for name, value in fresh_before.items():
        np.testing.assert_array_equal(before[name], value, err_msg=name)
    for name, value in told_after.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_a_run_too_short_to_pay_for_compiling_is_not_compiled():
    trainer, _, _ = _trained("auto", planned_iterations=10)
    assert set(trainer.xla_timing) == {"plain"}
    assert trainer.xla_timing["plain"] * 10 < XLA_PAYS_AFTER_SECONDS
    assert not trainer.xla_training


@pytest.mark.parametrize("jit_compile", [True, False])
def test_an_explicit_setting_is_not_timed(jit_compile):
    trainer, _, _ = _trained(jit_compile)
    assert trainer.xla_timing is None
    assert trainer.xla_training == jit_compile  # lenet: XLA can compile its step


def test_a_resume_keeps_the_experiments_choice(tmp_path):
    experiment = ExperimentDir(tmp_path)
    assert experiment.recorded_xla_training() is None
    auto = Execution(jit_compile="auto")
    assert auto.resumed(None).jit_compile == "auto"  # a new experiment times it
    io.write_json(experiment.sessions, [{"xla_training": True}, {"strategy": "x"}])
    assert experiment.recorded_xla_training() is True
    io.write_json(experiment.sessions, [{"xla_training": True}, {"xla_training": False}])
    assert experiment.recorded_xla_training() is False  # the latest session's
    assert auto.resumed(False).jit_compile is False
    # An explicit setting is the user's: it is kept (imp logs that the results will drift).
    assert Execution(jit_compile=True).resumed(False).jit_compile is True
    for damaged in ({"xla_training": True}, [5], ["xla_training"], "[]"):
        io.write_json(experiment.sessions, damaged)
        with pytest.raises(LthError, match="sessions.json is not a list of sessions; restore"):
            experiment.recorded_xla_training()
        with pytest.raises(LthError, match="sessions.json is not a list of sessions; restore"):
            experiment.record_session({"xla_training": False})


@pytest.mark.parametrize("value", ["yes", 1, None, math.nan])
def test_jit_compile_takes_true_false_or_auto_only(value):
    for good in (True, False, "auto"):
        assert check_jit_compile(good) == good
    with pytest.raises(LthError, match="--jit_compile must be True, False or 'auto'"):
        check_jit_compile(value, "--jit_compile")
