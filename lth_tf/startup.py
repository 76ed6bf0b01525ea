"""Starting TensorFlow without its C++ start-up chatter: for the pipelines and Ray's workers.

>>> start_tensorflow_quietly()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import tempfile

__all__ = ["start_tensorflow_quietly"]


def start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with the C++ start-up chatter hidden.

    On a machine without CUDA, TensorFlow prints several lines about missing drivers to the
    process's stderr before Python's logging exists; they bury the one line a user needs. The
    text is shown after all if the start fails.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved_fd, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
