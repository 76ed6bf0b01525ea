"""The project's PruningSchedule (serialization, save/load) and the paper's models."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.sparsity import keras as sparsity

from lth_tf.config import PruneRates
from lth_tf.errors import LthError
from lth_tf.models import MODELS, get_model, layer_kind
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


@pytest.mark.parametrize(
    "name, shape, params",
    [
        ("lenet300_100", (28, 28, 1), 266_610),
        ("conv2", (32, 32, 3), 4_301_642),
        ("conv4", (32, 32, 3), 2_425_930),
        ("conv6", (32, 32, 3), 2_262_602),
        ("conv6", (28, 28, 1), 1_802_698),
    ],
)
def test_models_build_for_the_datasets_input_shape(name, shape, params):
    model = get_model(name).build(shape, 10)
    assert model.count_params() == params
    assert model.output_shape == (None, 10)
    for layer in model.layers:
        if layer_kind(layer) is not None:
            assert layer.kernel_initializer.__class__.__name__ == "GlorotNormal"


def test_model_registry_carries_paper_defaults():
    conv6 = get_model("conv6")
    assert (conv6.dataset, conv6.training.learning_rate, conv6.training.batch_size) == (
        "cifar10",
        3e-4,
        60,
    )
    assert conv6.pruning.rates == PruneRates(conv=0.15, fc=0.2, output=0.1)
    assert get_model("lenet300_100").training.iterations == "50000it"
    assert set(MODELS) == {"lenet300_100", "conv2", "conv4", "conv6", "resnet20", "vgg16", "vgg19"}
    with pytest.raises(LthError, match="unknown model 'nope'"):
        get_model("nope")


def test_wrapping_finds_kinds_and_excludes_bookkeeping_from_rewinding():
    pruned = wrap_model(get_model("conv2").build((28, 28, 1), 10), PruneRates(0.1, 0.2, 0.1))
    assert pruned.kinds == {
        "conv1/kernel": "conv",
        "conv2/kernel": "conv",
        "fc1/kernel": "fc",
        "fc2/kernel": "fc",
        "output/kernel": "output",
    }
    assert "conv1/bias" in pruned.rewindable
    assert not any("mask" in name or "pruning_step" in name for name in pruned.rewindable)
    pruned.set_round(2)
    assert pruned.target_sparsities()["fc1/kernel"] == pytest.approx(0.36)
    assert pruned.target_sparsities()["conv1/kernel"] == pytest.approx(0.19)
