"""The one training loop, and the callbacks that do everything besides training.

:func:`train` runs compiled chunks of iterations from ``progress.iteration`` to ``stop``. Each
callback may ask for a chunk to end at an iteration of its choosing (``next_stop``) and sees
every chunk once it ran (``on_chunk``): evaluation every n iterations, snapshots at given
iterations (the rewind point), chunk metrics, checkpoints, the progress bar
(:mod:`lth_tf.monitoring.progress`). IMP rounds (:mod:`lth_tf.lottery.imp`) and stability copies
(:mod:`lth_tf.stability.analysis`) both train with it, and both checkpoint one
:class:`TrainingProgress` beside the trainer's state.

>>> progress = train(trainer, TrainingProgress(), 1000, [EvaluateEvery(trainer, 100)])
... # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lth_tf import io
from lth_tf.callbacks import STATE_PREFIX as CALLBACK_STATE_PREFIX
from lth_tf.callbacks import (
    RunCallback,
    RunContext,
    call_each,
    callback_states,
    load_callback_states,
)
from lth_tf.errors import LthError
from lth_tf.legacy import old_checkpoint_iteration
from lth_tf.pruning.wrapping import Snapshot, check_restorable, restore, snapshot
from lth_tf.training.trainer import Evaluation, Trainer

# Checkpoint entries that are the progress rather than variables.
_PROGRESS_KEY = "__progress__"
_EARLY_STOP_PREFIX = "__early_stop__/"
# A chunk's mean training loss this many times the first chunk's, still finite, is warned about
# once: the run is likely on its way to diverging, and the user may stop it early.
EXPLODING_LOSS_FACTOR = 10.0

log = logging.getLogger("lth_tf")


class Diverged(LthError):
    """Training produced a non-finite loss; raised by :func:`train` and :class:`EvaluateEvery`.

    ``iteration`` is the end of the chunk whose training loss (or the evaluation whose
    validation loss) was first non-finite: chunks are compiled calls, so the exact step inside
    one is unknown. Raised before any callback sees that chunk, so no checkpoint holds it.

    >>> str(Diverged(300, "training loss", float("nan")))[:54]
    'training diverged at iteration 300 (training loss nan)'
    """

    def __init__(self, iteration: int, what: str, value: float):
        self.iteration, self.what, self.value = iteration, what, value
        # IMP rounds say which round and the learning rate (lth_tf.lottery.imp); elsewhere
        # (stability copies) this line is the message.
        super().__init__(
            f"training diverged at iteration {iteration} ({what} {value}): the experiment's "
            "--learning_rate is too high for it; lower it or add --warmup, in a new experiment"
        )


@dataclasses.dataclass
class EarlyStop:
    """The paper's early-stopping measure: the iteration of minimum validation loss.

    >>> stop = EarlyStop()
    >>> stop.update(Evaluation(100, 0.5, 0.9, 0.6, 0.88))
    >>> stop.update(Evaluation(200, 0.7, 0.9, 0.7, 0.9))
    >>> stop.iteration, stop.test_accuracy
    (100, 0.88)
    """

    val_loss: float = math.inf
    # None until an evaluation is seen: never an iteration that was not evaluated.
    iteration: int | None = None
    test_accuracy: float = math.nan

    def update(self, evaluation: Evaluation) -> None:
        # NaN compares false with everything: ranked last, so the first evaluation is taken
        # whatever its loss and a later finite one always replaces a NaN.
        loss = math.inf if math.isnan(evaluation.val_loss) else evaluation.val_loss
        if self.iteration is None or loss < self.val_loss or math.isnan(self.val_loss):
            self.val_loss = evaluation.val_loss
            self.iteration = evaluation.iteration
            self.test_accuracy = evaluation.test_accuracy


@dataclasses.dataclass
class TrainingProgress:
    """Everything besides variables that a checkpoint must hold to resume training exactly.

    ``iteration`` counts from the start of round 0's training (a rewound round starts at its
    rewind point). ``early_stop_weights`` are the model's weights at the lowest validation loss
    so far, kept until the round's end measures their test accuracy (see :class:`EvaluateEvery`).
    """

    iteration: int = 0
    train_seconds: float = 0.0
    evaluations: list[Evaluation] = dataclasses.field(default_factory=list)
    early_stop_weights: Snapshot = dataclasses.field(default_factory=dict)

    @property
    def early_stop(self) -> EarlyStop:
        """The early stop so far; its ``iteration`` stays None without a validation split
        (every validation loss NaN: :class:`EvaluateEvery` refuses a NaN one where there is
        a split)."""
        stop = EarlyStop()
        for evaluation in self.evaluations:
            if not math.isnan(evaluation.val_loss):
                stop.update(evaluation)
        return stop

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The progress as named arrays, to save beside the trainer's state in a checkpoint."""
        scalars = {
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "evaluations": [dataclasses.asdict(e) for e in self.evaluations],
        }
        arrays = {_PROGRESS_KEY: np.array(json.dumps(scalars))}
        arrays.update({_EARLY_STOP_PREFIX + k: v for k, v in self.early_stop_weights.items()})
        return arrays

    @classmethod
    def pop_from(cls, arrays: dict[str, np.ndarray]) -> TrainingProgress:
        """Takes the progress's entries out of a checkpoint's arrays (the rest is state).

        A stability checkpoint an older lth_tf wrote holds the iteration alone
        (:func:`lth_tf.legacy.old_checkpoint_iteration`).
        """
        old_iteration = old_checkpoint_iteration(arrays)
        if old_iteration is not None:
            return cls(iteration=old_iteration)
        scalars = json.loads(str(arrays.pop(_PROGRESS_KEY)))
        weights = {
            key[len(_EARLY_STOP_PREFIX) :]: arrays.pop(key)
            for key in list(arrays)
            if key.startswith(_EARLY_STOP_PREFIX)
        }
        evaluations = [_checked_evaluation(item) for item in scalars["evaluations"]]
        progress = cls(
            _whole(scalars["iteration"], "its iteration"),
            _number(scalars["train_seconds"], "its train_seconds", low=0.0, finite=True),
            evaluations,
            weights,
        )
        iterations = [e.iteration for e in evaluations]
        if iterations != sorted(set(iterations)) or any(i > progress.iteration for i in iterations):
            raise ValueError(
                f"its evaluations at {iterations} are not in order up to its iteration "
                f"{progress.iteration}"
            )
        early = progress.early_stop
        unmeasured = early.iteration is not None and math.isnan(early.test_accuracy)
        if unmeasured and not weights:  # the round's end measures it from its weights
            raise ValueError(f"the weights of its early stop at {early.iteration} are missing")
        return progress

    def check_within(self, start: int, stop: int) -> None:
        """A ValueError unless the progress lies within training from ``start`` to ``stop``."""
        first = self.evaluations[0].iteration if self.evaluations else self.iteration
        if not start <= first <= self.iteration <= stop:
            raise ValueError(
                f"it is at iteration {self.iteration}, outside this training's {start} to {stop}"
            )


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is {value!r}, not a count")
    return value


def _number(value: object, what: str, low: float = -math.inf, finite: bool = False) -> float:
    """``value`` as a float of at least ``low``; NaN passes (a metric not measured) unless
    ``finite``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {value!r}, not a number")
    number = float(value)
    if number < low or (finite and not math.isfinite(number)):
        raise ValueError(f"{what} is {value!r}")
    return number


def _checked_evaluation(item: object) -> Evaluation:
    """A checkpoint's evaluation, as :class:`Evaluation`; a ValueError for one that cannot be."""
    if not isinstance(item, dict):
        raise ValueError(f"an evaluation is {item!r}")
    evaluation = Evaluation(**item)  # a TypeError for missing or unknown fields
    at = f"its evaluation at {evaluation.iteration!r}"
    _whole(evaluation.iteration, at)
    for name in ("val_loss", "test_loss"):
        _number(getattr(evaluation, name), f"{at}: {name}", low=0.0)
    for name in ("val_accuracy", "test_accuracy"):
        accuracy = _number(getattr(evaluation, name), f"{at}: {name}", low=0.0)
        if accuracy > 1:
            raise ValueError(f"{at}: {name} is {accuracy!r}")
    if not isinstance(evaluation.scalars, dict):
        raise ValueError(f"{at}: its scalars are {evaluation.scalars!r}")
    for name, value in evaluation.scalars.items():
        _number(value, f"{at}: {name}")
    return evaluation


def resume(
    checkpoint: Path,
    trainer: Trainer,
    bounds: tuple[int, int],
    callbacks: Sequence[RunCallback] = (),
    todo: str = io.RECOMPUTE,
) -> TrainingProgress | None:
    """Restores the trainer's and the ``callbacks``' state from ``checkpoint`` (written from
    :func:`checkpoint_arrays`) of training from ``bounds[0]`` to ``bounds[1]``, and returns its
    progress (``None``, and nothing restored, when there is no checkpoint).

    The trainer's masks are already the round's: a checkpoint whose masks differ from them is
    damaged, as is one that lacks a variable, holds one in another shape or kind of number, a
    weight or optimizer variable that is not finite, or progress outside ``bounds``. Each is an
    LthError naming what is wrong, with ``todo``."""
    if not checkpoint.exists():
        return None
    state = io.read_npz(checkpoint)
    masks = trainer.pruned.get_masks()
    try:
        progress = TrainingProgress.pop_from(state)
        progress.check_within(*bounds)
        callback_state = {
            key: state.pop(key) for key in list(state) if key.startswith(CALLBACK_STATE_PREFIX)
        }
        trainer.load_state(state)
        for name, mask in trainer.pruned.get_masks().items():
            if not np.array_equal(mask, masks[name]):
                raise ValueError(f"its {name} mask is not the round's")
        if progress.early_stop_weights:  # restored at the round's end: checked now, not then
            check_restorable(trainer.pruned.rewindable, progress.early_stop_weights)
            odd = io.not_finite(progress.early_stop_weights)
            if odd is not None:
                raise ValueError(f"{_EARLY_STOP_PREFIX}{odd} is not finite everywhere")
    except (KeyError, ValueError, TypeError) as error:  # missing, misshapen, not finite
        raise io.damaged(checkpoint, error.args[0] if error.args else error, todo) from None
    load_callback_states(callbacks, callback_state)
    return progress


def checkpoint_arrays(
    trainer: Trainer, progress: TrainingProgress, callbacks: Sequence[RunCallback] = ()
) -> dict[str, np.ndarray]:
    """What a checkpoint holds: the trainer's state, the progress and the callbacks' state
    (:func:`resume` reads it back)."""
    return {**trainer.state(), **progress.to_arrays(), **callback_states(callbacks)}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Iterations ``start`` to ``stop`` that ran as one compiled call; ``last`` ends training."""

    start: int
    stop: int
    loss: float  # mean training loss over the chunk's examples
    accuracy: float  # mean training accuracy
    last: bool


class Callback:
    """Does nothing; subclasses override what they need.

    ``next_stop(iteration)`` is the next iteration after ``iteration`` at which the callback
    wants a chunk to end (``None``: any); ``on_chunk`` runs after every chunk, in the order the
    callbacks were given.
    """

    def next_stop(self, iteration: int) -> int | None:
        return None

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        pass


def train(
    trainer: Trainer,
    progress: TrainingProgress,
    stop: int,
    callbacks: Sequence[Callback] = (),
    seed: int | None = None,
) -> TrainingProgress:
    """Trains from ``progress.iteration`` to ``stop`` on the data order of ``seed``.

    Batch i is the training stream's batch i whatever chunk it falls in, so where chunks end
    changes nothing about the result. ``seed`` defaults to the hyperparameters' seed. A chunk
    whose training loss is NaN or infinite raises :class:`Diverged` before any callback sees
    it (no checkpoint, no snapshot of it); one whose loss grew past
    :data:`EXPLODING_LOSS_FACTOR` times the first chunk's is warned about once.
    """
    stream = trainer.batches_from(progress.iteration, seed)
    batch = trainer.training.batch_size
    first: Chunk | None = None
    warned = False
    while progress.iteration < stop:
        start = progress.iteration
        wanted = [callback.next_stop(start) for callback in callbacks]
        end = min([stop, start + trainer.chunk_length.current, *(w for w in wanted if w)])
        began = time.perf_counter()
        loss_sum, correct = trainer.train_steps(stream, end - start)
        progress.train_seconds += time.perf_counter() - began
        progress.iteration = end
        examples = (end - start) * batch
        chunk = Chunk(start, end, loss_sum / examples, correct / examples, end == stop)
        if not math.isfinite(chunk.loss):
            raise Diverged(end, "training loss", chunk.loss)
        if first is None:
            first = chunk
        elif not warned and chunk.loss > EXPLODING_LOSS_FACTOR * first.loss > 0:
            warned = True
            log.warning(
                "The training loss grew from %.4g (iterations %d-%d) to %.4g (iterations "
                "%d-%d): training may be diverging; a lower learning rate or a warmup may help.",
                first.loss,
                first.start,
                first.stop,
                chunk.loss,
                start,
                end,
            )
        for callback in callbacks:
            callback.on_chunk(chunk, progress)
    return progress


class RunCallbackChunks(Callback):
    """Hands every chunk to the run's :class:`lth_tf.callbacks.RunCallback` instances (an IMP
    round's, a stability copy's)."""

    def __init__(self, context: RunContext, callbacks: Sequence[RunCallback]):
        self.context = context
        self.callbacks = callbacks

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        call_each(self.callbacks, "on_chunk", self.context, chunk)


class SnapshotAt(Callback):
    """Calls ``action()`` once the model has trained exactly each of ``iterations``."""

    def __init__(self, iterations: Sequence[int], action: Callable[[int], None]):
        self.iterations = sorted(set(iterations))
        self.action = action

    def next_stop(self, iteration: int) -> int | None:
        return next((i for i in self.iterations if i > iteration), None)

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        if chunk.stop in self.iterations:
            self.action(chunk.stop)


class EvaluateEvery(Callback):
    """Evaluates every ``every`` iterations and at the end of training (the early stop).

    A round reports test accuracy at two iterations only: its last, and its early stop (the
    minimum of the validation loss). So the validation split is measured at every evaluation,
    the test split once at the end for the final weights and once for the early-stop weights,
    which are kept (and checkpointed) until then. Elsewhere an evaluation's test metrics are
    NaN, unless ``test_every_evaluation``. Without a validation split (``--holdout=0``) there is
    no early stop: every evaluation measures the test split, and a non-finite test loss is
    the divergence that a validation loss would have shown.
    """

    def __init__(
        self,
        trainer: Trainer,
        every: int,
        recorded: Callable[[Evaluation], None] | None = None,
        test_every_evaluation: bool = False,
        scalars: Callable[[Evaluation], dict[str, float]] | None = None,
    ):
        self.trainer = trainer
        self.every = every
        # Told of every evaluation as recorded, before its checkpoint is saved (so a resume
        # never skips one); the early stop's comes again at the end with its test metrics.
        self.recorded = recorded
        self.test_every_evaluation = test_every_evaluation
        # More scalars for each evaluation (the run's callbacks'), recorded with it.
        self.scalars = scalars

    def due(self, chunk: Chunk) -> bool:
        return chunk.stop % self.every == 0 or chunk.last

    def next_stop(self, iteration: int) -> int | None:
        return (iteration // self.every + 1) * self.every

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        if self.due(chunk):
            self._evaluate(progress, chunk.last)

    def _evaluate(self, progress: TrainingProgress, last: bool) -> None:
        """Appends the evaluation at ``progress.iteration``.

        ``progress.early_stop_weights`` are held exactly while the early stop's test metrics
        are unmeasured, and they are that early stop's weights.
        """
        trainer, recorded = self.trainer, self.recorded
        trainer.pruned.apply_masks()
        validation = trainer.has_validation
        test = self.test_every_evaluation or last or not validation
        evaluation = trainer.evaluate(progress.iteration, test=test)
        watched, loss = (
            ("validation loss", evaluation.val_loss)
            if validation
            else ("test loss", evaluation.test_loss)
        )
        if not math.isfinite(loss):
            # Raised before it is recorded: no early stop, checkpoint or log holds it.
            raise Diverged(progress.iteration, watched, loss)
        for name, variable in trainer.pruned.rewindable.items():
            # A ReLU can turn NaN into 0, so a finite loss does not prove finite weights.
            weight = variable.numpy()
            if not np.isfinite(weight).all():
                raise Diverged(
                    progress.iteration, f"weight {name}", weight[~np.isfinite(weight)][0]
                )
        if self.scalars is not None:
            evaluation = dataclasses.replace(evaluation, scalars=self.scalars(evaluation))
        if evaluation.val_loss < progress.early_stop.val_loss:
            # A resume may switch test_every_evaluation on: then this minimum is measured already.
            measured = not math.isnan(evaluation.test_loss)
            progress.early_stop_weights = {} if measured else snapshot(trainer.pruned.rewindable)
        if last and progress.early_stop_weights:
            iterations = [e.iteration for e in progress.evaluations]
            index = iterations.index(progress.early_stop.iteration)
            final_weights = snapshot(trainer.pruned.rewindable)
            restore(trainer.pruned.rewindable, progress.early_stop_weights)
            test_loss, test_accuracy = trainer.evaluate_split("test")
            restore(trainer.pruned.rewindable, final_weights)
            early = dataclasses.replace(
                progress.evaluations[index], test_loss=test_loss, test_accuracy=test_accuracy
            )
            progress.evaluations[index] = early
            progress.early_stop_weights = {}
            # Logged before the final evaluation, so each test tag's steps reach TensorBoard
            # in order.
            if recorded is not None:
                recorded(early)
        progress.evaluations.append(evaluation)
        if recorded is not None:
            recorded(evaluation)


class Checkpoint(Callback):
    """Saves ``save(progress)`` after chunks ending on a multiple of ``every`` iterations (and
    the last), or, with ``seconds``, once that long has passed since the last save (never at
    the end: whoever trains writes the result there instead).

    Put it after the callbacks whose work the checkpoint must hold (evaluations): a resume
    then never repeats or skips one.
    """

    def __init__(
        self,
        save: Callable[[TrainingProgress], None],
        every: int | None = None,
        seconds: float | None = None,
    ):
        if (every is None) == (seconds is None):
            raise ValueError("a checkpoint is taken every n iterations or every n seconds")
        self.save = save
        self.every = every
        self.seconds = seconds
        self._saved_at = time.monotonic()

    def on_chunk(self, chunk: Chunk, progress: TrainingProgress) -> None:
        if self.every is not None:
            if chunk.stop % self.every == 0 or chunk.last:
                self.save(progress)
        elif not chunk.last and time.monotonic() - self._saved_at >= self.seconds:
            self.save(progress)
            self._saved_at = time.monotonic()
