"""Stability analysis of IMP subnetworks (Frankle et al., 2019 and 2020).

From one round's mask and a rewind point k, train copies of the subnetwork from the same
weights theta_k with different data orders, then measure

- stability to data order: the L2 distance between the copies' trained weights;
- stability to pruning: the L2 distance between a copy and the dense network's trained weights,
  both restricted to the mask;
- instability (linear mode connectivity): the largest test error along the straight line
  between two copies, minus the mean error of the two ends; stable when below 2 points.

Modules:

- :mod:`lth_tf.stability.plan`: checks a request against the experiment and names every file
  (NumPy only, so a pipeline checks its flags before TensorFlow starts);
- :mod:`lth_tf.stability.measures`: the barrier, the L2 distances, the mixtures (NumPy);
- :mod:`lth_tf.stability.analysis`: rewind points, copies, the path between them, results;
- :mod:`lth_tf.stability.batch_norm`: batch-norm statistics recomputed for each mixture;
- :mod:`lth_tf.stability.figures`: error along the path, and the rewind sweep;
- :mod:`lth_tf.stability.summaries`: the TensorBoard run ``<experiment>/tensorboard/stability``.

>>> from lth_tf.stability.plan import plan_stability
>>> from lth_tf.stability.analysis import run_stability
>>> plan = plan_stability("runs/quickstart", pruning_round=3, rewind="0")  # doctest: +SKIP
>>> results = run_stability(plan, load_dataset("fashion_mnist"))  # doctest: +SKIP
"""
