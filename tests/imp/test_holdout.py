"""--holdout (the validation split held out of train) and results.csv's early_stop_trained."""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil

import numpy as np
import pytest

from lth_tf import io
from lth_tf.config import ExperimentHparams, parse_holdout
from lth_tf.data.arrays import dataset_from_arrays, validation_count
from lth_tf.data.sources import VALIDATION_EXAMPLES, held_out_count, load_dataset
from lth_tf.errors import LthError
from lth_tf.experiment import HPARAMS_HASH_KEY, ExperimentDir, hparams_hash
from lth_tf.export.ticket import choose_best_round
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults, resolve_steps
from lth_tf.models.registry import experiment_hparams
from lth_tf.monitoring.report import write_report
from lth_tf.naming import default_name
from tests.helpers import QUIET, assert_one_line_error, lenet_hparams, run_main, with_changes


def test_the_recipes_hold_out_what_their_papers_did():
    # Stabilizing LTH / open_lth: all 50,000 CIFAR-10 training images, no validation split.
    for model in ("resnet20", "vgg16", "vgg19"):
        assert paper_defaults(model).dataset.holdout == "0"
        assert paper_defaults(model, recipe="lth").dataset.holdout == "auto"
    for model in ("lenet300_100", "conv2", "conv4", "conv6"):
        assert paper_defaults(model).dataset.holdout == "auto"
    # The real sizes: auto is the LTH paper's 5,000 on MNIST (60,000) and CIFAR-10 (50,000).
    assert held_out_count("auto", 60_000, VALIDATION_EXAMPLES, "mnist") == 5000
    assert validation_count(60_000) == validation_count(50_000) == 5000
    assert held_out_count("0", 50_000, VALIDATION_EXAMPLES, "cifar10") == 0
    # open_lth's 160 epochs at batch 128 over 50,000 images: 391 iterations an epoch.
    resolved = resolve_steps(paper_defaults("resnet20"), 50_000 - 0)
    assert resolved.iterations == 62_560


def test_holdout_is_a_flag_in_one_spelling():
    hparams = experiment_hparams("resnet20", changes={"holdout": " 300 "})
    assert hparams.dataset.holdout == "300"
    assert experiment_hparams("lenet300_100", changes={"holdout": 0}).dataset.holdout == "0"
    for bad in ("-1", "1.5", "all", True, "²"):
        with pytest.raises(LthError, match="--holdout: .* is not auto or a count"):
            parse_holdout(bad)


def test_names_of_experiments_from_before_holdout_stay_the_same(tmp_path):
    # Computed by lth_tf before --holdout existed (commit f79db25).
    before = {
        ("resnet20", "lth"): "resnet20-cifar10-571cee9f",
        ("resnet20", None): "resnet20-cifar10-44136fa3",
        ("conv2", None): "conv2-cifar10-44136fa3",
    }
    for (model, recipe), name in before.items():
        assert default_name(tmp_path, experiment_hparams(model, recipe=recipe)) == name
    # Holding out other than the recipe's is another experiment.
    other = experiment_hparams("resnet20", changes={"holdout": "auto"})
    assert default_name(tmp_path, other) != before[("resnet20", None)]


def test_hparams_written_before_holdout_read_as_auto():
    saved = paper_defaults("resnet20").to_dict()
    del saved["dataset"]["holdout"]
    assert ExperimentHparams.from_dict(saved).dataset.holdout == "auto"


def test_holdout_n_holds_out_n(idx_dir):
    data = load_dataset("mnist", str(idx_dir), holdout="100")
    assert (len(data.train_labels), len(data.val_labels)) == (5900, 100)
    # The last 100 training examples, as auto holds out the last 5,000.
    whole = load_dataset("mnist", str(idx_dir), holdout="0")
    assert len(whole.train_labels) == 6000 and len(whole.val_labels) == 0
    np.testing.assert_array_equal(data.val_labels, whole.train_labels[-100:])
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((50, 3)),
        "y_train": np.arange(50) % 4,
        "x_test": rng.random((10, 3)),
        "y_test": np.arange(10) % 4,
    }
    mine = dataset_from_arrays("mine", arrays, "tests", {}, holdout="7")
    assert (len(mine.train_labels), len(mine.val_labels)) == (43, 7)
    # A validation split of the dataset's own is kept: holdout changes nothing then.
    given = {**arrays, "x_val": arrays["x_test"], "y_val": arrays["y_test"]}
    assert len(dataset_from_arrays("mine", given, "tests", {}, holdout="0").val_labels) == 10
    with pytest.raises(
        LthError, match="--holdout=50 holds out 50 of the 50 .* at most --holdout=49"
    ):
        dataset_from_arrays("mine", arrays, "tests", {}, holdout="50")


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--holdout=-1"], "--holdout: '-1' is not auto or a count of training examples"),
        (["--holdout=many"], "--holdout: 'many' is not auto or a count of training examples"),
    ],
)
def test_bad_holdout_flags_are_one_line(flags, reason, tmp_path):
    result = run_main("pipelines.imp", *flags, f"--output_dir={tmp_path}")
    assert_one_line_error(result, reason)


def test_holdout_past_the_training_set_is_one_line(idx_dir, tmp_path):
    result = run_main(
        "pipelines.imp",
        "--holdout=6000",
        f"--data_dir={idx_dir}",
        "--iterations=10",
        "--noprogress",
        f"--output_dir={tmp_path}",
        tensorflow=True,
    )
    assert_one_line_error(result, "--holdout=6000 holds out 6000 of the 6000 training example(s)")


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def no_validation(tmp_path_factory, idx_dir):
    """A 1-round lenet experiment on all of idx_dir's training examples, rewound to 10."""
    hparams = lenet_hparams(iterations="30it", eval_every="10it", rounds=1, rewind="10it")
    hparams = with_changes(hparams, dataset={"holdout": "0"})
    root = tmp_path_factory.mktemp("holdout")
    options = dataclasses.replace(QUIET, data_dir=str(idx_dir))
    return run_imp(hparams, root, "no_val", options)


def test_without_validation_there_is_no_early_stop(no_validation):
    experiment = no_validation
    data = io.read_json(experiment.hparams)["data"]
    assert (data["train_examples"], data["val_examples"]) == (6000, 0)
    for row in _rows(experiment.results):
        for column in (
            "early_stop_iteration",
            "early_stop_test_accuracy",
            "val_loss_min",
            "early_stop_trained",
        ):
            assert row[column] == "", (column, row)
        assert 0 <= float(row["test_accuracy"]) <= 1
    for pruning_round, first in ((0, 10), (1, 20)):
        evaluations = _rows(experiment.evaluations(pruning_round))
        assert [int(e["iteration"]) for e in evaluations] == list(range(first, 31, 10))
        assert all(e["val_loss"] == e["val_accuracy"] == "" for e in evaluations)
        assert all(math.isfinite(float(e["test_accuracy"])) for e in evaluations)
    results = experiment.read_results()
    assert [r.reported_accuracy for r in results] == [r.test_accuracy for r in results]
    assert all(r.early_stop_trained is None for r in results)


def test_without_validation_reports_and_export_use_the_final_accuracy(no_validation, tmp_path):
    results = no_validation.read_results()
    chosen, reason = choose_best_round(results, tolerance=100)
    assert chosen == 1 and f"({100 * results[1].test_accuracy:.2f}% against" in reason
    _, table = write_report([no_validation.root], tmp_path / "report")
    rows = _rows(table)
    assert [r["test_accuracy"] for r in rows] == [str(r.test_accuracy) for r in results]
    assert all(r["early_stop_trained"] == "" for r in rows)
    # Replicates aggregate the final accuracy and leave the early stop's columns empty.
    copy = tmp_path / "seed1"
    shutil.copytree(no_validation.root, copy)
    saved = io.read_json(copy / "hparams.json")
    saved["hparams"]["training"]["seed"] = 1
    saved["experiment_id"] = "another"
    saved[HPARAMS_HASH_KEY] = hparams_hash(saved)  # written so, not edited
    io.write_json(copy / "hparams.json", saved)
    _, groups = write_report([no_validation.root, copy], tmp_path / "groups")
    group = _rows(groups)
    assert float(group[0]["reported_accuracy_mean"]) == pytest.approx(results[0].test_accuracy)
    assert group[0]["early_stop_trained_mean"] == ""


def test_early_stop_trained_counts_from_the_rewind_point(tmp_path, mnist_data):
    hparams = lenet_hparams(iterations="30it", eval_every="10it", rounds=1, rewind="10it")
    experiment = run_imp(hparams, tmp_path, "rewound", QUIET, data=mnist_data)
    rows = experiment.read_results()
    assert [r.early_stop_trained for r in rows] == [
        rows[0].early_stop_iteration,
        rows[1].early_stop_iteration - 10,
    ]
    assert rows[1].early_stop_iteration >= 20  # an evaluated iteration of the rewound round
    # A results.csv from before the column: computed from hparams.json's iterations.
    old = [
        {k: v for k, v in row.items() if k != "early_stop_trained"}
        for row in _rows(experiment.results)
    ]
    io.write_csv(experiment.results, old, list(old[0]))
    assert ExperimentDir(experiment.root).read_results() == rows
