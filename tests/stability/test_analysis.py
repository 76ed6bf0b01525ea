"""Stability analysis: exact path ends, zero distance for identical data orders, recomputed
rewind points, batch-norm statistics, callbacks that watch the copies, and the plans refused
(what pipelines.stability checks before TensorFlow starts; tests/pipelines/test_stability.py
runs the command line)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import tf_keras

from lth_tf import io
from lth_tf.data.pipeline import training_batches
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.lottery.imp import run_imp
from lth_tf.monitoring.tensorboard import logged_tags
from lth_tf.stability.analysis import StabilitySession, run_stability
from lth_tf.stability.batch_norm import BatchNormStatistics
from lth_tf.stability.measures import instability, interpolate, l2_distance, mixtures
from lth_tf.stability.plan import RewindPoint, plan_stability
from lth_tf.stability.result import StabilityResult
from lth_tf.training.loop import TrainingProgress
from tests.helpers import PNG_MAGIC, QUIET, STABILITY_RESULT_KEYS, lenet_hparams
from tests.hook_log_callback import HookLog

OPTIONS = Execution(show_progress=False, steps_per_execution=10)


@pytest.fixture(scope="module")
def rewound(tmp_path_factory, mnist_data):
    """Rounds 0 and 1 of 40 iterations, rewinding to iteration 10; round 1 replays round 0's
    batches (--data_order=fixed), so copy 0 is its training."""
    root = tmp_path_factory.mktemp("stability")
    hparams = lenet_hparams(
        iterations="40it", eval_every="20it", rewind="10it", training={"data_order": "fixed"}
    )
    return run_imp(hparams, root, "rewound", QUIET, data=mnist_data)


@pytest.fixture(scope="module")
def session(rewound, mnist_data):
    plan = plan_stability(rewound.root, 1, seeds=2, points=5)
    return StabilitySession(plan, mnist_data, OPTIONS)


def test_path_ends_are_each_copys_own_test_error_exactly(rewound, mnist_data, session):
    plan = plan_stability(rewound.root, 1, seeds=2, points=5)
    [result] = run_stability(plan, mnist_data, OPTIONS)

    assert result.path_errors[0] == result.copy_test_errors[0]
    assert result.path_errors[-1] == result.copy_test_errors[1]
    assert result.end_errors == result.copy_test_errors
    assert len(result.path_errors) == 5 and result.mixtures == [0, 0.25, 0.5, 0.75, 1]
    assert result.instability == pytest.approx(
        max(result.path_errors) - sum(result.copy_test_errors) / 2
    )
    assert result.stable == (result.instability < 2.0)
    assert result.train_from_iteration == 10 and result.iterations_trained == 30
    assert result.l2_distance_data_order > 0 and result.l2_distance_pruning > 0

    written = plan.files.result(1, 10, own_rewind=10)
    assert written.name == "round_01.json"
    saved = json.loads(written.read_text())
    assert STABILITY_RESULT_KEYS | {"end_errors"} <= set(saved)
    # The file reads back as the same result; one missing a field or with a wrong type does
    # not read (a rerun computes it again).
    assert StabilityResult.from_json(saved) == result
    without_pairs = {key: value for key, value in saved.items() if key != "pairs"}
    for damaged in ({**saved, "instability": "high"}, without_pairs):
        with pytest.raises(ValueError):
            StabilityResult.from_json(damaged)
    assert plan.files.figure(1, 10, 10).read_bytes().startswith(PNG_MAGIC)
    assert ("round_01/instability", 10) in logged_tags(plan.files.tensorboard)

    # Copy 0 takes the experiment's data order from its own rewind point: it is round 1's
    # training, k -> T, bit for bit (in chunks of 10 here, of 100 in the IMP run).
    copy_0 = io.read_npz(plan.files.copy(1, 10, result.data_seeds[0]))
    for name, value in io.read_npz(rewound.weights(1)).items():
        np.testing.assert_array_equal(copy_0[name], value, err_msg=name)

    # Each copy evaluated on its own, by another Trainer, gives the same error.
    masks = io.read_npz(rewound.masks(1))
    session.pruned.set_masks({k: m.astype(np.float32) for k, m in masks.items()})
    for seed, error in zip(result.data_seeds, result.copy_test_errors, strict=True):
        copy = io.read_npz(plan.files.copy(1, 10, seed))
        assert session.test_error(copy) == error
        for name, mask in masks.items():
            assert np.all(copy[name][mask == 0] == 0), "a pruned weight came back"


def test_copies_with_the_same_data_order_are_identical(rewound, session):
    rewind, point = RewindPoint("10it", 10), io.read_npz(rewound.rewind_point)
    first = session.train_copy(rewind, point, seed=7)
    session.plan.files.copy(1, 10, 7).unlink()  # train it again rather than reuse it
    again = session.train_copy(rewind, point, seed=7)
    other = session.train_copy(rewind, point, seed=8)

    assert l2_distance(first, again, session.masks) == (0.0, 0.0)
    errors = session.path_errors(first, again, mixtures(4))
    assert instability(errors) == 0.0 and len(set(errors)) == 1
    # Another data order does end elsewhere: the measure can tell.
    assert l2_distance(first, other, session.masks)[0] > 0.01


def _killed_in_third_chunk(trainer, monkeypatch):
    """Makes ``trainer`` raise KeyboardInterrupt (a Ctrl-C) as its third chunk starts; returns
    its own ``train_steps``, to put back for the resume."""
    train_steps, chunks = trainer.train_steps, []

    def killed(iterator, steps):
        chunks.append(steps)
        if len(chunks) == 3:
            raise KeyboardInterrupt
        return train_steps(iterator, steps)

    monkeypatch.setattr(trainer, "train_steps", killed)
    return train_steps


def test_a_copy_killed_mid_training_resumes_to_the_same_weights(rewound, session, monkeypatch):
    rewind, point = RewindPoint("10it", 10), io.read_npz(rewound.rewind_point)
    files = session.plan.files
    whole = session.train_copy(rewind, point, seed=11)
    files.copy(1, 10, 11).unlink()
    every_chunk = dataclasses.replace(OPTIONS, checkpoint_seconds=0)
    monkeypatch.setattr(session, "execution", every_chunk)
    train_steps = _killed_in_third_chunk(session.trainer, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        session.train_copy(rewind, point, seed=11)
    checkpoint = files.copy_checkpoint(1, 10, 11)
    # Chunks of 10 from 10; the checkpoint format is the IMP rounds' own.
    assert TrainingProgress.pop_from(io.read_npz(checkpoint)).iteration == 30
    assert not files.copy(1, 10, 11).exists()

    monkeypatch.setattr(session.trainer, "train_steps", train_steps)
    resumed = session.train_copy(rewind, point, seed=11)
    for name, value in whole.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert not checkpoint.exists()


def test_callbacks_see_each_copy_trained_as_a_round(rewound, mnist_data, tmp_path):
    # The experiment without its stability folder: every copy is trained here.
    root = shutil.copytree(
        rewound.root, tmp_path / "rewound", ignore=shutil.ignore_patterns("stability")
    )
    plan = plan_stability(root, 1, seeds=2, points=3)
    log = HookLog()
    [result] = run_stability(plan, mnist_data, OPTIONS, callbacks=[log])
    first, second = result.data_seeds
    # Copies train 10 -> 40 in chunks of 10; no evaluation while they train.
    assert log.calls == [
        "run_start lenet300_100",
        f"round_start round 1 rewind 10 seed {first}",
        f"round_end round 1 rewind 10 seed {first} trained 30 seen 30 in 3 chunks",
        f"round_start round 1 rewind 10 seed {second}",
        f"round_end round 1 rewind 10 seed {second} trained 30 seen 30 in 3 chunks",
        "run_end",
    ]
    # Watching changes nothing: copy 0 is still round 1's training bit for bit.
    copy_0 = io.read_npz(plan.files.copy(1, 10, first))
    for name, value in io.read_npz(rewound.weights(1)).items():
        np.testing.assert_array_equal(copy_0[name], value, err_msg=name)
    # A rerun reuses the result and its copies: a run without rounds.
    again = HookLog()
    run_stability(plan, mnist_data, OPTIONS, callbacks=[again])
    assert again.calls == ["run_start lenet300_100", "run_end"]
    with pytest.raises(LthError, match="two callbacks are named 'HookLog'"):
        run_stability(plan, mnist_data, OPTIONS, callbacks=[HookLog(), HookLog()])


def test_a_killed_copy_resumes_with_its_callbacks_state(rewound, session, monkeypatch):
    rewind, point = RewindPoint("10it", 10), io.read_npz(rewound.rewind_point)
    files = session.plan.files
    whole = HookLog()
    monkeypatch.setattr(session, "callbacks", [whole])
    session.train_copy(rewind, point, seed=12)
    files.copy(1, 10, 12).unlink()
    monkeypatch.setattr(session, "execution", dataclasses.replace(OPTIONS, checkpoint_seconds=0))
    killed = HookLog()
    monkeypatch.setattr(session, "callbacks", [killed])
    train_steps = _killed_in_third_chunk(session.trainer, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        session.train_copy(rewind, point, seed=12)
    saved = io.read_npz(files.copy_checkpoint(1, 10, 12))
    assert (saved["callback/HookLog/iterations"], saved["callback/HookLog/chunks"]) == (20, 2)

    # A fresh callback object: all it knows of the copy comes from the checkpoint.
    fresh = HookLog()
    monkeypatch.setattr(session, "callbacks", [fresh])
    monkeypatch.setattr(session.trainer, "train_steps", train_steps)
    session.train_copy(rewind, point, seed=12)
    assert whole.calls[-1] == "round_end round 1 rewind 10 seed 12 trained 30 seen 30 in 3 chunks"
    assert fresh.calls == whole.calls[-1:]  # no round_start: it resumed
    assert (fresh.iterations, fresh.chunks) == (whole.iterations, whole.chunks)


def test_recomputed_rewind_point_is_the_experiments_own_exactly(rewound, session):
    points = session.recompute_rewind_points([10, 20])
    saved = io.read_npz(rewound.rewind_point)
    assert set(points[10]) == set(saved)
    for name, value in saved.items():
        np.testing.assert_array_equal(points[10][name], value, err_msg=name)
    assert not np.array_equal(points[20]["fc1/kernel"], saved["fc1/kernel"])
    files = session.plan.files
    np.testing.assert_array_equal(
        io.read_npz(files.rewind_point(20))["fc1/kernel"], points[20]["fc1/kernel"]
    )
    assert not files.rewind_point(10).exists()  # the experiment's own needs no copy
    assert not files.dense_checkpoint.exists()


def test_dense_round_0_at_another_rewind_point(rewound, mnist_data):
    plan = plan_stability(rewound.root, 0, rewind="20it", seeds=2, points=3)
    [result] = run_stability(plan, mnist_data, OPTIONS)
    assert plan.files.result(0, 20, own_rewind=10).name == "round_00-20it.json"
    assert json.loads(plan.files.result(0, 20, 10).read_text())["l2_distance_pruning"] is None
    assert result.percent_remaining == 100.0 and result.iterations_trained == 20
    assert result.path_errors[0] == result.copy_test_errors[0]


def test_interpolation_ends_are_the_copies_bit_for_bit():
    rng = np.random.default_rng(0)
    a = {"k": rng.normal(size=(3, 4)).astype(np.float32), "step": np.array(3)}
    b = {"k": rng.normal(size=(3, 4)).astype(np.float32), "step": np.array(3)}
    b["k"][0] = a["k"][0] = 0.0  # pruned in both
    np.testing.assert_array_equal(interpolate(a, b, 0.0)["k"], a["k"])
    np.testing.assert_array_equal(interpolate(a, b, 1.0)["k"], b["k"])
    middle = interpolate(a, b, 0.5)
    assert middle["k"].dtype == np.float32 and np.all(middle["k"][0] == 0)
    np.testing.assert_allclose(middle["k"], (a["k"] + b["k"]) / 2, rtol=1e-6)


def test_measures():
    masks = {"k": np.array([1, 1, 0, 1])}
    a = {"k": np.array([1.0, 2.0, 50.0, 2.0])}
    b = {"k": np.array([1.0, 2.0, -9.0, 2.0])}
    assert l2_distance(a, b, masks) == (0.0, 0.0)  # only surviving weights count
    c = {"k": np.array([-1.0, -2.0, 0.0, -2.0])}
    assert l2_distance(a, c, masks) == pytest.approx((2.0, 6.0))
    assert instability([5.0, 5.0, 5.0]) == 0.0
    assert instability([4.0, 9.0, 6.0]) == 4.0
    assert mixtures(2) == [0.0, 1.0] and mixtures(30)[-1] == 1.0


def test_batch_norm_statistics_are_the_mean_of_the_batches_statistics(mnist_data):
    inputs = tf_keras.Input((28, 28, 1))
    x = tf_keras.layers.Conv2D(4, 3, use_bias=False, name="conv1")(inputs)
    x = tf_keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, name="output")(x))
    batches = training_batches(mnist_data.train_images, mnist_data.train_labels, 50, seed=3).take(4)
    BatchNormStatistics(model, batches).recompute()

    bn = model.get_layer("bn")
    features = tf_keras.Model(inputs, bn.input)
    outputs = [features(images).numpy() for images, _ in batches]
    means = np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0)
    variances = np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), means, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variances, rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.9
    assert not np.allclose(means, 0)


@pytest.fixture(scope="module")
def unfinished(rewound, tmp_path_factory):
    """The experiment as if it planned 3 rounds and stopped after round 1."""
    root = tmp_path_factory.mktemp("unfinished") / "rewound"
    shutil.copytree(rewound.root, root, ignore=shutil.ignore_patterns("stability"))
    saved = io.read_json(root / "hparams.json")
    saved["hparams"]["pruning"]["rounds"] = 3
    io.write_json(root / "hparams.json", saved)
    return root


# What pipelines.stability's flags give plan_stability (its defaults are the flags').
@pytest.mark.parametrize(
    "plan, reason",
    [
        ({"seeds": 1}, "--seeds must be an integer >= 2, got 1"),
        ({"points": 1}, "--points must be an integer >= 2, got 1"),
        ({"bn_batches": 0}, "--bn_batches must be an integer >= 1, got 0"),
        ({"rewind": "soon"}, "'soon' is not a step"),
        ({"rewind_sweep": ["0", "soon"]}, "'soon' is not a step"),
        ({"rewind": "10ep"}, "not before the end of training (40 iterations"),
        ({"rewind": "40it"}, "not before the end of training"),
        ({"rewind": "0", "rewind_sweep": ["0", "10it"]}, "not both"),
        # 0 and 0it are one step written twice (lth-sweep refuses it too).
        ({"rewind_sweep": ["0", "10it", "0it"]}, "0it is given twice (as 0 and 0it); give"),
        ({"pruning_round": 7}, "has no round 7 (it runs rounds 0-1)"),
    ],
)
def test_bad_flags_are_refused_with_one_line(rewound, plan, reason):
    with pytest.raises(LthError) as caught:
        plan_stability(rewound.root, **({"pruning_round": 1} | plan))
    message = str(caught.value)
    assert reason in message and "\n" not in message, message


def test_bad_experiments_are_refused_with_one_line(tmp_path, unfinished):
    empty = tmp_path / "empty"
    empty.mkdir()
    for directory, reason in [
        (tmp_path / "missing", "does not exist"),
        (empty, "is not an lth_tf experiment (no hparams.json)"),
        (unfinished, "round 2 of"),
    ]:
        with pytest.raises(LthError) as caught:
            plan_stability(directory, 2)
        message = str(caught.value)
        assert reason in message and "\n" not in message, message
    with pytest.raises(LthError, match="has not finished; finished rounds: 0, 1"):
        plan_stability(unfinished, 2)


def test_bad_plans_are_refused_before_tensorflow_runs(rewound):
    with pytest.raises(LthError, match="--seeds must be an integer >= 2"):
        plan_stability(rewound.root, 1, seeds=0)
    with pytest.raises(LthError, match="has no round -1"):
        plan_stability(rewound.root, -1)
    plan = plan_stability(rewound.root, 1, rewind_sweep=["20it", "0", "1ep", "17it"])
    # 1ep is 17 iterations of 1,000 examples at batch 60: one point, earliest first.
    assert [p.iteration for p in plan.rewinds] == [0, 17, 20]


def test_execution_options_are_checked_as_the_flags_are():
    # pipelines.stability's flag parser refuses --steps_per_execution=0 before TensorFlow
    # starts; the Python caller of run_stability gets it here.
    with pytest.raises(LthError, match=r"--steps_per_execution must be an integer >= 1 or auto"):
        Execution(steps_per_execution=0)
