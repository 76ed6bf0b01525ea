"""What several test modules share: small hyperparameters, tiny datasets in memory and as IDX
files, and two ways to run a pipeline: a real ``python -m`` process (:func:`run_pipeline`) or
its ``main`` in this process (:func:`run_main`).

Importing it starts no TensorFlow (``tests/config/test_imports.py`` checks), so the tests of
plain data import it for free; what builds networks is in :mod:`tests.tf_helpers`."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import importlib
import io
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lth_tf  # noqa: F401  (environment before TensorFlow)
from lth_tf.config import ExperimentHparams, PruneRates
from lth_tf.data.sources import ImageDataset
from lth_tf.execution import Execution
from lth_tf.models import paper_defaults

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Keys every stability result file (stability/round_NN.json) has.
STABILITY_RESULT_KEYS = {
    "l2_distance_data_order",
    "l2_distance_pruning",
    "instability",
    "path_errors",
}
# In-process runs: no progress bar, no TensorBoard logs (a test that reads them asks for them),
# and no XLA timing (its choice depends on the machine; a test of XLA asks for it).
QUIET = Execution(jit_compile=False, show_progress=False, tensorboard=False)
# lenet300_100's layerwise rates (fc 0.2, output 0.1), the LTH paper's.
LENET_RATES = paper_defaults("lenet300_100", "mnist").pruning.rates
# The rates of conftest's lenet_runs: after 2 rounds fc kernels keep 25% and the output 49%, so
# the export stores every kernel sparse (>= 30% zeros), and blocks of 4 input rows are whole.
TICKET_RATES = PruneRates(fc=0.5, output=0.3)


# -- hyperparameters ---------------------------------------------------------------------------


def with_changes(hparams: ExperimentHparams, **groups) -> ExperimentHparams:
    """``hparams`` with fields replaced by group: ``with_changes(h, training={"seed": 1})``."""
    for group, values in groups.items():
        hparams = dataclasses.replace(
            hparams, **{group: dataclasses.replace(getattr(hparams, group), **values)}
        )
    return hparams


def lenet_hparams(
    *,
    iterations: str = "30it",
    eval_every: str = "10it",
    rounds: int = 1,
    rewind: str | None = None,
    **groups,
) -> ExperimentHparams:
    """lenet300_100 on MNIST with the paper's defaults but a few iterations and rounds; the
    rewind point stays the recipe's (0) unless given. ``groups``: further changes, as for
    :func:`with_changes` (applied last)."""
    pruning = {"rounds": rounds} | ({} if rewind is None else {"rewind": rewind})
    hparams = with_changes(
        paper_defaults("lenet300_100", "mnist"),
        training={"iterations": iterations, "eval_every": eval_every},
        pruning=pruning,
    )
    return with_changes(hparams, **groups)


# -- data --------------------------------------------------------------------------------------


def as_before_a_field(hparams_json: Path, dotted_key: str) -> dict:
    """Rewrites ``hparams_json`` as an lth_tf from before ``dotted_key`` (e.g.
    ``training.data_order``) wrote it: without that key, nor the hash of its hyperparameters
    (younger still); returns the fields written."""
    from lth_tf import io as lth_io
    from lth_tf.experiment import HPARAMS_HASH_KEY

    group, key = dotted_key.split(".")
    fields = lth_io.read_json(hparams_json)
    del fields["hparams"][group][key], fields[HPARAMS_HASH_KEY]
    lth_io.write_json(hparams_json, fields)
    return fields


def make_images(count: int, shape=(28, 28, 1), classes: int = 10, seed: int = 0):
    """Random uint8 images whose label is written into their brightness, so nets can learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=count)
    images = rng.integers(0, 80, size=(count, *shape))
    images[..., : shape[0] // 2, :, :] += (labels * 17)[:, None, None, None]
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def tiny_dataset(
    train: int = 600, val: int = 120, test: int = 200, shape=(28, 28, 1)
) -> ImageDataset:
    images, labels = make_images(train + val + test, shape)
    return ImageDataset(
        name="tiny",
        train_images=images[:train],
        train_labels=labels[:train],
        val_images=images[train : train + val],
        val_labels=labels[train : train + val],
        test_images=images[train + val :],
        test_labels=labels[train + val :],
        num_classes=10,
        source="tests",
    )


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """Writes a uint8 array as an IDX file (the format read_idx parses), gzipped unless not."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


# -- masks -------------------------------------------------------------------------------------


def blocks_are_whole(mask: np.ndarray, block: tuple[int, int]) -> bool:
    rows, cols = mask.shape
    grid = mask.reshape(rows // block[0], block[0], cols // block[1], block[1])
    return bool(np.all(grid.min(axis=(1, 3)) == grid.max(axis=(1, 3))))


# -- the network -------------------------------------------------------------------------------


def free_port() -> int:
    """A localhost port nothing listens on (for now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port_url() -> str:
    """An http URL on localhost where nothing listens, so the network probe fails at once."""
    return f"http://127.0.0.1:{free_port()}/"


# -- the pipelines -----------------------------------------------------------------------------


def run_pipeline(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m module args`` from the repository root, capturing text output."""
    return run_python("-m", module, *args, timeout=timeout)


def run_python(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python args`` (e.g. ``-c CODE``) from the repository root, capturing text output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _tensorflow_would_start() -> None:
    raise AssertionError("the command line passed every check made before TensorFlow starts")


def run_main(module: str, *args: str, tensorflow: bool = False) -> subprocess.CompletedProcess:
    """``python -m module args`` in this process: the pipeline's ``main``, one-line-error
    wrapper included, on its flags parsed from ``args``; stdout, stderr and the exit status
    as :func:`run_pipeline` gives them.

    For the checks a pipeline makes before TensorFlow starts: reaching that point is a test
    failure (unless ``tensorflow``: then the whole run happens here, in the test process's
    TensorFlow), and logging is left as the tests have it. Only pipelines whose flags can be
    defined beside ``pipelines.imp``'s (imp, report) load here; export's and stability's share
    names with it (``--rewind``, ``--output_dir``), so their checks are the library's
    (``open_ticket``, ``plan_stability``), and their wrappers run in a process of their own.
    """
    pipeline = importlib.import_module(module)
    program = module.rsplit(".", 1)[-1]
    stdout, stderr = io.StringIO(), io.StringIO()
    pipeline.FLAGS.unparse_flags()
    try:
        pipeline.FLAGS([program, *args])
        with (
            pytest.MonkeyPatch.context() as patch,
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            if hasattr(pipeline, "setup_logging"):
                patch.setattr(pipeline, "setup_logging", lambda: None)
            if hasattr(pipeline, "start_tensorflow_quietly"):
                start = (lambda: None) if tensorflow else _tensorflow_would_start
                patch.setattr(pipeline, "start_tensorflow_quietly", start)
            try:
                pipeline.main([program])
                returncode = 0
            except SystemExit as exit:
                returncode = exit.code
    finally:
        pipeline.FLAGS.unparse_flags()
    return subprocess.CompletedProcess(
        [module, *args], returncode, stdout.getvalue(), stderr.getvalue()
    )


def imp_hparams(*args: str) -> ExperimentHparams:
    """``pipelines.imp``'s hyperparameters for a command line, parsed in this process into its
    own (global) flags, as it builds them (a branch's included)."""
    # Imported on use, as run_main imports its pipeline: importing defines its global flags,
    # and export's and stability's share names with them.
    from pipelines import imp as pipeline

    pipeline.FLAGS.unparse_flags()
    pipeline.FLAGS(["imp", *args])
    try:
        return pipeline.hparams_from_flags()
    finally:
        pipeline.FLAGS.unparse_flags()


def assert_one_line_error(result: subprocess.CompletedProcess, reason: str) -> None:
    """The pipeline refused with ``error: ...reason...`` as its only stderr line and exit 2."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# `python -m pipelines.imp`, but the process sends itself a signal (SIGKILL unless
# $LTH_TEST_STOP_SIGNAL names another) as soon as the first checkpoint of round 1 is on disk:
# stopped mid-round at the same point however fast the machine is.
KILLED_AFTER_A_CHECKPOINT = """
import os, signal, sys
from lth_tf import io

write_npz = io.write_npz
stop_with = signal.Signals[os.environ.get("LTH_TEST_STOP_SIGNAL", "SIGKILL")]

def write_then_die(path, *args, **kwargs):
    write_npz(path, *args, **kwargs)
    if str(path).endswith(os.path.join("round_01", "checkpoint.npz")):
        os.kill(os.getpid(), stop_with)

io.write_npz = write_then_die
sys.argv[0] = "imp"
from pipelines.imp import run
run()
"""


def run_killed_after_a_checkpoint(
    *flags: str, stop_with: signal.Signals = signal.SIGKILL
) -> subprocess.CompletedProcess:
    """``python -m pipelines.imp flags`` in its own process, sent ``stop_with`` right after
    round 1's first checkpoint is written (:data:`KILLED_AFTER_A_CHECKPOINT`); checks that the
    signal ended it (SIGKILL at once; SIGTERM through the pipeline's exit status 143)."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_A_CHECKPOINT, *flags],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), LTH_TEST_STOP_SIGNAL=stop_with.name),
        capture_output=True,
        text=True,
        timeout=600,
    )
    stopped = -stop_with if stop_with == signal.SIGKILL else 128 + stop_with
    assert killed.returncode == stopped, killed.stderr
    return killed
