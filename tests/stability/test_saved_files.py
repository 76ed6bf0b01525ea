"""The files a stability analysis saves and reuses (trained copies, recomputed rewind points,
checkpoints): each is stamped as the experiment's file of its place and checked when it is
reused; one that is damaged, or another copy's or another experiment's, is refused with one
line that says to delete it, and never used."""

import dataclasses

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.lottery.imp import run_imp
from lth_tf.stability.analysis import (
    COPY_CHECKPOINT_TODO,
    COPY_TODO,
    DENSE_CHECKPOINT_TODO,
    STABILITY_REWIND_POINT_TODO,
    StabilitySession,
)
from lth_tf.stability.plan import RewindPoint, plan_stability
from tests.helpers import QUIET, lenet_hparams

OPTIONS = Execution(show_progress=False, steps_per_execution=10)
REWIND = RewindPoint("10it", 10)


@pytest.fixture(scope="module")
def session(tmp_path_factory, mnist_data):
    """Rounds 0 and 1 of 40 iterations rewinding to iteration 10, and a session on round 1."""
    root = tmp_path_factory.mktemp("saved")
    hparams = lenet_hparams(iterations="40it", eval_every="20it", rewind="10it")
    experiment = run_imp(hparams, root, "saved", QUIET, data=mnist_data)
    plan = plan_stability(experiment.root, 1, seeds=2, points=3)
    return StabilitySession(plan, mnist_data, OPTIONS)


@pytest.fixture(scope="module")
def trained(session):
    """Copies of data seeds 21 and 22, trained once: seed -> weights."""
    point = _rewind_point(session)
    return {seed: session.train_copy(REWIND, point, seed) for seed in (21, 22)}


@pytest.fixture
def copy_21(session, trained):
    """Seed 21's copy file, as it was again after the test."""
    path = session.plan.files.copy(1, 10, 21)
    saved = path.read_bytes()
    yield path
    path.write_bytes(saved)


def _rewind_point(session):
    return io.read_npz(session.plan.experiment.rewind_point)


def _reused(session):
    return session.train_copy(REWIND, _rewind_point(session), 21)


def _refused(call, path, todo) -> str:
    with pytest.raises(LthError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path} ") and message.endswith(todo)
    return message


def _edited(path, change) -> None:
    """Rewrites ``path`` as a hand edit with NumPy would: its other entries (the stamp too)
    kept."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    np.savez(path, **arrays)


def test_a_copy_is_stamped_as_its_round_rewind_point_and_seed(session, trained, copy_21):
    assert io.read_stamp(copy_21)["__file__"] == "stability/round_01/rewind_10it/copy_seed21.npz"
    assert io.read_stamp(copy_21)["__experiment__"] == session.plan.experiment.identity
    reused = _reused(session)
    assert set(reused) == set(trained[21])
    for name, value in trained[21].items():
        np.testing.assert_array_equal(reused[name], value, err_msg=name)


def _not_finite(arrays):
    arrays["fc1/kernel"] = arrays["fc1/kernel"].copy()
    arrays["fc1/kernel"].flat[0] = np.nan


def _misshapen(arrays):
    arrays["fc1/bias"] = np.zeros(3, np.float32)


def _integers(arrays):
    arrays["fc1/bias"] = arrays["fc1/bias"].astype(np.int32)


@pytest.mark.parametrize(
    "change, reason",
    [
        (_not_finite, "(fc1/kernel is not finite everywhere)"),
        (_misshapen, "(saved 'fc1/bias' has shape (3,), the model's is (300,))"),
        (lambda arrays: arrays.pop("fc1/bias"), "(no saved value for variable 'fc1/bias')"),
        (_integers, "(saved 'fc1/bias' holds int32 values, the model's are float32)"),
    ],
    ids=["not-finite", "misshapen", "missing", "integers"],
)
def test_a_damaged_copy_is_refused_with_one_line(session, copy_21, change, reason):
    _edited(copy_21, change)
    message = _refused(lambda: _reused(session), copy_21, COPY_TODO)
    assert f"is damaged {reason}" in message, message


def test_a_copy_with_weights_where_the_mask_prunes_is_refused(session, copy_21):
    mask = session.masks["fc1/kernel"]
    _edited(copy_21, lambda arrays: arrays.update({"fc1/kernel": np.ones_like(mask)}))
    message = _refused(lambda: _reused(session), copy_21, COPY_TODO)
    assert "(fc1/kernel is not zero where the round's mask prunes it)" in message


def test_another_seeds_copy_or_another_experiments_is_refused(session, copy_21):
    copy_21.write_bytes(session.plan.files.copy(1, 10, 22).read_bytes())
    message = _refused(lambda: _reused(session), copy_21, COPY_TODO)
    assert (
        "is this experiment's stability/round_01/rewind_10it/copy_seed22.npz, not its "
        "stability/round_01/rewind_10it/copy_seed21.npz" in message
    ), message

    _edited(copy_21, lambda arrays: arrays.update({"__experiment__": np.array("0123-other")}))
    message = _refused(lambda: _reused(session), copy_21, COPY_TODO)
    assert "belongs to another experiment (0123-other; this one is" in message, message


def test_extra_entries_and_a_copy_from_before_stamps_are_read(session, trained, copy_21):
    # As the experiment's own files: an entry that is no variable is left alone, and a file
    # written before files were stamped still reads (it is checked all the same).
    _edited(copy_21, lambda arrays: arrays.update({"bogus": np.zeros(2)}))
    assert set(_reused(session)) == set(trained[21])
    _edited(copy_21, lambda arrays: [arrays.pop(key) for key in io.STAMP_KEYS])
    assert set(_reused(session)) == set(trained[21])
    _edited(copy_21, _not_finite)
    _refused(lambda: _reused(session), copy_21, COPY_TODO)


def test_a_damaged_or_misplaced_rewind_point_is_refused(session):
    path = session.plan.files.rewind_point(20)
    session.rewind_points([20])  # recomputed: round 0 trained again to iteration 20
    try:
        assert io.read_stamp(path)["__file__"] == "stability/rewind_points/rewind_20it.npz"
        _edited(path, lambda arrays: arrays.update({"fc2/bias": np.full(100, np.inf, "f4")}))
        message = _refused(lambda: session.rewind_points([20]), path, STABILITY_REWIND_POINT_TODO)
        assert "is damaged (fc2/bias is not finite everywhere)" in message, message

        path.write_bytes(session.plan.experiment.rewind_point.read_bytes())
        message = _refused(lambda: session.rewind_points([20]), path, STABILITY_REWIND_POINT_TODO)
        assert "is this experiment's rewind_point.npz, not its stability/rewind_points/" in message
    finally:
        path.unlink()


def test_another_copys_checkpoint_is_refused(session, monkeypatch):
    files = session.plan.files
    monkeypatch.setattr(session, "execution", dataclasses.replace(OPTIONS, checkpoint_seconds=0))
    train_steps, chunks = session.trainer.train_steps, []

    def killed(iterator, steps):  # a Ctrl-C as the third chunk starts
        chunks.append(steps)
        if len(chunks) == 3:
            raise KeyboardInterrupt
        return train_steps(iterator, steps)

    monkeypatch.setattr(session.trainer, "train_steps", killed)
    with pytest.raises(KeyboardInterrupt):
        session.train_copy(REWIND, _rewind_point(session), 31)
    monkeypatch.setattr(session.trainer, "train_steps", train_steps)
    checkpoint = files.copy_checkpoint(1, 10, 32)
    files.copy_checkpoint(1, 10, 31).rename(checkpoint)
    try:
        message = _refused(
            lambda: session.train_copy(REWIND, _rewind_point(session), 32),
            checkpoint,
            COPY_CHECKPOINT_TODO,
        )
        assert (
            "is this experiment's stability/round_01/rewind_10it/copy_seed31.checkpoint" in message
        )
        assert not files.copy(1, 10, 32).exists()
    finally:
        checkpoint.unlink()


def test_a_dense_checkpoint_without_progress_is_refused(session):
    checkpoint = session.plan.files.dense_checkpoint
    io.write_npz(checkpoint, {"fc1/bias": np.zeros(300, np.float32)})
    try:
        message = _refused(
            lambda: session.recompute_rewind_points([30]), checkpoint, DENSE_CHECKPOINT_TODO
        )
        assert "is damaged (no '__progress__' entry)" in message, message
    finally:
        checkpoint.unlink()
