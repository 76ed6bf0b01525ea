"""``--recipe``: the LTH paper's and the Stabilizing-LTH papers' defaults; ``--eval_every=auto``
per model. Flags are parsed in-process (the refused commands run pipelines.imp's main here
too); nothing trains, so no TensorFlow starts (resnet20's stabilizing recipe at work is in
tests/pruning/test_global_pruning.py)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from lth_tf import io
from lth_tf.config import ExperimentHparams, ModelHparams, PruneRates, Resolved
from lth_tf.errors import LthError
from lth_tf.experiment import (
    FORMAT_VERSION,
    RESULT_COLUMNS,
    default_experiment_name,
    open_experiment,
)
from lth_tf.models import get_model, paper_defaults, resolve_steps
from tests.helpers import assert_one_line_error, imp_hparams, run_main

SMALL_NETS = ("lenet300_100", "conv2", "conv4", "conv6")
DEEP_NETS = ("resnet20", "vgg16", "vgg19")


def test_resnet20_defaults_to_stabilizing_and_lth_gives_warmup_and_reset():
    default = imp_hparams("--model=resnet20")
    # open_lth's cifar_resnet.py: batchnorm_init='uniform'.
    assert default.model == ModelHparams("resnet20", "stabilizing", "uniform")
    assert (default.training.warmup, default.pruning.rewind) == ("0it", "500it")
    # open_lth's cifar_resnet.py: batch 128, 160 epochs, drops at epochs 80 and 120.
    assert (default.training.batch_size, default.training.iterations) == (128, "160ep")
    assert default.training.lr_drops == "80ep,120ep"
    assert imp_hparams("--model=resnet20", "--recipe=stabilizing") == default

    lth = imp_hparams("--model=resnet20", "--recipe=lth")
    assert lth.model == ModelHparams("resnet20", "lth")
    assert (lth.training.warmup, lth.pruning.rewind) == ("20000it", "0it")
    assert (lth.training.iterations, lth.training.lr_drops) == ("30000it", "20000it,25000it")
    # What both share: SGD 0.1, momentum 0.9, weight decay 1e-4, global 20% of the convs.
    for hparams in (default, lth):
        training = hparams.training
        assert (training.optimizer, training.learning_rate, training.momentum) == ("sgd", 0.1, 0.9)
        assert training.weight_decay == 1e-4
        assert hparams.pruning.scope == "global" and hparams.pruning.rates.conv == 0.2


def test_the_vggs_rewind_to_iteration_1000_by_default():
    for name in ("vgg16", "vgg19"):
        stabilizing = imp_hparams(f"--model={name}")
        assert stabilizing.model.recipe == "stabilizing"
        assert (stabilizing.training.warmup, stabilizing.pruning.rewind) == ("0it", "1000it")
        assert stabilizing.training.batch_size == 128
        lth = imp_hparams(f"--model={name}", "--recipe=lth")
        assert (lth.training.warmup, lth.pruning.rewind) == ("10000it", "0it")
        assert (lth.training.batch_size, lth.training.iterations) == (64, "112000it")


def test_explicit_flags_override_the_recipe():
    reset = imp_hparams("--model=resnet20", "--recipe=stabilizing", "--rewind=0")
    assert reset.model.recipe == "stabilizing" and reset.pruning.rewind == "0it"
    assert reset.training.warmup == "0it"  # the rest is still the recipe's
    no_warmup = imp_hparams("--model=vgg19", "--recipe=lth", "--warmup=0", "--batch_size=32")
    assert (no_warmup.training.warmup, no_warmup.training.batch_size) == ("0it", 32)
    assert no_warmup.training.iterations == "112000it" and no_warmup.pruning.rewind == "0it"


def test_small_nets_have_only_the_lth_recipe():
    for name in SMALL_NETS:
        spec = get_model(name)
        assert (spec.default_recipe, list(spec.recipes)) == ("lth", ["lth"])
        assert paper_defaults(name) == paper_defaults(name, recipe="lth")
        assert paper_defaults(name).model == ModelHparams(name, "lth")
        with pytest.raises(LthError, match=f"{name} has only the lth recipe"):
            paper_defaults(name, recipe="stabilizing")
    assert imp_hparams("--model=conv6", "--recipe=lth") == imp_hparams("--model=conv6")
    with pytest.raises(LthError, match="unknown recipe 'fast'"):
        imp_hparams("--model=resnet20", "--recipe=fast")
    with pytest.raises(LthError, match="unknown recipe 'fast'"):
        ModelHparams("resnet20", "fast")


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--model=resnet20", "--recipe=nope"], "--recipe: unknown recipe 'nope'"),
        (
            ["--model=lenet300_100", "--recipe=stabilizing"],
            "lenet300_100 has only the lth recipe",
        ),
    ],
    ids=["unknown", "small-net"],
)
def test_a_recipe_that_does_not_exist_is_one_line_and_exit_2(flags, reason, tmp_path):
    result = run_main("pipelines.imp", *flags, f"--output_dir={tmp_path}")
    assert_one_line_error(result, reason)
    assert not any(tmp_path.iterdir()), "nothing is written for a refused command"


def test_auto_eval_every_is_100_iterations_for_the_small_nets_and_coarser_for_deep_ones():
    # lenet300_100 on Fashion-MNIST: 55,000 training examples, 917 iterations per epoch at
    # batch 60, where half an epoch would have been 500.
    lenet = paper_defaults("lenet300_100", "fashion_mnist")
    assert lenet.training.eval_every == "auto"
    assert resolve_steps(lenet, 55_000).eval_every == 100
    for name in SMALL_NETS:
        assert resolve_steps(paper_defaults(name, "cifar10"), 45_000).eval_every == 100
    # resnet20 at batch 128: 430 iterations per epoch; half of it to 100 iterations is 200.
    assert resolve_steps(paper_defaults("resnet20", "fashion_mnist"), 55_000).eval_every == 200
    lth = paper_defaults("resnet20", "fashion_mnist", recipe="lth")
    assert resolve_steps(lth, 55_000).eval_every == 200
    vgg_lth = paper_defaults("vgg19", recipe="lth")  # batch 64: 704 per epoch on CIFAR-10
    assert resolve_steps(vgg_lth, 45_000).eval_every == 400
    # An explicit spacing is what it says, for every model.
    explicit = dataclasses.replace(
        lenet, training=dataclasses.replace(lenet.training, eval_every="1ep")
    )
    assert resolve_steps(explicit, 55_000).eval_every == 917
    assert {get_model(n).auto_eval.describe() for n in DEEP_NETS} == {
        "every 0.5 epoch, rounded to 100 iterations"
    }


def test_an_old_hparams_dict_without_recipe_loads_as_the_lth_recipe(tmp_path):
    hparams = paper_defaults("lenet300_100", "mnist")
    old = hparams.to_dict()
    assert old["model"] == {"name": "lenet300_100", "recipe": "lth", "batchnorm_init": "fixed"}
    del old["model"]["recipe"]
    assert ExperimentHparams.from_dict(old) == hparams
    io.write_json(
        tmp_path / "hparams.json",
        {"format_version": FORMAT_VERSION, "hparams": old, "resolved": _resolved(eval_every=100)},
    )
    opened = open_experiment(tmp_path, hparams, {"resolved": _resolved(eval_every=100)})
    assert opened.root == tmp_path
    # An old resnet20 directory was LTH-labelled too, whatever its rewind point.
    deep = paper_defaults("resnet20").to_dict()
    del deep["model"]["recipe"], deep["model"]["batchnorm_init"]  # neither existed then
    assert ExperimentHparams.from_dict(deep).model == ModelHparams("resnet20", "lth")


def test_hparams_json_records_the_recipe_and_names_keep_their_hash(tmp_path):
    stabilizing = paper_defaults("resnet20", "fashion_mnist")
    open_experiment(tmp_path / "e", stabilizing, {})
    saved = io.read_json(tmp_path / "e" / "hparams.json")["hparams"]
    assert saved["model"] == {
        "name": "resnet20",
        "recipe": "stabilizing",
        "batchnorm_init": "uniform",
    }
    assert ExperimentHparams.from_dict(saved) == stabilizing

    # The name hashes only what differs from the defaults: a small net's default run hashes
    # nothing, as before recipes existed, so its old experiment directories keep their names.
    lenet = paper_defaults("lenet300_100", "fashion_mnist")
    old = lenet.to_dict()
    del old["model"]["recipe"]
    written_before = ExperimentHparams.from_dict(old)
    nothing = hashlib.sha256(b"{}").hexdigest()[:8]
    assert default_experiment_name(written_before, lenet) == f"lenet300_100-fashion_mnist-{nothing}"
    seed = dataclasses.replace(written_before, training=dataclasses.replace(lenet.training, seed=1))
    assert seed.short_hash(lenet) == hashlib.sha256(b'{"training.seed": 1}').hexdigest()[:8]
    # The other recipe of a deep net is another experiment.
    lth = paper_defaults("resnet20", "fashion_mnist", recipe="lth")
    assert lth.short_hash(stabilizing) != stabilizing.short_hash(stabilizing)


def test_a_resume_whose_auto_spacing_changed_is_refused(tmp_path):
    hparams = paper_defaults("lenet300_100", "mnist")
    io.write_json(
        tmp_path / "hparams.json",
        {
            "format_version": FORMAT_VERSION,
            "hparams": hparams.to_dict(),
            "resolved": _resolved(eval_every=500),  # what auto meant for lenet before
        },
    )
    with pytest.raises(LthError, match="evaluated every 500 iterations.*now means every 100"):
        open_experiment(tmp_path, hparams, {"resolved": _resolved(eval_every=100)})


def _resolved(eval_every: int) -> dict:
    """hparams.json's ``resolved`` as every lth_tf wrote it (these four counts since the first)."""
    return dataclasses.asdict(Resolved(50_000, eval_every, 0, 917))


def test_a_branch_takes_its_parents_recipe(tmp_path):
    from lth_tf.lottery.branches import branch_of

    parent = tmp_path / "resnet-lth"
    hparams = paper_defaults("resnet20", "fashion_mnist", recipe="lth")
    open_experiment(parent, hparams, {})
    io.write_npz(parent / "round_00" / "weights.npz", {})
    io.write_csv(parent / "results.csv", [{c: 0 for c in RESULT_COLUMNS}], RESULT_COLUMNS)
    branch, _, name = branch_of(parent, "lr_rewind")
    assert name == "resnet-lth-lr_rewind"
    assert branch.model == ModelHparams("resnet20", "lth") and branch.pruning.rewind == "0it"
    with pytest.raises(LthError, match="--recipe cannot be set with --branch_of"):
        imp_hparams(f"--branch_of={parent}", "--control=lr_rewind", "--recipe=stabilizing")


def test_deep_nets_default_to_the_papers_recipe():
    for name in ("resnet20", "vgg16", "vgg19"):
        for recipe in ("lth", "stabilizing"):
            hparams = paper_defaults(name, recipe=recipe)
            training, pruning = hparams.training, hparams.pruning
            assert hparams.dataset.name == "cifar10"
            assert (training.optimizer, training.learning_rate, training.momentum) == (
                "sgd",
                0.1,
                0.9,
            )
            assert training.weight_decay == 1e-4 and training.augment == "cifar"
            assert len(training.lr_drops.split(",")) == 2
            assert pruning.scope == "global" and pruning.global_rate == 0.2
            assert pruning.rates.conv == 0.2 and pruning.rates.fc == 0
        # LTH: warmup and reset to 0, the output layer dense; Stabilizing LTH (open_lth's
        # defaults): no warmup, an early rewind point, resnet20's output layer pruned too.
        lth, stabilizing = paper_defaults(name, recipe="lth"), paper_defaults(name)
        assert lth.training.warmup != "0it" and lth.pruning.rewind == "0it"
        assert lth.pruning.rates == PruneRates(conv=0.2)
        assert stabilizing.training.warmup == "0it"
        assert 100 <= int(stabilizing.pruning.rewind.removesuffix("it")) <= 5000
        output = 0.2 if name == "resnet20" else 0.0
        assert stabilizing.pruning.rates == PruneRates(conv=0.2, output=output)
    small = paper_defaults("lenet300_100").training
    assert (small.weight_decay, small.warmup, small.lr_drops, small.augment) == (
        0,
        "0it",
        "",
        "none",
    )
    assert paper_defaults("conv6").pruning.scope == "layerwise"
