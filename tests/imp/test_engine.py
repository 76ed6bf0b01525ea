"""The IMP engine in-process on a tiny dataset: sparsities, nesting, rewinding, zeros, one-shot
pruning, resuming and refusing experiments."""

import dataclasses
import logging

import numpy as np
import pytest
import tensorflow as tf

from lth_tf import io
from lth_tf.config import TrainingHparams
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir, open_experiment
from lth_tf.lottery.imp import run_imp
from lth_tf.models import get_model, paper_defaults
from lth_tf.pruning.masks import magnitude_mask
from lth_tf.pruning.wrapping import wrap_model
from lth_tf.training.trainer import Trainer
from tests.helpers import QUIET, lenet_hparams, tiny_dataset, with_changes
from tests.tf_helpers import half_pruned_lenet, start_recorder


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory, data):
    """A 4-round lenet run rewinding to iteration 10, watched at every round start."""
    starts, record = start_recorder()
    hparams = lenet_hparams(rounds=4, rewind="10it")
    experiment = run_imp(
        hparams, tmp_path_factory.mktemp("runs"), "lenet", QUIET, data=data, callbacks=[record]
    )
    return experiment, starts


def test_each_layer_keeps_its_kinds_fraction_exactly_and_masks_nest(lenet_run):
    experiment, _ = lenet_run
    rows = experiment.read_results()
    assert [row.round for row in rows] == [0, 1, 2, 3, 4]
    # Execution(tensorboard=False): the run's own TensorBoard callback is not added.
    assert not (experiment.root / "tensorboard").exists()
    rates = {"fc1/kernel": 0.2, "fc2/kernel": 0.2, "output/kernel": 0.1}
    previous = None
    for pruning_round in range(5):
        masks = io.read_npz(experiment.masks(pruning_round))
        assert set(masks) == set(rates)
        for name, mask in masks.items():
            expected = mask.size * (1 - rates[name]) ** pruning_round
            assert abs(mask.sum() - expected) <= 1, (pruning_round, name)
            assert set(np.unique(mask)) <= {0, 1}
            if previous is not None:
                assert np.all(mask <= previous[name]), "a pruned weight came back"
        total = sum(m.size for m in masks.values())
        alive = sum(m.sum() for m in masks.values())
        assert rows[pruning_round].percent_remaining == pytest.approx(100 * alive / total)
        previous = masks


def test_masks_prune_the_smallest_trained_weights_of_the_previous_round(lenet_run):
    experiment, _ = lenet_run
    trained = io.read_npz(experiment.weights(1))["fc1/kernel"]
    before = io.read_npz(experiment.masks(1))["fc1/kernel"]
    after = io.read_npz(experiment.masks(2))["fc1/kernel"]
    newly_pruned = (before == 1) & (after == 0)
    assert newly_pruned.any()
    assert np.abs(trained[after == 1]).min() >= np.abs(trained[newly_pruned]).max()


def test_rounds_start_from_the_rewind_point_times_the_mask_exactly(lenet_run):
    experiment, starts = lenet_run
    point = io.read_npz(experiment.rewind_point)
    for pruning_round in range(1, 5):
        masks = io.read_npz(experiment.masks(pruning_round))
        for name, value in starts[pruning_round].items():
            expected = point[name] * masks[name] if name in masks else point[name]
            np.testing.assert_array_equal(value, expected, err_msg=f"{pruning_round} {name}")


def test_rewind_point_is_the_weights_after_that_many_iterations_of_round_0(lenet_run, data):
    experiment, _ = lenet_run
    hparams = lenet_hparams(rounds=4)
    tf.keras.utils.set_random_seed(hparams.training.seed)
    pruned = wrap_model(get_model("lenet300_100").build((28, 28, 1), 10), hparams.pruning.rates)
    pruned.set_round(0)
    trainer = Trainer(pruned, data, hparams.training, tf.distribute.get_strategy())
    trainer.train_steps(trainer.batches_from(0), 10)
    point = io.read_npz(experiment.rewind_point)
    for name, variable in pruned.rewindable.items():
        np.testing.assert_array_equal(variable.numpy(), point[name], err_msg=name)


def test_saved_weights_are_zero_exactly_where_masks_are(lenet_run):
    experiment, _ = lenet_run
    for pruning_round in range(5):
        masks = io.read_npz(experiment.masks(pruning_round))
        weights = io.read_npz(experiment.weights(pruning_round))
        for name, mask in masks.items():
            assert np.all(weights[name][mask == 0] == 0)
            assert np.count_nonzero(weights[name][mask == 1]) == mask.sum()


@pytest.mark.parametrize(
    "optimizer, momentum", [("adam", 0.0), ("sgd", 0.9)], ids=["adam", "sgd_momentum"]
)
def test_pruned_weights_stay_exactly_zero_after_every_optimizer_step(data, optimizer, momentum):
    training = TrainingHparams(optimizer=optimizer, learning_rate=0.05, momentum=momentum)
    pruned = half_pruned_lenet(seed=3, mask_seed=0)
    masks = {name: mask.numpy() for name, mask in pruned.masks.items()}
    trainer = Trainer(pruned, data, training, tf.distribute.get_strategy(), steps_per_execution=1)
    iterator = trainer.batches_from(0)
    for _ in range(15):
        trainer.train_steps(iterator, 1)
        for name, weight in pruned.weights.items():
            value = weight.numpy()
            assert np.all(value[masks[name] == 0] == 0), name
            assert np.any(value[masks[name] == 1] != 0)
    # Optimizer slots (Adam's m and v, momentum's m: "m/fc1/kernel") never accumulate anything
    # at pruned positions either.
    checked = []
    for slot in trainer.optimizer.variables[1:]:
        kernel = slot.name.split("/", 1)[1].removesuffix(":0")
        if kernel in masks:
            assert np.all(slot.numpy()[masks[kernel] == 0] == 0), slot.name
            checked.append(slot.name)
    slots_per_weight = 2 if optimizer == "adam" else 1
    assert len(checked) == slots_per_weight * len(masks), checked


def test_rerun_with_other_hyperparameters_is_refused(lenet_run, data):
    experiment, _ = lenet_run
    other = lenet_hparams(rounds=4, rewind="10it", training={"learning_rate": 0.1})
    with pytest.raises(LthError, match="other hyperparameters.*learning_rate"):
        run_imp(other, experiment.root.parent, "lenet", QUIET, data=data)


def test_rerun_of_a_finished_experiment_does_nothing(lenet_run, data):
    experiment, _ = lenet_run
    before = experiment.results.read_text()
    hparams = lenet_hparams(rounds=4, rewind="10it")
    run_imp(hparams, experiment.root.parent, "lenet", QUIET, data=data)
    assert experiment.results.read_text() == before


def test_early_stop_columns_come_from_the_minimum_validation_loss(lenet_run):
    experiment, _ = lenet_run
    for row in experiment.read_results():
        evaluations = io.read_csv(experiment.evaluations(row.round))
        # Rounds after round 0 train from the rewind point (10) on: evaluations at 20 and 30.
        expected = [10, 20, 30] if row.round == 0 else [20, 30]
        assert [int(e["iteration"]) for e in evaluations] == expected
        best = min(evaluations, key=lambda e: float(e["val_loss"]))
        assert row.early_stop_iteration == int(best["iteration"])
        assert row.early_stop_test_accuracy == float(best["test_accuracy"])
        assert row.val_loss_min == float(best["val_loss"])
        assert row.test_accuracy == float(evaluations[-1]["test_accuracy"])


def test_conv6_trains_on_colour_images(tmp_path):
    hparams = paper_defaults("conv6", "cifar10")
    hparams = dataclasses.replace(
        hparams,
        training=dataclasses.replace(hparams.training, iterations="3it", batch_size=20),
        pruning=dataclasses.replace(hparams.pruning, rounds=1),
    )
    data = tiny_dataset(train=100, val=20, test=20, shape=(32, 32, 3))
    experiment = run_imp(hparams, tmp_path, "c6", QUIET, data=data)
    masks = io.read_npz(experiment.masks(1))
    assert abs(masks["conv1/kernel"].sum() - 1728 * 0.85) <= 1
    assert abs(masks["fc1/kernel"].sum() - 4096 * 256 * 0.8) <= 1


def test_experiments_written_before_an_option_existed_still_resume(tmp_path):
    hparams = lenet_hparams(rounds=4)
    old = hparams.to_dict()
    del old["pruning"]["block_size"]  # as written before --block_size existed
    io.write_json(tmp_path / "hparams.json", {"format_version": 1, "hparams": old})
    assert open_experiment(tmp_path, hparams, {}).root == tmp_path
    changed = lenet_hparams(rounds=4, pruning={"block_size": "4x1"})
    with pytest.raises(LthError, match="block_size"):
        open_experiment(tmp_path, changed, {})


def test_experiments_written_before_these_options_existed_still_resume(tmp_path):
    hparams = paper_defaults("lenet300_100", "mnist")
    old = hparams.to_dict()
    for key in ("weight_decay", "warmup", "lr_drops", "lr_drop_factor", "augment"):
        del old["training"][key]
    for key in ("optimizer_args", "lr_schedule", "label_smoothing"):
        del old["training"][key]
    for key in ("scope", "one_shot"):
        del old["pruning"][key]
    del old["branch"]
    io.write_json(tmp_path / "hparams.json", {"format_version": 1, "hparams": old})
    assert open_experiment(tmp_path, hparams, {}).root == tmp_path
    with pytest.raises(LthError, match="warmup"):
        open_experiment(tmp_path, with_changes(hparams, training={"warmup": "10it"}), {})


def test_one_shot_prunes_round_0s_weights_straight_to_each_rounds_sparsity(tmp_path, data):
    hparams = lenet_hparams(iterations="20it", rounds=2, pruning={"one_shot": True})
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


def test_missing_data_fails_fast_with_one_line(tmp_path, offline, no_system_dirs):
    # As `python -m pipelines.imp --dataset=mnist --data_dir=EMPTY`: nothing to load, and no
    # network to download from.
    empty = tmp_path / "empty"
    empty.mkdir()
    options = dataclasses.replace(QUIET, data_dir=str(empty))
    with pytest.raises(LthError) as caught:
        run_imp(paper_defaults("lenet300_100", "mnist"), tmp_path, None, options)
    message = str(caught.value)
    assert "cannot load dataset 'mnist'" in message and str(empty) in message
    assert "\n" not in message


def test_more_rounds_extend_a_finished_experiment_and_fewer_do_nothing(data, tmp_path):
    one = lenet_hparams(rounds=1, rewind="10it")
    run_imp(one, tmp_path, None, QUIET, data=data)
    [root] = tmp_path.iterdir()
    experiment = ExperimentDir(root)
    before = {r.round: r for r in experiment.read_results()}

    # The number of rounds is not in the name: --rounds=2 finds the same directory.
    run_imp(lenet_hparams(rounds=2, rewind="10it"), tmp_path, None, QUIET, data=data)
    assert list(tmp_path.iterdir()) == [root]
    after = {r.round: r for r in experiment.read_results()}
    assert sorted(after) == [0, 1, 2]
    assert all(after[r] == before[r] for r in (0, 1))  # untouched, not retrained
    assert io.read_json(experiment.hparams)["hparams"]["pruning"]["rounds"] == 2

    # Fewer rounds: everything asked for is done; the experiment keeps its two rounds.
    run_imp(one, tmp_path, None, QUIET, data=data)
    assert {r.round: r for r in experiment.read_results()} == after
    assert io.read_json(experiment.hparams)["hparams"]["pruning"]["rounds"] == 2


def test_a_resume_in_another_precision_says_so(tmp_path, data, caplog):
    """A rerun that forgot --mixed_precision goes on, but not silently: its results are not an
    uninterrupted run's."""
    experiment = run_imp(lenet_hparams(rounds=0), tmp_path, "lenet", QUIET, data=data)
    assert experiment.recorded_precision() == "float32"
    # As a first run with --mixed_precision=bfloat16 records it, then a session that does not.
    io.write_json(experiment.sessions, [{"mixed_precision": "bfloat16"}, {"strategy": "x"}])
    assert experiment.recorded_precision() == "bfloat16"  # the latest session that says
    with caplog.at_level(logging.WARNING, logger="lth_tf"):
        run_imp(lenet_hparams(rounds=1), tmp_path, "lenet", QUIET, data=data)
    assert "This experiment computed in bfloat16 so far and now computes in float32" in caplog.text
    assert "--mixed_precision=bfloat16 goes on as it did" in caplog.text
    assert experiment.recorded_precision() == "float32"  # this run's, from now on
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lth_tf"):
        run_imp(lenet_hparams(rounds=2), tmp_path, "lenet", QUIET, data=data)
    assert "computes in" not in caplog.text  # the same precision as the run it resumes


def test_a_resume_keeps_the_length_of_the_calls_auto_chose(tmp_path, data):
    """--steps_per_execution=auto sizes the compiled calls once (with --jit_compile=auto's
    timing); a resume trains calls of the recorded length, so its per-call training curve
    (TensorBoard's train/ scalars) ends its points where the uninterrupted run's did."""
    auto = dataclasses.replace(QUIET, jit_compile="auto")
    experiment = run_imp(lenet_hparams(rounds=0), tmp_path, "lenet", auto, data=data)
    (first,) = io.read_json(experiment.sessions)
    assert first["steps_per_execution"] == "auto" and 1 <= first["chunk_length"] <= 100
    hardware = first["hardware"]
    assert experiment.recorded_chunk_length(hardware) == first["chunk_length"]
    # As if the first run's machine had sized its calls at 7 iterations.
    io.write_json(experiment.sessions, [{**first, "chunk_length": 7}])
    run_imp(lenet_hparams(rounds=1), tmp_path, "lenet", auto, data=data)
    assert [s["chunk_length"] for s in io.read_json(experiment.sessions)] == [7, 7]
    # Sized on other hardware (a GPU's 100 would be minutes a call here), or on several
    # replicas: timed again. An explicit --steps_per_execution is no auto run's length.
    for other in ({"hardware": "1x NVIDIA H100"}, {"replicas": 2}):
        io.write_json(experiment.sessions, [{**first, "chunk_length": 7, **other}])
        assert experiment.recorded_chunk_length(hardware) is None
    explicit = {**first, "steps_per_execution": 3, "chunk_length": 3}
    io.write_json(experiment.sessions, [{**first, "chunk_length": 7}, explicit])
    assert experiment.recorded_chunk_length(hardware) == 7
    run_imp(
        lenet_hparams(rounds=2),
        tmp_path,
        "lenet",
        dataclasses.replace(auto, steps_per_execution=3),
        data=data,
    )
    assert io.read_json(experiment.sessions)[-1]["chunk_length"] is None  # not auto's


def test_calls_sized_while_training_are_recorded_for_a_resume_too(tmp_path, data):
    """With --jit_compile given, nothing is timed before training: auto sizes the calls from
    the second one, and the session's entry gains that length then."""
    given = dataclasses.replace(QUIET, jit_compile=False, steps_per_execution="auto")
    experiment = run_imp(lenet_hparams(rounds=0), tmp_path, "lenet", given, data=data)
    (first,) = io.read_json(experiment.sessions)
    assert first["jit_compile"] is False and 1 <= first["chunk_length"] <= 100
    assert experiment.recorded_chunk_length(first["hardware"]) == first["chunk_length"]
