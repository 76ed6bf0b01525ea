"""A deep network end to end: global pruning across layers, and rewinding with batch norm."""

import numpy as np
import pytest

from lth_tf import io
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults
from tests.helpers import QUIET, tiny_dataset, with_changes
from tests.tf_helpers import start_recorder


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
    experiment = run_imp(hparams, root, "resnet", QUIET, data=data, callbacks=[record])
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


def test_resnet20s_stabilizing_recipe_pools_the_output_layer_with_the_convs(tmp_path):
    # open_lth's cifar_resnet.py prunes every conv and linear weight globally; the LTH recipe
    # (and both VGG recipes) leave the output layer dense.
    hparams = with_changes(
        paper_defaults("resnet20", "cifar10"),
        training={"iterations": "4it", "batch_size": 20},
        pruning={"rounds": 1, "rewind": "2it"},
    )
    data = tiny_dataset(train=60, val=20, test=20, shape=(16, 16, 3))
    experiment = run_imp(hparams, tmp_path, "r", QUIET, data=data)
    masks = io.read_npz(experiment.masks(1))
    total = sum(mask.size for mask in masks.values())
    assert total == 270_256 + 64 * 10  # every conv kernel and the output kernel are pooled
    assert sum(int(mask.sum()) for mask in masks.values()) == round(total * 0.8)
    row = experiment.read_results()[1]
    assert row.percent_remaining == pytest.approx(80.0, abs=1e-3)
