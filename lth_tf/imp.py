"""Iterative magnitude pruning with rewinding: the round loop, resumable at any point.

Round 0 trains the dense network. Round r prunes, per layer, the layer kind's rate of the
surviving weights (smallest magnitude first) from round r-1's trained weights, rewinds the
survivors to the rewind point (iteration 0 for LTH, iteration k for Stabilizing LTH), and trains
again with a fresh optimizer. ``--pruning=global`` ranks the weights of all pruned layers
together instead; ``one_shot`` prunes round 0's weights straight to round r's sparsity; a branch
(:mod:`lth_tf.branches`) runs a control over a parent experiment.

>>> run_imp(hparams, Path("runs"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tensorflow as tf
import tf_keras

from lth_tf import branches, io
from lth_tf.config import ExperimentHparams, PruningHparams, Resolved
from lth_tf.data.sources import ImageDataset, load_dataset
from lth_tf.experiment import (
    RESULT_COLUMNS,
    ExperimentDir,
    default_experiment_name,
    open_experiment,
)
from lth_tf.models import get_model, paper_defaults
from lth_tf.models.layers import add_weight_decay
from lth_tf.pruning.masks import global_masks, layerwise_masks, percent_remaining
from lth_tf.pruning.wrapping import PrunedModel, snapshot, variable_key, wrap_model
from lth_tf.strategies import device_description
from lth_tf.training import (
    RoundObserver,
    RoundProgress,
    Trainer,
    mixed_precision_policy,
    train_round,
)

log = logging.getLogger("lth_tf")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run executes; none of it changes which experiment it is."""

    data_dir: str | None = None
    jit_compile: bool = False
    steps_per_execution: int = 100
    show_progress: bool = True
    # "float16" (with loss scaling, for GPUs) or "bfloat16" (TPUs): compute in 16 bits, keep
    # float32 weights. Changes the numbers a little, like XLA does, not the experiment.
    mixed_precision: str | None = None
    # Measure the test split at every evaluation, not only where a result needs it.
    test_every_evaluation: bool = False


class ImpObserver(Protocol):
    """Watches a whole run, e.g. :class:`lth_tf.monitoring.tensorboard.TensorBoardMonitor`.

    ``start`` comes once the experiment directory is open (also when every round is done
    already), ``watch_round`` before a round trains (fresh or resumed), ``end_round`` after its
    results row is saved, ``close`` when the run ends without an error.
    """

    def start(self, experiment: ExperimentDir, hparams: ExperimentHparams) -> None: ...

    def watch_round(self, pruning_round: int) -> RoundObserver | None: ...

    def end_round(self, row: dict) -> None: ...

    def close(self) -> None: ...


def run_imp(
    hparams: ExperimentHparams,
    output_dir: str | Path,
    experiment_name: str | None = None,
    options: RunOptions = RunOptions(),
    strategy: tf.distribute.Strategy | None = None,
    data: ImageDataset | None = None,
    on_round_start: Callable[[int, PrunedModel], None] | None = None,
    on_round_end: Callable[[dict], None] | None = None,
    observer: ImpObserver | None = None,
) -> ExperimentDir:
    """Runs (or resumes) every round of an IMP experiment; returns its directory.

    ``on_round_start(round, pruned)`` sees the model masked and rewound, before its first step
    (not called when a round resumes from a checkpoint); ``on_round_end(row)`` gets the round's
    results row; ``observer`` watches the whole run (TensorBoard logs).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if hparams.is_branch and experiment_name is None:
        raise ValueError("a branch needs its experiment name (lth_tf.branches.branch_of gives it)")
    data = data or load_dataset(hparams.dataset.name, options.data_dir)
    resolved = hparams.resolve(len(data.train_labels))
    _warn_about_schedule(resolved)
    name = experiment_name or default_experiment_name(
        hparams, paper_defaults(hparams.model.name, hparams.dataset.name)
    )
    experiment = open_experiment(
        Path(output_dir) / name,
        hparams,
        {
            "resolved": dataclasses.asdict(resolved),
            "data": {
                "source": data.source,
                "input_shape": list(data.input_shape),
                "train_examples": len(data.train_labels),
                "val_examples": len(data.val_labels),
                "test_examples": len(data.test_labels),
            },
        },
    )
    if hparams.is_branch:
        branches.start_branch(experiment, hparams)
        if hparams.branch.control == "random_reinit" and not experiment.rewind_point.exists():
            io.write_npz(experiment.rewind_point, _fresh_initial_values(hparams, data))
    if observer is not None:
        observer.start(experiment, hparams)
    done = experiment.completed_rounds()
    if all(r in done for r in range(hparams.pruning.rounds + 1)):
        log.info(
            "All %d rounds of %s are done already.", hparams.pruning.rounds + 1, experiment.root
        )
        if observer is not None:
            observer.close()
        return experiment

    tf_keras.utils.set_random_seed(hparams.training.seed)
    tf.config.experimental.enable_op_determinism()
    with mixed_precision_policy(options.mixed_precision), strategy.scope():
        model = get_model(hparams.model.name).build(data.input_shape, data.num_classes)
        add_weight_decay(model, hparams.training.weight_decay)
        pruned = wrap_model(model, hparams.pruning.rates)
    trainer = Trainer(
        pruned,
        data,
        # The optimizer knows no dataset size: hand it the schedule in iterations.
        hparams.training.schedule_in_iterations(resolved.iterations_per_epoch),
        strategy,
        jit_compile=options.jit_compile,
        steps_per_execution=options.steps_per_execution,
    )
    first_round = min(set(range(hparams.pruning.rounds + 1)) - done)
    experiment.record_session(
        _session(trainer, options, first_round, experiment.checkpoint(first_round).exists())
    )
    # A branch's rewind point (if it has one) comes from its parent or its control.
    if not hparams.is_branch and resolved.rewind_iteration == 0:
        if not experiment.rewind_point.exists():
            io.write_npz(experiment.rewind_point, snapshot(pruned.rewindable))

    for pruning_round in range(hparams.pruning.rounds + 1):
        if pruning_round in done:
            continue
        row = _run_round(
            experiment,
            pruned,
            trainer,
            resolved,
            pruning_round,
            options,
            hparams,
            on_round_start,
            observer,
        )
        log.info(
            "round %2d | %6.2f%% of weights remain | test accuracy %.2f%% | early stop at "
            "iteration %d (test accuracy %.2f%%)",
            pruning_round,
            row["percent_remaining"],
            100 * row["test_accuracy"],
            row["early_stop_iteration"],
            100 * row["early_stop_test_accuracy"],
        )
        if on_round_end is not None:
            on_round_end(row)
        if observer is not None:
            observer.end_round(row)
    if observer is not None:
        observer.close()
    return experiment


def _session(
    trainer: Trainer, options: RunOptions, first_round: int, mid_round: bool
) -> dict[str, Any]:
    """What :meth:`ExperimentDir.record_session` keeps about this run."""
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "first_round": first_round,
        "resumes_mid_round": mid_round,
        "strategy": type(trainer.strategy).__name__,
        "replicas": trainer.strategy.num_replicas_in_sync,
        "hardware": device_description(),
        # What XLA compiled (--jit_compile asks; models and machines it is slower on decline).
        "xla_training": trainer.xla_training,
        "xla_evaluation": trainer.xla_evaluation,
        "mixed_precision": options.mixed_precision or "float32",
        "steps_per_execution": options.steps_per_execution,
        "tensorflow": tf.__version__,
    }


def _round_masks(
    experiment: ExperimentDir,
    pruned: PrunedModel,
    pruning_round: int,
    hparams: ExperimentHparams,
) -> dict[str, np.ndarray]:
    """Round 0: all ones. Round r: prune round r-1's trained weights to round r's sparsities
    (``one_shot``: round 0's weights, from all ones), or the branch's control decides."""
    path = experiment.masks(pruning_round)
    if not path.exists():
        if pruning_round == 0:
            masks = {name: np.ones(v.shape, np.uint8) for name, v in pruned.masks.items()}
        elif hparams.branch.control in branches.USES_PARENT_MASKS:
            previous = io.read_npz(experiment.masks(pruning_round - 1))
            masks = branches.control_masks(experiment, hparams, pruning_round, previous)
        else:
            source = 0 if hparams.pruning.one_shot else pruning_round - 1
            trained = io.read_npz(experiment.weights(source))
            previous = io.read_npz(experiment.masks(source))
            weights = {name: trained[name] for name in pruned.weights}
            masks = magnitude_masks(weights, previous, pruned, hparams.pruning)
        # 0/1 as uint8, compressed: a mask file is a small fraction of the weights' size.
        io.write_npz(path, {k: v.astype(np.uint8) for k, v in masks.items()}, compressed=True)
    return {name: mask.astype(np.float32) for name, mask in io.read_npz(path).items()}


def magnitude_masks(
    weights: dict[str, np.ndarray],
    previous: dict[str, np.ndarray],
    pruned: PrunedModel,
    pruning: PruningHparams,
) -> dict[str, np.ndarray]:
    """The next masks of IMP, ``layerwise`` or ``global``, at the schedules' current sparsities.

    Global pruning pools every layer whose kind has a non-zero rate under one threshold; the
    others keep their masks (all ones: they are never pruned).
    """
    sparsities = pruned.target_sparsities()
    if pruning.strategy == "global":
        pooled = [name for name, kind in pruned.kinds.items() if pruning.is_pruned(kind)]
        masks = {name: previous[name] for name in weights}
        if pooled:
            # Every pooled layer's schedule carries the same, network-wide target.
            masks |= global_masks(
                {name: weights[name] for name in pooled},
                {name: previous[name] for name in pooled},
                sparsities[pooled[0]],
            )
        return masks
    # Only Dense kernels: TFLite has fast sparse kernels for FullyConnected blocks alone.
    blocks = {
        n: pruning.block_shape for n, kind in pruned.kinds.items() if kind in ("fc", "output")
    }
    return layerwise_masks(weights, previous, sparsities, blocks)


def counted_masks(
    masks: dict[str, np.ndarray], pruned: PrunedModel, pruning: PruningHparams
) -> dict[str, np.ndarray]:
    """The masks ``percent_remaining`` counts: of the layers IMP prunes (all, if it prunes none).

    For lenet and the conv nets that is every conv and dense layer; resnet20 and the VGGs leave
    their output layer dense, and it is not counted.
    """
    counted = {n: m for n, m in masks.items() if pruning.is_pruned(pruned.kinds[n])}
    return counted or masks


def _start_values(
    experiment: ExperimentDir, hparams: ExperimentHparams, pruning_round: int
) -> dict[str, np.ndarray]:
    """What round r > 0 rewinds to: the rewind point, or (lr_rewind) round r-1's trained weights."""
    if hparams.branch.control == "lr_rewind":
        return io.read_npz(experiment.weights(pruning_round - 1))
    return io.read_npz(experiment.rewind_point)


def _fresh_initial_values(hparams: ExperimentHparams, data: ImageDataset) -> dict[str, np.ndarray]:
    """random_reinit's initial values: the same model built under another seed, untrained."""
    tf_keras.utils.set_random_seed(branches.reinit_seed(hparams))
    model = get_model(hparams.model.name).build(data.input_shape, data.num_classes)
    return snapshot({variable_key(v): v for v in model.variables})


def _warn_about_schedule(resolved: Resolved) -> None:
    late = [d for d in resolved.lr_drop_iterations if d >= resolved.iterations]
    if resolved.warmup_iterations > resolved.iterations:
        log.warning(
            "Warmup (%d iterations) is longer than a round (%d): the learning rate never "
            "reaches its full value; pass e.g. --warmup=%dit.",
            resolved.warmup_iterations,
            resolved.iterations,
            resolved.iterations // 10,
        )
    if late:
        log.warning(
            "Learning-rate drops at iterations %s come after the end of a round (%d): they "
            "never happen; pass --lr_drops for this length.",
            ",".join(map(str, late)),
            resolved.iterations,
        )


def _run_round(
    experiment: ExperimentDir,
    pruned: PrunedModel,
    trainer: Trainer,
    resolved: Resolved,
    pruning_round: int,
    options: RunOptions,
    hparams: ExperimentHparams,
    on_round_start: Callable[[int, PrunedModel], None] | None,
    observer: ImpObserver | None = None,
) -> dict:
    pruned.set_round(pruning_round)
    masks = _round_masks(experiment, pruned, pruning_round, hparams)
    checkpoint_path = experiment.checkpoint(pruning_round)
    if checkpoint_path.exists():
        state = io.read_npz(checkpoint_path)
        progress = RoundProgress.pop_from(state)
        trainer.load_state(state)
        log.info("Round %d resumes at iteration %d.", pruning_round, progress.iteration)
    else:
        pruned.set_masks(masks)
        if pruning_round > 0:
            pruned.rewind_to(_start_values(experiment, hparams, pruning_round))
        pruned.apply_masks()
        trainer.reset_optimizer()
        progress = RoundProgress()
        if on_round_start is not None:
            on_round_start(pruning_round, pruned)

    bar = None
    if options.show_progress:
        print(f"Round {pruning_round}")
        bar = tf_keras.utils.Progbar(
            resolved.iterations,
            stateful_metrics=["val_accuracy", "test_accuracy"],
            unit_name="iteration",
            interval=0.5,
        )
    # Checkpoints and the rewind point are written while training goes on; the round's own
    # files below are written once they are all on disk.
    with io.BackgroundWriter() as writer:

        def save_checkpoint(current: RoundProgress) -> None:
            writer.write_npz(checkpoint_path, {**trainer.state(), **current.to_arrays()})

        on_iteration = {}
        if pruning_round == 0 and resolved.rewind_iteration > 0:
            on_iteration[resolved.rewind_iteration] = lambda: writer.write_npz(
                experiment.rewind_point, snapshot(pruned.rewindable)
            )
        train_round(
            trainer,
            resolved.iterations,
            resolved.eval_every,
            progress,
            on_checkpoint=save_checkpoint,
            on_iteration=on_iteration,
            progress_bar=bar,
            observer=observer.watch_round(pruning_round) if observer is not None else None,
            test_every_evaluation=options.test_every_evaluation,
        )

    pruned.apply_masks()
    io.write_npz(experiment.weights(pruning_round), snapshot(pruned.rewindable))
    io.write_csv(
        experiment.evaluations(pruning_round),
        [dataclasses.asdict(e) for e in progress.evaluations],
        ["iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy"],
    )
    final, stop = progress.evaluations[-1], progress.early_stop
    counted = counted_masks(masks, pruned, hparams.pruning)
    alive = sum(int(m.sum()) for m in counted.values())
    row = {
        "round": pruning_round,
        "percent_remaining": percent_remaining(counted),
        "weights_remaining": alive,
        "test_accuracy": final.test_accuracy,
        "test_loss": final.test_loss,
        "early_stop_iteration": stop.iteration,
        "early_stop_test_accuracy": stop.test_accuracy,
        "val_loss_min": stop.val_loss,
        "iterations": resolved.iterations,
        "train_seconds": round(progress.train_seconds, 3),
    }
    rows = [r for r in experiment.read_results() if int(r["round"]) != pruning_round]
    io.write_csv(
        experiment.results, sorted(rows + [row], key=lambda r: int(r["round"])), RESULT_COLUMNS
    )
    checkpoint_path.unlink(missing_ok=True)
    return row
