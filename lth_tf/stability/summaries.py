"""TensorBoard logs of stability analyses: the run ``<experiment>/tensorboard/stability/``.

===========================================  ==============  ===================================
tag                                          step            value
===========================================  ==============  ===================================
``round_NN/instability``                     rewind iter.    error barrier, percentage points
``round_NN/l2_distance_data_order``          rewind iter.    normalised L2 distance of copies
``round_NN/l2_distance_pruning``             rewind iter.    copy 0 vs the dense net (round > 0)
``round_NN/mean_end_error``                  rewind iter.    mean test error of the ends, %
``round_NN/rewind_Kit/path_error``           mixture index   test error at alpha = i/(points-1)
``round_NN/rewind_Kit/error_along_path``     0               the figure
===========================================  ==============  ===================================

With the rewind iteration as the step, a sweep reads as a curve in Scalars. Each (tag, step) is
written once: a rerun adds only what is missing (a result recomputed with other settings keeps
the values first logged; delete the run's folder to log afresh).

>>> log_results(Path("runs/e/tensorboard/stability"), results, pngs)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lth_tf.monitoring.tensorboard import TensorBoardRun
from lth_tf.stability.result import StabilityResult


def log_results(logdir: Path, results: Sequence[StabilityResult], pngs: Sequence[bytes]) -> None:
    """Writes every scalar and figure of ``results`` that the run does not hold yet."""
    run = TensorBoardRun(logdir)
    try:
        for result, png in zip(results, pngs, strict=True):
            prefix, k = f"round_{result.round:02d}", result.rewind_iteration
            values = {
                "instability": result.instability,
                "l2_distance_data_order": result.l2_distance_data_order,
                "l2_distance_pruning": result.l2_distance_pruning,
                "mean_end_error": result.mean_end_error,
            }
            run.scalars(k, {f"{prefix}/{name}": v for name, v in values.items() if v is not None})
            path_tag = f"{prefix}/rewind_{k}it/path_error"
            for i, error in enumerate(result.path_errors):
                run.scalars(i, {path_tag: error})
            run.png(f"{prefix}/rewind_{k}it/error_along_path", png, 0)
    finally:
        run.close()
