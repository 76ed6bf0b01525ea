"""Stability analysis: ``python -m pipelines.stability --experiment_dir=runs/<exp> --round=3``.

Trains ``--seeds`` copies of round N's subnetwork from a rewind point with different data
orders, and writes ``<experiment>/stability/round_NN[-Kit].json`` and ``.png`` (stability to
data order, to pruning, and the instability along the path between copies); with
``--rewind_sweep`` also ``round_NN-sweep.csv`` and ``.png`` (one mask at every rewind point:
"fixed mask"). Rerunning the same command resumes and recomputes nothing already written.

``--experiments=DIR1,DIR2,... --round=N --output=PREFIX`` sweeps the papers' way instead: IMP
experiments that differ only in their rewind point, each analysed at its own rewind point with
its own masks of round N (each writes its own results as above), then instability and distances
against the rewind iteration in ``PREFIX.png`` and ``PREFIX.csv`` ("own masks").
"""

from __future__ import annotations

from absl import flags

from lth_tf.execution import Execution
from lth_tf.stability.result import StabilityResult
from lth_tf.steps import is_count
from pipelines import common
from pipelines.common import setup_logging, start_tensorflow_quietly, user_errors_as_one_line

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment_dir", None, "The experiment directory an IMP run wrote.")
flags.DEFINE_list(
    "experiments",
    [],
    "Several experiment directories (or quoted globs) differing only in their rewind point: "
    "each analysed at its own rewind point with its own masks, plus a figure and CSV across "
    "them (--output; not with --experiment_dir).",
)
flags.DEFINE_string(
    "output",
    None,
    "With --experiments: PREFIX for PREFIX.png and PREFIX.csv (PREFIX.pdf or .svg: that format).",
)
flags.DEFINE_string("round", None, "The finished round whose mask is analysed (0: the dense net).")
flags.DEFINE_string(
    "rewind",
    None,
    "Rewind point the copies start from: 0, 500it, 2ep, ... (default: the experiment's own).",
)
flags.DEFINE_list(
    "rewind_sweep",
    [],
    "Several rewind points, e.g. 0,100it,500it,2ep: the sweep figure and CSV, which also hold "
    "the round's points analysed before with the same --seeds, --points and --bn_batches.",
)
flags.DEFINE_boolean(
    "find_rewind",
    False,
    "Find the rewind point: analyse the dense round 0 at k = 0, 0.1%, 0.25%, 0.5%, 1%, 2%, 4% "
    "and 7% of training and report the earliest k whose instability is below --threshold "
    "(Frankle et al. 2020); writes stability/rewind_found.json and the sweep's figure and CSV.",
)
common.define_float(
    "threshold", 2.0, "With --find_rewind: the instability (percentage points) called stable."
)
common.define_integer("seeds", 2, "Copies trained with different data orders (2-100).")
common.define_integer(
    "points", 30, "Evenly spaced mixtures on the path, both ends included (2-1000)."
)
common.define_integer(
    "bn_batches", 100, "Training batches that recompute batch-norm statistics at each mixture."
)
common.define_execution_flags(
    "data_dir",
    "jit_compile",
    "steps_per_execution",
    "mixed_precision",
    "progress",
    "tensorboard",
    data_dir="Where the experiment's dataset is (as for pipelines.imp).",
    jit_compile="XLA for the training step: auto (the default) trains as the experiment chose, "
    "so recomputed rewind points match its run bit for bit; --jit_compile or --nojit_compile "
    "force it on or off.",
    mixed_precision="float16 or bfloat16: 16-bit compute, float32 weights, as the experiment "
    "ran (default: float32).",
    progress="Show a progress bar while copies train.",
    tensorboard="Log the results to TensorBoard as well (<experiment>/tensorboard/stability).",
)
common.define_callback_flag(
    "each copy's training is a round for it (on_round_start, on_chunk, on_round_end; copies "
    "are not evaluated while they train), its state goes into each copy's checkpoint"
)
flags.adopt_module_key_flags(common)


@user_errors_as_one_line
def main(argv: list[str]) -> None:
    from lth_tf.errors import LthError
    from lth_tf.stability.plan import plan_stability

    if FLAGS.experiments and FLAGS.experiment_dir:
        raise LthError("give --experiment_dir or --experiments, not both")
    if not FLAGS.experiment_dir and not FLAGS.experiments:
        raise LthError("--experiment_dir is required: the directory an IMP run wrote")
    if FLAGS.experiments and (FLAGS.rewind is not None or FLAGS.rewind_sweep):
        raise LthError(
            "--experiments analyses each experiment at its own rewind point; drop --rewind and "
            "--rewind_sweep"
        )
    if FLAGS.experiments and not FLAGS.output:
        raise LthError("--output is required with --experiments: PREFIX for PREFIX.png/.csv")
    if FLAGS.output and not FLAGS.experiments:
        raise LthError("--output is for --experiments only")
    if FLAGS.find_rewind:
        if FLAGS.experiments or FLAGS.rewind is not None or FLAGS.rewind_sweep:
            raise LthError(
                "--find_rewind chooses the rewind points itself, on one experiment: drop "
                "--experiments, --rewind and --rewind_sweep"
            )
        if FLAGS.round not in (None, "0"):
            raise LthError("--find_rewind analyses the dense network: drop --round (or give 0)")
        FLAGS.round = "0"
    elif FLAGS["threshold"].present:
        raise LthError("--threshold is for --find_rewind only")
    if FLAGS.round is None:
        raise LthError("--round is required: the finished round to analyse (0 = dense network)")
    if not is_count(FLAGS.round.strip()):
        raise LthError(f"--round: {FLAGS.round!r} is not a round number (0, 1, 2, ...)")
    execution = common.execution_from_flags()
    setup_logging()
    if FLAGS.experiments:
        _main_across(execution)
        return
    if FLAGS.find_rewind:
        _main_find_rewind(execution)
        return
    # Every check on the experiment and the flags comes before TensorFlow starts.
    plan = plan_stability(
        FLAGS.experiment_dir,
        int(FLAGS.round),
        rewind=FLAGS.rewind,
        rewind_sweep=FLAGS.rewind_sweep,
        seeds=FLAGS.seeds,
        points=FLAGS.points,
        bn_batches=FLAGS.bn_batches,
    )
    start_tensorflow_quietly()

    from lth_tf.provenance import experiment_data
    from lth_tf.stability.analysis import run_stability

    callbacks = common.callbacks_from_flags()
    data = experiment_data(plan.experiment, plan.hparams, FLAGS.data_dir)
    results = run_stability(plan, data, execution, callbacks)
    files = plan.files
    for result in results:
        print("\n".join(summary_lines(result)))
        k = result.rewind_iteration
        print(f"  results: {files.result(plan.pruning_round, k, plan.own_rewind)}")
        print(f"  figure:  {files.figure(plan.pruning_round, k, plan.own_rewind)}")
    if plan.sweep:
        print(f"Sweep figure: {files.sweep_figure(plan.pruning_round)}")
        print(f"Sweep table: {files.sweep_csv(plan.pruning_round)}")
    if execution.tensorboard:
        print(f"TensorBoard: {files.tensorboard}")


def _main_find_rewind(execution: Execution) -> None:
    """--find_rewind: the dense round 0 at a grid of rewind points, and the earliest stable."""
    from lth_tf.stability.rewind_finder import plan_rewind_search

    # Every check on the experiment and the flags comes before TensorFlow starts.
    search = plan_rewind_search(
        FLAGS.experiment_dir,
        seeds=FLAGS.seeds,
        points=FLAGS.points,
        bn_batches=FLAGS.bn_batches,
        threshold=FLAGS.threshold,
    )
    print(search.cost_line(), flush=True)
    start_tensorflow_quietly()

    from lth_tf.provenance import experiment_data
    from lth_tf.stability.rewind_finder import choice_lines, find_rewind

    callbacks = common.callbacks_from_flags()
    plan = search.plan
    data = experiment_data(plan.experiment, plan.hparams, FLAGS.data_dir)
    found = find_rewind(search, data, execution, callbacks)
    print("\n".join(choice_lines(found)))
    print(f"Instability figure: {plan.files.sweep_figure(0)}")
    print(f"Instability table: {plan.files.sweep_csv(0)}")
    print(f"Choice: {search.found_file}")


def _main_across(execution: Execution) -> None:
    """--experiments: each experiment at its own rewind point, then the figure and CSV."""
    from lth_tf.io import check_can_write
    from lth_tf.stability.across import output_paths, plan_across

    # Every check on the experiments and the flags comes before TensorFlow starts, and the
    # figure's folder takes a file before any copy trains (hours, on a real model).
    figure, _ = output_paths(FLAGS.output)
    plan = plan_across(
        FLAGS.experiments,
        int(FLAGS.round),
        seeds=FLAGS.seeds,
        points=FLAGS.points,
        bn_batches=FLAGS.bn_batches,
    )
    check_can_write(figure.parent)
    start_tensorflow_quietly()

    from lth_tf.provenance import experiment_data
    from lth_tf.stability.across import run_across

    callbacks = common.callbacks_from_flags()
    first = plan.plans[0]
    data = experiment_data(first.experiment, first.hparams, FLAGS.data_dir)
    results, figure, table = run_across(plan, data, execution, FLAGS.output, callbacks)
    for one, result in zip(plan.plans, results, strict=True):
        print(f"{one.experiment.root}:")
        print("\n".join(summary_lines(result)))
        print(f"  results: {one.files.result(plan.pruning_round, one.own_rewind, one.own_rewind)}")
    print(f"Sweep figure (own masks): {figure}")
    print(f"Sweep table (own masks): {table}")


def summary_lines(result: StabilityResult) -> list[str]:
    """What a result says, in a few lines."""
    pruning = result.l2_distance_pruning
    errors = ", ".join(f"{e:.2f}%" for e in result.copy_test_errors)
    return [
        f"Round {result.round} ({result.percent_remaining:.2f}% of weights remain), rewind "
        f"{result.rewind}: {len(result.data_seeds)} copies, iterations "
        f"{result.train_from_iteration}-{result.train_to_iteration}",
        f"  copies' test errors:         {errors}",
        f"  stability to data order:     L2 distance {result.l2_distance_data_order:.4f}",
        "  stability to pruning:        "
        + ("n/a (round 0 is not pruned)" if pruning is None else f"L2 distance {pruning:.4f}"),
        f"  instability:                 {result.instability:.2f} points (largest error "
        f"{result.max_path_error:.2f}% on the path, ends {result.end_errors[0]:.2f}% and "
        f"{result.end_errors[1]:.2f}%): {'stable' if result.stable else 'unstable'}",
    ]


def run() -> None:
    """The console script's entry point (``lth-stability``)."""
    common.run(main)


if __name__ == "__main__":
    run()
