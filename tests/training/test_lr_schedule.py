"""The learning rate: warmup then step decay, its config round trip, and an optimizer that
follows it."""

import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras

from lth_tf.config import PruneRates, TrainingHparams
from lth_tf.models import get_model
from lth_tf.models.layers import add_weight_decay
from lth_tf.pruning.wrapping import wrap_model
from lth_tf.training.schedules import WarmupStepDecay
from lth_tf.training.trainer import Trainer


def test_warmup_then_step_decay_and_its_config_round_trip():
    schedule = WarmupStepDecay(0.1, warmup=4, drops=[6, 8], factor=0.5)
    rates = [float(schedule(step)) for step in range(10)]
    np.testing.assert_allclose(
        rates, [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6
    )
    loaded = tf_keras.optimizers.schedules.deserialize(
        tf_keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(loaded, WarmupStepDecay) and loaded.get_config() == schedule.get_config()
    resolved = TrainingHparams(warmup="1ep", lr_drops="2ep,30it").schedule_in_iterations(100)
    assert (resolved.warmup, resolved.lr_drops) == ("100it", "200it,30it")


def train_lenet(training: TrainingHparams, data, steps: int = 5) -> dict[str, np.ndarray]:
    tf_keras.utils.set_random_seed(0)
    model = get_model("lenet300_100").build((28, 28, 1), 10)
    add_weight_decay(model, training.weight_decay)
    pruned = wrap_model(model, PruneRates(fc=0.2))
    pruned.set_round(0)
    trainer = Trainer(pruned, data, training, tf.distribute.get_strategy(), steps_per_execution=1)
    trainer.train_steps(trainer.batches_from(0), steps)
    return {name: v.numpy() for name, v in pruned.rewindable.items()}


def test_the_optimizer_follows_the_schedule(data):
    """A drop at step 0 by 0.1 trains exactly as a 10x smaller constant rate."""
    base = TrainingHparams("sgd", learning_rate=0.05, momentum=0.9)
    dropped = train_lenet(dataclasses.replace(base, lr_drops="0it"), data)
    smaller = train_lenet(dataclasses.replace(base, learning_rate=0.005), data)
    constant = train_lenet(base, data)
    for name in dropped:
        np.testing.assert_allclose(dropped[name], smaller[name], rtol=1e-5, atol=1e-7)
    assert not np.allclose(dropped["fc1/kernel"], constant["fc1/kernel"])
