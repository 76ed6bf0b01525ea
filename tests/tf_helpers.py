"""What tests that build networks share: the TensorFlow half of the test helpers. Importing it
starts TensorFlow; :mod:`tests.helpers`, the rest, does not."""

from __future__ import annotations

import numpy as np
import tf_keras

from lth_tf.callbacks import RunCallback
from lth_tf.models import get_model
from lth_tf.pruning.wrapping import PrunedModel, wrap_model
from tests.helpers import LENET_RATES


def half_pruned_lenet(seed: int = 3, mask_seed: int | None = None) -> PrunedModel:
    """lenet300_100 wrapped in round 1, half of every kernel pruned at random (masks drawn with
    ``mask_seed``, default ``seed``) and applied."""
    tf_keras.utils.set_random_seed(seed)
    pruned = wrap_model(get_model("lenet300_100").build((28, 28, 1), 10), LENET_RATES)
    pruned.set_round(1)
    rng = np.random.default_rng(seed if mask_seed is None else mask_seed)
    masks = {n: (rng.random(v.shape) < 0.5).astype(np.float32) for n, v in pruned.masks.items()}
    pruned.set_masks(masks)
    pruned.apply_masks()
    return pruned


class _StartRecorder(RunCallback):
    """Keeps every rewindable value each round starts from."""

    def __init__(self):
        self.starts = {}

    def on_round_start(self, context):
        rewindable = context.pruned.rewindable
        self.starts[context.pruning_round] = {n: v.numpy().copy() for n, v in rewindable.items()}


def start_recorder() -> tuple[dict[int, dict[str, np.ndarray]], RunCallback]:
    """(starts, callback): run_imp(..., callbacks=[callback]) fills starts[round][name]."""
    record = _StartRecorder()
    return record.starts, record
