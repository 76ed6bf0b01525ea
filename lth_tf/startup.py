"""C++ chatter kept off the terminal: TensorFlow's start-up lines (for the pipelines and Ray's
workers), the TFLite converter's and LiteRT's; and a temporary folder of each run's own, so
that a killed run leaves no files in the system's temporary directory for good.

>>> use_run_temp_dir()  # doctest: +SKIP
PosixPath('/tmp/lth_tf-4242-k3j5x9ab')
>>> start_tensorflow_quietly()  # doctest: +SKIP
>>> with quiet_stderr():  # doctest: +SKIP
...     content = converter.convert()

Importing ``lth_tf`` makes TensorFlow's own first import quiet too
(:func:`quiet_tensorflow_import`), so a Python API user who imports ``tf_keras`` to build a model
sees none of its start-up lines.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.abc
import importlib.util
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

from lth_tf.orphans import RUN_TEMP_ENV, end_processes_of

__all__ = [
    "owns_run_temp_dir",
    "quiet_stderr",
    "quiet_tensorflow_import",
    "remove_dead_run_temp_dirs",
    "start_tensorflow_quietly",
    "use_run_temp_dir",
]

# <system temp>/lth_tf-<pid>-<random>/: a run's temporary folder. Its owner holds an advisory
# lock on OWNER_LOCK inside for its whole life; the kernel drops it however the owner ends, so
# a folder whose lock can be taken belongs to a run that is gone.
RUN_TEMP_NAME = re.compile(r"lth_tf-(\d+)-[A-Za-z0-9_]+")
OWNER_LOCK = ".owner"
# RUN_TEMP_ENV is passed to child processes (a local Ray's workers): they use their parent's
# folder, and name the run they belong to (lth_tf.orphans).
_run_temp_dir: Path | None = None


def use_run_temp_dir() -> Path | None:
    """Points this process's temporary files (:mod:`tempfile`, which TensorFlow's autograph
    writes its ``__autograph_generated_file*.py`` with) at a folder of its own, removed when
    the process exits; first removes the folders of runs that died without removing theirs
    (killed). Call it before TensorFlow starts. A process whose parent passed its folder in
    ``$LTH_TF_RUN_TEMP_DIR`` uses that one. None (the system's folder stays in use) where no
    folder can be made: tidiness is not worth failing a run over.

    ``TMPDIR`` itself stays as it is: Ray finds its clusters under it (``--ray_address=auto``).

    >>> use_run_temp_dir()  # doctest: +SKIP
    PosixPath('/tmp/lth_tf-4242-k3j5x9ab')
    """
    global _run_temp_dir
    if _run_temp_dir is not None:
        return _run_temp_dir
    inherited = os.environ.get(RUN_TEMP_ENV)
    if inherited and _is_run_temp_dir(Path(inherited)):
        _run_temp_dir = Path(inherited)
        tempfile.tempdir = inherited
        return _run_temp_dir
    system = tempfile.gettempdir()
    remove_dead_run_temp_dirs(system)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"lth_tf-{os.getpid()}-", dir=system))
    except OSError:
        return None
    try:
        lock = os.open(
            folder / OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    atexit.register(_remove_run_temp_dir, folder, lock, os.getpid())
    _run_temp_dir = folder
    tempfile.tempdir = str(folder)
    os.environ[RUN_TEMP_ENV] = str(folder)
    return folder


def owns_run_temp_dir() -> bool:
    """Whether this process made its run folder (rather than inheriting its parent's)."""
    if _run_temp_dir is None:
        return False
    match = RUN_TEMP_NAME.fullmatch(_run_temp_dir.name)
    return match is not None and int(match[1]) == os.getpid()


def remove_dead_run_temp_dirs(system: str | os.PathLike) -> list[Path]:
    """Deletes the run folders in ``system`` (a temporary directory) whose run is gone;
    returns them. Only this user's, and never one still in use.

    >>> remove_dead_run_temp_dirs("/tmp")  # doctest: +SKIP
    [PosixPath('/tmp/lth_tf-4242-k3j5x9ab')]
    """
    removed = []
    try:
        entries = [Path(entry.path) for entry in os.scandir(system)]
    except OSError:
        return removed
    for folder in entries:
        if _is_run_temp_dir(folder) and not _in_use(folder):
            end_processes_of(folder)  # what its run left running (a local Ray's agents)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _is_run_temp_dir(folder: Path) -> bool:
    """A real folder (not a link) of this user, named as :func:`use_run_temp_dir` names them."""
    if not RUN_TEMP_NAME.fullmatch(folder.name):
        return False
    try:
        info = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _in_use(folder: Path) -> bool:
    """Its owner lives: it holds the folder's lock (or, before it took it, its pid runs)."""
    try:
        lock = os.open(folder / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        # Made a moment ago and not locked yet, or its owner died in between: its pid says.
        return _is_alive(int(RUN_TEMP_NAME.fullmatch(folder.name)[1]))
    except OSError:
        return True
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(lock)
    return False


def _is_alive(pid: int) -> bool:
    """A process of that pid runs (``os.kill(pid, 0)`` delivers nothing, only checks)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def _remove_run_temp_dir(folder: Path, lock: int, owner: int) -> None:
    if os.getpid() != owner:  # a forked child exiting: the folder is still its parent's
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.close(lock)


@contextlib.contextmanager
def quiet_stderr(explained: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Captures what C++ libraries write to the process's stderr (file descriptor 2) while the
    block runs; it is shown after all if the block fails, unless with an ``explained`` error
    (one that says in its own words what went wrong) or stopped (Ctrl-C, SIGTERM: nothing
    went wrong that the lines could explain).

    TensorFlow prints lines about missing CUDA drivers at its start, the TFLite converter
    ``fully_quantize: 0, inference_type: 6, ...`` for every int8 file, LiteRT its delegate:
    none of it is for the user, and it buries the one line a user needs.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException as error:
            os.dup2(saved_fd, 2)
            if not isinstance(error, (*explained, KeyboardInterrupt)):
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with the C++ start-up chatter hidden."""
    with quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


def quiet_tensorflow_import() -> None:
    """Makes the process's first ``import tensorflow`` (whoever asks: ``tf_keras``, the user, a
    pipeline) run as :func:`start_tensorflow_quietly` does, its start-up lines and device probe
    hidden. Does nothing once TensorFlow is imported; installs itself once.

    Its C++ lines come before ``absl::InitializeLog`` and ignore ``TF_CPP_MIN_LOG_LEVEL``
    (oneDNN, CUDA drivers, cuInit); the device probe is what prints the CUDA ones, so it is
    made here too, not at the first model a user builds.

    >>> quiet_tensorflow_import()  # doctest: +SKIP
    >>> import tf_keras  # no "oneDNN custom operations are on", no cuInit error
    """
    if "tensorflow" in sys.modules or any(
        isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path
    ):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, with :class:`_QuietLoader` around its
    loader; leaves ``sys.meta_path`` once TensorFlow is imported."""

    def __init__(self) -> None:
        self.searching = False

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "tensorflow" or self.searching:
            return None
        self.searching = True  # the other finders' answer, not this one's again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """The real loader, its module executed inside :func:`quiet_stderr`."""

    def __init__(self, loader: importlib.abc.Loader, finder: _QuietTensorFlowFinder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)  # once: later imports are the interpreter's own
        if not _has_stderr():
            self.loader.exec_module(module)
            return
        with quiet_stderr():
            self.loader.exec_module(module)
            # The probe is for its lines only: TensorFlow imported is what the importer asked.
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()

    def __getattr__(self, name: str) -> Any:  # resource readers and the like
        return getattr(self.loader, name)


def _has_stderr() -> bool:
    """Both stderrs exist (a daemon, or ``pythonw``, may have neither): else nothing to hide."""
    try:
        os.fstat(2)
    except OSError:
        return False
    return sys.stderr is not None
