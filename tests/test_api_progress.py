"""What ``lth_tf.find_tickets`` shows while it runs: a progress bar per round where a person
watches (a terminal: a pty here), one plain line per round in a pipe, and never TensorFlow's
start-up lines on stderr, though the script imports ``tf_keras`` itself as a user does.
``progress=True/False`` forces the bar on or off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lth_tf
from lth_tf.errors import LthError
from tests.helpers import ROOT

# A user's script: lth_tf first, then tf_keras for the model, then find_tickets (3 rounds).
SCRIPT = """
import sys
import numpy as np
import lth_tf
import tf_keras as keras

rng = np.random.default_rng(0)
y = rng.integers(0, 3, 200)
x = rng.normal(size=(200, 6)).astype(np.float32) + y[:, None]
inputs = keras.Input((6,))
model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8)(inputs)), name="tiny")
experiment = lth_tf.find_tickets(
    model, (x[:160], y[:160]), (x[160:], y[160:]), output_dir=sys.argv[1],
    experiment_name="progress", rounds=2, iterations="20it", eval_every="10it", rewind="0it",
    tensorboard=False, jit_compile=False,
)
print("done:", experiment.rounds)
"""
ROUND_LINE = re.compile(r"^round +(\d+) \|", re.M)
# What TensorFlow prints at its start (import and device probe) on a machine without a GPU, and
# on one with CUDA.
START_UP = ("absl::InitializeLog", "oneDNN", "cuda", "CUDA", "I0000", "E0000", "W0000")


def script(tmp_path: Path) -> list[str]:
    path = tmp_path / "user_script.py"
    path.write_text(SCRIPT)
    return [sys.executable, str(path), str(tmp_path / "runs")]


def environment() -> dict[str, str]:
    # As a user runs it: TensorFlow's log level left unset.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return env | {"PYTHONPATH": str(ROOT)}


def test_in_a_pipe_it_prints_one_line_per_round_and_no_start_up_lines(tmp_path) -> None:
    result = subprocess.run(
        script(tmp_path),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [int(r) for r in ROUND_LINE.findall(result.stdout)] == [0, 1, 2], result.stdout
    # No bar, no per-round title, nothing a log file would hold as control characters.
    assert "Round 0" not in result.stdout and "it/s" not in result.stdout, result.stdout
    assert "\r" not in result.stdout and "\b" not in result.stdout
    assert result.stdout.rstrip().endswith("done: [0, 1, 2]")
    assert not any(words in result.stderr for words in START_UP), result.stderr


def test_in_a_terminal_it_shows_a_progress_bar(tmp_path) -> None:
    primary, secondary = os.openpty()
    process = subprocess.Popen(
        script(tmp_path),
        cwd=ROOT,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    while True:  # until the child exits and the pty reports EIO
        try:
            chunk = os.read(primary, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=300) == 0
    shown = b"".join(chunks).decode(errors="replace")
    # Keras's bar for each round, redrawn in place, then the round's line.
    for pruning_round in range(3):
        assert f"Round {pruning_round}\r\n" in shown, shown
    assert "20/20 [==============================]" in shown, shown
    assert [int(r) for r in ROUND_LINE.findall(shown.replace("\r\n", "\n"))] == [0, 1, 2]
    assert not any(words in shown for words in START_UP), shown


def test_progress_true_forces_progress_where_nobody_watches(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    x = rng.normal(size=(100, 4)).astype(np.float32) + y[:, None]

    def builder(input_shape, num_classes):
        import tf_keras as keras

        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(inputs))

    experiment = lth_tf.find_tickets(
        builder,
        (x[:80], y[:80]),
        (x[80:], y[80:]),
        output_dir=tmp_path,
        rounds=0,
        iterations="10it",
        eval_every="5it",
        tensorboard=False,
        jit_compile=False,
        progress=True,
    )
    printed = capsys.readouterr().out
    # stdout is pytest's capture, no terminal: the bar's plain lines.
    assert "Round 0" in printed and "it/s" in printed and "\r" not in printed, printed
    # The keyword arguments are the run's Execution: no TensorBoard logs, XLA as asked.
    assert not (experiment.path / "tensorboard").exists()
    (session,) = json.loads((experiment.path / "sessions.json").read_text())
    assert session["jit_compile"] is False and session["xla_training"] is False


def test_a_notebook_kernel_counts_as_watched_and_gets_the_bar(monkeypatch, capsys) -> None:
    from types import SimpleNamespace

    from lth_tf.monitoring.progress import ProgressBar
    from lth_tf.monitoring.watching import in_notebook, person_watching

    assert not in_notebook() and not person_watching()  # pytest captures both streams
    # A terminal IPython: a shell without a kernel.
    shell = SimpleNamespace()
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    assert not in_notebook() and not person_watching()
    shell.kernel = object()  # ipykernel's shell: a notebook's cell shows output as it comes
    assert in_notebook() and person_watching()
    assert not ProgressBar(0, 10, "Round 0").plain
    capsys.readouterr()


def test_progress_takes_true_false_or_none() -> None:
    with pytest.raises(LthError, match="progress must be True, False or None, got 'yes'"):
        lth_tf.find_tickets("lenet300_100", dataset="mnist", progress="yes")


def test_a_plain_line_shows_test_accuracy_where_there_is_no_validation_split(capsys) -> None:
    from lth_tf.monitoring.progress import ProgressBar
    from lth_tf.training.loop import Chunk, TrainingProgress
    from lth_tf.training.trainer import Evaluation

    nan = float("nan")
    for val_accuracy, shown in [(0.85, "val 0.8500"), (nan, "test 0.8100")]:
        bar = ProgressBar(0, 10, "Round 0", plain=True)
        progress = TrainingProgress(iteration=10)
        progress.evaluations.append(Evaluation(10, 0.4, val_accuracy, 0.5, 0.81))
        bar.on_chunk(Chunk(0, 5, 0.3, 0.9, False), progress)
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.endswith(f"| loss 0.3000 acc 0.9000 {shown}"), line
        assert "nan" not in line
