"""Find lottery tickets: ``python -m pipelines.imp --model=lenet300_100 --dataset=fashion_mnist``.

Every flag left unset takes the model's paper default. Rerunning the same command resumes.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from pipelines.common import setup_logging, start_tensorflow_quietly, user_errors_as_one_line

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet300_100", "Model: lenet300_100, conv2, conv4 or conv6.")
flags.DEFINE_string(
    "dataset",
    None,
    "mnist, fashion_mnist or cifar10 (default: mnist for lenet300_100, cifar10 for the conv nets).",
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
    "Evaluate validation/test every this many iterations (e.g. 500it), or "
    "'auto' (about 20 evaluations per round, 100 to 500 iterations apart).",
)
flags.DEFINE_integer("seed", None, "Random seed: initialisation and data order.")
flags.DEFINE_string("output_dir", "runs", "Where experiment directories go.")
flags.DEFINE_string("experiment_name", None, "Experiment directory name (default: from hparams).")
flags.DEFINE_string("strategy", "default", "default, mirrored, multi_worker or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
flags.DEFINE_integer(
    "virtual_cpus", None, "Split the host CPU into N logical devices (multi-replica on CPU)."
)
flags.DEFINE_boolean("jit_compile", True, "Compile the training step with XLA.")
flags.DEFINE_integer("steps_per_execution", 100, "Training iterations per compiled call.")
flags.DEFINE_boolean("progress", True, "Show a progress bar within each round.")
flags.DEFINE_boolean(
    "tensorboard",
    True,
    "Write TensorBoard logs (<experiment>/tensorboard/) and accuracy_vs_sparsity.png.",
)


def hparams_from_flags():
    """The experiment's hyperparameters: the model's paper defaults, overridden by set flags."""
    from lth_tf.config import DatasetHparams, PruneRates
    from lth_tf.data.sources import DATASETS
    from lth_tf.errors import LthError
    from lth_tf.models import get_model, paper_defaults

    spec = get_model(FLAGS.model)
    dataset = FLAGS.dataset or spec.dataset
    if dataset not in DATASETS:
        raise LthError(
            f"--dataset: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        )
    hparams = paper_defaults(FLAGS.model, dataset)
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
        )
        if getattr(FLAGS, key) is not None
    }
    pruning = {
        key: getattr(FLAGS, key)
        for key in ("rounds", "rewind", "block_size")
        if getattr(FLAGS, key) is not None
    }
    if "rewind" in pruning:
        from lth_tf.steps import Step

        pruning["rewind"] = str(Step.parse(pruning["rewind"], "--rewind"))
    if "iterations" in training:
        from lth_tf.steps import Step

        training["iterations"] = str(Step.parse(training["iterations"], "--iterations"))
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
    from lth_tf.errors import LthError
    from lth_tf.strategies import check_strategy_name, make_strategy, split_cpu

    if len(argv) > 1:
        raise LthError(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
    setup_logging()
    hparams = hparams_from_flags()  # checks every flag before TensorFlow starts
    check_strategy_name(FLAGS.strategy)
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

    # XLA here compiles one replica's step; under multi-replica strategies the step holds
    # cross-replica merges (TF-MOT's re-masking) that XLA cannot compile.
    jit = FLAGS.jit_compile and strategy.num_replicas_in_sync == 1
    experiment = run_imp(
        hparams,
        FLAGS.output_dir,
        FLAGS.experiment_name,
        RunOptions(
            data_dir=FLAGS.data_dir,
            jit_compile=jit,
            steps_per_execution=FLAGS.steps_per_execution,
            show_progress=FLAGS.progress,
        ),
        strategy=strategy,
        observer=observer,
    )
    print(f"Results: {experiment.results}")


if __name__ == "__main__":
    app.run(main)
