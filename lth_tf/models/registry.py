"""Names -> (builder, paper defaults). Adding a model is one builder plus one entry here.

Importing this module does not import TensorFlow, so flags can be checked instantly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from lth_tf.config import (
    DatasetHparams,
    ExperimentHparams,
    ModelHparams,
    PruneRates,
    PruningHparams,
    TrainingHparams,
)
from lth_tf.errors import LthError
from lth_tf.models import conv, lenet

if TYPE_CHECKING:
    import tf_keras


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model family member: how to build it and how the paper trained and pruned it.

    >>> get_model("conv6").training.learning_rate
    0.0003
    """

    name: str
    build: Callable[[tuple[int, ...], int], tf_keras.Model]
    dataset: str
    training: TrainingHparams
    pruning: PruningHparams


def _paper_net(name, build, dataset, lr, iterations, rates, rounds=20) -> ModelSpec:
    return ModelSpec(
        name=name,
        build=build,
        dataset=dataset,
        training=TrainingHparams(
            optimizer="adam", learning_rate=lr, batch_size=60, iterations=iterations
        ),
        pruning=PruningHparams(rates=rates, rounds=rounds, rewind="0it"),
    )


# Frankle & Carbin (2019), Figure 2.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _paper_net(
            "lenet300_100",
            lenet.lenet300_100,
            "mnist",
            1.2e-3,
            "50000it",
            PruneRates(fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv2",
            conv.conv2,
            "cifar10",
            2e-4,
            "20000it",
            PruneRates(conv=0.1, fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv4",
            conv.conv4,
            "cifar10",
            3e-4,
            "25000it",
            PruneRates(conv=0.1, fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv6",
            conv.conv6,
            "cifar10",
            3e-4,
            "30000it",
            PruneRates(conv=0.15, fc=0.2, output=0.1),
        ),
    )
}


def get_model(name: str) -> ModelSpec:
    """The registered model called ``name``; an unknown name is a user error."""
    try:
        return MODELS[name]
    except KeyError:
        raise LthError(
            f"--model: unknown model {name!r}; choose one of {', '.join(MODELS)}"
        ) from None


def layer_kind(layer: tf_keras.layers.Layer) -> str | None:
    """``conv``, ``fc`` or ``output`` for a prunable layer, ``None`` for the rest.

    The output layer is recognised by its name, which every builder sets to ``output``.
    """
    import tf_keras

    if isinstance(layer, tf_keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, tf_keras.layers.Dense):
        return "output" if layer.name == "output" else "fc"
    return None


def paper_defaults(model: str, dataset: str | None = None) -> ExperimentHparams:
    """The paper's hyperparameters for ``model``, on its default dataset unless one is given.

    >>> paper_defaults("lenet300_100", "fashion_mnist").pruning.rates.fc
    0.2
    """
    spec = get_model(model)
    return ExperimentHparams(
        dataset=DatasetHparams(dataset or spec.dataset),
        model=ModelHparams(model),
        training=spec.training,
        pruning=spec.pruning,
    )
