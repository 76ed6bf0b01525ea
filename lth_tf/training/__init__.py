"""Training a pruned network: the trainer, the one loop, schedules and strategies.

- :mod:`lth_tf.training.trainer`: :class:`~lth_tf.training.trainer.Trainer`, the compiled
  training and evaluation steps (batches built on the device, one trainer for every round);
- :mod:`lth_tf.training.xla`: whether XLA can and should compile them (what
  ``--jit_compile=auto`` times); :mod:`lth_tf.training.chunks`: iterations per compiled call;
- :mod:`lth_tf.training.precision`: mixed-precision policies;
  :mod:`lth_tf.training.optimizers`: the optimizer and loss from the hyperparameters;
- :mod:`lth_tf.training.loop`: :func:`~lth_tf.training.loop.train`, compiled chunks of
  iterations with callbacks (evaluations, checkpoints, snapshots), and resuming;
- :mod:`lth_tf.training.schedules`: learning-rate schedules read at the global iteration;
- :mod:`lth_tf.training.strategies`: ``tf.distribute`` strategies by name, checked before
  TensorFlow starts.

Nothing is imported here: ``import lth_tf.training.strategies`` loads no TensorFlow.
"""
