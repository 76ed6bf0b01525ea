"""Find lottery tickets: ``python -m pipelines.imp --model=lenet300_100 --dataset=fashion_mnist``.

Every flag left unset takes the default of the model's recipe (``--recipe``: the paper whose
settings it follows). Rerunning the same command resumes.
A control runs as a branch of an experiment:
``python -m pipelines.imp --branch_of=runs/EXPERIMENT --control=random_reinit``.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from pipelines.common import setup_logging, start_tensorflow_quietly, user_errors_as_one_line

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", "lenet300_100", "Model: lenet300_100, conv2, conv4, conv6, resnet20, vgg16 or vgg19."
)
flags.DEFINE_string(
    "dataset",
    None,
    "mnist, fashion_mnist or cifar10 (default: mnist for lenet300_100, cifar10 for the conv nets).",
)
flags.DEFINE_string(
    "recipe",
    None,
    "Whose defaults: lth (Frankle & Carbin 2019: warmup, reset to iteration 0) or stabilizing "
    "(Frankle et al. 2019/2020: no warmup, rewind to an early iteration). Default: stabilizing "
    "for resnet20, vgg16, vgg19; lth, the only one, for lenet300_100 and the conv nets. Flags "
    "set explicitly override the recipe's values.",
)
flags.DEFINE_string("data_dir", None, "Folder with the raw dataset files or a TFDS data_dir.")
flags.DEFINE_integer("rounds", None, "Pruning rounds after the dense round 0.")
flags.DEFINE_string("iterations", None, "Training length per round: 50000, 50000it or 20ep.")
flags.DEFINE_integer("batch_size", None, "Global batch size (split across replicas).")
flags.DEFINE_float("learning_rate", None, "Learning rate.")
flags.DEFINE_string("optimizer", None, "adam or sgd.")
flags.DEFINE_float("momentum", None, "Momentum (sgd only).")
flags.DEFINE_string(
    "rewind",
    None,
    "Rewind point: 0 = initial weights (LTH), or e.g. 500it / 2ep into round 0 (Stabilizing LTH).",
)
flags.DEFINE_string(
    "prune_rates",
    None,
    "Fraction of surviving weights pruned per round, per layer kind, e.g. "
    "conv=0.15,fc=0.2,output=0.1 (kinds left out keep the model's default).",
)
flags.DEFINE_string(
    "block_size",
    None,
    "Prune Dense kernels in blocks of ROWSxCOLUMNS (inputs x outputs), e.g. 4x1: the blocks "
    "TFLite's sparse FullyConnected kernel runs fast in float. Convolutions stay unstructured. "
    "Default 1x1 (weight by weight).",
)
flags.DEFINE_string(
    "eval_every",
    None,
    "Evaluate validation/test every this many iterations (e.g. 500it), or 'auto': every 100 "
    "iterations (the LTH paper's) for lenet300_100 and the conv nets, every half epoch rounded "
    "to 100 iterations for resnet20, vgg16, vgg19.",
)
flags.DEFINE_integer("seed", None, "Random seed: initialisation and data order.")
flags.DEFINE_string(
    "pruning",
    None,
    "layerwise (each layer loses its kind's rate) or global (one magnitude threshold over all "
    "layers whose kind has a non-zero rate; those kinds must share one rate).",
)
flags.DEFINE_boolean(
    "one_shot", None, "Prune round 0's trained weights straight to each round's sparsity."
)
flags.DEFINE_float("weight_decay", None, "L2 weight decay on conv and dense kernels.")
flags.DEFINE_string("warmup", None, "Linear learning-rate warmup length, e.g. 2000it or 2ep.")
flags.DEFINE_string(
    "lr_drops", None, "Steps where the learning rate drops, e.g. 20000it,25000it or 80ep,120ep."
)
flags.DEFINE_float("lr_drop_factor", None, "Learning-rate factor at each drop (e.g. 0.1).")
flags.DEFINE_boolean(
    "augment", None, "CIFAR augmentation: 4-pixel pad, random crop, random horizontal flip."
)
flags.DEFINE_string(
    "branch_of",
    None,
    "Run a control as a branch of this experiment directory (its masks, rewind point and "
    "round 0); the branch is written beside it. Needs --control.",
)
flags.DEFINE_string("control", None, "With --branch_of: random_reinit, random_prune or lr_rewind.")
flags.DEFINE_integer(
    "control_seed", None, "With --branch_of: seed of the control's randomness (default 0)."
)
flags.DEFINE_string("output_dir", "runs", "Where experiment directories go.")
flags.DEFINE_string("experiment_name", None, "Experiment directory name (default: from hparams).")
flags.DEFINE_string("strategy", "default", "default, mirrored, multi_worker or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
flags.DEFINE_integer(
    "virtual_cpus", None, "Split the host CPU into N logical devices (multi-replica on CPU)."
)
flags.DEFINE_boolean("jit_compile", True, "Compile the training step with XLA.")
flags.DEFINE_string(
    "mixed_precision",
    None,
    "Compute in 16 bits with float32 weights: float16 (GPUs, with dynamic loss scaling) or "
    "bfloat16 (TPUs, CPUs). Default: bfloat16 under --strategy=tpu, float32 elsewhere.",
)
flags.DEFINE_boolean(
    "test_every_evaluation",
    False,
    "Measure the test split at every evaluation (default: only where a result needs it, at "
    "a new minimum of the validation loss and at the end of the round).",
)
flags.DEFINE_integer("steps_per_execution", 100, "Training iterations per compiled call.")
flags.DEFINE_boolean("progress", True, "Show a progress bar within each round.")
flags.DEFINE_boolean(
    "tensorboard",
    True,
    "Write TensorBoard logs (<experiment>/tensorboard/) and accuracy_vs_sparsity.png.",
)


# What a branch may not change: it reruns its parent's hyperparameters.
PARENT_FLAGS = (
    *("model", "recipe", "dataset", "iterations", "batch_size", "learning_rate", "optimizer"),
    "momentum",
    *("rewind", "prune_rates", "block_size", "eval_every", "seed", "pruning", "one_shot"),
    *("weight_decay", "warmup", "lr_drops", "lr_drop_factor", "augment", "output_dir"),
)


def branch_hparams_from_flags():
    """A control's hyperparameters: its parent's, with ``branch`` set (and maybe ``--rounds``).

    Points ``--output_dir`` and ``--experiment_name`` at the branch's directory beside the parent.
    """
    from lth_tf.branches import branch_of
    from lth_tf.errors import LthError

    if FLAGS.control is None:
        raise LthError("--branch_of needs --control (random_reinit, random_prune or lr_rewind)")
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
    """The experiment's hyperparameters: the recipe's defaults, overridden by set flags."""
    from lth_tf.config import DatasetHparams, PruneRates
    from lth_tf.data.sources import DATASETS
    from lth_tf.errors import LthError
    from lth_tf.models import get_model, paper_defaults

    if FLAGS.branch_of is not None:
        return branch_hparams_from_flags()
    if FLAGS.control is not None or FLAGS.control_seed is not None:
        raise LthError("--control and --control_seed need --branch_of=EXPERIMENT_DIR")
    spec = get_model(FLAGS.model)
    dataset = FLAGS.dataset or spec.dataset
    if dataset not in DATASETS:
        raise LthError(
            f"--dataset: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        )
    hparams = paper_defaults(FLAGS.model, dataset, FLAGS.recipe)
    training = {
        key: getattr(FLAGS, key)
        for key in (
            "optimizer",
            "learning_rate",
            "momentum",
            "batch_size",
            "iterations",
            "eval_every",
            "seed",
            "weight_decay",
            "warmup",
            "lr_drops",
            "lr_drop_factor",
            "augment",
        )
        if getattr(FLAGS, key) is not None
    }
    pruning = {
        key: getattr(FLAGS, key)
        for key in ("rounds", "rewind", "block_size", "one_shot")
        if getattr(FLAGS, key) is not None
    }
    if FLAGS.pruning is not None:
        pruning["scope"] = FLAGS.pruning
    if FLAGS.prune_rates is not None:
        pruning["rates"] = PruneRates.parse(FLAGS.prune_rates, base=hparams.pruning.rates)
    return dataclasses.replace(
        hparams,
        dataset=DatasetHparams(dataset),
        training=dataclasses.replace(hparams.training, **training),
        pruning=dataclasses.replace(hparams.pruning, **pruning),
    )


@user_errors_as_one_line
def main(argv: list[str]) -> None:
    from lth_tf.strategies import (
        check_strategy_name,
        make_strategy,
        precision_for,
        split_cpu,
        worker_output_dir,
    )

    setup_logging()
    hparams = hparams_from_flags()  # checks every flag before TensorFlow starts
    check_strategy_name(FLAGS.strategy)
    precision = precision_for(FLAGS.strategy, FLAGS.mixed_precision)
    start_tensorflow_quietly()
    if FLAGS.virtual_cpus is not None:
        split_cpu(FLAGS.virtual_cpus)
    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)

    from lth_tf.imp import RunOptions, run_imp

    observer = None
    # Under multi_worker every worker runs this; only the chief writes the logs.
    if FLAGS.tensorboard and strategy.extended.should_save_summary:
        from lth_tf.monitoring.tensorboard import TensorBoardMonitor

        observer = TensorBoardMonitor()

    experiment = run_imp(
        hparams,
        # Under multi_worker every worker runs every round; only the chief writes the
        # experiment, the others keep their own copy (they resume from it).
        worker_output_dir(strategy, FLAGS.output_dir),
        FLAGS.experiment_name,
        RunOptions(
            data_dir=FLAGS.data_dir,
            # TPUs compile every step anyway.
            jit_compile=FLAGS.jit_compile and FLAGS.strategy != "tpu",
            steps_per_execution=FLAGS.steps_per_execution,
            show_progress=FLAGS.progress,
            mixed_precision=precision,
            test_every_evaluation=FLAGS.test_every_evaluation,
        ),
        strategy=strategy,
        observer=observer,
    )
    print(f"Results: {experiment.results}")


def run() -> None:
    """The console script's entry point (``lth-imp``)."""
    app.run(main)


if __name__ == "__main__":
    run()
