"""--batchnorm_init: open_lth's gamma ~ U[0, 1), beta = 0 for the stabilizing recipe's deep nets."""

import numpy as np
import pytest

from lth_tf import io
from lth_tf.builder import untrained_values
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir, open_experiment, settings_of_directory
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults
from lth_tf.models.registry import experiment_hparams
from tests.helpers import QUIET, as_before_a_field, tiny_dataset, with_changes


def batch_norm(values: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    return {name: value for name, value in values.items() if name.endswith(f"_bn/{what}")}


@pytest.mark.parametrize("recipe, init", [("stabilizing", "uniform"), ("lth", "fixed")])
def test_the_recipes_choose_the_initialiser(recipe, init):
    for model in ("resnet20", "vgg16", "vgg19"):
        assert paper_defaults(model, recipe=recipe).model.batchnorm_init == init
    assert paper_defaults("lenet300_100").model.batchnorm_init == "fixed"


def test_resnet20_under_the_stabilizing_recipe_starts_with_gamma_in_0_1(tmp_path):
    hparams = with_changes(
        paper_defaults("resnet20", "fashion_mnist"),
        training={"iterations": "2it", "batch_size": 8},
        pruning={"rounds": 0, "rewind": "0it"},  # the rewind point is then theta_0
    )
    data = tiny_dataset(train=40, val=8, test=8)
    experiment = run_imp(hparams, tmp_path, "resnet", QUIET, data=data)
    theta_0 = io.read_npz(experiment.rewind_point)
    gammas, betas = batch_norm(theta_0, "gamma"), batch_norm(theta_0, "beta")
    assert len(gammas) == len(betas) == 21
    every = np.concatenate([g.ravel() for g in gammas.values()])
    assert every.min() >= 0 and every.max() < 1 and every.std() > 0.1
    assert all(np.all(b == 0) for b in betas.values())
    assert io.read_json(experiment.hparams)["hparams"]["model"]["batchnorm_init"] == "uniform"

    # random_reinit's fresh start draws its own: uniform too, other values.
    fresh = batch_norm(untrained_values(hparams, data, seed=7), "gamma")
    assert fresh.keys() == gammas.keys()
    name = next(iter(fresh))
    assert fresh[name].min() >= 0 and fresh[name].max() < 1
    assert not np.array_equal(fresh[name], gammas[name])
    # The same seed, the same theta_0.
    again = batch_norm(untrained_values(hparams, data, seed=hparams.training.seed), "gamma")
    for name, value in gammas.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_fixed_keeps_gamma_1():
    hparams = with_changes(paper_defaults("resnet20", "fashion_mnist", recipe="lth"))
    gammas = batch_norm(untrained_values(hparams, tiny_dataset(40, 8, 8), seed=0), "gamma")
    assert gammas and all(np.all(g == 1) for g in gammas.values())


def test_a_net_without_batch_norm_refuses_uniform():
    with pytest.raises(LthError, match="lenet300_100 has no batch-norm layers"):
        experiment_hparams("lenet300_100", changes={"batchnorm_init": "uniform"})
    with pytest.raises(LthError, match="--batchnorm_init: unknown initialiser 'ones'"):
        experiment_hparams("resnet20", changes={"batchnorm_init": "ones"})


def test_a_directory_written_before_the_flag_keeps_gamma_1(tmp_path):
    """An older stabilizing resnet20 directory (no batchnorm_init in hparams.json) ran gamma 1:
    it reads so, and a rerun of its command (the new default, uniform) takes its value."""
    hparams = paper_defaults("resnet20")
    root = tmp_path / "old"
    open_experiment(root, hparams, {})
    saved = as_before_a_field(root / "hparams.json", "model.batchnorm_init")

    assert ExperimentHparams.from_dict(saved["hparams"]).model.batchnorm_init == "fixed"
    kept = settings_of_directory(ExperimentDir(root), hparams)
    assert kept.model.batchnorm_init == "fixed" and hparams.model.batchnorm_init == "uniform"
    assert kept.training == hparams.training and kept.pruning == hparams.pruning
    # A new directory keeps the command's value.
    assert settings_of_directory(ExperimentDir(tmp_path / "new"), hparams) == hparams
