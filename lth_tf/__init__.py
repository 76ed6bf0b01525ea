"""lth_tf: lottery tickets with TF-MOT pruning wrappers, iterative magnitude pruning and rewinding.

The Python API: :func:`find_tickets` runs IMP on a model and data of your own and returns an
:class:`Experiment`, which reads results, masks and weights per round and exports a ticket.

Importing this package sets up the environment TensorFlow needs before its first import:
TF-MOT only accepts Keras 2 models, so ``tf.keras`` must resolve to ``tf_keras``.
"""

import os

# Must happen before TensorFlow is first imported anywhere in the process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) hides the messages users need.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lth_tf.api import Experiment, find_tickets  # noqa: E402
from lth_tf.errors import LthError  # noqa: E402
from lth_tf.experiment import RoundResult  # noqa: E402

__all__ = ["Experiment", "LthError", "RoundResult", "find_tickets"]
__version__ = "0.1.0"
