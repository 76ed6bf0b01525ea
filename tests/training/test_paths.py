"""The fast training paths give the same numbers as the plain ones, on every strategy.

The trainer builds batches on the device, evaluates whole splits in one call, skips TF-MOT's
per-call re-masking and may compute in 16 bits; each test pins one of those against the slow,
obvious way. The multi-replica paths run in subprocesses on virtual CPUs (or worker processes).
"""

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from lth_tf import io
from lth_tf.config import TrainingHparams
from lth_tf.data.pipeline import gather_batch, stream_indices, training_batches
from lth_tf.experiment import ExperimentDir
from lth_tf.imp import RunOptions, run_imp
from lth_tf.loop import (
    Checkpoint,
    ChunkMetrics,
    EvaluateEvery,
    SnapshotAt,
    TrainingProgress,
    train,
)
from lth_tf.models import get_model, paper_defaults
from lth_tf.pruning.wrapping import restore, snapshot, wrap_model
from lth_tf.training import Evaluation, Trainer, mixed_precision_policy
from tests.helpers import ROOT, run_pipeline, tiny_dataset

RATES = paper_defaults("lenet300_100", "mnist").pruning.rates


def half_pruned_lenet(seed: int = 3):
    tf_keras.utils.set_random_seed(seed)
    pruned = wrap_model(get_model("lenet300_100").build((28, 28, 1), 10), RATES)
    pruned.set_round(1)
    rng = np.random.default_rng(seed)
    masks = {n: (rng.random(v.shape) < 0.5).astype(np.float32) for n, v in pruned.masks.items()}
    pruned.set_masks(masks)
    pruned.apply_masks()
    return pruned


@pytest.mark.parametrize("augment", [False, True])
def test_on_device_batches_are_the_tf_data_stream(augment):
    data = tiny_dataset(train=150, shape=(8, 8, 3))
    batch, steps, seed = 64, 12, 5  # 64 does not divide 150: batches straddle epochs
    stream = iter(
        training_batches(data.train_images, data.train_labels, batch, seed, augment=augment)
    )
    images, labels = tf.constant(data.train_images), tf.constant(data.train_labels)
    positions = tf.range(steps * batch, dtype=tf.int64)
    indices = tf.reshape(stream_indices(positions, len(data.train_labels), seed), [steps, batch])
    for step in range(steps):
        expected_images, expected_labels = next(stream)
        got_images, got_labels = gather_batch(images, labels, indices[step], step, seed, augment)
        np.testing.assert_array_equal(got_images.numpy(), expected_images.numpy())
        np.testing.assert_array_equal(got_labels.numpy(), expected_labels.numpy())


def test_evaluation_on_the_device_matches_keras_predict():
    data = tiny_dataset(val=1234, test=200)  # 1,234: a remainder after the 1,000-example batch
    pruned = half_pruned_lenet()
    trainer = Trainer(pruned, data, TrainingHparams(), tf.distribute.get_strategy(), True)
    for split, images, labels in [
        ("val", data.val_images, data.val_labels),
        ("test", data.test_images, data.test_labels),
    ]:
        logits = pruned.model.predict(images.astype(np.float32), batch_size=500, verbose=0)
        loss = tf_keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        got_loss, got_accuracy = trainer.evaluate_split(split)
        assert got_accuracy == np.mean(logits.argmax(axis=-1) == labels)
        assert got_loss == pytest.approx(float(np.mean(loss)), rel=1e-5)


class _Recorder:
    def __init__(self):
        self.evaluations = []

    def on_train_chunk(self, iteration, loss, accuracy):
        pass

    def on_evaluation(self, evaluation):
        self.evaluations.append(evaluation)


def train_round(
    trainer, stop, every, progress, save, hooks=None, observer=None, test_every_evaluation=False
):
    """The loop with an IMP round's callbacks: hooks at iterations, chunk metrics, evaluations
    every ``every``, a checkpoint after each."""
    callbacks = [SnapshotAt([i], lambda _, hook=hook: hook()) for i, hook in (hooks or {}).items()]
    if observer is not None:
        callbacks.append(ChunkMetrics(observer))
    callbacks.append(EvaluateEvery(trainer, every, observer, test_every_evaluation))
    callbacks.append(Checkpoint(save, every=every))
    return train(trainer, progress, stop, callbacks)


def _rows(evaluations):
    return np.array([dataclasses.astuple(e) for e in evaluations])


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

    recorder = _Recorder()
    hooks = {10: lambda: at_10.update(snapshot(rewindable)), 20: spoil}
    progress = train_round(trainer, 30, 10, TrainingProgress(), save, hooks, observer=recorder)

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
    assert [e.iteration for e in recorder.evaluations] == [10, 20, 10, 30]
    assert np.isnan(recorder.evaluations[0].test_loss) and recorder.evaluations[2] == early
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

    recorder = _Recorder()
    train_round(
        trainer,
        30,
        10,
        progress,
        lambda _: None,
        {21: spoil},
        observer=recorder,
        test_every_evaluation=True,
    )
    at_20 = recorder.evaluations[0]
    assert at_20.iteration == 20 and not np.isnan(at_20.test_loss)
    assert progress.early_stop.iteration == 20
    assert progress.evaluations[1] == at_20
    assert [e.iteration for e in recorder.evaluations] == [20, 30]
    assert not progress.early_stop_weights


def test_skipping_tfmot_remasking_changes_no_weight():
    data = tiny_dataset()
    trained = {}
    for remask in (False, True):
        pruned = half_pruned_lenet()
        strategy = tf.distribute.get_strategy()
        trainer = Trainer(pruned, data, TrainingHparams(), strategy, remask_every_step=remask)
        trainer.train_steps(trainer.batches_from(0), 30)
        assert pruned.pruned_nonzero() == 0
        trained[remask] = {name: w.numpy() for name, w in pruned.weights.items()}
    for name, value in trained[False].items():
        np.testing.assert_array_equal(value, trained[True][name], err_msg=name)


def test_float16_trains_with_loss_scaling_and_a_fresh_scale_each_round():
    data = tiny_dataset()
    with mixed_precision_policy("float16"):
        pruned = half_pruned_lenet()
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored
    assert pruned.unwrapped.get_layer("fc1").compute_dtype == "float16"
    trainer = Trainer(pruned, data, TrainingHparams(), tf.distribute.get_strategy())
    assert isinstance(trainer.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    initial_scale = float(trainer.optimizer.loss_scale)
    loss_sum, _ = trainer.train_steps(trainer.batches_from(0), 20)
    assert np.isfinite(loss_sum)
    assert pruned.pruned_nonzero() == 0
    assert all(np.all(np.isfinite(w.numpy())) for w in pruned.weights.values())
    trainer.reset_optimizer()
    assert float(trainer.optimizer.loss_scale) == initial_scale  # not zeroed with the slots


def test_bfloat16_run_finishes_with_exact_sparsities(tmp_path):
    hparams = paper_defaults("lenet300_100", "mnist")
    hparams = hparams.__class__(
        **{
            **hparams.__dict__,
            "training": TrainingHparams(iterations="40it", eval_every="20it"),
            "pruning": hparams.pruning.__class__(rates=RATES, rounds=1),
        }
    )
    experiment = run_imp(
        hparams,
        tmp_path,
        "bf16",
        RunOptions(mixed_precision="bfloat16", show_progress=False),
        data=tiny_dataset(),
    )
    masks = io.read_npz(experiment.masks(1))
    weights = io.read_npz(experiment.weights(1))
    for name, mask in masks.items():
        assert np.all(weights[name][mask == 0] == 0)
        assert np.all(np.isfinite(weights[name]))
    assert abs(masks["fc1/kernel"].sum() - 0.8 * masks["fc1/kernel"].size) <= 1
    assert tf_keras.mixed_precision.global_policy().name == "float32"


SMALL_RUN = [
    "--model=lenet300_100",
    "--dataset=mnist",
    "--noprogress",
    "--notensorboard",
    "--rounds=1",
    "--iterations=150",
    "--eval_every=50",
]


def _relative_distance(a: dict, b: dict) -> float:
    """|a - b| / |a| over every variable of two weight files together."""
    difference = sum(float(np.sum((a[key] - b[key]) ** 2)) for key in a)
    return math.sqrt(difference / sum(float(np.sum(a[key] ** 2)) for key in a))


def test_two_replicas_train_the_single_device_run(idx_dir, tmp_path):
    """Same global batches, summed gradients: mirrored on 2 CPUs trains the 1-device run.

    Not bit for bit: the all-reduce adds the two halves' gradients in another order than one
    device sums the whole batch, so the weights differ in the last bits at first, and Adam
    (which divides by the root of tiny second moments) grows that to about 0.3% of the weights'
    norm in 150 iterations here. float16 compute rounds every activation, so it lands further
    off (about 12%), and trains as well. Masks IMP derives are the same counts per layer; only
    weights within that difference of the threshold swap places.
    """
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}"]
    runs = {
        "single": [],
        "mirrored": ["--strategy=mirrored", "--virtual_cpus=2"],
        "mirrored_float16": [
            "--strategy=mirrored",
            "--virtual_cpus=2",
            "--mixed_precision=float16",
        ],
    }
    for name, extra in runs.items():
        result = run_pipeline("pipelines.imp", *flags, *extra, f"--experiment_name={name}")
        assert result.returncode == 0, result.stderr
    single = ExperimentDir(tmp_path / "single")
    mirrored = ExperimentDir(tmp_path / "mirrored")
    # Round 0, the dense network trained both ways (round 1 starts from masks that differ).
    dense = io.read_npz(single.weights(0))
    assert _relative_distance(dense, io.read_npz(mirrored.weights(0))) <= 0.03
    mine, theirs = io.read_npz(single.masks(1)), io.read_npz(mirrored.masks(1))
    for key in mine:
        assert mine[key].sum() == theirs[key].sum()
        assert np.mean(mine[key] == theirs[key]) >= 0.99, key
    for name in ("mirrored", "mirrored_float16"):
        other = ExperimentDir(tmp_path / name)
        for a, b in zip(single.read_results(), other.read_results(), strict=True):
            assert a.percent_remaining == b.percent_remaining
            gap = abs(a.test_accuracy - b.test_accuracy)
            assert gap <= 0.05, (name, gap)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_multi_worker_run_from_tf_config(idx_dir, tmp_path):
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}", "--tensorboard"]
    flags.append("--strategy=multi_worker")
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CONFIG=json.dumps(config))
        command = [sys.executable, "-m", "pipelines.imp", *flags, "--experiment_name=mw"]
        workers.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        )
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
    chief, other = tmp_path / "mw", tmp_path / ".workers" / "worker_1" / "mw"
    assert len(io.read_csv(chief / "results.csv")) == 2
    assert (chief / "tensorboard").is_dir() and not (other / "tensorboard").exists()
    # The workers are replicas of one model: they end every round with the same weights.
    for pruning_round in range(2):
        a = io.read_npz(chief / f"round_{pruning_round:02d}" / "weights.npz")
        b = io.read_npz(other / f"round_{pruning_round:02d}" / "weights.npz")
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_unreachable_tpu_is_one_line(tmp_path):
    address = f"grpc://localhost:{_free_port()}"
    result = run_pipeline(
        "pipelines.imp", "--strategy=tpu", f"--tpu={address}", f"--output_dir={tmp_path}"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"--tpu={address}: nothing answers there" in result.stderr
