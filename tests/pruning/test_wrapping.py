"""TF-MOT wrapping: which weights are pruned as which kind, and what is rewound."""

import pytest

from lth_tf.config import PruneRates
from lth_tf.models import get_model
from lth_tf.pruning.wrapping import wrap_model


def test_wrapping_finds_kinds_and_excludes_bookkeeping_from_rewinding():
    pruned = wrap_model(get_model("conv2").build((28, 28, 1), 10), PruneRates(0.1, 0.2, 0.1))
    assert pruned.kinds == {
        "conv1/kernel": "conv",
        "conv2/kernel": "conv",
        "fc1/kernel": "fc",
        "fc2/kernel": "fc",
        "output/kernel": "output",
    }
    assert "conv1/bias" in pruned.rewindable
    assert not any("mask" in name or "pruning_step" in name for name in pruned.rewindable)
    pruned.set_round(2)
    assert pruned.target_sparsities()["fc1/kernel"] == pytest.approx(0.36)
    assert pruned.target_sparsities()["conv1/kernel"] == pytest.approx(0.19)
