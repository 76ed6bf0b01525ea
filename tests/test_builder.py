"""The one builder (lth_tf/builder.py): a run is a function of its hyperparameters' seed, and
what it cannot build is one line."""

from __future__ import annotations

import numpy as np
import pytest

from lth_tf.builder import build_network, build_registered, build_run, untrained_values
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.models import get_model
from lth_tf.pruning.wrapping import snapshot
from tests.helpers import lenet_hparams, tiny_dataset, with_changes

PLAIN = Execution(jit_compile=False, steps_per_execution=5)


def _initial(hparams, data):
    return snapshot(build_run(hparams, data, execution=PLAIN).pruned.rewindable)


def test_the_initial_weights_are_a_function_of_the_seed_alone():
    data = tiny_dataset(train=60, val=20, test=20)
    hparams = lenet_hparams()
    first, again = _initial(hparams, data), _initial(hparams, data)
    other = _initial(with_changes(hparams, training={"seed": 1}), data)
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    kernels = [k for k in first if k.endswith("kernel")]
    assert kernels and not any(np.array_equal(first[k], other[k]) for k in kernels)
    # theta_0 again, without a run: the model built under the experiment's seed, untrained.
    untrained = untrained_values(hparams, data, hparams.training.seed)
    assert untrained.keys() == first.keys()
    assert all(np.array_equal(untrained[k], first[k]) for k in first)


def test_weight_decay_is_for_training_only():
    hparams = with_changes(lenet_hparams(), training={"weight_decay": 1e-4})
    trained = build_network(hparams, (28, 28, 1), 10)
    exported = build_network(hparams, (28, 28, 1), 10, for_training=False)
    assert len(trained.unwrapped.losses) > 0
    assert len(exported.unwrapped.losses) == 0


def test_a_registered_net_that_cannot_take_the_examples_is_one_line():
    with pytest.raises(LthError, match=r"--model=conv2 takes images \(height, width, channels\)"):
        build_registered(get_model("conv2"), (784,), 10)
    too_small = r"--model=conv6 cannot run on examples of shape \(4, 4, 1\)"
    with pytest.raises(LthError, match=too_small):
        build_registered(get_model("conv6"), (4, 4, 1), 10)
