"""``python -m pipelines.stability`` end to end: a rewind sweep watched by a ``--callback``, then
a rerun that recomputes nothing; and the one-line-error wrapper in a real process. The plans it
refuses are checked in-process in tests/stability/test_analysis.py."""

import json

import numpy as np
import pytest

from lth_tf import io
from lth_tf.lottery.imp import run_imp
from lth_tf.monitoring.tensorboard import logged_tags
from tests.helpers import (
    PNG_MAGIC,
    QUIET,
    STABILITY_RESULT_KEYS,
    assert_one_line_error,
    lenet_hparams,
    run_pipeline,
)


@pytest.fixture(scope="module")
def lth_experiment(tmp_path_factory, mnist_data):
    """Rounds 0 and 1 of 40 iterations, rewinding to iteration 0 (the LTH); round 1 replays
    round 0's batches (--data_order=fixed), so copy 0 retrains it exactly."""
    root = tmp_path_factory.mktemp("stability_cli")
    hparams = lenet_hparams(
        iterations="40it", eval_every="20it", rewind="0it", training={"data_order": "fixed"}
    )
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
    # A callback of the tests' own: it logs every copy it sees to <experiment>/hook_log.txt.
    flags = ["--round=1", "--seeds=2", "--points=4", "--callback=tests.hook_log_callback:HookLog"]
    result = stability(root, idx_dir, *flags, "--rewind_sweep=0,10it,20it")
    assert result.returncode == 0, result.stderr
    folder = root / "stability"
    for stem in ("round_01", "round_01-10it", "round_01-20it"):
        assert STABILITY_RESULT_KEYS <= set(json.loads((folder / f"{stem}.json").read_text()))
        assert (folder / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    rows = io.read_csv(folder / "round_01-sweep.csv")
    assert [int(row["rewind_iteration"]) for row in rows] == [0, 10, 20]
    assert {row["masks"] for row in rows} == {"fixed"}
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
    # Each copy a round for the callback, rewind point by rewind point (recomputing the rewind
    # points 10 and 20 is not one); each trained k -> 40, every iteration seen.
    log = (root / "hook_log.txt").read_text().splitlines()
    assert log[0] == "run_start lenet300_100" and log[-1] == "run_end"
    ends = [line for line in log if line.startswith("round_end")]
    assert [line.split(" in ")[0] for line in ends] == [
        f"round_end round 1 rewind {k} seed {seed} trained {40 - k} seen {40 - k}"
        for k in (0, 10, 20)
        for seed in own["data_seeds"]
    ]
    assert len(log) == 2 + 2 * len(ends)

    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    events = sorted((root / "tensorboard" / "stability").iterdir())
    again = stability(root, idx_dir, *flags, "--rewind=0")
    assert again.returncode == 0, again.stderr
    assert "results already in" in again.stdout and "instability" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    assert sorted((root / "tensorboard" / "stability").iterdir()) == events
    # The rerun trained no copy: its callback saw a run without rounds.
    assert (root / "hook_log.txt").read_text().splitlines()[len(log) :] == [
        "run_start lenet300_100",
        "run_end",
    ]
    # A later sweep of this round adds to it: its table keeps the points analysed before.
    more = stability(root, idx_dir, *flags, "--rewind_sweep=10it")
    assert more.returncode == 0, more.stderr
    assert "also holds the rewind points analysed before with these settings: 0it, 20it" in (
        more.stdout + more.stderr
    )
    rows = io.read_csv(folder / "round_01-sweep.csv")
    assert [int(row["rewind_iteration"]) for row in rows] == [0, 10, 20]


def test_pipeline_across_experiments_each_at_its_own_rewind_point(
    lth_experiment, idx_dir, mnist_data, tmp_path
):
    # As lth_experiment's, but for the rewind point: a sweep's experiments differ in it alone.
    hparams = lenet_hparams(
        iterations="40it", eval_every="20it", rewind="10it", training={"data_order": "fixed"}
    )
    rewound = run_imp(hparams, tmp_path, "rewound", QUIET, data=mnist_data).root
    # An --output that cannot be written is refused before any copy trains, not after.
    (tmp_path / "a_file").write_text("")
    refused = run_pipeline(
        "pipelines.stability",
        f"--experiments={rewound},{lth_experiment.root}",
        f"--output={tmp_path / 'a_file' / 'own'}",
        "--round=1",
    )
    assert_one_line_error(refused, "a_file: not a directory")
    assert not (rewound / "stability").exists()
    output = tmp_path / "figures" / "own"
    result = run_pipeline(
        "pipelines.stability",
        f"--experiments={rewound},{lth_experiment.root}",
        f"--output={output}",
        f"--data_dir={idx_dir}",
        "--round=1",
        "--seeds=2",
        "--points=3",
        "--noprogress",
        "--nojit_compile",
    )
    assert result.returncode == 0, result.stderr
    rows = io.read_csv(output.with_suffix(".csv"))
    assert [(row["masks"], int(row["rewind_iteration"])) for row in rows] == [
        ("own", 0),
        ("own", 10),
    ]
    assert output.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert "Sweep figure (own masks)" in result.stdout


@pytest.mark.parametrize(
    "flags, reason",
    [
        ([], "--round is required"),
        (["--round=last"], "'last' is not a round number"),
        (["--round=1", "--experiments=a,b"], "not both"),
        (["--round=1", "--callback=no_such_module_here:Metric"], "cannot import no_such_module"),
    ],
)
def test_a_refusal_is_one_line_on_stderr_and_exit_2(lth_experiment, idx_dir, flags, reason):
    """The one-line-error wrapper in a real process: ``error: ...`` alone on stderr, exit
    status 2, no traceback. These are the pipeline's own checks of --round, --experiments and
    --callback; they cannot run in the tests' process, where pipelines.imp's flags are defined
    (both have --rewind)."""
    result = stability(lth_experiment.root, idx_dir, *flags)
    assert_one_line_error(result, reason)


def test_help_lists_the_callback_flag():
    # pipelines.common defines it for pipelines.imp too; --help lists it as the pipeline's own.
    shown = run_pipeline("pipelines.stability", "--help")
    flat = " ".join(shown.stdout.split())  # absl wraps the help
    assert "--callback: package.module:Class, a lth_tf.callbacks.RunCallback" in flat
    assert "each copy's training is a round for it" in flat
