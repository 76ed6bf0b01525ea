"""What every pipeline shares: one-line errors instead of tracebacks, and logging set-up."""

from __future__ import annotations

import functools
import logging
import os
import signal
import stat
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

from absl import app, flags

import lth_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from lth_tf.errors import LthError, first_line, os_error_line
from lth_tf.startup import (
    start_tensorflow_quietly,  # noqa: F401  (what every pipeline calls)
    use_run_temp_dir,
)
from lth_tf.steps import is_count
from pipelines import stop_while_starting

EXIT_USER_ERROR = 2
EXIT_BUG = 1

# TensorFlow's own errors for files (SavedModel, event files, checkpoints): not OSError.
_TENSORFLOW_FILE_ERRORS = {
    "PermissionDeniedError": "permission denied",
    "ResourceExhaustedError": "out of disk space or memory",
    "NotFoundError": "not found",
    "AlreadyExistsError": "already exists",
    "DataLossError": "a damaged file",
}
_DISK_WORDS = ("No space left on device", "Read-only file system", "Disk quota exceeded")


class _JitCompileParser(flags.ArgumentParser):
    """auto, true or false (absl's boolean spellings too: 1/0, yes/no)."""

    def parse(self, argument: object) -> bool | str:
        if isinstance(argument, bool):
            return argument
        text = str(argument).strip().lower()
        if text == "auto":
            return "auto"
        if text in ("true", "t", "1", "yes"):
            return True
        if text in ("false", "f", "0", "no"):
            return False
        raise ValueError(f"{argument!r}: use auto, true or false")

    def flag_type(self) -> str:
        return "auto, true or false"


class _JitCompileFlag(flags.Flag):
    """``--jit_compile=auto`` (the default), ``--jit_compile`` or ``--nojit_compile``."""

    def __init__(self, help_text: str):
        super().__init__(_JitCompileParser(), None, "jit_compile", "auto", help_text, boolean=True)

    def _get_parsed_value_as_string(self, value: object) -> str:
        return repr("auto" if value == "auto" else str(value).lower())

    def _serialize(self, value: object) -> str:
        return f"--jit_compile={'auto' if value == 'auto' else str(value).lower()}"


class _StepsPerExecutionParser(flags.ArgumentParser):
    """auto, or an integer >= 1."""

    def parse(self, argument: object) -> int | str:
        text = str(argument).strip().lower()
        if text == "auto":
            return "auto"
        if not is_count(text) or int(text) < 1:
            raise ValueError(f"{argument!r}: use auto or an integer >= 1")
        return int(text)

    def flag_type(self) -> str:
        return "auto or an integer >= 1"


class _WholeNumberParser(flags.IntegerParser):
    """absl's integer parser, for numbers written in the digits 0-9 only.

    Python's ``int`` (absl's) also reads "0x10", "1_0" and other scripts' digits ("١"): a typo
    there would run with a number nobody wrote.
    """

    def parse(self, argument: object) -> int:
        if isinstance(argument, str):
            text = argument.strip()
            if not is_count(text.removeprefix("-")):
                raise ValueError(f"{argument!r}: write a whole number in the digits 0-9")
            argument = text
        return super().parse(argument)


class _DecimalParser(flags.FloatParser):
    """absl's float parser, for numbers written in ASCII without "_" (Python's ``float`` reads
    "1_0" and "١.٥")."""

    def parse(self, argument: object) -> float:
        if isinstance(argument, str) and (not argument.isascii() or "_" in argument):
            raise ValueError(f"{argument!r}: write a number in the digits 0-9, e.g. 0.5 or 1e-4")
        return super().parse(argument)


def define_integer(
    name: str, default: int | None, help_text: str, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """``flags.DEFINE_integer`` for numbers in the digits 0-9 only (not "0x10", "1_0" or "١").

    >>> values = flags.FlagValues()
    >>> define_integer("seeds", 2, "Copies.", values)
    >>> values(["prog", "--seeds=0x10"])  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    absl.flags._exceptions.IllegalFlagValueError: flag --seeds=0x10: '0x10': write a whole ...
    """
    _define_number(_WholeNumberParser(), name, default, help_text, flag_values)


def define_float(
    name: str, default: float | None, help_text: str, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """``flags.DEFINE_float`` for numbers written in ASCII (not "1_0" or "١.٥")."""
    _define_number(_DecimalParser(), name, default, help_text, flag_values)


def _define_number(
    parser: flags.ArgumentParser,
    name: str,
    default: float | None,
    help_text: str,
    flag_values: flags.FlagValues,
) -> None:
    # absl lists a flag under the module that defines it, and --help shows the pipeline's own
    # (and those it adopts): the flag is define_integer's or define_float's caller's.
    caller = sys._getframe(2).f_globals["__name__"]
    serializer = flags.ArgumentSerializer()
    flags.DEFINE(parser, name, default, help_text, flag_values, serializer, module_name=caller)


def one_of(names: tuple[str, ...] | list[str]) -> str:
    """Choices as a help text says them.

    >>> one_of(["random_reinit", "random_prune", "lr_rewind"])
    'random_reinit, random_prune or lr_rewind'
    """
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


JIT_COMPILE_HELP = (
    "XLA for the training step: auto (time a few iterations with and without it when the "
    "experiment starts, keep the faster; sessions.json records the choice and a resume keeps "
    "it), --jit_compile (XLA wherever it can compile the step) or --nojit_compile (never)."
)

# The flags of lth_tf.execution.Execution: name -> (default, help). A pipeline defines those it
# takes with define_execution_flags and builds its Execution with execution_from_flags.
EXECUTION_FLAGS: dict[str, tuple[object, str]] = {
    "data_dir": (None, "Folder with the raw dataset files or a TFDS data_dir."),
    "jit_compile": ("auto", JIT_COMPILE_HELP),
    "steps_per_execution": (
        "auto",
        "Training iterations per compiled call: auto (about a second's worth, at most 100, so "
        "Ctrl-C and the progress line answer within about a second on a slow model) or a "
        "count. Where calls end changes no result.",
    ),
    "mixed_precision": (
        None,
        "Compute in 16 bits with float32 weights: float16 (GPUs, with dynamic loss scaling) or "
        "bfloat16 (TPUs, CPUs). Default: bfloat16 under --strategy=tpu, float32 elsewhere.",
    ),
    "progress": (True, "Show a progress bar within each round."),
    "tensorboard": (
        True,
        "Write TensorBoard logs (<experiment>/tensorboard/) and accuracy_vs_sparsity.png.",
    ),
    "test_every_evaluation": (
        False,
        "Measure the test split at every evaluation (default: only where a result needs it, at "
        "a new minimum of the validation loss and at the end of the round).",
    ),
}
# Flags named otherwise than their Execution field.
_EXECUTION_FIELDS = {"progress": "show_progress"}


def define_execution_flags(
    *names: str, flag_values: flags.FlagValues = flags.FLAGS, **help_texts: str
) -> None:
    """Defines the :class:`lth_tf.execution.Execution` flags ``names`` (all of them when none
    is named), with a pipeline's own help where ``help_texts`` gives one. The pipeline then
    calls ``flags.adopt_module_key_flags(common)``, so that its ``--help`` lists them.

    >>> define_execution_flags("data_dir", data_dir="Where the data is.")  # doctest: +SKIP
    """
    for name in names or EXECUTION_FLAGS:
        default, help_text = EXECUTION_FLAGS[name]
        help_text = help_texts.get(name, help_text)
        if name == "jit_compile":
            flags.DEFINE_flag(_JitCompileFlag(help_text), flag_values)
        elif name == "steps_per_execution":
            flags.DEFINE(_StepsPerExecutionParser(), name, default, help_text, flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text, flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values)


def refuse_empty(*names: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """An empty ``--name=`` for these path flags is refused when flags are parsed, rather than
    read as the current directory (where a run would then write its experiment).

    >>> refuse_empty("output_dir")  # doctest: +SKIP
    """
    for name in names:
        flags.register_validator(
            name,
            lambda value: value is None or bool(value.strip()),
            message="it is empty; give a directory, or leave the flag out for its default",
            flag_values=flag_values,
        )


def define_callback_flag(sees: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """``--callback=package.module:Class``, repeatable: the user's
    :class:`lth_tf.callbacks.RunCallback` classes; ``sees`` says, in the help, what they see of
    this pipeline's run. The pipeline builds them with :func:`callbacks_from_flags`.

    >>> define_callback_flag("every round")  # doctest: +SKIP
    """
    flags.DEFINE_multi_string(
        "callback",
        [],
        "package.module:Class, a lth_tf.callbacks.RunCallback built with no arguments, "
        f"imported as a --model builder is: {sees}. Repeat the flag for more than one.",
        flag_values,
    )


def callbacks_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> list:
    """The ``--callback`` classes, each imported and built with no arguments; a spec that
    names no RunCallback class (no such module, not a subclass) is one line (an LthError)."""
    from lth_tf.callbacks import load_callbacks

    return load_callbacks(flag_values["callback"].value)


def execution_from_flags(
    strategy_name: str = "default", flag_values: flags.FlagValues = flags.FLAGS
):
    """The :class:`lth_tf.execution.Execution` the flags ask for; a field whose flag this
    pipeline does not define keeps Execution's default. Under ``--strategy=tpu`` XLA is off
    (TPUs compile every step anyway) and bfloat16 the default precision."""
    from lth_tf.execution import Execution
    from lth_tf.training.strategies import precision_for

    values = {
        _EXECUTION_FIELDS.get(name, name): flag_values[name].value
        for name in EXECUTION_FLAGS
        if name in flag_values
    }
    values["mixed_precision"] = precision_for(strategy_name, values.get("mixed_precision"))
    if strategy_name == "tpu":
        values["jit_compile"] = False
    return Execution(**values)


def tensorflow_file_error_line(error: BaseException) -> str | None:
    """One line for a file-system failure TensorFlow reports in its own error types (saving a
    SavedModel on a full disk, a read-only directory), or None for anything else.

    >>> class DataLossError(Exception):
    ...     __module__ = "tensorflow.python.framework.errors_impl"
    >>> tensorflow_file_error_line(DataLossError("e/x.index: truncated"))
    'TensorFlow: a damaged file: e/x.index: truncated (check the path and the disk, then rerun)'
    """
    if not type(error).__module__.startswith("tensorflow"):
        return None
    name, text = type(error).__name__, str(error).strip()
    first = first_line(error, limit=10_000)
    meaning = _TENSORFLOW_FILE_ERRORS.get(name)
    if meaning is None and not any(words in text for words in _DISK_WORDS):
        return None
    what = meaning or "a file-system failure"
    return f"TensorFlow: {what}: {first} (check the path and the disk, then rerun)"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop or preemption), raised in the main thread as
    Ctrl-C's KeyboardInterrupt is, so the run stops the same way: when the compiled call under
    way returns, with what is on disk whole."""


# Set by the handler: a library on the way (Ray's ``ray.get``) may turn the exception into a
# plain KeyboardInterrupt, and the stop is still SIGTERM's.
_sigterm_received: list[bool] = []


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if _in_finalizer(frame):
        return _deliver_again(signum)
    # A second SIGTERM, while the first one's stop is under way, kills at once: a scheduler
    # that escalates is not kept waiting.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_received.append(True)
    raise Terminated


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C, as Python's own handler raises it, unless that would be lost (below)."""
    if _in_finalizer(frame):
        return _deliver_again(signum)
    raise KeyboardInterrupt


def _in_finalizer(frame: FrameType | None) -> bool:
    """Whether the signal came while an object's ``__del__`` runs (TensorFlow's, when the TFLite
    converter collects garbage): Python drops an exception raised there, and the stop with it."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


# Signals to deliver again, cancelled when the command ends first.
_again: list[threading.Timer] = []


def _deliver_again(signum: int) -> None:
    """The signal once more, a moment later, when the finalizer has returned."""
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signum))
    timer.daemon = True
    _again.append(timer)
    timer.start()


def _stop_dropped_by_python(unraisable: Any, previous: Callable[[Any], None]) -> None:
    """``sys.unraisablehook``: a stop that Python dropped where it cannot raise (a weakref or
    garbage-collector callback, which :func:`_in_finalizer` does not see) is delivered again;
    anything else is reported as Python reports it."""
    kind = unraisable.exc_type
    if isinstance(kind, type) and issubclass(kind, KeyboardInterrupt):
        if issubclass(kind, Terminated):
            _sigterm_received.clear()
            signal.signal(signal.SIGTERM, _raise_terminated)
        _deliver_again(signal.SIGTERM if issubclass(kind, Terminated) else signal.SIGINT)
        return
    previous(unraisable)


def _stop_on_sigterm() -> None:
    """Turns SIGTERM into :class:`Terminated` and Ctrl-C into a KeyboardInterrupt that no
    finalizer swallows, unless someone (a parent that ignores them, a host program) already
    chose what they do; only the main thread can set a handler."""
    for signum, defaults, handler in (
        (signal.SIGTERM, (signal.SIG_DFL,), _raise_terminated),
        (signal.SIGINT, (signal.default_int_handler, stop_while_starting), _raise_interrupt),
    ):
        if signal.getsignal(signum) in defaults:
            try:
                signal.signal(signum, handler)
            except ValueError:
                pass  # not the main thread: the signal keeps its default
    if getattr(sys.unraisablehook, "func", None) is not _stop_dropped_by_python:
        sys.unraisablehook = functools.partial(_stop_dropped_by_python, previous=sys.unraisablehook)


def _output_flag() -> str | None:
    """The flag that chose where this command writes, for the advice on a failed write: an
    analysis without ``--output`` writes into the experiment it reads."""
    if "output_dir" in flags.FLAGS:
        return "--output_dir"
    if "output" in flags.FLAGS and flags.FLAGS["output"].present:
        return "--output"
    return None


def default_named(message: str) -> str:
    """``message`` with "the default" before a ``--name=value`` it opens with, where neither
    the command line nor the program set ``--name``: a user would look for it in their
    command. A branch takes what it is not given from its parent, which it says instead.

    >>> default_named("--nonexistent_flag=3 is too big")
    '--nonexistent_flag=3 is too big'
    """
    name = message.removeprefix("--").partition("=")[0]
    if not message.startswith("--") or name not in flags.FLAGS:
        return message
    flag = flags.FLAGS[name]
    if flag.present or not flag.using_default_value:
        return message
    branch = "branch_of" in flags.FLAGS and flags.FLAGS["branch_of"].value is not None
    source = "the parent experiment's" if branch else "the default"
    return f"{source} {message}"


RESUMES = "rerun the same command to resume"
STARTS_OVER = "rerun the same command to start it again"


def user_errors_as_one_line(
    main: Callable[[list[str]], None] | None = None, *, after_a_stop: str = RESUMES
) -> Any:
    """Turns an :class:`LthError` or an ``OSError`` into ``error: <message>`` on stderr and
    exit status 2; anything else is a bug: its traceback, a line asking to report it, exit 1.
    Ctrl-C and SIGTERM stop the run with one line saying what to do then (``after_a_stop``:
    resume, or, for a command that keeps nothing of a stopped run, start again).

    Positional arguments (absl leaves them in ``argv``) are refused the same way.

    >>> main = user_errors_as_one_line(lambda argv: open("/nonexistent/x"))
    >>> main(["imp"])  # doctest: +SKIP
    error: /nonexistent/x: no such file or directory (check the path)
    """

    if main is None:
        return functools.partial(user_errors_as_one_line, after_a_stop=after_a_stop)

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        _stop_on_sigterm()
        try:
            if len(argv) > 1:
                raise LthError(
                    f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value"
                )
            main(argv)
            for timer in _again:  # it ended before a stop it kept from a finalizer came again
                timer.cancel()
        except LthError as error:
            print(f"error: {default_named(str(error))}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except OSError as error:
            print(f"error: {os_error_line(error, _output_flag())}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt as stop:
            if isinstance(stop, Terminated) or _sigterm_received:
                print(f"stopped by SIGTERM; {after_a_stop}", file=sys.stderr)
                # 128 + the signal, as a shell reports a process SIGTERM ended; exiting
                # (rather than dying of it) lets the exit handlers tidy up (Ray, temp files).
                sys.exit(128 + signal.SIGTERM)
            print(f"interrupted; {after_a_stop}", file=sys.stderr)
            sys.exit(130)
        except Exception as error:
            line = tensorflow_file_error_line(error)
            if line is not None:
                print(f"error: {line}", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            traceback.print_exc()
            print(
                f"error: {type(error).__name__} is a bug in lth_tf; please report it with the "
                "command and the traceback above",
                file=sys.stderr,
            )
            sys.exit(EXIT_BUG)

    return wrapped


# A flag file is a few lines of flags: anything larger is not one (``/dev/zero`` would be read
# until memory runs out).
MAX_FLAGFILE_BYTES = 1 << 20


def check_flagfiles(argv: list[str]) -> None:
    """Refuses a ``--flagfile`` that is not a regular file of at most 1 MiB (a FIFO would
    hang absl's reader, a device fill memory) before absl reads it.

    >>> check_flagfiles(["imp", "--flagfile=/dev/zero"])  # doctest: +SKIP
    flags.Error: --flagfile=/dev/zero is not a regular file; ...
    """
    for index, argument in enumerate(argv[1:], start=1):
        if argument.startswith(("--flagfile=", "-flagfile=")):
            path = argument.split("=", 1)[1]
        elif argument in ("--flagfile", "-flagfile") and index + 1 < len(argv):
            path = argv[index + 1]
        else:
            continue
        try:
            status = os.stat(path)
        except OSError as error:
            raise flags.Error(f"--flagfile={path}: {error.strerror.lower()}") from None
        if not stat.S_ISREG(status.st_mode):
            raise flags.Error(f"--flagfile={path} is not a regular file; give a file of flags")
        if status.st_size > MAX_FLAGFILE_BYTES:
            raise flags.Error(
                f"--flagfile={path} is {status.st_size:,} bytes, more than a file of flags "
                f"({MAX_FLAGFILE_BYTES:,} at most)"
            )
        try:
            with open(path, encoding="utf-8") as text:
                text.read()
        except UnicodeDecodeError as error:
            raise flags.Error(
                f"--flagfile={path} is not text (byte {error.start} is not UTF-8); give a "
                "text file of flags, one --name=value a line"
            ) from None
        except OSError as error:
            raise flags.Error(f"--flagfile={path}: {error.strerror.lower()}") from None


def parse_flags_in_one_line(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a flag it cannot parse (``--rounds=abc``, an unknown name)
    refused as every other bad input is: one ``error:`` line on stderr, exit status 2.

    >>> parse_flags_in_one_line(["imp", "--rounds=abc"])  # doctest: +SKIP
    error: flag --rounds=abc: invalid literal for int() with base 10: 'abc' (--helpshort ...)
    """
    try:
        check_flagfiles(argv)
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def run(main: Callable[[list[str]], None]) -> None:
    """``app.run(main)`` with :func:`parse_flags_in_one_line`: every pipeline starts here."""
    # Before TensorFlow starts: its autograph files go to a folder of this run's, removed at
    # exit (and, after a kill, by the next run), never left in the system's temp dir for good.
    use_run_temp_dir()
    # absl's --help lists the flags of the program's main module; a console script
    # (lth-imp) is a small wrapper that defines none, so the pipeline's flags count as its.
    module = sys.modules[main.__module__]
    program = sys.argv[0] if sys.argv else ""
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(program, flag)
    # absl knows --help, --helpshort, --helpfull and -?, and exits 1 after printing the help:
    # help that was asked for is a success (a script's `lth-imp --help || exit` must go on).
    sys.argv = ["--help" if arg == "-h" else arg for arg in sys.argv]
    asked_for_help = any(
        arg.startswith("-") and arg.lstrip("-").split("=")[0] in _HELP_FLAGS for arg in sys.argv[1:]
    )
    try:
        app.run(main, flags_parser=parse_flags_in_one_line)
    except SystemExit as stop:
        if asked_for_help and stop.code == 1:
            sys.exit(0)
        raise


_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def setup_logging() -> None:
    """Progress lines from ``lth_tf`` on stdout, plain, without absl's prefixes."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    # tf.data warns about its own option plumbing under distribution strategies.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")
    logger = logging.getLogger("lth_tf")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
