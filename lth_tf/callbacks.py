"""Callbacks of your own: watch every round of a run, report scalars, keep state across resumes.

Subclass :class:`RunCallback`, override what you need, and pass instances to
:func:`lth_tf.lottery.imp.run_imp` (``callbacks=``), :func:`lth_tf.find_tickets` (``callbacks=``),
:func:`lth_tf.stability.analysis.run_stability` (``callbacks=``) or
``pipelines.imp`` / ``pipelines.stability --callback=package.module:Class`` (built with no
arguments):

>>> import numpy as np
>>> class MaskedWeightNorm(RunCallback):
...     '''The L2 norm of the surviving weights at every evaluation.'''
...     def on_evaluation(self, context, evaluation):
...         weights = context.pruned.weights
...         squares = sum(float(np.sum(w.numpy() ** 2)) for w in weights.values())
...         return {"masked_weight_norm": squares ** 0.5}
>>> MaskedWeightNorm().name
'MaskedWeightNorm'

The scalars ``on_evaluation`` returns are columns of the round's ``evaluations.csv`` and
scalars of its TensorBoard run, at the evaluation's iteration. ``state()`` is saved in every
checkpoint and handed back to ``load_state()`` when a killed round resumes, so a callback that
accumulates (a running mean, a count) ends a resumed round as an uninterrupted one would.
A hook that raises ends the run with one line naming the callback, the hook and where it
raised (:func:`calling`); the round resumes from its last checkpoint once the callback is fixed.

In a stability analysis each copy's training is a round (see :class:`RunCallback`): the
context's ``stability_copy`` says which copy, and ``on_round_end`` gets a :class:`CopyResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lth_tf.errors import LthError

if TYPE_CHECKING:
    from lth_tf.config import ExperimentHparams
    from lth_tf.experiment import ExperimentDir, RoundResult
    from lth_tf.pruning.wrapping import PrunedModel
    from lth_tf.training.loop import Chunk
    from lth_tf.training.trainer import Evaluation

log = logging.getLogger("lth_tf")

# Checkpoint keys of a callback's state: ``callback/<name>/<key>``.
STATE_PREFIX = "callback/"
# evaluations.csv's own columns, which a callback's scalars may not take.
EVALUATION_COLUMNS = ("iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclasses.dataclass(frozen=True)
class StabilityCopy:
    """Which copy of a stability analysis trains: from the rewind point ``rewind_iteration`` to
    the round's end, on the data order of ``data_seed``."""

    rewind_iteration: int
    data_seed: int


@dataclasses.dataclass(frozen=True)
class CopyResult:
    """What ``on_round_end`` gets for a stability copy: the round whose mask it trained, its
    rewind point and data seed, the iterations it trained (T - k), the seconds they took (a
    resumed copy's included) and the file of its trained weights. Its test error is measured
    afterwards, with the other copies', in the analysis' result.

    >>> CopyResult(1, 10, 0, 30, 0.5, Path("copy_seed0.npz")).round
    1
    """

    round: int
    rewind_iteration: int
    data_seed: int
    iterations: int
    train_seconds: float
    weights: Path


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a callback sees of the run: the round, the network (``pruned.weights``,
    ``pruned.get_masks()``), the experiment directory and its hyperparameters; in a stability
    analysis, which copy trains (``stability_copy``; None in an IMP run)."""

    pruning_round: int
    pruned: PrunedModel
    experiment: ExperimentDir
    hparams: ExperimentHparams
    stability_copy: StabilityCopy | None = None


class RunCallback:
    """Does nothing; override what you need. Every call comes between compiled chunks of
    iterations, never inside a step.

    - ``on_run_start``: the experiment directory is open (also when every round is done).
    - ``on_round_start``: a fresh round is masked and rewound, before its first step (not when
      it resumes from a checkpoint: ``load_state`` comes then).
    - ``on_chunk``: after every chunk (``chunk.start``, ``chunk.stop``, its mean ``loss`` and
      ``accuracy``).
    - ``on_evaluation``: at every evaluation; returns scalars to record, or None.
    - ``on_evaluation_recorded``: the evaluation as recorded, with every callback's scalars,
      before its checkpoint is saved. The early stop's comes twice: when it happens, and at the
      round's end with its test metrics, just before the last evaluation.
    - ``on_round_end``: the round's results row is written.
    - ``on_run_end``: the run's last round is done (not when it stops with an error).
    - ``state`` / ``load_state``: named arrays saved in each checkpoint, restored on resume.

    A stability analysis (:func:`lth_tf.stability.analysis.run_stability`) is a run too:
    ``on_run_start`` once, with the experiment analysed; each copy it trains is a round
    (``on_round_start`` when it starts fresh from the rewind point, ``load_state`` instead when
    it resumes from its checkpoint; ``on_chunk``; ``on_round_end`` with a :class:`CopyResult`);
    ``on_run_end`` once every result is written. Copies are not evaluated while they train:
    ``on_evaluation`` and ``on_evaluation_recorded`` are not called. A copy reused from an
    earlier run, and the dense network retrained to recompute a rewind point, are not rounds.

    The run's own TensorBoard logs are one of these
    (:class:`lth_tf.monitoring.tensorboard.TensorBoardMonitor`).
    """

    # A hook that raises is a bug of the callback's author, named in one line (:func:`calling`);
    # the run's own callbacks (TensorBoard) say False: their errors are the tool's, or a file's.
    user_code = True

    @property
    def name(self) -> str:
        """Its checkpoint keys' prefix: the class name (two callbacks need two names)."""
        return type(self).__name__

    def on_run_start(self, experiment: ExperimentDir, hparams: ExperimentHparams) -> None:
        pass

    def on_round_start(self, context: RunContext) -> None:
        pass

    def on_chunk(self, context: RunContext, chunk: Chunk) -> None:
        pass

    def on_evaluation(
        self, context: RunContext, evaluation: Evaluation
    ) -> Mapping[str, float] | None:
        return None

    def on_evaluation_recorded(self, context: RunContext, evaluation: Evaluation) -> None:
        pass

    def on_round_end(self, context: RunContext, result: RoundResult | CopyResult) -> None:
        pass

    def on_run_end(self) -> None:
        pass

    def state(self) -> Mapping[str, np.ndarray]:
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        pass


@contextlib.contextmanager
def calling(callback: RunCallback, hook: str) -> Iterator[None]:
    """Runs a callback's ``hook``: an exception it raises is a bug in the callback, not in the
    run, and becomes one line naming the callback, the hook and where it raised (an LthError,
    an OSError and Ctrl-C pass as they are). The round resumes from its last checkpoint once
    it is fixed.

    >>> with calling(RunCallback(), "on_chunk"):
    ...     {}["missing"]  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: callback RunCallback: on_chunk raised KeyError: 'missing' (...
    """
    if not callback.user_code:
        yield
        return
    try:
        yield
    except (LthError, OSError):
        # A full disk or a missing folder is said in one line by whoever runs the pipeline.
        raise
    # sys.exit() in a hook is the callback's too: the run must not end as if it succeeded.
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code can raise anything
        frames = traceback.extract_tb(error.__traceback__)
        where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise LthError(
            f"callback {label(callback)}: {hook} raised {type(error).__name__}: {error}{where}; "
            "fix the callback and run again (the round resumes from its last checkpoint)"
        ) from error


def label(callback: RunCallback) -> str:
    """The callback's name for a message: its ``name``, or its class's where ``name`` fails.

    >>> label(RunCallback())
    'RunCallback'
    """
    try:
        return str(callback.name)
    except Exception:  # noqa: BLE001 - a message must not fail on the user's property
        return type(callback).__name__


def call_each(callbacks: Sequence[RunCallback], hook: str, *args: Any) -> None:
    """Every callback's ``hook(*args)``, in order, each under :func:`calling`.

    >>> call_each([RunCallback()], "on_run_end")
    """
    for callback in callbacks:
        with calling(callback, hook):
            getattr(callback, hook)(*args)


def check_callbacks(callbacks: Sequence[Any] | None) -> list[RunCallback]:
    """``callbacks`` as a list (None: none), each a :class:`RunCallback` with a name of its own.

    >>> check_callbacks([RunCallback(), RunCallback()])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: two callbacks are named 'RunCallback'; ...
    >>> check_callbacks(None), check_callbacks(RunCallback())  # doctest: +ELLIPSIS
    ([], [<lth_tf.callbacks.RunCallback object at ...>])
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, RunCallback):
        callbacks = [callbacks]
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Iterable):
        raise LthError(
            f"callbacks={callbacks!r}: give a list of lth_tf.callbacks.RunCallback instances"
        )
    checked = list(callbacks)
    names = set()
    for callback in checked:
        if not isinstance(callback, RunCallback):
            raise LthError(
                f"callback {callback!r} is a {type(callback).__name__}, not a "
                "lth_tf.callbacks.RunCallback; subclass it"
            )
        with calling(callback, "name"):
            name = callback.name
        if not isinstance(name, str) or not name:
            raise LthError(
                f"callback {type(callback).__name__}: its name is {name!r}, not a non-empty "
                "string; return one from its name property"
            )
        if name in names:
            raise LthError(
                f"two callbacks are named {name!r}; give one a name of its own (its name property)"
            )
        names.add(name)
    return checked


def callback_states(callbacks: Sequence[RunCallback]) -> dict[str, np.ndarray]:
    """Every callback's state as checkpoint arrays, ``callback/<name>/<key>``."""
    arrays: dict[str, np.ndarray] = {}
    for callback in callbacks:
        with calling(callback, "state"):  # an LthError raised inside passes through as it is
            state = callback.state()
            if not isinstance(state, Mapping):
                raise LthError(
                    f"callback {callback.name}: state() returned a {type(state).__name__}, not "
                    "a dict of arrays; return e.g. {'count': np.int64(n)}, or {} for none"
                )
            for key, value in state.items():
                array = np.asarray(value)
                if array.dtype == object:
                    # Saved, it would need pickle to load: the resume would find it unreadable.
                    raise LthError(
                        f"callback {callback.name}: state()[{key!r}] is a "
                        f"{type(value).__name__}, not an array of numbers or strings; return "
                        "numpy arrays (e.g. np.float64(x), np.array([...]))"
                    )
                arrays[f"{STATE_PREFIX}{callback.name}/{key}"] = array
    return arrays


def load_callback_states(callbacks: Sequence[RunCallback], arrays: Mapping[str, Any]) -> None:
    """Hands each callback its part of a checkpoint's ``callback/`` arrays; one the
    checkpoint holds nothing of (it was not in the run that saved it) keeps its state, with a
    warning if it has one."""
    for callback in callbacks:
        prefix = f"{STATE_PREFIX}{callback.name}/"
        state = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        with calling(callback, "load_state"):
            if state:
                callback.load_state(state)
                continue
            has_state = bool(callback.state())
        if has_state:
            log.warning(
                "The checkpoint holds no state of callback %s (the interrupted run did not "
                "have it): it goes on from its own.",
                callback.name,
            )


def evaluation_scalars(
    callbacks: Sequence[RunCallback], context: RunContext, evaluation: Evaluation
) -> dict[str, float]:
    """The scalars every callback reports for ``evaluation``, checked: finite or NaN floats
    under names of their own."""
    scalars: dict[str, float] = {}
    for callback in callbacks:
        with calling(callback, "on_evaluation"):
            returned = callback.on_evaluation(context, evaluation)
            if returned is not None and not isinstance(returned, Mapping):
                raise LthError(
                    f"callback {callback.name}: on_evaluation returned a "
                    f"{type(returned).__name__}, not a dict of scalars by name; return e.g. "
                    "{'my_metric': 0.5}, or None"
                )
            reported = dict(returned or {})
        for name, value in reported.items():
            if name in EVALUATION_COLUMNS or name in scalars:
                raise LthError(
                    f"callback {callback.name} reports {name!r}, a name evaluations.csv has "
                    "already; name it otherwise"
                )
            try:
                scalars[name] = float(value)
            except (TypeError, ValueError):
                raise LthError(
                    f"callback {callback.name} reports {name}={value!r}, not a number"
                ) from None
    return scalars


def load_callback(spec: str) -> RunCallback:
    """``--callback=package.module:Class``: the class imported (as a ``--model`` builder is)
    and built with no arguments; a failure is one line."""
    from lth_tf.models.custom import import_user_function

    if spec.count(":") != 1 or not all(spec.split(":")):
        raise LthError(f"--callback={spec}: give package.module:Class")
    cls = import_user_function(spec, "--callback")
    # Named by the spec, not by the object (an instance has no __name__; a whole dataclass's
    # repr can fill the screen).
    attribute = spec.split(":")[1]
    try:
        callback = cls()
    # sys.exit() in a constructor must not end the pipeline silently.
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code can raise anything
        raise LthError(
            f"--callback={spec}: {attribute}() raised {type(error).__name__}: {error}"
        ) from None
    if not isinstance(callback, RunCallback):
        raise LthError(
            f"--callback={spec}: {attribute}() is a {type(callback).__name__}, not a "
            "lth_tf.callbacks.RunCallback; subclass it"
        )
    return check_callbacks([callback])[0]


def load_callbacks(specs: Sequence[str]) -> list[RunCallback]:
    """Every spec's callback (:func:`load_callback`), checked together (no two share a name).

    >>> load_callbacks([])
    []
    """
    return check_callbacks([load_callback(spec) for spec in specs])
