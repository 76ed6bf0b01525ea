"""The lottery-ticket procedures: iterative magnitude pruning and what runs beside it.

- :mod:`lth_tf.lottery.imp`: :func:`~lth_tf.lottery.imp.run_imp`, every round of an IMP
  experiment (prune, rewind to iteration k, train k -> T), resumable;
- :mod:`lth_tf.lottery.controls`: what decides a round's masks and start values (IMP itself,
  ``random_reinit``, ``random_prune``, ``lr_rewind``), a registry open to controls of your own;
- :mod:`lth_tf.lottery.branches`: a control run as a branch of an experiment, beside it.

Nothing is imported here: ``import lth_tf.lottery.controls`` loads no TensorFlow.
"""
