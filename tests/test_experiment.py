"""The experiment directory (lth_tf/experiment.py), the store every run reads and writes: a
file is read only as this experiment's file of its place, and masks and weights are checked
before anything trains or prunes with them."""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest

from lth_tf import io
from lth_tf.config import Resolved
from lth_tf.errors import LthError
from lth_tf.experiment import (
    HPARAMS_HASH_KEY,
    RESULT_COLUMNS,
    DataRecord,
    ExperimentDir,
    open_experiment,
    read_saved,
)
from lth_tf.legacy import rounds_trained_the_old_way
from tests.helpers import lenet_hparams, with_changes

SHAPES = {"fc1/kernel": (4, 3), "output/kernel": (3, 2)}


def _experiment(root, seed: int = 0) -> ExperimentDir:
    return open_experiment(root, with_changes(lenet_hparams(), training={"seed": seed}), {})


def _write_masks(experiment: ExperimentDir, pruning_round: int, masks: dict) -> None:
    path = experiment.masks(pruning_round)
    io.write_npz(path, {**masks, **experiment.stamp(path)})


def _ones() -> dict:
    return {name: np.ones(shape, np.uint8) for name, shape in SHAPES.items()}


def test_a_file_of_another_experiment_or_place_is_refused(tmp_path):
    mine, other = _experiment(tmp_path / "mine"), _experiment(tmp_path / "other", seed=1)
    _write_masks(other, 0, _ones())
    _write_masks(mine, 0, _ones())
    assert mine.read_masks(0, SHAPES).keys() == SHAPES.keys()
    # The other experiment's file, copied in: same name, same arrays, not this run's.
    shutil.copy(other.masks(0), mine.masks(0))
    with pytest.raises(LthError, match=re.escape(str(mine.masks(0)))):
        mine.read_masks(0, SHAPES)
    # This experiment's round 0 masks moved to round 1's place.
    _write_masks(mine, 0, _ones())
    mine.round_dir(1).mkdir()
    shutil.copy(mine.masks(0), mine.masks(1))
    with pytest.raises(LthError, match=re.escape(str(mine.masks(1)))):
        mine.read_masks(1, SHAPES, nested=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["fc1/kernel"].__setitem__((0, 0), 2), "fc1/kernel holds values other than 0"),
        (lambda m: m.update({"fc1/kernel": np.ones((3, 4), np.uint8)}), "fc1/kernel has shape"),
        (lambda m: m.pop("output/kernel"), "not this model's layers: output/kernel"),
        (lambda m: m["fc1/kernel"].__setitem__((0, 0), 1), "keeps weights round 1 pruned"),
    ],
)
def test_masks_are_checked_for_values_shapes_and_nesting(tmp_path, change, message):
    experiment = _experiment(tmp_path / "e")
    pruned = _ones()
    pruned["fc1/kernel"][0, 0] = 0
    _write_masks(experiment, 1, pruned)
    masks = {name: mask.copy() for name, mask in pruned.items()}
    change(masks)
    _write_masks(experiment, 2, masks)
    with pytest.raises(LthError, match=re.escape(message)):
        experiment.read_masks(2, SHAPES)


def test_weights_are_checked_finite_and_of_the_models_shapes(tmp_path):
    experiment = _experiment(tmp_path / "e")
    path = experiment.weights(0)
    weights = {name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()}
    io.write_npz(path, {**weights, **experiment.stamp(path)})
    assert experiment.read_weights(0, SHAPES).keys() == SHAPES.keys()
    with pytest.raises(LthError, match="output/kernel has shape"):
        experiment.read_weights(0, {"output/kernel": (2, 3)})
    weights["fc1/kernel"][1, 1] = np.nan
    io.write_npz(path, {**weights, **experiment.stamp(path)})
    with pytest.raises(LthError, match="fc1/kernel is not finite everywhere"):
        experiment.read_weights(0)


def test_a_round_is_complete_with_its_results_row_and_its_weights(tmp_path):
    experiment = _experiment(tmp_path / "e")
    rows = [{**dict.fromkeys(RESULT_COLUMNS, 0), "round": r} for r in (0, 1)]
    io.write_csv(experiment.results, rows, RESULT_COLUMNS)
    assert experiment.completed_rounds() == set()
    io.write_npz(experiment.weights(0), experiment.stamp(experiment.weights(0)))
    assert experiment.completed_rounds() == {0}  # round 1's row, but no weights


def test_a_directory_the_first_version_wrote_reads_typed_through_the_migrations(tmp_path):
    """hparams.json and results.csv as the first lth_tf wrote them: ``pruning.strategy`` (now
    ``scope``), no recipe, batch-norm init, data order, holdout or branch, no experiment id and
    no ``early_stop_trained`` column. They read through lth_tf.legacy as this version's."""
    now = lenet_hparams().to_dict()
    old = {group: dict(values) for group, values in now.items() if group != "branch"}
    old["pruning"]["strategy"] = old["pruning"].pop("scope")
    del old["model"]["recipe"], old["model"]["batchnorm_init"]
    del old["training"]["data_order"], old["dataset"]["holdout"]
    io.write_json(
        tmp_path / "hparams.json",
        {
            "format_version": 1,
            "hparams": old,
            "resolved": {
                "iterations": 30,
                "eval_every": 10,
                "rewind_iteration": 10,
                "iterations_per_epoch": 100,
            },
            "data": {"source": "debian", "input_shape": [28, 28, 1], "test_examples": 10000},
        },
    )
    experiment = ExperimentDir(tmp_path)
    saved = read_saved(experiment)
    assert saved.hparams.pruning.scope == now["pruning"]["scope"]
    assert saved.hparams.training.data_order == "fixed"  # what it ran (legacy.DEFAULTS_BEFORE)
    assert saved.resolved == Resolved(30, 10, 10, 100)
    assert saved.rewind_iteration == 10
    assert saved.data == DataRecord("debian", (28, 28, 1), test_examples=10000)
    assert saved.model is None and experiment.identity is None
    # Round 1 trained from k = 10 without the k -> T mark: the old procedure, named.
    io.write_npz(experiment.weights(1), _ones())
    assert rounds_trained_the_old_way(experiment, saved) == [1]
    columns = [c for c in RESULT_COLUMNS if c != "early_stop_trained"]
    row = dict.fromkeys(columns, "")
    row.update(
        round="1",
        percent_remaining="80.0",
        weights_remaining="8",
        test_accuracy="0.9",
        test_loss="0.3",
        early_stop_iteration="20",
        early_stop_test_accuracy="0.91",
        val_loss_min="0.2",
        iterations="30",
        train_seconds="1.0",
    )
    io.write_csv(experiment.results, [row], columns)
    # An older lth_tf trained all T = 30 iterations of round 1: its early stop at 20 is 20 trained.
    assert experiment.read_results()[0].early_stop_trained == 20
    damaged = [
        ({"weights_remaining": "inf"}, "bad or missing 'weights_remaining' in the results row"),
        ({"round": "1.5"}, "bad or missing 'round' in the results row of round '1.5'"),
        ({"round": "-3"}, r"round -3 in the results row of round '-3' is outside \[0, inf\]"),
        ({"early_stop_test_accuracy": "2.5"}, r"early_stop_test_accuracy 2.5 .* \[0, 1\]"),
        ({"percent_remaining": "-5"}, r"percent_remaining -5.0 .* is outside \[0, 100\]"),
        # The results.csv of a longer run, copied in.
        ({"iterations": "31"}, "round 1 trained 31 iterations, more than this experiment's 30"),
        ({"early_stop_iteration": "99999"}, "round 1 stopped early at iteration 99999, past"),
        ({"test_accuracy": "nan"}, "test_accuracy nan in the results row of round '1' is not a"),
    ]
    for change, says in damaged:
        io.write_csv(experiment.results, [{**row, **change}], columns)
        with pytest.raises(LthError, match=f"results.csv is damaged \\({says}"):
            experiment.read_results()
    io.write_csv(experiment.results, [row, row], columns)
    with pytest.raises(LthError, match=r"results.csv is damaged \(two rows for round 1\)"):
        experiment.read_results()
    last = read_saved(experiment).hparams.pruning.rounds
    io.write_csv(experiment.results, [row, {**row, "round": str(last + 1)}], columns)
    past = f"a row for round {last + 1}, past this experiment's last round, {last}\\): delete that"
    with pytest.raises(LthError, match=past):
        experiment.read_results()


def test_a_damaged_experiment_id_is_refused_not_replaced(tmp_path):
    """Only a missing id is a directory from before ids; a replaced one would make every
    stamped file look foreign (and the advice to delete them would lose good rounds)."""
    experiment = _experiment(tmp_path / "e")
    fields = io.read_json(experiment.hparams)
    io.write_json(experiment.hparams, {**fields, "experiment_id": 5})
    with pytest.raises(LthError, match="its experiment_id 5 is not an id; restore hparams.json"):
        open_experiment(experiment.root, with_changes(lenet_hparams(), training={"seed": 0}), {})
    assert io.read_json(experiment.hparams)["experiment_id"] == 5  # nothing rewritten
    with pytest.raises(LthError, match="is not an id"):
        experiment.stamp(experiment.masks(0))


def test_edited_hyperparameters_are_refused_where_the_experiment_is_read(tmp_path):
    """hparams.json edited by hand would label, report and resume a run as one it never was.
    Extending it (more rounds) is no edit; a file from before the hash gets one as it is."""
    hparams = with_changes(lenet_hparams(), training={"seed": 0})
    experiment = open_experiment(tmp_path / "e", hparams, {})
    longer = with_changes(hparams, pruning={"rounds": hparams.pruning.rounds + 3})
    open_experiment(experiment.root, longer, {})
    assert read_saved(experiment).hparams.pruning.rounds == hparams.pruning.rounds + 3
    fields = io.read_json(experiment.hparams)
    edited = {**fields["hparams"], "training": {**fields["hparams"]["training"], "seed": 7}}
    io.write_json(experiment.hparams, {**fields, "hparams": edited})
    says = "its hyperparameters are not the ones it was written with"
    with pytest.raises(LthError, match=f"e/hparams.json: {says} .*restore it from a copy"):
        read_saved(experiment)
    with pytest.raises(LthError, match=says):  # not resumed under the edited values either
        open_experiment(experiment.root, with_changes(longer, training={"seed": 7}), {})

    # Written before the hash (and before ids, with a key since renamed): read as it is, and
    # guarded from its next run on.
    older = open_experiment(tmp_path / "old", hparams, {})
    fields = io.read_json(older.hparams)
    pruning = dict(fields["hparams"]["pruning"])
    pruning["strategy"] = pruning.pop("scope")
    before = {k: v for k, v in fields.items() if k not in ("experiment_id", HPARAMS_HASH_KEY)}
    io.write_json(older.hparams, {**before, "hparams": {**fields["hparams"], "pruning": pruning}})
    assert read_saved(older).hparams == hparams
    open_experiment(older.root, hparams, {})
    assert HPARAMS_HASH_KEY in io.read_json(older.hparams) and older.identity is not None
    assert read_saved(older).hparams == hparams


@pytest.mark.parametrize(
    "data, says",
    [
        ({"input_shape": [28, 0, 1]}, r"its data: input_shape holds 0, less than 1"),
        ({"input_shape": []}, r"its data: input_shape is empty"),
        ({"num_classes": "ten"}, r"its data: num_classes holds 'ten', not a whole number"),
        ({"num_classes": 1}, r"its data: num_classes holds 1, less than 2"),
    ],
)
def test_a_damaged_data_record_names_the_entry_and_the_file(tmp_path, data, says):
    experiment = _experiment(tmp_path / "e")
    fields = io.read_json(experiment.hparams)
    io.write_json(experiment.hparams, {**fields, "data": data})
    with pytest.raises(LthError, match=rf"hparams.json is not an lth_tf hparams file \({says}\)"):
        read_saved(experiment)


def test_a_format_version_in_words_is_a_damaged_file_not_another_version(tmp_path):
    experiment = _experiment(tmp_path / "e")
    fields = io.read_json(experiment.hparams)
    io.write_json(experiment.hparams, {**fields, "format_version": str(fields["format_version"])})
    with pytest.raises(LthError, match=r"\(its format_version '\d+' is not a number\); restore"):
        read_saved(experiment)


def test_an_infinite_count_or_json_nested_too_deep_is_a_damaged_file(tmp_path):
    experiment = _experiment(tmp_path / "e")
    fields = io.read_json(experiment.hparams)
    resolved = {"iterations": math.inf, "eval_every": 10, "rewind_iteration": 0}
    io.write_json(experiment.hparams, {**fields, "resolved": resolved})
    with pytest.raises(
        LthError, match=r"hparams.json is not an lth_tf hparams file \(its resolved: "
    ):
        read_saved(experiment)
    experiment.hparams.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LthError, match=r"hparams.json is damaged \(not JSON: maximum recursion"):
        read_saved(experiment)
