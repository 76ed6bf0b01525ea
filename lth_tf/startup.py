"""C++ chatter kept off the terminal: TensorFlow's start-up lines (for the pipelines and Ray's
workers), the TFLite converter's and LiteRT's.

>>> start_tensorflow_quietly()  # doctest: +SKIP
>>> with quiet_stderr():  # doctest: +SKIP
...     content = converter.convert()
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["quiet_stderr", "start_tensorflow_quietly"]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Captures what C++ libraries write to the process's stderr (file descriptor 2) while the
    block runs; it is shown after all if the block fails.

    TensorFlow prints lines about missing CUDA drivers at its start, the TFLite converter
    ``fully_quantize: 0, inference_type: 6, ...`` for every int8 file, LiteRT its delegate:
    none of it is for the user, and it buries the one line a user needs.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved_fd, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with the C++ start-up chatter hidden."""
    with quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
