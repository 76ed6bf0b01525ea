"""The experiment directory (lth_tf/experiment.py), the store every run reads and writes: a
file is read only as this experiment's file of its place, and masks and weights are checked
before anything trains or prunes with them."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, ExperimentDir, open_experiment
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
