"""Callbacks from outside the package (lth_tf.callbacks): scalars to evaluations.csv and
TensorBoard, state across a resume, through run_imp and find_tickets; their refusals."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from lth_tf import io
from lth_tf.callbacks import (
    RunCallback,
    call_each,
    callback_states,
    check_callbacks,
    evaluation_scalars,
    load_callback,
)
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.lottery.imp import run_imp
from lth_tf.monitoring.tensorboard import tensorboard_dir
from lth_tf.training.trainer import Evaluation
from tests.helpers import QUIET, lenet_hparams
from tests.metric_callback import MaskedWeightNorm

OPTIONS = dataclasses.replace(QUIET, steps_per_execution=5)
COLUMNS = ["masked_weight_norm", "mean_masked_weight_norm", "evaluations_seen"]


def reported(experiment, pruning_round: int) -> list[dict]:
    rows = io.read_csv(experiment.evaluations(pruning_round))
    return [{name: float(row[name]) for name in ["iteration", *COLUMNS]} for row in rows]


class _KilledAt(MaskedWeightNorm):
    """Interrupts round 1 at its evaluation at iteration 20, after counting it and before the
    checkpoint that holds it: the resume retrains 10..20 and counts it again."""

    name = "MaskedWeightNorm"  # the callback it stands for: the same checkpoint keys

    def on_evaluation(self, context, evaluation):
        scalars = super().on_evaluation(context, evaluation)
        if context.pruning_round == 1 and evaluation.iteration == 20:
            raise KeyboardInterrupt
        return scalars


def test_a_callbacks_scalars_reach_evaluations_csv_and_tensorboard(tmp_path, data):
    callback = MaskedWeightNorm()
    experiment = run_imp(
        lenet_hparams(rounds=1),
        tmp_path,
        "metric",
        dataclasses.replace(OPTIONS, tensorboard=True),
        data=data,
        callbacks=[callback],
    )
    assert callback.rounds_ended == [0, 1]
    header = io.read_csv(experiment.evaluations(1))[0].keys()
    assert list(header)[5:] == COLUMNS  # after the evaluation's own columns
    for pruning_round in (0, 1):
        rows = reported(experiment, pruning_round)
        assert [row["iteration"] for row in rows] == [10, 20, 30]
        # Counted from each round's start: on_round_start reset the state.
        assert [row["evaluations_seen"] for row in rows] == [1, 2, 3]
        norms = [row["masked_weight_norm"] for row in rows]
        assert all(norm > 0 for norm in norms)
        means = [sum(norms[: i + 1]) / (i + 1) for i in range(3)]
        assert [row["mean_masked_weight_norm"] for row in rows] == pytest.approx(means)
        # TensorBoard: the same values under the same names, at the evaluation's iteration.
        accumulator = event_accumulator.EventAccumulator(
            str(tensorboard_dir(experiment) / f"round_{pruning_round:02d}"),
            size_guidance={event_accumulator.TENSORS: 0},
        )
        accumulator.Reload()
        logged = accumulator.Tensors("masked_weight_norm")
        assert [event.step for event in logged] == [10, 20, 30]
        values = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in logged]
        assert values == pytest.approx(norms, rel=1e-6)
    # Round 1 kept 80% of lenet's fc weights: its norms are smaller than round 0's.
    assert (
        reported(experiment, 1)[0]["masked_weight_norm"]
        < reported(experiment, 0)[-1]["masked_weight_norm"]
    )


def test_a_resumed_round_ends_with_the_callbacks_state_of_an_uninterrupted_one(tmp_path, data):
    hparams = lenet_hparams(rounds=1)
    whole = run_imp(hparams, tmp_path, "whole", OPTIONS, data=data, callbacks=[MaskedWeightNorm()])
    with pytest.raises(KeyboardInterrupt):
        run_imp(hparams, tmp_path, "killed", OPTIONS, data=data, callbacks=[_KilledAt()])
    assert (tmp_path / "killed" / "round_01" / "checkpoint.npz").exists()
    # A fresh callback object: everything it knows of round 1 comes from the checkpoint.
    fresh = [MaskedWeightNorm()]
    killed = run_imp(hparams, tmp_path, "killed", OPTIONS, data=data, callbacks=fresh)
    assert reported(killed, 1) == reported(whole, 1)
    assert [row["evaluations_seen"] for row in reported(killed, 1)] == [1, 2, 3]


def test_find_tickets_takes_callbacks(tmp_path, data):
    import tf_keras as keras

    import lth_tf

    inputs = keras.Input(data.input_shape)
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(16)(x)))
    experiment = lth_tf.find_tickets(
        model,
        (data.train_images, data.train_labels),
        (data.test_images, data.test_labels),
        (data.val_images, data.val_labels),
        output_dir=tmp_path,
        experiment_name="api",
        rounds=1,
        iterations="20it",
        eval_every="10it",
        rewind="0",
        progress=False,
        tensorboard=False,
        callbacks=[MaskedWeightNorm()],
    )
    rows = io.read_csv(tmp_path / "api" / "round_01" / "evaluations.csv")
    assert [float(row["evaluations_seen"]) for row in rows] == [1, 2]
    assert len(experiment.results) == 2


class _Named(RunCallback):
    def __init__(self, reports):
        self.reports = reports

    def on_evaluation(self, context, evaluation):
        return self.reports


def test_callbacks_are_refused_in_one_line_when_they_cannot_be_told_apart_or_recorded():
    with pytest.raises(LthError, match="two callbacks are named 'MaskedWeightNorm'"):
        check_callbacks([MaskedWeightNorm(), MaskedWeightNorm()])
    with pytest.raises(LthError, match="not a lth_tf.callbacks.RunCallback"):
        check_callbacks([object()])
    evaluation = Evaluation(10, 0.5, 0.9, math.nan, math.nan)
    with pytest.raises(LthError, match="reports 'val_loss', a name evaluations.csv has"):
        evaluation_scalars([_Named({"val_loss": 1.0})], None, evaluation)
    with pytest.raises(LthError, match="reports norm='big', not a number"):
        evaluation_scalars([_Named({"norm": "big"})], None, evaluation)
    assert evaluation_scalars([_Named({"norm": 2})], None, evaluation) == {"norm": 2.0}
    # A wrong return value is not the hook raising, and lth_tf's line is not where it went wrong.
    with pytest.raises(LthError, match=r"^callback _Named: on_evaluation returned a list, not a"):
        evaluation_scalars([_Named([("norm", 2)])], None, evaluation)


class _BadState(RunCallback):
    def state(self):
        return 5


def test_a_callback_state_that_is_not_a_dict_says_what_to_return():
    with pytest.raises(
        LthError, match=r"^callback _BadState: state\(\) returned a int, not a dict"
    ):
        callback_states([_BadState()])


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("no_colon", "give package.module:Class"),
        ("no_such_module_here:Metric", "cannot import no_such_module_here"),
        ("tests.metric_callback:Missing", "has no class 'Missing'"),
        ("tests.metric_callback:math", "has a non-callable"),
        ("tests.helpers:lenet_hparams", "is a ExperimentHparams, not a lth_tf.callbacks"),
    ],
)
def test_a_callback_flag_that_names_no_callback_class_is_one_line(spec, reason):
    with pytest.raises(LthError, match=reason) as refused:
        load_callback(spec)
    assert str(refused.value).startswith(f"--callback={spec}") or "callback" in str(refused.value)


def test_the_pipeline_refuses_a_callback_flag_it_cannot_load_in_one_line(tmp_path):
    from tests.helpers import assert_one_line_error, run_main

    result = run_main(
        "pipelines.imp",
        "--model=lenet300_100",
        "--callback=tests.metric_callback:Missing",
        f"--output_dir={tmp_path}",
        "--noprogress",
        tensorflow=True,
    )
    assert_one_line_error(result, "--callback=tests.metric_callback:Missing")
    assert list(tmp_path.iterdir()) == []


class _Broken(RunCallback):
    """A bug in a callback's hook, at round 1's first chunk."""

    def __init__(self, hook: str):
        self.hook = hook

    def on_chunk(self, context, chunk):
        if self.hook == "on_chunk" and context.pruning_round == 1:
            {}["no such key"]  # noqa: B018 - the bug

    def on_round_end(self, context, result):
        if self.hook == "on_round_end":
            raise ValueError("bad row")


@pytest.mark.parametrize(
    ("hook", "raised"), [("on_chunk", "KeyError: 'no such key'"), ("on_round_end", "ValueError")]
)
def test_a_callback_that_raises_ends_the_run_in_one_line_naming_it(tmp_path, data, hook, raised):
    hparams, callbacks = lenet_hparams(rounds=1), [_Broken(hook)]
    with pytest.raises(LthError) as caught:
        run_imp(hparams, tmp_path, "broken", OPTIONS, data=data, callbacks=callbacks)
    message = str(caught.value)
    assert message.startswith(f"callback _Broken: {hook} raised {raised}")
    assert "test_callbacks.py:" in message and "\n" not in message
    # What trained before it is kept: round 0 finished (and wrote its row) either way.
    assert ExperimentDir(tmp_path / "broken").completed_rounds() == {0}


def test_ctrl_c_in_a_callback_is_not_turned_into_an_error():
    class Interrupted(RunCallback):
        def on_evaluation(self, context, evaluation):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluation_scalars([Interrupted()], None, Evaluation(10, 0.5, 0.9, 0.5, 0.9))


def test_the_runs_own_tensorboard_is_added_once_and_its_errors_are_not_a_users():
    from lth_tf.callbacks import calling
    from lth_tf.execution import Execution
    from lth_tf.lottery.imp import _own_callbacks
    from lth_tf.monitoring.tensorboard import TensorBoardMonitor

    (own,) = _own_callbacks(Execution(), None, [])
    assert isinstance(own, TensorBoardMonitor)
    assert _own_callbacks(Execution(tensorboard=False), None, []) == []
    # A monitor the caller passed is the run's one: no second one writes every tag again.
    assert _own_callbacks(Execution(), None, [TensorBoardMonitor()]) == []
    # Its failure is the tool's (or a file's), not "fix the callback".
    with pytest.raises(ZeroDivisionError):
        with calling(own, "on_chunk"):
            1 / 0  # noqa: B018


class _ExitsInHook(RunCallback):
    def on_chunk(self, context, chunk):
        sys.exit(0)


class _NameRaises(RunCallback):
    @property
    def name(self):
        raise RuntimeError("boom")


class _ObjectState(RunCallback):
    def state(self):
        return {"seen": {"a": 1}}


class _ExitsInInit(RunCallback):
    def __init__(self):
        sys.exit(3)


class _CallableInstance:
    def __call__(self):
        return 5


callable_instance = _CallableInstance()


def test_a_callbacks_exit_name_or_unsaveable_state_is_one_line_not_a_silent_end():
    # sys.exit() in a hook would end the run as if it had succeeded.
    with pytest.raises(LthError, match="callback _ExitsInHook: on_chunk raised SystemExit"):
        call_each([_ExitsInHook()], "on_chunk", None, None)
    with pytest.raises(LthError, match=r"callback _NameRaises: name raised RuntimeError: boom"):
        check_callbacks([_NameRaises()])
    # Saved, a dict would need pickle to load: the resume would call the checkpoint damaged.
    with pytest.raises(LthError, match=r"_ObjectState: state\(\)\['seen'\] is a dict"):
        callback_states([_ObjectState()])
    assert callback_states([MaskedWeightNorm()])["callback/MaskedWeightNorm/count"] == 0
    with pytest.raises(LthError, match=r"_ExitsInInit\(\) raised SystemExit: 3"):
        load_callback("tests.imp.test_callbacks:_ExitsInInit")
    with pytest.raises(LthError, match=r"callable_instance\(\) is a int, not a lth_tf.callbacks"):
        load_callback("tests.imp.test_callbacks:callable_instance")
