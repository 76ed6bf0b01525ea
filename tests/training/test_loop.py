"""The training loop and an IMP round's callbacks: evaluations, the early stop's test metrics
measured on its own weights, checkpoints and resuming."""

import logging

import numpy as np
import tensorflow as tf

from lth_tf.config import TrainingHparams
from lth_tf.pruning.wrapping import restore, snapshot
from lth_tf.training.loop import (
    Checkpoint,
    EvaluateEvery,
    SnapshotAt,
    TrainingProgress,
    train,
)
from lth_tf.training.trainer import Evaluation, Trainer
from tests.helpers import tiny_dataset
from tests.tf_helpers import half_pruned_lenet


def train_round(
    trainer, stop, every, progress, save, hooks=None, recorded=None, test_every_evaluation=False
):
    """The loop with an IMP round's callbacks: hooks at iterations, evaluations every
    ``every`` (each handed to ``recorded`` as recorded), a checkpoint after each."""
    callbacks = [SnapshotAt([i], lambda _, hook=hook: hook()) for i, hook in (hooks or {}).items()]
    callbacks.append(EvaluateEvery(trainer, every, recorded, test_every_evaluation))
    callbacks.append(Checkpoint(save, every=every))
    return train(trainer, progress, stop, callbacks)


def _rows(evaluations):
    """The evaluations' measurements as a float array (NaN where a split was not measured);
    no callback reports scalars here."""
    assert all(e.scalars == {} for e in evaluations)
    fields = ("iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    return np.array([[getattr(e, field) for field in fields] for e in evaluations], float)


def test_early_stop_test_metrics_are_measured_on_its_weights_at_the_end_and_resume():
    data = tiny_dataset()
    trainer = Trainer(half_pruned_lenet(), data, TrainingHparams(), tf.distribute.get_strategy())
    rewindable = trainer.pruned.rewindable
    at_10, checkpoints = {}, {}

    def spoil():  # after 20 iterations the net is much worse: the early stop stays at 10
        rng = np.random.default_rng(0)
        for weight in trainer.pruned.weights.values():
            weight.assign(rng.normal(scale=3.0, size=weight.shape).astype(np.float32))

    def save(progress):
        checkpoints[progress.iteration] = {**trainer.state(), **progress.to_arrays()}

    recorded = []
    hooks = {10: lambda: at_10.update(snapshot(rewindable)), 20: spoil}
    progress = train_round(
        trainer, 30, 10, TrainingProgress(), save, hooks, recorded=recorded.append
    )

    final = snapshot(rewindable)
    expected_final = trainer.evaluate_split("test")
    restore(rewindable, at_10)
    expected_early = trainer.evaluate_split("test")
    restore(rewindable, final)
    early, middle, last = progress.evaluations
    assert progress.early_stop.iteration == 10
    assert (early.test_loss, early.test_accuracy) == expected_early
    assert np.isnan(middle.test_loss) and np.isnan(middle.test_accuracy)
    assert (last.test_loss, last.test_accuracy) == expected_final
    # Logged when it happens (no test yet), again with its test just before the last one.
    assert [e.iteration for e in recorded] == [10, 20, 10, 30]
    assert np.isnan(recorded[0].test_loss) and recorded[2] == early
    # The checkpoints in between hold the early stop's weights; the last one no longer needs them.
    for iteration in (10, 20):
        held = TrainingProgress.pop_from(dict(checkpoints[iteration])).early_stop_weights
        assert held.keys() == at_10.keys()
        assert all(np.array_equal(held[k], at_10[k]) for k in at_10)
    assert not TrainingProgress.pop_from(dict(checkpoints[30])).early_stop_weights

    # Resumed from the checkpoint at 20, the round ends with the same evaluations.
    state = dict(checkpoints[20])
    resumed = TrainingProgress.pop_from(state)
    trainer.load_state(state)
    train_round(trainer, 30, 10, resumed, lambda _: None)
    np.testing.assert_array_equal(_rows(resumed.evaluations), _rows(progress.evaluations))
    assert all(np.array_equal(v.numpy(), final[k]) for k, v in rewindable.items())


def test_a_resume_that_measures_every_evaluation_drops_older_early_stop_weights():
    # As if an earlier session (test split deferred) checkpointed a minimum at 10 with its
    # weights, and this one resumes with test_every_evaluation: its own minimum at 20 is
    # measured when it happens and must keep those metrics.
    data = tiny_dataset()
    trainer = Trainer(half_pruned_lenet(), data, TrainingHparams(), tf.distribute.get_strategy())
    rng = np.random.default_rng(1)
    stale = {
        k: rng.normal(size=v.shape).astype(np.float32) for k, v in trainer.pruned.rewindable.items()
    }
    nan = float("nan")
    progress = TrainingProgress(10, 0.0, [Evaluation(10, 1e9, 0.0, nan, nan)], stale)

    def spoil():  # after the evaluation at 20: the minimum stays there
        for weight in trainer.pruned.weights.values():
            weight.assign(rng.normal(scale=3.0, size=weight.shape).astype(np.float32))

    recorded = []
    train_round(
        trainer,
        30,
        10,
        progress,
        lambda _: None,
        {21: spoil},
        recorded=recorded.append,
        test_every_evaluation=True,
    )
    at_20 = recorded[0]
    assert at_20.iteration == 20 and not np.isnan(at_20.test_loss)
    assert progress.early_stop.iteration == 20
    assert progress.evaluations[1] == at_20
    assert [e.iteration for e in recorded] == [20, 30]
    assert not progress.early_stop_weights


def test_a_stability_checkpoint_of_the_old_format_resumes_exactly(tmp_path):
    """Before the loop was shared, stability copies checkpointed ``__iteration__`` alone (and no
    schedule start): such a checkpoint still resumes, to the uninterrupted weights."""
    from lth_tf import io
    from lth_tf.training.loop import resume

    strategy = tf.distribute.get_strategy()
    trainer = Trainer(half_pruned_lenet(), tiny_dataset(), TrainingHparams(), strategy)
    train(trainer, TrainingProgress(), 10, seed=4)
    old = {k: v for k, v in trainer.state().items() if not k.startswith("schedule/")}
    old["__iteration__"] = np.array(10)
    io.write_npz(tmp_path / "checkpoint.npz", old)
    train(trainer, TrainingProgress(iteration=10), 20, seed=4)
    uninterrupted = snapshot(trainer.pruned.rewindable)

    progress = resume(tmp_path / "checkpoint.npz", trainer, (0, 20))
    assert progress.iteration == 10 and progress.evaluations == []
    assert int(trainer.schedule_start.numpy()) == 0
    train(trainer, progress, 20, seed=4)
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(trainer.pruned.rewindable[name].numpy(), value, err_msg=name)
    assert resume(tmp_path / "missing.npz", trainer, (0, 20)) is None


def test_tensorflow_keeps_quiet_of_traces_each_runs_own_trainer_makes():
    """A sweep worker builds a Trainer per member, and TensorFlow counts their traces by the
    method's code as retracing of one function: that warning is dropped, a user's stays."""
    # Importing lth_tf.training.trainer (above) installed the filter.
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        traced = "triggered tf.function retracing. Tracing is expensive"
        ours = "<bound method Trainer.x of <lth_tf.training.trainer.Trainer object at 0x1>>"
        theirs = "<bound method TensorFlowTrainer.x of <keras.Trainer object at 0x2>>"
        for function in (ours, theirs):
            logger.warning(f"5 out of the last 16 calls to {function} {traced}")
    finally:
        logger.removeHandler(handler)
    assert seen == [f"5 out of the last 16 calls to {theirs} {traced}"]
