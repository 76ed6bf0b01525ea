"""A control added from outside the package (tests/magnitude_init_control.py: one class and one
register_control call) runs as a branch, beside its parent, as the built-in ones do."""

from __future__ import annotations

import numpy as np
import pytest

import tests.magnitude_init_control as outside
from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.lottery.branches import branch_of
from lth_tf.lottery.controls import CONTROLS, branch_controls, get_control
from lth_tf.lottery.imp import run_imp
from tests.helpers import QUIET, lenet_hparams


def test_a_control_from_a_test_module_runs_as_a_branch(tmp_path, data):
    assert "magnitude_init" in branch_controls()
    assert isinstance(get_control("magnitude_init"), outside.MagnitudeAtInit)
    parent = run_imp(lenet_hparams(rounds=2), tmp_path, "lenet", QUIET, data=data)
    hparams, output_dir, name = branch_of(parent.root, "magnitude_init")
    branch = run_imp(hparams, output_dir, name, QUIET, data=data)

    assert branch.root.parent == parent.root.parent and name == "lenet-magnitude_init"
    assert [row.round for row in branch.read_results()] == [0, 1, 2]
    # The parent rewinds to iteration 0: its rewind point is theta_0, which the control's
    # context rebuilt (ControlContext.theta_0) to rank by.
    theta_0 = parent.read_rewind_point()
    previous = None
    for pruning_round in (1, 2):
        masks = io.read_npz(branch.masks(pruning_round))
        parent_masks = io.read_npz(parent.masks(pruning_round))
        for layer, mask in masks.items():
            # The parent's sparsity, the initial magnitudes' order, nested.
            assert mask.sum() == parent_masks[layer].sum(), layer
            magnitude = np.abs(theta_0[layer])
            assert magnitude[mask > 0].min() >= magnitude[mask == 0].max(), layer
            if previous is not None:
                assert np.all(mask <= previous[layer]), layer
        previous = masks
    # Not IMP's masks: those rank the trained weights.
    assert any(
        not np.array_equal(io.read_npz(branch.masks(1))[layer], mask)
        for layer, mask in io.read_npz(parent.masks(1)).items()
    )


def test_a_control_name_is_registered_once():
    class Other(outside.MagnitudeAtInit.__mro__[1]):  # a Control, not magnitude_init's class
        name = "magnitude_init"

    with pytest.raises(LthError, match="a control named 'magnitude_init' is registered already"):
        outside.register_control(Other())
    assert type(CONTROLS["magnitude_init"]) is outside.MagnitudeAtInit
