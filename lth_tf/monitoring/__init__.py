"""Watching and judging IMP runs: TensorBoard logs, the paper's figures, reports across runs.

- :mod:`lth_tf.monitoring.tensorboard`: :class:`TensorBoardMonitor`, an observer for
  :func:`lth_tf.imp.run_imp` that writes ``<experiment>/tensorboard/`` while training runs;
- :mod:`lth_tf.monitoring.figures`: accuracy and early-stop iteration against the percentage of
  weights remaining (log-scale x axis, as in the paper), as PNG bytes;
- :mod:`lth_tf.monitoring.report`: several experiments in one figure and one CSV.

Nothing here is imported by the IMP core; TensorFlow is imported only by ``tensorboard``.
"""
