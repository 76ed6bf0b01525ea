"""``python -m pipelines.stability`` end to end: a rewind sweep, then a rerun that recomputes
nothing; bad flags and bad experiments refused with one line."""

import json
import shutil

import numpy as np
import pytest

from lth_tf import io
from lth_tf.imp import run_imp
from lth_tf.monitoring.tensorboard import logged_tags
from tests.helpers import PNG_MAGIC, QUIET, STABILITY_RESULT_KEYS, lenet_hparams, run_pipeline


@pytest.fixture(scope="module")
def lth_experiment(tmp_path_factory, mnist_data):
    """Rounds 0 and 1 of 40 iterations, rewinding to iteration 0 (the LTH)."""
    root = tmp_path_factory.mktemp("stability_cli")
    hparams = lenet_hparams(iterations="40it", eval_every="20it", rewind="0it")
    return run_imp(hparams, root, "lth", QUIET, data=mnist_data)


def stability(experiment, idx_dir, *flags):
    return run_pipeline(
        "pipelines.stability",
        f"--experiment_dir={experiment}",
        f"--data_dir={idx_dir}",
        "--noprogress",
        "--nojit_compile",  # as run_imp above, so recomputed points match it bit for bit
        *flags,
    )


def test_pipeline_sweep_then_rerun_recomputes_nothing(lth_experiment, idx_dir):
    root = lth_experiment.root
    flags = ["--round=1", "--seeds=2", "--points=4"]
    result = stability(root, idx_dir, *flags, "--rewind_sweep=0,10it,20it")
    assert result.returncode == 0, result.stderr
    folder = root / "stability"
    for stem in ("round_01", "round_01-10it", "round_01-20it"):
        assert STABILITY_RESULT_KEYS <= set(json.loads((folder / f"{stem}.json").read_text()))
        assert (folder / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    rows = io.read_csv(folder / "round_01-sweep.csv")
    assert [int(row["rewind_iteration"]) for row in rows] == [0, 10, 20]
    assert (folder / "round_01-sweep.png").read_bytes().startswith(PNG_MAGIC)

    # Copy 0 takes the experiment's seed: from iteration 0 it retrains round 1 exactly.
    copy = io.read_npz(folder / "round_01" / "rewind_0it" / "copy_seed0.npz")
    for name, value in io.read_npz(lth_experiment.weights(1)).items():
        np.testing.assert_array_equal(copy[name], value, err_msg=name)
    own = json.loads((folder / "round_01.json").read_text())
    assert own["path_errors"][0] == own["copy_test_errors"][0]
    assert own["path_errors"][-1] == own["copy_test_errors"][1]
    tags = logged_tags(root / "tensorboard" / "stability")
    assert {("round_01/instability", k) for k in (0, 10, 20)} <= tags
    assert ("round_01/rewind_20it/path_error", 3) in tags

    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    events = sorted((root / "tensorboard" / "stability").iterdir())
    again = stability(root, idx_dir, *flags, "--rewind=0")
    assert again.returncode == 0, again.stderr
    assert "results already in" in again.stdout and "instability" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    assert sorted((root / "tensorboard" / "stability").iterdir()) == events


@pytest.fixture(scope="module")
def unfinished(lth_experiment, tmp_path_factory):
    """The experiment as if it planned 3 rounds and stopped after round 1."""
    root = tmp_path_factory.mktemp("unfinished") / "lth"
    shutil.copytree(lth_experiment.root, root, ignore=shutil.ignore_patterns("stability"))
    saved = io.read_json(root / "hparams.json")
    saved["hparams"]["pruning"]["rounds"] = 3
    io.write_json(root / "hparams.json", saved)
    return root


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--round=1", "--seeds=1"], "--seeds must be at least 2"),
        (["--round=1", "--points=1"], "--points must be at least 2"),
        (["--round=1", "--rewind=soon"], "'soon' is not a step"),
        (["--round=1", "--rewind_sweep=0,soon"], "'soon' is not a step"),
        (["--round=1", "--rewind=10ep"], "not before the end of training (40 iterations"),
        (["--round=1", "--rewind=40it"], "not before the end of training"),
        (["--round=1", "--rewind=0", "--rewind_sweep=0,10it"], "not both"),
        (["--round=7"], "has no round 7 (it runs rounds 0-1)"),
        ([], "--round is required"),
        (["--round=last"], "'last' is not a round number"),
    ],
)
def test_bad_flags_exit_nonzero_with_one_line(lth_experiment, idx_dir, flags, reason):
    result = stability(lth_experiment.root, idx_dir, *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_experiments_exit_nonzero_with_one_line(tmp_path, idx_dir, unfinished):
    empty = tmp_path / "empty"
    empty.mkdir()
    for directory, reason in [
        (tmp_path / "missing", "does not exist"),
        (empty, "is not an lth_tf experiment (no hparams.json)"),
        (unfinished, "round 2 of"),
    ]:
        result = stability(directory, idx_dir, "--round=2")
        assert result.returncode == 2 and reason in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
    result = stability(unfinished, idx_dir, "--round=2")
    assert "has not finished; finished rounds: 0, 1" in result.stderr
