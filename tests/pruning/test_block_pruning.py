"""Block pruning in IMP runs: dense kernels in whole 4x1 blocks at the unstructured run's
sparsity, convolutions unstructured; the block size is part of the experiment. The runs are
conftest's ``lenet_runs``."""

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults
from tests.helpers import (
    QUIET,
    TICKET_RATES,
    blocks_are_whole,
    lenet_hparams,
    tiny_dataset,
    with_changes,
)


def test_block_run_prunes_dense_kernels_in_4x1_blocks_at_the_same_sparsity(lenet_runs):
    plain, blocks = lenet_runs / "plain", lenet_runs / "blocks"
    previous = None
    for pruning_round in range(3):
        masks = io.read_npz(blocks / f"round_{pruning_round:02d}" / "masks.npz")
        unstructured = io.read_npz(plain / f"round_{pruning_round:02d}" / "masks.npz")
        for name, mask in masks.items():
            assert blocks_are_whole(mask, (4, 1)), name
            rate = TICKET_RATES.output if name.startswith("output") else TICKET_RATES.fc
            assert mask.sum() == 4 * round(mask.size / 4 * (1 - rate) ** pruning_round)
            assert abs(int(mask.sum()) - int(unstructured[name].sum())) <= 2
            if previous is not None:
                assert np.all(mask <= previous[name])
        previous = masks
    saved = io.read_json(blocks / "hparams.json")
    assert saved["hparams"]["pruning"]["block_size"] == "4x1"


def test_resume_with_another_block_size_is_refused(lenet_runs, mnist_data):
    with pytest.raises(LthError, match="block_size: saved '4x1', now '1x1'"):
        hparams = lenet_hparams(
            iterations="40it",
            eval_every="20it",
            rounds=2,
            pruning={"rates": TICKET_RATES, "block_size": "1x1"},
        )
        run_imp(hparams, lenet_runs, "blocks", QUIET, data=mnist_data)


def test_convolutions_stay_unstructured_under_block_pruning(tmp_path):
    hparams = with_changes(
        paper_defaults("conv2", "cifar10"),
        training={"iterations": "2it", "batch_size": 20},
        pruning={"rounds": 1, "block_size": "4x1"},
    )
    data = tiny_dataset(train=60, val=20, test=20, shape=(8, 8, 3))
    experiment = run_imp(hparams, tmp_path, "c2", QUIET, data=data)
    masks = io.read_npz(experiment.masks(1))
    assert abs(masks["conv1/kernel"].sum() - 1728 * 0.9) <= 1
    assert blocks_are_whole(masks["fc1/kernel"], (4, 1))
    assert masks["fc1/kernel"].sum() == 4 * round(1024 * 256 / 4 * 0.8)
