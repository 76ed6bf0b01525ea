"""lth_tf: lottery tickets with TF-MOT pruning wrappers, iterative magnitude pruning and rewinding.

The Python API: :func:`find_tickets` runs IMP on a model and data of your own and returns an
:class:`Experiment`, which reads results, masks and weights per round and exports a ticket.

Importing this package sets up the environment TensorFlow needs before its first import:
TF-MOT only accepts Keras 2 models, so ``tf.keras`` must resolve to ``tf_keras``.
"""

import os
import sys

from lth_tf.errors import LthError

_LEGACY_KERAS_ON = ("1", "true", "True")
if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") not in _LEGACY_KERAS_ON:
    # TensorFlow read the variable at its import: tf.keras is Keras 3 for this process, and
    # models from it would mix with tf_keras ones that TF-MOT needs.
    # `import keras` and `import tf_keras` import TensorFlow too: a user who wrote neither
    # `import tensorflow` nor TF_USE_LEGACY_KERAS learns why.
    raise LthError(
        "TensorFlow was imported before lth_tf without TF_USE_LEGACY_KERAS=1, so tf.keras "
        "is Keras 3; TF-MOT needs Keras 2: import lth_tf first, before tensorflow, keras and "
        "tf_keras, which all import TensorFlow (or set TF_USE_LEGACY_KERAS=1 before any of them), "
        "and build models with tf_keras (`import tf_keras as keras`)"
    )
# Must happen before TensorFlow is first imported anywhere in the process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ chatter (CUDA probing, CPU features, and Grappler's "tfg_optimizer ...
# failed" ERROR lines for graphs it then runs unoptimised, e.g. a model with an Add layer)
# hides the messages users need; a real failure still raises, with its message. Its first
# import hides the start-up lines too (they ignore that level), unless the user asked for
# TensorFlow's logs (0, 1 or 2).
if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") not in ("0", "1", "2"):
    from lth_tf.startup import quiet_tensorflow_import

    quiet_tensorflow_import()

__all__ = ["Experiment", "LthError", "RoundResult", "find_tickets"]
__version__ = "0.1.0"

# The API is imported on first use, so ``import lth_tf.config`` (or any one module) loads that
# module alone: no TensorFlow, no registries.
_LAZY = {
    "Experiment": "lth_tf.api",
    "find_tickets": "lth_tf.api",
    "RoundResult": "lth_tf.experiment",
}


def __getattr__(name: str):
    """``lth_tf.find_tickets``, ``lth_tf.Experiment``, ``lth_tf.RoundResult``, imported now.

    >>> import lth_tf
    >>> lth_tf.RoundResult.__name__
    'RoundResult'
    """
    if name not in _LAZY:
        raise AttributeError(f"module 'lth_tf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
