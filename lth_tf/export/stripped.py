"""A ticket as a plain Keras model: no pruning wrappers, masks applied, pruned weights exactly 0.

It goes the way a TF-MOT user would: the registry's model inside ``prune_low_magnitude``
wrappers, the round's masks and weights restored, then ``strip_pruning``. Stripping does not
apply the masks itself, so they are applied first, and the result is checked.

>>> model = stripped_model(ticket)  # doctest: +SKIP
>>> save_saved_model(model, "saved_models/e/round_10/saved_model")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude,
)
from tensorflow_model_optimization.sparsity import keras as sparsity

from lth_tf.builder import build_network
from lth_tf.errors import LthError
from lth_tf.export.ticket import Ticket
from lth_tf.provenance import experiment_model
from lth_tf.pruning.channels import channel_plan
from lth_tf.pruning.prunable import find_prunable
from lth_tf.pruning.shrink import shrunk_model
from lth_tf.pruning.wrapping import restore, variable_key


def stripped_model(ticket: Ticket) -> tf_keras.Model:
    """The ticket's architecture without wrappers, holding its weights times its masks."""
    model = experiment_model(ticket.experiment, ticket.hparams)
    pruned = build_network(
        ticket.hparams, ticket.input_shape, ticket.num_classes, for_training=False, model=model
    )
    try:
        pruned.set_masks({name: mask.astype(np.float32) for name, mask in ticket.masks.items()})
        restore(pruned.rewindable, ticket.weights)
    except (KeyError, ValueError) as error:
        raise LthError(
            f"round {ticket.round} of {ticket.experiment.root} does not fit "
            f"{ticket.hparams.model.name}: {error}"
        ) from None
    pruned.apply_masks()
    stripped = sparsity.strip_pruning(pruned.model)
    check_stripped(stripped, ticket.masks)
    return stripped


def shrunk_ticket_model(ticket: Ticket, stripped: tf_keras.Model | None = None) -> tf_keras.Model:
    """A channel ticket (``--granularity=channel``) as a smaller dense network without its
    pruned channels (:func:`lth_tf.pruning.shrink.shrunk_model`); ``stripped`` is the ticket's
    :func:`stripped_model`, when already built."""
    if ticket.hparams.pruning.granularity != "channel":
        raise LthError(
            f"{ticket.experiment.root} prunes single weights (--granularity="
            f"{ticket.hparams.pruning.granularity}): only channel tickets shrink into a "
            "smaller network; run IMP with --granularity=channel for one"
        )
    model = stripped if stripped is not None else stripped_model(ticket)
    return shrunk_model(model, ticket.masks, channel_plan(model, find_prunable(model)))


def check_stripped(model: tf_keras.Model, masks: dict[str, np.ndarray]) -> None:
    """Raises unless ``model`` has no pruning wrapper and is zero wherever ``masks`` are."""
    wrapped = [layer.name for layer in model.layers if isinstance(layer, PruneLowMagnitude)]
    if wrapped:
        raise RuntimeError(f"strip_pruning left pruning wrappers: {wrapped}")
    kernels = {variable_key(v): v.numpy() for v in model.variables}
    for name, mask in masks.items():
        if np.any(kernels[name][mask == 0] != 0):
            raise RuntimeError(f"{name}: pruned weights of the stripped model are not zero")


def save_saved_model(model: tf_keras.Model, path: str | Path) -> None:
    """Writes ``model`` as a TensorFlow SavedModel (with Keras metadata), without optimizer."""
    tf_logger = logging.getLogger("tensorflow")
    quiet = _DropMessage("Compiled the loaded model")
    # Saving an uncompiled model logs that warning about a "loaded" model: nothing is wrong.
    tf_logger.addFilter(quiet)
    try:
        model.save(str(path), save_format="tf", include_optimizer=False)
    finally:
        tf_logger.removeFilter(quiet)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)
