"""Model registry: ``get_model(name)`` gives a builder and the paper's defaults."""

from lth_tf.models.registry import (
    MODELS,
    ModelSpec,
    experiment_hparams,
    get_model,
    paper_defaults,
    resolve_steps,
)

__all__ = [
    "MODELS",
    "ModelSpec",
    "experiment_hparams",
    "get_model",
    "paper_defaults",
    "resolve_steps",
]
