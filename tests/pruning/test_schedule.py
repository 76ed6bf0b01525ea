"""The project's PruningSchedule: serialization, and a saved pruned model loads back with it."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.sparsity import keras as sparsity

from lth_tf.config import PruneRates
from lth_tf.models import get_model
from lth_tf.pruning.schedule import IterativeSparsity
from lth_tf.pruning.wrapping import wrap_model


def test_schedule_config_round_trip_and_sparsity():
    schedule = IterativeSparsity(rate=0.2, pruning_round=3)
    config = schedule.get_config()
    assert config["class_name"] == "lth_tf>IterativeSparsity"
    again = IterativeSparsity.from_config(config["config"])
    assert again == schedule and again.sparsity == pytest.approx(1 - 0.8**3)
    should_prune, target = schedule(tf.constant(5, tf.int64))
    assert not bool(should_prune) and float(target) == pytest.approx(0.488)


def test_schedule_rejects_rates_outside_unit_interval():
    with pytest.raises(ValueError):
        IterativeSparsity(rate=1.0)


def test_saved_pruned_model_loads_back_with_a_real_schedule_and_trains(tmp_path):
    model = get_model("lenet300_100").build((28, 28, 1), 10)
    pruned = wrap_model(model, PruneRates(fc=0.2, output=0.1))
    pruned.set_round(2)
    path = tmp_path / "pruned.keras"
    pruned.model.save(path)
    with sparsity.prune_scope():
        loaded = tf_keras.models.load_model(path)
    wrappers = [layer for layer in loaded.layers if hasattr(layer, "pruning_schedule")]
    assert len(wrappers) == 3
    for wrapper in wrappers:
        assert isinstance(wrapper.pruning_schedule, IterativeSparsity)
        assert wrapper.pruning_schedule.pruning_round == 2
    # The silent-string bug shows up as a TypeError in fit; a real schedule trains.
    loaded.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.zeros((8, 28, 28, 1), np.float32)
    y = np.zeros(8, np.int64)
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
