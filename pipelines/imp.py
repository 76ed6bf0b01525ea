"""Find lottery tickets: ``python -m pipelines.imp --model=lenet300_100 --dataset=fashion_mnist``.

Every flag left unset takes the default of the model's recipe (``--recipe``: the paper whose
settings it follows). Rerunning the same command resumes.
A control runs as a branch of an experiment:
``python -m pipelines.imp --branch_of=runs/EXPERIMENT --control=random_reinit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import flags

from lth_tf.lottery.controls import branch_controls
from pipelines import common, hparam_flags
from pipelines.common import setup_logging, start_tensorflow_quietly, user_errors_as_one_line
from pipelines.hparam_flags import define_hparam_flags, hparam_flag_names

if TYPE_CHECKING:
    from lth_tf.config import ExperimentHparams

FLAGS = flags.FLAGS
# --model, --dataset, --recipe and every training and pruning hyperparameter, from the fields of
# lth_tf.config's dataclasses; adopted so that --help lists them with this module's own.
define_hparam_flags(FLAGS)
flags.adopt_module_key_flags(hparam_flags)
# --data_dir, --jit_compile, --steps_per_execution, --mixed_precision, --progress, --tensorboard
# and --test_every_evaluation: lth_tf.execution.Execution's fields.
common.define_execution_flags()
# --callback=package.module:Class (pipelines.stability takes it too).
common.define_callback_flag(
    "its scalars go to evaluations.csv and TensorBoard, its state into each checkpoint"
)
flags.adopt_module_key_flags(common)
flags.DEFINE_string(
    "branch_of",
    None,
    "Run a control as a branch of this experiment directory (its masks, rewind point and "
    "round 0); the branch is written beside it. Needs --control.",
)
common.refuse_empty("branch_of")
flags.DEFINE_string(
    "control",
    None,
    f"With --branch_of: {common.one_of(branch_controls())} (or a control of your own module, "
    "registered with lth_tf.lottery.controls.register_control).",
)
common.define_integer(
    "control_seed", None, "With --branch_of: seed of the control's randomness (default 0)."
)
flags.DEFINE_string("output_dir", "runs", "Where experiment directories go.")
common.refuse_empty("output_dir")
flags.DEFINE_string("experiment_name", None, "Experiment directory name (default: from hparams).")
flags.DEFINE_string("strategy", "default", "default, mirrored, multi_worker or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
common.define_integer(
    "virtual_cpus", None, "Split the host CPU into N logical devices (multi-replica on CPU)."
)


# What a branch may not change: it reruns its parent's hyperparameters (every one but the
# number of rounds, which extends or shortens the parent's sequence) next to it.
PARENT_FLAGS = (*(name for name in hparam_flag_names() if name != "rounds"), "output_dir")


def branch_hparams_from_flags():
    """A control's hyperparameters: its parent's, with ``branch`` set (and maybe ``--rounds``).

    Points ``--output_dir`` and ``--experiment_name`` at the branch's directory beside the parent.
    """
    from lth_tf.config import MAX_SEED, check_number
    from lth_tf.errors import LthError
    from lth_tf.lottery.branches import branch_of

    if FLAGS.control is None:
        raise LthError(f"--branch_of needs --control ({common.one_of(branch_controls())})")
    if FLAGS.control_seed is not None:  # before the parent is read
        check_number("--control_seed", FLAGS.control_seed, low=0, high=MAX_SEED, integer=True)
    fixed = [f"--{name}" for name in PARENT_FLAGS if FLAGS[name].present]
    if fixed:
        raise LthError(
            f"{', '.join(fixed)} cannot be set with --branch_of: a branch reruns its parent's "
            "hyperparameters next to it (only --rounds, --control_seed and --experiment_name)"
        )
    hparams, output_dir, name = branch_of(
        FLAGS.branch_of, FLAGS.control, FLAGS.rounds, FLAGS.control_seed or 0, FLAGS.experiment_name
    )
    FLAGS.output_dir, FLAGS.experiment_name = str(output_dir), name
    return hparams


def hparams_from_flags():
    """The experiment's hyperparameters: the recipe's defaults, overridden by set flags (for a
    branch, its parent's)."""
    from lth_tf.errors import LthError
    from lth_tf.experiment import check_experiment_name

    if FLAGS.branch_of is not None:
        return branch_hparams_from_flags()
    if FLAGS.experiment_name is not None:
        check_experiment_name(FLAGS.experiment_name)
    if FLAGS.control is not None or FLAGS.control_seed is not None:
        raise LthError("--control and --control_seed need --branch_of=EXPERIMENT_DIR")
    return hparam_flags.hparams_from_flags(FLAGS)


@user_errors_as_one_line
def main(argv: list[str]) -> None:
    from lth_tf.training.strategies import (
        check_strategy_name,
        check_virtual_cpus,
        make_strategy,
        split_cpu,
        worker_output_dir,
    )

    setup_logging()
    # --rewind=stable: the rewind point is measured first (lth_tf.stability.rewind_finder); the
    # flags are checked as for rewind 0, which the dense network uses.
    from lth_tf.config import STABLE_REWIND
    from lth_tf.errors import LthError

    stable_rewind = FLAGS.rewind is not None and FLAGS.rewind.strip().lower() == STABLE_REWIND
    if FLAGS.rewind is not None and not stable_rewind:
        import difflib

        if difflib.get_close_matches(FLAGS.rewind.strip().lower(), [STABLE_REWIND], cutoff=0.7):
            raise LthError(f"--rewind={FLAGS.rewind} is not a step; did you mean --rewind=stable?")
    if stable_rewind:
        if FLAGS.branch_of is not None:
            raise LthError("--rewind=stable is for a new experiment, not with --branch_of")
        FLAGS.rewind = "0"
    hparams = hparams_from_flags()  # checks every flag before TensorFlow starts
    if FLAGS.branch_of is None:
        _say_what_of_the_compile_goes_unused(hparams, recipe_given=FLAGS["recipe"].present)
    from lth_tf.naming import experiment_root
    from lth_tf.provenance import check_model_file

    check_model_file(hparams, experiment_root(FLAGS.output_dir, hparams, FLAGS.experiment_name))
    check_strategy_name(FLAGS.strategy)
    if FLAGS.virtual_cpus is not None:
        check_virtual_cpus(FLAGS.virtual_cpus)
    execution = common.execution_from_flags(FLAGS.strategy)
    start_tensorflow_quietly()
    if FLAGS.virtual_cpus is not None:
        split_cpu(FLAGS.virtual_cpus)
    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)

    from lth_tf.lottery.imp import run_imp

    callbacks = common.callbacks_from_flags()

    run = run_imp
    if stable_rewind:
        from lth_tf.stability.rewind_finder import run_imp_with_stable_rewind

        run = run_imp_with_stable_rewind
    experiment = run(
        hparams,
        # Under multi_worker every worker runs every round; only the chief writes the
        # experiment, the others keep their own copy (they resume from it).
        worker_output_dir(strategy, FLAGS.output_dir),
        FLAGS.experiment_name,
        # Under multi_worker every worker trains; only the chief writes TensorBoard logs.
        execution,
        strategy=strategy,
        callbacks=callbacks,
    )
    print(f"Results: {experiment.results}")


def _say_what_of_the_compile_goes_unused(hparams: ExperimentHparams, recipe_given: bool) -> None:
    """A ``.keras`` file saved compiled trains with the recipe's optimizer unless
    ``--recipe=compiled`` (``find_tickets`` uses its compile by default), and with its compile
    measures accuracy only: one line each, so that a user who compiled the model knows before a
    run of hours."""
    import logging

    from lth_tf.config import COMPILED_FIELDS
    from lth_tf.errors import LthError
    from lth_tf.recipe import compiled_optimizer, read_compile_config, say_metrics_left_out

    model = hparams.model.name
    if not model.endswith(".keras"):
        return
    if hparams.model.recipe == "compiled":
        try:
            say_metrics_left_out(read_compile_config(model))
        except LthError:
            pass  # a file that is gone (a resume from the experiment's copy) says so later
        return
    optimizer = compiled_optimizer(model)
    # An optimizer setting of the user's (--learning_rate=...) is a choice made, as in Python.
    chose = recipe_given or any(FLAGS[name].present for name in COMPILED_FIELDS)
    if optimizer is not None and not chose:
        training = hparams.training
        logging.getLogger("lth_tf").info(
            "--model=%s was saved compiled (%s), but trains with the %s recipe's %s at "
            "learning rate %g; --recipe=compiled trains it with its own optimizer, schedule "
            "and loss",
            model,
            optimizer,
            hparams.model.recipe,
            training.optimizer,
            training.learning_rate,
        )


def run() -> None:
    """The console script's entry point (``lth-imp``)."""
    common.run(main)


if __name__ == "__main__":
    run()
