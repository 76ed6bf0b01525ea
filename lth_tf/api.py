"""The Python API: find lottery tickets for your own model on your own data, read them, export one.

:func:`find_tickets` runs IMP exactly as ``python -m pipelines.imp`` does (the same
hyperparameters, recipes, experiment directory and resume: calling it again with the same
arguments continues where it stopped) and returns an :class:`Experiment`, which reads any
experiment directory and exports a round to TFLite, verified with the LiteRT interpreter.

>>> import lth_tf
>>> experiment = lth_tf.find_tickets(model, (x_train, y_train), (x_test, y_test),
...                                  rounds=5, iterations="10ep")  # doctest: +SKIP
>>> [round(r.test_accuracy, 3) for r in experiment.results]  # doctest: +SKIP
>>> experiment.export("best")["ticket"]["files"]["ticket_int8.tflite"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lth_tf.callbacks import RunCallback, check_callbacks
from lth_tf.config import HOLDOUT_AUTO, check_jit_compile
from lth_tf.errors import LthError, os_errors_as_lth_errors
from lth_tf.experiment import RoundResult

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras

    from lth_tf.data.sources import ImageDataset

log = logging.getLogger("lth_tf")

# What the API's arguments may be: (types, the words that say so). bool counts as a number only
# where bool is named.
_PATH = ((str, os.PathLike), "a path (str or pathlib.Path)")
_OPTIONAL_PATH = ((str, os.PathLike, type(None)), "a path (str or pathlib.Path) or None")
_OPTIONAL_TEXT = ((str, type(None)), "a str or None")
_FLAG = ((bool,), "True or False")
_OPTIONAL_FLAG = ((bool, type(None)), "True, False or None")
_JIT_COMPILE = ((bool, str), "True, False or 'auto'")
_ROUND = ((numbers.Integral, str), "a round number (0, 1, ...) or 'best'")
_NUMBER = ((numbers.Real,), "a number")
_COUNT = ((numbers.Integral,), "a whole number")
_TEXT = ((str,), "a str")


def check_arguments(where: str, **arguments: tuple[Any, tuple[tuple[type, ...], str]]) -> None:
    """Refuses an argument of the wrong type with an :class:`LthError` naming it, before it
    fails deep inside with an error that does not.

    >>> check_arguments("Experiment", path=(123, _PATH))
    Traceback (most recent call last):
    lth_tf.errors.LthError: Experiment: path must be a path (str or pathlib.Path), got 123 (int)
    >>> check_arguments("find_tickets", output_dir=("", _PATH))
    Traceback (most recent call last):
    lth_tf.errors.LthError: find_tickets: output_dir='' is not a usable path; give a folder
    """
    for name, (value, (kinds, expected)) in arguments.items():
        if os.PathLike in kinds and isinstance(value, str | os.PathLike):
            text = os.fspath(value)
            # "" would quietly mean the working directory; a newline splits every line naming it.
            if not isinstance(text, str) or not text.strip() or not text.isprintable():
                raise LthError(f"{where}: {name}={text!r} is not a usable path; give a folder")
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            continue
        shown = "None" if value is None else f"{_short_repr(value)} ({type(value).__name__})"
        raise LthError(f"{where}: {name} must be {expected}, got {shown}")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _check_strategy(strategy: Any) -> None:
    """A ``tf.distribute.Strategy`` (told by what it does, so TensorFlow need not start) or None."""
    if strategy is None or (hasattr(strategy, "scope") and hasattr(strategy, "extended")):
        return
    hint = ""
    if isinstance(strategy, str):
        hint = f"; lth_tf.training.strategies.make_strategy({strategy!r}) makes one by name"
    raise LthError(
        f"find_tickets: strategy must be a tf.distribute.Strategy or None, got "
        f"{_short_repr(strategy)} ({type(strategy).__name__}){hint}"
    )


@os_errors_as_lth_errors  # a directory or disk problem is the user's to fix
def find_tickets(
    model: tf_keras.Model | Callable[[tuple[int, ...], int], tf_keras.Model] | str,
    train_data: Any = None,
    test_data: Any = None,
    validation_data: Any = None,
    *,
    dataset: str | None = None,
    recipe: str | None = None,
    output_dir: str | Path = "runs",
    experiment_name: str | None = None,
    data_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool | str = "auto",
    progress: bool | None = None,
    tensorboard: bool = True,
    callbacks: Sequence[RunCallback] = (),
    **hparams: Any,
) -> Experiment:
    """Runs (or resumes) IMP on ``model``; returns the experiment.

    ``model``: a ``tf_keras`` or Keras 3 model (its current weights are theta_0; a Keras 3
    model is converted to tf_keras, docs/your-own-model.md "Keras 3 models"), a builder
    ``f(input_shape, num_classes) -> model`` (called after the seed is set), or what
    ``--model`` takes (a registry name, ``path/to/model.keras``, ``package.module:function``).

    Data: ``train_data`` and ``test_data`` (and optionally ``validation_data``), each an
    ``(x, y)`` pair of arrays or a ``tf.data.Dataset`` of ``(x, y)``; or ``dataset``, what
    ``--dataset`` takes (``npz:PATH``, ``tfds:NAME``, ``mnist``...). Without validation data,
    10% of the training examples (at most 5,000; ``holdout=N``: N, 0 for none) are held out
    for early stopping. The model receives ``x`` as float32, unscaled: let it scale its inputs
    itself (e.g. a ``Rescaling`` layer), so the exported ticket takes data as the device has
    it. Labels are class indices (or one-hot rows), or class names (str, bool): indices in the
    names' sorted order, kept as :attr:`Experiment.classes` and in the export's
    ``export.json``.

    ``progress``: None (default) shows a progress bar per round where a person watches (a
    terminal, a notebook) and else only one line per round (a pipe, a log file); True or False
    forces the bar on or off. The lines go to stdout, through the ``lth_tf`` logger, unless
    logging is set up already; TensorFlow's start-up lines are kept off stderr.

    ``callbacks``: :class:`lth_tf.callbacks.RunCallback` instances; what they report at each
    evaluation goes to ``evaluations.csv`` and TensorBoard, their state into the checkpoints.

    ``hparams``: any hyperparameter flag of ``pipelines.imp`` by name (``rounds=5``,
    ``iterations="10ep"``, ``prune_rates="conv=0.2,fc=0.2"``, ``rewind="500it"``, ``seed=1``,
    ``augment=my_module.augment``); the rest are the ``recipe``'s. The default recipe of a
    model of your own is ``compiled`` when it is compiled (an object, or a ``.keras`` file
    saved after ``compile``: its optimizer, learning-rate schedule and loss), else
    ``stabilizing``.
    """
    check_arguments(
        "find_tickets",
        dataset=(dataset, _OPTIONAL_TEXT),
        recipe=(recipe, _OPTIONAL_TEXT),
        output_dir=(output_dir, _PATH),
        experiment_name=(experiment_name, _OPTIONAL_TEXT),
        data_dir=(data_dir, _OPTIONAL_PATH),
        jit_compile=(jit_compile, _JIT_COMPILE),
        progress=(progress, _OPTIONAL_FLAG),
        tensorboard=(tensorboard, _FLAG),
    )
    check_jit_compile(jit_compile, "find_tickets: jit_compile")
    callbacks = check_callbacks(callbacks)
    if not isinstance(model, str | Path) and not callable(model):
        raise LthError(
            "find_tickets: model must be a tf_keras model, a builder function or what --model "
            f"takes (a str), got {_short_repr(model)} ({type(model).__name__})"
        )
    _check_strategy(strategy)
    from lth_tf.monitoring.watching import person_watching
    from lth_tf.startup import start_tensorflow_quietly

    show_bar = person_watching() if progress is None else progress
    # As the pipelines start it: its C++ start-up lines (CUDA probes) kept off stderr.
    start_tensorflow_quietly()
    from lth_tf.data.sources import load_dataset
    from lth_tf.execution import Execution
    from lth_tf.lottery.imp import run_imp
    from lth_tf.models import experiment_hparams

    if dataset is None:
        if train_data is None or test_data is None:
            raise LthError(
                "find_tickets needs data: train_data and test_data ((x, y) arrays or "
                "tf.data.Datasets), or dataset='npz:PATH' / 'tfds:NAME'"
            )
        data = in_memory_dataset(train_data, test_data, validation_data)
        dataset = data.name
    elif train_data is not None or test_data is not None or validation_data is not None:
        raise LthError("pass either dataset= or train_data/test_data, not both")
    else:
        data = None
    model_name, model_object = _model_name(model)
    if model_object is not None and not hasattr(model_object, "get_config"):
        # A builder the experiment could not import again: built here, under the seed.
        data = data or load_dataset(dataset, data_dir)
        model_object = _build_once(model_object, data, hparams.get("seed", 0))
        model_name = f"python:{model_object.name}"
    # The compile of the object the user gave (a Keras 3 model is converted, uncompiled).
    given = model if hasattr(model, "get_config") else model_object
    recipe, compiled = _compiled_recipe(model_name, given, recipe, hparams)
    hparams = _named_augmentation(hparams)
    settings = experiment_hparams(model_name, dataset, recipe, hparams, compiled)
    holdout = settings.dataset.holdout
    if data is not None and holdout != HOLDOUT_AUTO:
        # Split as the experiment's --holdout (the recipe's or the caller's) says; loaded above
        # with auto, before the recipe was known.
        if train_data is not None:
            data = in_memory_dataset(train_data, test_data, validation_data, holdout)
            settings = dataclasses.replace(
                settings, dataset=dataclasses.replace(settings.dataset, name=data.name)
            )
        else:
            data = load_dataset(dataset, data_dir, holdout=holdout)
    with _round_lines():
        directory = run_imp(
            settings,
            output_dir,
            experiment_name,
            Execution(
                jit_compile=jit_compile,
                data_dir=data_dir,
                show_progress=show_bar,
                tensorboard=tensorboard,
            ),
            strategy=strategy,
            data=data,
            model=model_object,
            callbacks=callbacks,
        )
    return Experiment(directory.root)


def _compiled_recipe(
    name: str, model: Any, recipe: str | None, hparams: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The recipe to run and, for a model object, its compiled recipe: a compiled model (an
    object, or a ``.keras`` file saved compiled) trains as compiled unless ``recipe`` says
    otherwise, or an optimizer setting is given (``learning_rate=...``: then the recipe's
    defaults, as before compiled recipes existed). See :mod:`lth_tf.recipe`."""
    from lth_tf.config import COMPILED_FIELDS
    from lth_tf.models.custom import model_kind
    from lth_tf.recipe import (
        compile_config_of,
        compiled_from_file,
        compiled_from_object,
        read_compile_config,
        say_metrics_left_out,
    )

    if recipe not in (None, "compiled"):
        return recipe, None
    if recipe is None and any(field in hparams for field in COMPILED_FIELDS):
        return recipe, None
    if model is not None:
        compiled = compiled_from_object(model)
    elif model_kind(name) == "keras_file" and Path(name).is_file():
        compiled = compiled_from_file(name)
    else:
        return recipe, None
    if compiled is not None and recipe is None:
        log.info("The model is compiled: training with its optimizer, schedule and loss.")
        recipe = "compiled"
    if compiled is not None:
        say_metrics_left_out(
            compile_config_of(model) if model is not None else read_compile_config(name)
        )
    return recipe, compiled


def _named_augmentation(hparams: dict[str, Any]) -> dict[str, Any]:
    """``augment=function`` as ``package.module:function``, what a resume imports again."""
    function = hparams.get("augment")
    if not callable(function):
        return hparams
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        raise LthError(
            f"find_tickets: augment={qualname or function!r} must be a module-level function of "
            "an importable module (a resume imports it again), or its package.module:function"
        )
    return {**hparams, "augment": f"{module}:{qualname}"}


@contextlib.contextmanager
def _round_lines() -> Iterator[None]:
    """While IMP runs, ``lth_tf``'s lines (one per finished round) are shown as the pipelines
    show them: plain, on stdout; through the caller's own handlers where logging is set up
    (handlers on ``lth_tf`` or the root logger), at the level set on ``lth_tf`` if any.

    Without it they would be lost: Python shows a logger without handlers only from WARNING.
    """
    logger = logging.getLogger("lth_tf")
    handler = None
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    level = logger.level
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def _model_name(model: Any) -> tuple[str, Any]:
    """What ``--model`` would say for ``model``, and the object behind a ``python:`` name.

    An importable module-level function is named ``module:function``, as the CLI takes it;
    another callable (a lambda, a notebook's function) comes back as itself, to be built once.
    """
    from lth_tf.models.custom import IN_MEMORY_PREFIX, check_is_tf_keras
    from lth_tf.models.keras3 import is_keras3_model

    if isinstance(model, str | Path):
        return str(model), None
    if callable(model) and not hasattr(model, "get_config"):
        module, qualname = getattr(model, "__module__", None), getattr(model, "__qualname__", "")
        if module and module != "__main__" and "<" not in qualname and "." not in qualname:
            return f"{module}:{qualname}", None
        return "", model
    if not is_keras3_model(model):  # a Keras 3 model is converted with the data at hand
        model = check_is_tf_keras(model, "the model")
    return f"{IN_MEMORY_PREFIX}{model.name}", model


def _build_once(builder: Callable, data: ImageDataset, seed: int) -> tf_keras.Model:
    """``builder(input_shape, num_classes)`` under ``seed``, as the pipeline builds a model."""
    import tf_keras

    from lth_tf.models.custom import call_builder, check_fits
    from lth_tf.models.keras3 import CHECK_EXAMPLES, checked_on

    tf_keras.utils.set_random_seed(seed)
    with checked_on(data.train_images[:CHECK_EXAMPLES]):  # a Keras 3 model's conversion
        model = call_builder(builder, "the builder", data.input_shape, data.num_classes)
    check_fits(model, "the builder's model", data.input_shape, data.num_classes)
    return model


def in_memory_dataset(
    train_data: Any, test_data: Any, validation_data: Any, holdout: str = HOLDOUT_AUTO
) -> ImageDataset:
    """Arrays or ``tf.data.Dataset`` splits as a dataset named by its content's fingerprint
    (``arrays:<sha256 prefix>``), which its experiment keeps as ``data.npz``; without
    ``validation_data``, ``holdout`` training examples are held out as it (--holdout)."""
    from lth_tf.data.arrays import (
        arrays_fingerprint,
        arrays_from_splits,
        dataset_from_arrays,
        split_arrays,
    )

    arrays = arrays_from_splits(train=train_data, test=test_data, validation=validation_data)
    source = "arrays given to lth_tf.find_tickets"
    data = dataset_from_arrays("arrays", arrays, source, {"kind": "arrays"}, holdout)
    fingerprint = arrays_fingerprint(split_arrays(data))
    provenance = {**data.provenance, "kind": "arrays", "fingerprint": fingerprint}
    return dataclasses.replace(data, name=f"arrays:{fingerprint[:16]}", provenance=provenance)


class Experiment:
    """An experiment directory, read: its hyperparameters (``.hparams``), the dataset it ran
    (``.data``, a :class:`~lth_tf.experiment.DataRecord`), results, and each round's masks and
    weights; :meth:`export` writes a round's TFLite tickets.

    >>> experiment = Experiment("runs/quickstart")  # doctest: +SKIP
    >>> experiment.results[-1].percent_remaining  # doctest: +SKIP
    10.74
    """

    def __init__(self, path: str | Path):
        check_arguments("Experiment", path=(path, _PATH))
        from lth_tf.experiment import read_experiment

        self.directory, self.hparams, self.data = read_experiment(path, what="Experiment")
        self.path = self.directory.root

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r}, rounds done: {self.rounds})"

    @property
    def results(self) -> list[RoundResult]:
        """One :class:`~lth_tf.experiment.RoundResult` per finished round, in round order."""
        done = self.directory.completed_rounds()
        return [row for row in self.directory.read_results() if row.round in done]

    @property
    def rounds(self) -> list[int]:
        return sorted(self.directory.completed_rounds())

    @property
    def classes(self) -> list[str] | None:
        """The class names, by class index (``classes.json``), where the labels were names;
        None where they were class indices.

        >>> Experiment("runs/fruit").classes  # doctest: +SKIP
        ['apple', 'banana', 'cherry']
        """
        from lth_tf.provenance import read_classes

        return read_classes(self.directory)

    def masks(self, pruning_round: int) -> dict[str, np.ndarray]:
        """0/1 (uint8) mask of each prunable weight, by variable name (``dense/kernel``)."""
        pruning_round = self._check_round(pruning_round)
        return self.directory.read_arrays(self.directory.masks(pruning_round))

    def weights(self, pruning_round: int) -> dict[str, np.ndarray]:
        """Every trained variable of the round (pruned positions exactly 0), by name."""
        pruning_round = self._check_round(pruning_round)
        return self.directory.read_arrays(self.directory.weights(pruning_round))

    def _check_round(self, pruning_round: Any) -> int:
        """``pruning_round`` as an int (numpy's integers too), once the round has finished."""
        if isinstance(pruning_round, bool) or not isinstance(pruning_round, numbers.Integral):
            raise LthError(f"a round is a number (0, 1, ...), got {pruning_round!r}")
        pruning_round = int(pruning_round)
        if not 0 <= pruning_round <= self.hparams.pruning.rounds:
            raise LthError(
                f"{self.path} has no round {pruning_round}: its rounds are 0-"
                f"{self.hparams.pruning.rounds}"
            )
        if pruning_round not in self.directory.completed_rounds():
            raise LthError(
                f"round {pruning_round} of {self.path} has not finished; finished: {self.rounds}"
            )
        return pruning_round

    def model(
        self,
        pruning_round: int | str = "best",
        tolerance: float = 0.5,
        shrunk: bool = False,
        keras3: bool = False,
    ) -> tf_keras.Model:
        """The round's ticket as a plain ``tf_keras`` model (no pruning wrappers, pruned
        weights exactly zero); ``"best"``: the sparsest round within ``tolerance`` points of
        round 0's accuracy. ``shrunk=True`` (channel tickets): the smaller dense network
        without the pruned channels, the same logits, to fine-tune or deploy with your own
        tooling. ``keras3=True``: the same ticket as a Keras 3 model (``keras.Model``; the same
        layers and weights, checked to compute the same outputs).

        >>> Experiment("runs/mine").model(2, keras3=True).save("ticket.keras")  # doctest: +SKIP
        """
        check_arguments(
            "Experiment.model",
            pruning_round=(pruning_round, _ROUND),
            tolerance=(tolerance, _NUMBER),
            shrunk=(shrunk, _FLAG),
            keras3=(keras3, _FLAG),
        )
        from lth_tf.export.stripped import shrunk_ticket_model, stripped_model
        from lth_tf.export.ticket import open_ticket

        if not isinstance(pruning_round, str):
            pruning_round = self._check_round(pruning_round)
        ticket = open_ticket(self.path, pruning_round, tolerance)
        model = shrunk_ticket_model(ticket) if shrunk else stripped_model(ticket)
        if keras3:
            from lth_tf.models.keras3 import to_keras3

            return to_keras3(model, f"round {ticket.round} of {self.path}")
        return model

    @os_errors_as_lth_errors  # a directory or disk problem is the user's to fix
    def export(
        self,
        pruning_round: int | str = "best",
        output_dir: str | Path = "saved_models",
        tolerance: float = 0.5,
        data_dir: str | None = None,
        int8_storage: str = "auto",
        arm: bool = False,
        arm_examples: int = 200,
        verbose: bool = True,
        keras3: bool = False,
    ) -> dict[str, Any]:
        """Writes ``<output_dir>/<experiment>/round_NN/``: SavedModel, ``ticket.tflite``
        (float32), ``ticket_fp16.tflite`` and ``ticket_int8.tflite``, with their LiteRT
        accuracy on the experiment's test data next to the dense round 0's, and the verdict
        (which file to ship); returns that report (``export.json``). ``arm=True`` also runs
        every file on an emulated ARM (the first ``arm_examples`` test examples).
        ``int8_storage``: see :class:`lth_tf.export.deploy.ExportOptions`. ``keras3=True``
        also writes ``ticket.keras``, the ticket as a Keras 3 model (``lth-export --keras3``).
        ``verbose`` prints the round chosen and why, the summary and the verdict, as the
        pipeline does.

        >>> report = Experiment("runs/quickstart").export(arm=True)  # doctest: +SKIP
        >>> report["verdict"]["targets"]["arm64, emulated"]["fastest_shippable"]  # doctest: +SKIP
        'ticket.tflite'
        """
        check_arguments(
            "Experiment.export",
            pruning_round=(pruning_round, _ROUND),
            output_dir=(output_dir, _PATH),
            tolerance=(tolerance, _NUMBER),
            data_dir=(data_dir, _OPTIONAL_PATH),
            int8_storage=(int8_storage, _TEXT),
            arm=(arm, _FLAG),
            arm_examples=(arm_examples, _COUNT),
            verbose=(verbose, _FLAG),
            keras3=(keras3, _FLAG),
        )
        from lth_tf.export.deploy import ExportOptions, export_dir, export_ticket, summary_lines
        from lth_tf.export.ticket import open_ticket
        from lth_tf.provenance import experiment_data

        options = ExportOptions(
            int8_storage=int8_storage, arm=arm, arm_examples=arm_examples, keras3=keras3
        )
        if not isinstance(pruning_round, str):
            pruning_round = self._check_round(pruning_round)
        ticket = open_ticket(self.path, pruning_round, tolerance)
        dense = open_ticket(self.path, 0)
        if verbose:
            print(f"Exporting {ticket.selection}")
        data = experiment_data(ticket.experiment, ticket.hparams, data_dir)
        report = export_ticket(ticket, dense, data, output_dir, options)
        if verbose:
            print("\n".join(summary_lines(report, export_dir(output_dir, ticket))))
        return report
