"""The controls run as branches beside their parent experiment (random_reinit, random_prune,
lr_rewind): what each starts from, and what a parent must have to serve them."""

import json

import numpy as np
import pytest
import tf_keras

from lth_tf import io
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS
from lth_tf.lottery.branches import branch_of
from lth_tf.lottery.controls import reinit_seed
from lth_tf.lottery.imp import run_imp
from lth_tf.models import get_model
from lth_tf.monitoring.report import write_report
from lth_tf.pruning.masks import magnitude_mask
from tests.helpers import QUIET, lenet_hparams
from tests.tf_helpers import start_recorder


@pytest.fixture(scope="module")
def family(tmp_path_factory, data):
    """A 2-round lenet experiment rewinding to iteration 5, and a branch of every control."""
    hparams = lenet_hparams(iterations="20it", rounds=2, rewind="5it")
    parent = run_imp(hparams, tmp_path_factory.mktemp("runs"), "lenet", QUIET, data=data)
    branches = {}
    for control in ("random_reinit", "random_prune", "lr_rewind"):
        starts, record = start_recorder()
        branch_hparams, output_dir, name = branch_of(parent.root, control)
        assert output_dir == parent.root.parent and name == f"lenet-{control}"
        branch = run_imp(branch_hparams, output_dir, name, QUIET, data=data, callbacks=[record])
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
