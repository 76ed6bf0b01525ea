"""The fast training paths give the same numbers as the plain ones.

The trainer builds batches on the device, evaluates whole splits in one call, skips TF-MOT's
per-call re-masking and may compute in 16 bits; each test pins one of those against the slow,
obvious way. The multi-replica paths are in test_strategies.py.
"""

import dataclasses
import functools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from lth_tf import io
from lth_tf.builder import build_run
from lth_tf.config import TrainingHparams
from lth_tf.data.pipeline import gather_batch, stream_indices, training_batches
from lth_tf.execution import Execution
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults
from lth_tf.training import trainer as trainer_module
from lth_tf.training.optimizers import FusedSGD, make_optimizer
from lth_tf.training.precision import mixed_precision_policy
from lth_tf.training.trainer import Trainer
from tests.helpers import LENET_RATES, QUIET, tiny_dataset, with_changes
from tests.tf_helpers import half_pruned_lenet


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


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_fused_sgd_trains_kerass_sgd_weights(monkeypatch, nesterov):
    """resnet20's recipe (momentum, weight decay, batch norm) with one update kernel per
    variable, and with tf_keras's own SGD ops: the same weights after a few steps."""
    tf.config.experimental.enable_op_determinism()  # as every run does (build_run)
    data = tiny_dataset(train=96, val=16, test=16, shape=(8, 8, 1))
    hparams = with_changes(
        paper_defaults("resnet20", "fashion_mnist"),
        training={"batch_size": 16, "optimizer_args": f"nesterov={str(nesterov).lower()}"},
    )
    trained = {}
    for fused in (True, False):
        monkeypatch.setattr(
            trainer_module, "make_optimizer", functools.partial(make_optimizer, fused=fused)
        )
        built = build_run(hparams, data, execution=Execution(jit_compile=False))
        assert isinstance(built.trainer.optimizer, FusedSGD) == fused
        assert built.trainer.optimizer.nesterov == nesterov
        weights = built.pruned.unwrapped.weights
        initial = [w.numpy() for w in weights]
        built.trainer.train_steps(built.trainer.batches_from(0), 6)
        trained[fused] = [w.numpy() for w in weights]
        changed = [not np.array_equal(a, b) for a, b in zip(initial, trained[fused], strict=True)]
        assert sum(changed) > 40  # the kernels and batch norm trained
    for fused, plain in zip(trained[True], trained[False], strict=True):
        # Bit for bit on x86; a build that fuses the kernel's multiply-add may round otherwise.
        np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-7)


def test_one_xla_program_per_chunk_trains_the_per_step_programs_weights():
    """Under XLA a chunk's steps are one program. However the iterations are cut into chunks
    (a resume cuts them anew) the weights are the same bit for bit: it is one program. Against
    one program per step they were bit for bit the same here too, but XLA may order a fused
    sum differently on another CPU, so that comparison takes a tolerance."""
    tf.config.experimental.enable_op_determinism()  # as every run does (build_run)
    data = tiny_dataset()
    trained = {}
    for whole_chunk, chunks in [(False, [50]), (True, [50]), (True, [30, 7, 13])]:
        pruned = half_pruned_lenet()
        strategy = tf.distribute.get_strategy()
        trainer = Trainer(
            pruned, data, TrainingHparams(), strategy, True, xla_whole_chunk=whole_chunk
        )
        assert trainer.xla_training  # lenet has no convolution: XLA trains it on a CPU too
        stream = trainer.batches_from(0)
        for steps in chunks:
            loss_sum, _ = trainer.train_steps(stream, steps)
            assert np.isfinite(loss_sum)
        assert pruned.pruned_nonzero() == 0
        trained[whole_chunk, len(chunks)] = {n: w.numpy() for n, w in pruned.weights.items()}
    for name, value in trained[True, 1].items():
        np.testing.assert_array_equal(trained[True, 3][name], value, err_msg=name)
    per_step, whole = trained[False, 1], trained[True, 1]
    difference = sum(float(np.sum((per_step[n] - whole[n]) ** 2)) for n in per_step)
    norm = sum(float(np.sum(per_step[n] ** 2)) for n in per_step)
    assert np.sqrt(difference / norm) <= 1e-4


@pytest.mark.parametrize("jit_compile", [False, True])
def test_float16_trains_with_loss_scaling_and_a_fresh_scale_each_round(jit_compile):
    data = tiny_dataset()
    with mixed_precision_policy("float16"):
        pruned = half_pruned_lenet()
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored
    assert pruned.unwrapped.get_layer("fc1").compute_dtype == "float16"
    trainer = Trainer(pruned, data, TrainingHparams(), tf.distribute.get_strategy(), jit_compile)
    assert trainer.xla_training == jit_compile
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
            "pruning": hparams.pruning.__class__(rates=LENET_RATES, rounds=1),
        }
    )
    experiment = run_imp(
        hparams,
        tmp_path,
        "bf16",
        dataclasses.replace(QUIET, mixed_precision="bfloat16"),
        data=tiny_dataset(),
    )
    masks = io.read_npz(experiment.masks(1))
    weights = io.read_npz(experiment.weights(1))
    for name, mask in masks.items():
        assert np.all(weights[name][mask == 0] == 0)
        assert np.all(np.isfinite(weights[name]))
    assert abs(masks["fc1/kernel"].sum() - 0.8 * masks["fc1/kernel"].size) <= 1
    assert tf_keras.mixed_precision.global_policy().name == "float32"
