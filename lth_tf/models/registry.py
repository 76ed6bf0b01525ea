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
from lth_tf.models import conv, lenet, resnet, vgg

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


def _deep_net(name, build, batch_size, iterations, warmup, lr_drops, rewind) -> ModelSpec:
    """A CIFAR ResNet/VGG: SGD 0.1 with momentum 0.9, warmup then x0.1 drops, weight decay
    1e-4, augmentation; global pruning of 20% of the conv weights per round (the output layer
    stays dense), rewinding to an early iteration (Frankle et al. 2019/2020)."""
    return ModelSpec(
        name=name,
        build=build,
        dataset="cifar10",
        training=TrainingHparams(
            optimizer="sgd",
            learning_rate=0.1,
            momentum=0.9,
            batch_size=batch_size,
            iterations=iterations,
            weight_decay=1e-4,
            warmup=warmup,
            lr_drops=lr_drops,
            augment=True,
        ),
        pruning=PruningHparams(
            rates=PruneRates(conv=0.2), rounds=20, rewind=rewind, strategy="global"
        ),
    )


# Frankle & Carbin (2019), Figure 2; deep networks also Frankle et al. (2019/2020), see README.
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
        # Resnet-18 of the LTH paper: 30K iterations at batch 128, drops at 20K and 25K,
        # warmup over 20K iterations.
        _deep_net(
            "resnet20", resnet.resnet20, 128, "30000it", "20000it", "20000it,25000it", "500it"
        ),
        # VGG-19: 112K iterations at batch 64, drops at 80 and 120 of 160 epochs, warmup 10K.
        _deep_net("vgg19", vgg.vgg19, 64, "112000it", "10000it", "56000it,84000it", "1000it"),
        # VGG-16 is not in the papers' table: it takes VGG-19's recipe.
        _deep_net("vgg16", vgg.vgg16, 64, "112000it", "10000it", "56000it,84000it", "1000it"),
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
    Batch norm is never pruned (TF-MOT does not prune it); ResNet shortcut 1x1 convs are convs.
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
