"""Iterative magnitude pruning with rewinding: the round loop, resumable at any point.

Round 0 trains the dense network. Round r prunes, per layer, the layer kind's rate of the
surviving weights (smallest magnitude first) from round r-1's trained weights, rewinds the
survivors to the rewind point (iteration 0 for LTH, iteration k for Stabilizing LTH), and trains
again with a fresh optimizer.

>>> run_imp(hparams, Path("runs"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf
import tf_keras

from lth_tf import io
from lth_tf.config import ExperimentHparams, Resolved
from lth_tf.data.sources import ImageDataset, load_dataset
from lth_tf.experiment import (
    RESULT_COLUMNS,
    ExperimentDir,
    default_experiment_name,
    open_experiment,
)
from lth_tf.models import get_model, paper_defaults
from lth_tf.pruning.masks import layerwise_masks, percent_remaining
from lth_tf.pruning.wrapping import PrunedModel, snapshot, wrap_model
from lth_tf.training import RoundObserver, RoundProgress, Trainer, train_round

log = logging.getLogger("lth_tf")
_PROGRESS_KEY = "__progress__"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run executes; none of it changes which experiment it is."""

    data_dir: str | None = None
    jit_compile: bool = False
    steps_per_execution: int = 100
    show_progress: bool = True


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
    data = data or load_dataset(hparams.dataset.name, options.data_dir)
    resolved = hparams.resolve(len(data.train_labels))
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
    with strategy.scope():
        model = get_model(hparams.model.name).build(data.input_shape, data.num_classes)
        pruned = wrap_model(model, hparams.pruning.rates)
    trainer = Trainer(
        pruned,
        data,
        hparams.training,
        strategy,
        jit_compile=options.jit_compile,
        steps_per_execution=options.steps_per_execution,
    )
    if resolved.rewind_iteration == 0 and not experiment.rewind_point.exists():
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
            hparams.pruning.block_shape,
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


def _round_masks(
    experiment: ExperimentDir,
    pruned: PrunedModel,
    pruning_round: int,
    block_shape: tuple[int, int],
):
    """Round 0: all ones. Round r: prune round r-1's trained weights to round r's sparsities."""
    path = experiment.masks(pruning_round)
    if not path.exists():
        if pruning_round == 0:
            masks = {name: np.ones(v.shape, np.uint8) for name, v in pruned.masks.items()}
        else:
            trained = io.read_npz(experiment.weights(pruning_round - 1))
            previous = io.read_npz(experiment.masks(pruning_round - 1))
            weights = {name: trained[name] for name in pruned.weights}
            # Only Dense kernels: TFLite has fast sparse kernels for FullyConnected blocks alone.
            blocks = {
                n: block_shape for n, kind in pruned.kinds.items() if kind in ("fc", "output")
            }
            masks = layerwise_masks(weights, previous, pruned.target_sparsities(), blocks)
        # 0/1 as uint8, compressed: a mask file is a small fraction of the weights' size.
        io.write_npz(path, {k: v.astype(np.uint8) for k, v in masks.items()}, compressed=True)
    return {name: mask.astype(np.float32) for name, mask in io.read_npz(path).items()}


def _run_round(
    experiment: ExperimentDir,
    pruned: PrunedModel,
    trainer: Trainer,
    resolved: Resolved,
    pruning_round: int,
    options: RunOptions,
    block_shape: tuple[int, int],
    on_round_start: Callable[[int, PrunedModel], None] | None,
    observer: ImpObserver | None = None,
) -> dict:
    pruned.set_round(pruning_round)
    masks = _round_masks(experiment, pruned, pruning_round, block_shape)
    checkpoint_path = experiment.checkpoint(pruning_round)
    if checkpoint_path.exists():
        state = io.read_npz(checkpoint_path)
        progress = RoundProgress.from_dict(json.loads(str(state.pop(_PROGRESS_KEY))))
        trainer.load_state(state)
        log.info("Round %d resumes at iteration %d.", pruning_round, progress.iteration)
    else:
        pruned.set_masks(masks)
        if pruning_round > 0:
            pruned.rewind_to(io.read_npz(experiment.rewind_point))
        pruned.apply_masks()
        trainer.reset_optimizer()
        progress = RoundProgress()
        if on_round_start is not None:
            on_round_start(pruning_round, pruned)

    def save_checkpoint(current: RoundProgress) -> None:
        state = trainer.state()
        state[_PROGRESS_KEY] = np.array(json.dumps(current.to_dict()))
        io.write_npz(checkpoint_path, state)

    on_iteration = {}
    if pruning_round == 0 and resolved.rewind_iteration > 0:
        on_iteration[resolved.rewind_iteration] = lambda: io.write_npz(
            experiment.rewind_point, snapshot(pruned.rewindable)
        )
    bar = None
    if options.show_progress:
        print(f"Round {pruning_round}")
        bar = tf_keras.utils.Progbar(
            resolved.iterations,
            stateful_metrics=["test_accuracy"],
            unit_name="iteration",
            interval=0.5,
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
    )

    pruned.apply_masks()
    io.write_npz(experiment.weights(pruning_round), snapshot(pruned.rewindable))
    io.write_csv(
        experiment.evaluations(pruning_round),
        [dataclasses.asdict(e) for e in progress.evaluations],
        ["iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy"],
    )
    final, stop = progress.evaluations[-1], progress.early_stop
    alive = sum(int(m.sum()) for m in masks.values())
    row = {
        "round": pruning_round,
        "percent_remaining": percent_remaining(masks),
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
