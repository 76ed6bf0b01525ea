"""The papers' models: parameter counts and initializers for each dataset's input shape, the
registry, weight decay, and the deep nets trained and pruned for a few iterations."""

from pathlib import Path

import pytest
import tensorflow as tf
import tf_keras

from lth_tf.config import PruneRates
from lth_tf.errors import LthError
from lth_tf.lottery.imp import run_imp
from lth_tf.models import MODELS, get_model, paper_defaults
from lth_tf.models.layers import add_weight_decay
from lth_tf.pruning.prunable import find_prunable
from lth_tf.pruning.wrapping import wrap_model
from tests.helpers import QUIET, tiny_dataset, with_changes


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
    for layer_name in find_prunable(model).kinds:
        initializer = model.get_layer(layer_name).kernel_initializer
        assert initializer.__class__.__name__ == "GlorotNormal"


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
    with pytest.raises(LthError, match=r"--model=\S+ is a directory; pass a model saved as one"):
        get_model(str(Path(__file__).parent))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("name", ["resnet20", "vgg16", "vgg19"])
def test_deep_models_build_for_every_dataset_shape(name, shape):
    model = get_model(name).build(shape, 10)
    assert model.output_shape == (None, 10)
    found = find_prunable(model).kinds
    kinds = [found.get(layer.name) for layer in model.layers]
    assert kinds[-1] == "output" and "fc" not in kinds
    assert kinds.count("conv") == {"resnet20": 21, "vgg16": 13, "vgg19": 16}[name]
    if shape[-1] == 3:
        conv_weights = sum(
            layer.kernel.shape.num_elements()
            for layer in model.layers
            if found.get(layer.name) == "conv"
        )
        # The papers count 274K weights for the CIFAR ResNet and 20.0M for VGG-19.
        expected = {"resnet20": 270_256, "vgg16": 14_710_464, "vgg19": 20_018_880}[name]
        assert conv_weights == expected


def test_weight_decay_is_half_the_squared_kernels_and_survives_wrapping():
    tf_keras.utils.set_random_seed(0)
    model = get_model("resnet20").build((8, 8, 3), 10)
    add_weight_decay(model, 1e-3)
    kernels = [model.get_layer(name).kernel for name in find_prunable(model).kinds]
    expected = 0.5e-3 * sum(float(tf.reduce_sum(k**2)) for k in kernels)
    assert len(model.losses) == len(kernels) == 22
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    pruned = wrap_model(model, PruneRates(conv=0.2))
    assert float(tf.add_n(pruned.model.losses)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "shape, rounds", [((28, 28, 1), 0), ((32, 32, 3), 1)], ids=["28x28x1", "32x32x3"]
)
def test_vgg16_trains_and_prunes_on_both_input_shapes(tmp_path, shape, rounds):
    hparams = with_changes(
        paper_defaults("vgg16", "cifar10"),
        training={"iterations": "2it", "batch_size": 8, "warmup": "1it"},
        pruning={"rounds": rounds, "rewind": "1it"},
    )
    data = tiny_dataset(train=40, val=8, test=8, shape=shape)
    experiment = run_imp(hparams, tmp_path, "vgg", QUIET, data=data)
    rows = experiment.read_results()
    assert [r.round for r in rows] == list(range(rounds + 1))
    assert rows[-1].percent_remaining == pytest.approx(100 * 0.8**rounds, abs=1e-4)


def test_a_users_module_is_looked_for_without_importing_it_and_a_missing_import_is_named(
    tmp_path, monkeypatch
):
    from lth_tf.models.custom import check_findable, import_user_function

    package = tmp_path / "user_nets"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported too early')\n")
    (package / "convs.py").write_text("def build(shape, classes):\n    return None\n")
    (tmp_path / "needs_more.py").write_text("import no_such_dependency_of_lth_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    check_findable("user_nets.convs:build", "--model")  # found, and its package not run
    for spec, missing in [
        ("user_nets.nothing:build", "user_nets.nothing"),
        ("user_nets.convs.deeper:build", "user_nets.convs.deeper"),
        ("no_such_top_level_package_of_lth.nets:build", "no_such_top_level_package_of_lth"),
    ]:
        with pytest.raises(LthError, match=f"--model={spec}: cannot import {missing} "):
            check_findable(spec, "--model")
    # Found, but what it imports is not installed: the advice is to install that.
    with pytest.raises(LthError) as refusal:
        import_user_function("needs_more:build", "--model")
    assert str(refusal.value).endswith(
        "(ModuleNotFoundError: No module named 'no_such_dependency_of_lth_tests'); "
        "install no_such_dependency_of_lth_tests in this environment"
    )


def test_a_saved_model_computes_in_the_runs_precision_with_its_own_weights(tmp_path):
    # A file names a dtype policy in every layer: mixed_bfloat16 where it was trained so, which
    # would override --mixed_precision (and what the experiment records).
    import numpy as np

    from lth_tf.models.custom import load_keras_file
    from lth_tf.training.precision import mixed_precision_policy

    def saved(name, policy):
        with mixed_precision_policy(policy):
            inputs = tf_keras.Input((6, 6, 1))
            x = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(2))(inputs)  # a wrapper
            x = tf_keras.layers.Conv2D(2, 3)(x)
            inner = tf_keras.Sequential([tf_keras.layers.Dense(4)], name="inner")
            model = tf_keras.Model(inputs, inner(tf_keras.layers.Flatten()(x)))
        model.save(tmp_path / name)
        return model

    mixed = saved("mixed.keras", "bfloat16")
    saved("plain.keras", None)

    def policies(model):
        layers = model._flatten_layers(include_self=False, recursive=True)
        inputs = tf_keras.layers.InputLayer
        return {layer.dtype_policy.name for layer in layers if not isinstance(layer, inputs)}

    assert policies(mixed) == {"mixed_bfloat16"}
    loaded = load_keras_file(tmp_path / "mixed.keras")
    assert policies(loaded) == {"float32"}
    assert loaded.inputs[0].dtype == tf.float32
    for a, b in zip(loaded.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with mixed_precision_policy("bfloat16"):
        assert policies(load_keras_file(tmp_path / "plain.keras")) == {"mixed_bfloat16"}
    assert policies(load_keras_file(tmp_path / "plain.keras")) == {"float32"}


def test_numpy_numbers_set_hyperparameters_as_python_ones_do():
    # A loop over np.arange in a notebook hands numpy integers to find_tickets.
    import numpy as np

    from lth_tf.models import experiment_hparams

    changes = {"rounds": np.int64(2), "seed": np.int32(3), "learning_rate": np.float64(0.01)}
    hparams = experiment_hparams("lenet300_100", changes=changes)
    assert (hparams.pruning.rounds, hparams.training.seed) == (2, 3)
    assert type(hparams.pruning.rounds) is int and hparams.training.learning_rate == 0.01
