"""Deep networks with global pruning, learning-rate schedules, augmentation, one-shot pruning,
and the controls run as branches (random_reinit, random_prune, lr_rewind)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from lth_tf import io
from lth_tf.branches import branch_of
from lth_tf.config import ExperimentHparams, PruneRates, PruningHparams, TrainingHparams
from lth_tf.controls import reinit_seed
from lth_tf.data.pipeline import training_batches
from lth_tf.data.sources import load_dataset
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, open_experiment
from lth_tf.imp import ImpObserver, RunOptions, run_imp
from lth_tf.lr_schedule import WarmupStepDecay
from lth_tf.models import get_model, layer_kind, paper_defaults
from lth_tf.models.layers import add_weight_decay
from lth_tf.monitoring.report import write_report
from lth_tf.pruning.masks import global_masks, magnitude_mask, random_masks
from lth_tf.pruning.wrapping import wrap_model
from lth_tf.training import Trainer
from tests.helpers import run_pipeline, tiny_dataset

QUIET = RunOptions(show_progress=False)


def with_changes(hparams: ExperimentHparams, **groups) -> ExperimentHparams:
    for group, values in groups.items():
        hparams = dataclasses.replace(
            hparams, **{group: dataclasses.replace(getattr(hparams, group), **values)}
        )
    return hparams


class _StartRecorder(ImpObserver):
    """Keeps every rewindable value each round starts from."""

    def __init__(self):
        self.starts = {}

    def start_round(self, pruning_round, pruned):
        self.starts[pruning_round] = {n: v.numpy().copy() for n, v in pruned.rewindable.items()}


def start_recorder():
    record = _StartRecorder()
    return record.starts, record


# -- masks ---------------------------------------------------------------------------------


def test_global_masks_keep_exactly_the_largest_weights_of_the_whole_network_and_nest():
    rng = np.random.default_rng(0)
    # Layers on different scales: one threshold must leave them unequally sparse.
    weights = {
        "a": rng.normal(size=(30, 40)) * 0.1,
        "b": rng.normal(size=(3, 3, 8, 16)),
        "c": rng.normal(size=(500,)) * 3.0,
    }
    total = sum(w.size for w in weights.values())
    masks = {name: np.ones(w.shape, np.float32) for name, w in weights.items()}
    for pruning_round in (1, 2, 3):
        sparsity = 1 - 0.8**pruning_round
        new = global_masks(weights, masks, sparsity)
        alive = sum(int(m.sum()) for m in new.values())
        assert alive == round(total * 0.8**pruning_round)
        kept = np.concatenate([np.abs(weights[n])[new[n] == 1] for n in weights])
        dropped = np.concatenate([np.abs(weights[n])[new[n] == 0] for n in weights])
        assert kept.min() >= dropped.max()
        for name in weights:
            assert np.all(new[name] <= masks[name]), "a pruned weight came back"
            assert new[name].shape == weights[name].shape
        fractions = [new[name].mean() for name in weights]
        assert fractions[0] < fractions[1] < fractions[2]
        masks = new


def test_global_masks_break_ties_by_position_across_layers():
    weights = {"a": np.ones(4), "b": np.ones(4)}
    masks = global_masks(weights, {n: np.ones(4) for n in weights}, sparsity=0.25)
    assert masks["a"].tolist() == [1, 1, 1, 1] and masks["b"].tolist() == [1, 1, 0, 0]


def test_random_masks_keep_exact_counts_among_survivors_and_are_seeded():
    rng = np.random.default_rng(1)
    previous = {"a": (rng.random((20, 30)) < 0.7).astype(np.float32), "b": np.ones(50)}
    counts = {"a": 100, "b": 7}
    first = random_masks(previous, counts, np.random.default_rng(5))
    again = random_masks(previous, counts, np.random.default_rng(5))
    other = random_masks(previous, counts, np.random.default_rng(6))
    for name in previous:
        assert int(first[name].sum()) == counts[name]
        assert np.all(first[name] <= previous[name])
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["a"], other["a"])


def test_global_pruning_needs_one_rate_for_the_kinds_it_prunes():
    with pytest.raises(LthError, match="different rates"):
        PruningHparams(PruneRates(fc=0.2, output=0.1), scope="global")
    with pytest.raises(LthError, match="needs --pruning=layerwise"):
        PruningHparams(PruneRates(fc=0.2), scope="global", block_size="4x1")
    with pytest.raises(LthError, match="unknown scope 'sideways'"):
        PruningHparams(scope="sideways")
    assert PruningHparams(PruneRates(fc=0.2, output=0.2), scope="global").global_rate == 0.2


# -- models and their defaults --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("name", ["resnet20", "vgg16", "vgg19"])
def test_deep_models_build_for_every_dataset_shape(name, shape):
    model = get_model(name).build(shape, 10)
    assert model.output_shape == (None, 10)
    kinds = [layer_kind(layer) for layer in model.layers]
    assert kinds[-1] == "output" and "fc" not in kinds
    assert kinds.count("conv") == {"resnet20": 21, "vgg16": 13, "vgg19": 16}[name]
    if shape[-1] == 3:
        conv_weights = sum(
            layer.kernel.shape.num_elements()
            for layer in model.layers
            if layer_kind(layer) == "conv"
        )
        # The papers count 274K weights for the CIFAR ResNet and 20.0M for VGG-19.
        expected = {"resnet20": 270_256, "vgg16": 14_710_464, "vgg19": 20_018_880}[name]
        assert conv_weights == expected


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
            assert training.weight_decay == 1e-4 and training.augment
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
        False,
    )
    assert paper_defaults("conv6").pruning.scope == "layerwise"


def test_a_rewind_point_past_the_end_of_a_round_is_refused():
    hparams = with_changes(
        paper_defaults("resnet20", "fashion_mnist"), training={"iterations": "150it"}
    )
    with pytest.raises(LthError, match="--rewind=500it is iteration 500, past the end"):
        hparams.resolve(55_000)


def test_experiments_written_before_these_options_existed_still_resume(tmp_path):
    hparams = paper_defaults("lenet300_100", "mnist")
    old = hparams.to_dict()
    for key in ("weight_decay", "warmup", "lr_drops", "lr_drop_factor", "augment"):
        del old["training"][key]
    for key in ("scope", "one_shot"):
        del old["pruning"][key]
    del old["branch"]
    io.write_json(tmp_path / "hparams.json", {"format_version": 1, "hparams": old})
    assert open_experiment(tmp_path, hparams, {}).root == tmp_path
    with pytest.raises(LthError, match="warmup"):
        open_experiment(tmp_path, with_changes(hparams, training={"warmup": "10it"}), {})


# -- learning rate, weight decay, augmentation ----------------------------------------------


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


def test_weight_decay_is_half_the_squared_kernels_and_survives_wrapping():
    tf_keras.utils.set_random_seed(0)
    model = get_model("resnet20").build((8, 8, 3), 10)
    add_weight_decay(model, 1e-3)
    kernels = [layer.kernel for layer in model.layers if layer_kind(layer) is not None]
    expected = 0.5e-3 * sum(float(tf.reduce_sum(k**2)) for k in kernels)
    assert len(model.losses) == len(kernels) == 22
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    pruned = wrap_model(model, PruneRates(conv=0.2))
    assert float(tf.add_n(pruned.model.losses)) == pytest.approx(expected, rel=1e-5)


def test_augmentation_is_seeded_resumable_and_only_shifts_and_flips():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(40, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(40)

    def batches(seed, start=0, augment=True, count=4):
        stream = training_batches(images, labels, 10, seed, start, augment=augment)
        return [(x.numpy(), y.numpy()) for x, y in stream.take(count)]

    first, again = batches(seed=3), batches(seed=3)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = batches(seed=3, start=2, count=2)
    np.testing.assert_array_equal(resumed[0][0], first[2][0])
    assert not np.array_equal(batches(seed=4)[0][0], first[0][0])

    plain = batches(seed=3, augment=False)
    padded = np.pad(plain[0][0], [(0, 0), (4, 4), (4, 4), (0, 0)])
    flipped, shifted = 0, 0
    for index, image in enumerate(first[0][0]):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                image,
                (np.flip if flip else lambda a, axis: a)(padded[index], axis=1)[
                    dy : dy + 8, dx : dx + 8
                ],
            )
        ]
        assert matches, f"image {index} is not a shifted (flipped) crop of its original"
        flipped += matches[0][2]
        shifted += matches[0][:2] != (4, 4)
    assert flipped and shifted  # the batch is actually augmented, image by image


# -- a deep network end to end: global pruning and rewinding with batch norm ---------------


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    starts, record = start_recorder()
    hparams = with_changes(
        # The LTH recipe leaves the output layer dense (the stabilizing one prunes it).
        paper_defaults("resnet20", "cifar10", recipe="lth"),
        training={"iterations": "6it", "batch_size": 20, "eval_every": "3it", "warmup": "2it"},
        pruning={"rounds": 2, "rewind": "2it"},
    )
    data = tiny_dataset(train=100, val=20, test=20, shape=(16, 16, 3))
    root = tmp_path_factory.mktemp("deep")
    experiment = run_imp(hparams, root, "resnet", QUIET, data=data, observer=record)
    return experiment, starts


def test_global_pruning_keeps_0_8_to_the_r_of_the_conv_weights_network_wide(resnet_run):
    experiment, _ = resnet_run
    rows = experiment.read_results()
    previous = None
    for pruning_round in range(3):
        masks = io.read_npz(experiment.masks(pruning_round))
        conv = {n: m for n, m in masks.items() if n != "output/kernel"}
        total = sum(m.size for m in conv.values())
        alive = sum(int(m.sum()) for m in conv.values())
        assert total == 270_256 and alive == round(total * 0.8**pruning_round)
        assert masks["output/kernel"].all(), "the output layer stays dense"
        row = rows[pruning_round]
        assert row.weights_remaining == alive
        assert row.percent_remaining == pytest.approx(100 * 0.8**pruning_round, abs=1e-3)
        if pruning_round:
            fractions = {round(float(m.mean()), 3) for m in conv.values()}
            assert len(fractions) > 5, "global pruning left every layer equally sparse"
            for name, mask in masks.items():
                assert np.all(mask <= previous[name])
        previous = masks


def test_global_masks_prune_the_smallest_trained_conv_weights_of_the_network(resnet_run):
    experiment, _ = resnet_run
    trained = io.read_npz(experiment.weights(1))
    before, after = io.read_npz(experiment.masks(1)), io.read_npz(experiment.masks(2))
    conv = [n for n in before if n != "output/kernel"]
    kept = np.concatenate([np.abs(trained[n])[after[n] == 1] for n in conv])
    newly = np.concatenate([np.abs(trained[n])[(before[n] == 1) & (after[n] == 0)] for n in conv])
    assert newly.size and kept.min() >= newly.max()


def test_weights_and_batch_norm_statistics_are_rewound_exactly(resnet_run):
    experiment, starts = resnet_run
    point = io.read_npz(experiment.rewind_point)
    trained = io.read_npz(experiment.weights(0))
    stats = [n for n in point if "moving_" in n]
    assert len(stats) == 2 * 21  # mean and variance of every BN layer
    # The rewind point is 2 iterations in: its statistics moved away from the initial ones,
    # and training moved them further, so an exact match below means they were rewound.
    assert not np.allclose(point["conv1_bn/moving_mean"], starts[0]["conv1_bn/moving_mean"])
    assert not np.allclose(point["conv1_bn/moving_mean"], trained["conv1_bn/moving_mean"])
    for pruning_round in (1, 2):
        masks = io.read_npz(experiment.masks(pruning_round))
        for name, value in starts[pruning_round].items():
            expected = point[name] * masks[name] if name in masks else point[name]
            np.testing.assert_array_equal(value, expected, err_msg=f"{pruning_round} {name}")


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


# -- one-shot pruning -----------------------------------------------------------------------


def test_one_shot_prunes_round_0s_weights_straight_to_each_rounds_sparsity(tmp_path, data):
    hparams = with_changes(
        paper_defaults("lenet300_100", "mnist"),
        training={"iterations": "20it", "eval_every": "10it"},
        pruning={"rounds": 2, "one_shot": True},
    )
    experiment = run_imp(hparams, tmp_path, "oneshot", QUIET, data=data)
    dense = io.read_npz(experiment.weights(0))
    after_round_1 = io.read_npz(experiment.weights(1))
    rates = {"fc1/kernel": 0.2, "fc2/kernel": 0.2, "output/kernel": 0.1}
    masks = io.read_npz(experiment.masks(2))
    for name, rate in rates.items():
        sparsity = 1 - (1 - rate) ** 2
        expected = magnitude_mask(dense[name], np.ones_like(dense[name]), sparsity)
        np.testing.assert_array_equal(masks[name], expected, err_msg=name)
    iterative = magnitude_mask(
        after_round_1["fc1/kernel"], io.read_npz(experiment.masks(1))["fc1/kernel"], 0.36
    )
    assert not np.array_equal(masks["fc1/kernel"], iterative)


# -- controls as branches -------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


@pytest.fixture(scope="module")
def family(tmp_path_factory, data):
    """A 2-round lenet experiment rewinding to iteration 5, and a branch of every control."""
    hparams = with_changes(
        paper_defaults("lenet300_100", "mnist"),
        training={"iterations": "20it", "eval_every": "10it"},
        pruning={"rounds": 2, "rewind": "5it"},
    )
    parent = run_imp(hparams, tmp_path_factory.mktemp("runs"), "lenet", QUIET, data=data)
    branches = {}
    for control in ("random_reinit", "random_prune", "lr_rewind"):
        starts, record = start_recorder()
        branch_hparams, output_dir, name = branch_of(parent.root, control)
        assert output_dir == parent.root.parent and name == f"lenet-{control}"
        branch = run_imp(branch_hparams, output_dir, name, QUIET, data=data, observer=record)
        branches[control] = (branch, starts)
    return parent, branches


def test_a_branch_lives_beside_its_parent_and_names_it_and_its_control(family):
    parent, branches = family
    for control, (branch, _) in branches.items():
        saved = json.loads(branch.hparams.read_text())
        assert saved["hparams"]["branch"] == {
            "control": control,
            "parent": "lenet",
            "control_seed": 0,
        }
        rows = branch.read_results()
        assert list(rows[0].to_row()) == RESULT_COLUMNS and len(rows) == 3
        assert rows[0] == parent.read_results()[0], "round 0 is the parent's dense round"


def test_random_reinit_uses_the_parents_masks_with_fresh_initial_values(family, data):
    parent, branches = family
    branch, starts = branches["random_reinit"]
    fresh = io.read_npz(branch.rewind_point)
    tf_keras.utils.set_random_seed(reinit_seed(json_hparams(branch)))
    rebuilt = get_model("lenet300_100").build(data.input_shape, data.num_classes)
    for variable in rebuilt.variables:
        np.testing.assert_array_equal(fresh[variable.name.split(":")[0]], variable.numpy())
    original = io.read_npz(parent.rewind_point)
    assert not np.allclose(fresh["fc1/kernel"], original["fc1/kernel"])
    for pruning_round in (1, 2):
        masks = io.read_npz(branch.masks(pruning_round))
        parent_masks = io.read_npz(parent.masks(pruning_round))
        for name in parent_masks:
            np.testing.assert_array_equal(masks[name], parent_masks[name])
        for name, value in starts[pruning_round].items():
            expected = fresh[name] * masks[name] if name in masks else fresh[name]
            np.testing.assert_array_equal(value, expected, err_msg=name)


def test_random_prune_keeps_the_parents_per_layer_counts_in_random_places(family):
    parent, branches = family
    branch, starts = branches["random_prune"]
    point = io.read_npz(parent.rewind_point)
    previous = io.read_npz(branch.masks(0))
    for pruning_round in (1, 2):
        masks = io.read_npz(branch.masks(pruning_round))
        parent_masks = io.read_npz(parent.masks(pruning_round))
        for name, mask in masks.items():
            assert int(mask.sum()) == int(parent_masks[name].sum()), name
            assert not np.array_equal(mask, parent_masks[name])
            assert np.all(mask <= previous[name])
        for name, value in starts[pruning_round].items():
            expected = point[name] * masks[name] if name in masks else point[name]
            np.testing.assert_array_equal(value, expected, err_msg=name)
        previous = masks


def test_lr_rewind_keeps_training_its_own_weights_and_prunes_them(family):
    parent, branches = family
    branch, starts = branches["lr_rewind"]
    np.testing.assert_array_equal(
        io.read_npz(branch.masks(1))["fc1/kernel"], io.read_npz(parent.masks(1))["fc1/kernel"]
    )
    for pruning_round in (1, 2):
        trained = io.read_npz(branch.weights(pruning_round - 1))
        masks = io.read_npz(branch.masks(pruning_round))
        previous = io.read_npz(branch.masks(pruning_round - 1))
        expected_mask = magnitude_mask(
            trained["fc1/kernel"], previous["fc1/kernel"], 1 - 0.8**pruning_round
        )
        np.testing.assert_array_equal(masks["fc1/kernel"], expected_mask)
        for name, value in starts[pruning_round].items():
            expected = trained[name] * masks[name] if name in masks else trained[name]
            np.testing.assert_array_equal(value, expected, err_msg=name)
    assert not branch.rewind_point.exists(), "lr_rewind never rewinds weights"


def test_the_report_shows_branches_beside_their_parent(family, tmp_path):
    parent, branches = family
    directories = [parent.root] + [branch.root for branch, _ in branches.values()]
    _, csv = write_report(directories, tmp_path / "controls")
    labels = {row["experiment"]: row["label"] for row in io.read_csv(csv)}
    assert [labels[str(d)] for d in directories] == [
        "control=none",
        "control=random_reinit",
        "control=random_prune",
        "control=lr_rewind",
    ]


def test_branches_refuse_parents_that_cannot_serve_them(family, tmp_path):
    parent, branches = family
    with pytest.raises(LthError, match="masks up to round 2 only.*--rounds=2"):
        branch_of(parent.root, "random_reinit", rounds=3)
    assert branch_of(parent.root, "lr_rewind", rounds=3)[2] == "lenet-lr_rewind-3rounds"
    with pytest.raises(LthError, match="is itself a branch"):
        branch_of(branches["random_prune"][0].root, "random_reinit")
    with pytest.raises(LthError, match="not an lth_tf experiment"):
        branch_of(tmp_path, "random_reinit")
    with pytest.raises(LthError, match="unknown control 'shuffle'"):
        branch_of(parent.root, "shuffle")


def json_hparams(experiment) -> ExperimentHparams:
    return ExperimentHparams.from_dict(io.read_json(experiment.hparams)["hparams"])


# -- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--pruning=global"], "different rates (conv=0.0,fc=0.2,output=0.1)"),
        (["--control=random_reinit"], "--control and --control_seed need --branch_of"),
        (["--branch_of=/nonexistent"], "--branch_of needs --control"),
        (
            ["--branch_of=/nonexistent", "--control=random_prune", "--learning_rate=0.1"],
            "--learning_rate cannot be set with --branch_of",
        ),
        (["--branch_of=/nonexistent", "--control=random_prune"], "is not a directory"),
    ],
)
def test_bad_flags_exit_with_one_line(flags, reason, tmp_path):
    result = run_pipeline("pipelines.imp", *flags, f"--data_dir={tmp_path}", "--noprogress")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and reason in result.stderr, result.stderr


def test_a_control_runs_from_the_command_line_beside_its_parent(idx_dir, tmp_path):
    hparams = with_changes(
        paper_defaults("lenet300_100", "mnist"),
        training={"iterations": "30it"},
        pruning={"rounds": 1, "rewind": "10it"},
    )
    run_imp(hparams, tmp_path, "lenet", QUIET, data=load_dataset("mnist", str(idx_dir)))
    branch = run_pipeline(
        "pipelines.imp",
        f"--branch_of={tmp_path / 'lenet'}",
        "--control=random_prune",
        "--noprogress",
        "--notensorboard",
        f"--data_dir={idx_dir}",
    )
    assert branch.returncode == 0, branch.stderr
    assert f"Results: {tmp_path / 'lenet-random_prune' / 'results.csv'}" in branch.stdout
    _, csv = write_report([tmp_path / "lenet", tmp_path / "lenet-random_prune"], tmp_path / "r")
    labels = [row["label"] for row in io.read_csv(csv)]
    assert labels == ["control=none"] * 2 + ["control=random_prune"] * 2
