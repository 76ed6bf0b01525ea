"""Watching and judging IMP runs: TensorBoard logs, the paper's figures, reports across runs.

- :mod:`lth_tf.monitoring.tensorboard`: :class:`TensorBoardMonitor`, the run callback
  (:mod:`lth_tf.callbacks`) that writes ``<experiment>/tensorboard/`` while training runs;
- :mod:`lth_tf.monitoring.figures`: accuracy and early-stop iteration against the percentage of
  weights remaining (log-scale x axis, as in the paper), as PNG bytes;
- :mod:`lth_tf.monitoring.report`: several experiments in one figure and one CSV.

The IMP core imports ``tensorboard`` (its own callback) and ``progress``; TensorFlow is
imported only by ``tensorboard``.
"""
