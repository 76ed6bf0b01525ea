"""``python -m pipelines.imp``: its refusals (checked by its main in this process, and once
through a real process for the one-line-error wrapper), a run stopped by SIGTERM and resumed,
and a control run from the command line."""

import signal

import numpy as np
import pytest

from lth_tf import io
from lth_tf.lottery.imp import run_imp
from lth_tf.models import paper_defaults
from lth_tf.monitoring.report import write_report
from tests.helpers import (
    QUIET,
    assert_one_line_error,
    run_killed_after_a_checkpoint,
    run_main,
    run_pipeline,
    with_changes,
)

SMALL_RUN = ["--model=lenet300_100", "--dataset=mnist", "--noprogress"]


def test_a_refusal_is_one_line_on_stderr_and_exit_2(idx_dir, tmp_path):
    """The one-line-error wrapper in a real process: an LthError raised after TensorFlow
    started (in run_imp, once the data is loaded) is ``error: ...`` alone on stderr, exit
    status 2, no traceback. Every other refusal is checked in-process (run_main)."""
    result = run_pipeline(
        "pipelines.imp",
        *SMALL_RUN,
        f"--data_dir={idx_dir}",
        "--iterations=50",
        "--rewind=10ep",
        "--rounds=1",
        f"--output_dir={tmp_path}",
    )
    assert_one_line_error(result, "error: --rewind=10ep is iteration")


def test_a_refusal_of_a_value_the_user_did_not_give_names_it_the_default(idx_dir, tmp_path):
    """Your own model rewinds to 1ep unless --rewind says otherwise: a user who gave no
    --rewind must not look for one in their command (a given one is named as given, above)."""
    result = run_pipeline(
        "pipelines.imp",
        "--model=tests.user_model:residual_net",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--iterations=1it",
        "--rounds=1",
        f"--output_dir={tmp_path}",
    )
    assert_one_line_error(result, "error: the default --rewind=1ep is ")


def test_a_value_is_named_by_where_it_came_from():
    """Given, set by the command itself (--rewind=stable trains its dense run at 0), a
    default, or a branch's parent's."""
    import pipelines.imp
    from pipelines.common import default_named

    flags = pipelines.imp.FLAGS
    flags.unparse_flags()
    try:
        flags(["imp", "--model=lenet300_100", "--rewind=2ep"])
        assert default_named("--rewind=2ep is past") == "--rewind=2ep is past"
        assert default_named("--batch_size=60 is odd") == "the default --batch_size=60 is odd"
        flags.unparse_flags()
        flags(["imp", "--model=lenet300_100"])
        flags.rewind = "0"
        assert default_named("--rewind=0it is odd") == "--rewind=0it is odd"
        flags.unparse_flags()
        flags(["imp", "--branch_of=runs/a", "--control=random_reinit"])
        said = default_named("--model=nets/mine.keras: does not exist")
        assert said == "the parent experiment's --model=nets/mine.keras: does not exist"
    finally:
        flags.unparse_flags()


@pytest.mark.parametrize(
    "flag, reason",
    [
        ("--rounds=abc", "flag --rounds=abc: 'abc': write a whole number in the digits 0-9"),
        ("--steps_per_execution=1.5", "flag --steps_per_execution=1.5: '1.5': use auto or an"),
        ("--steps_per_execution=0", "flag --steps_per_execution=0: '0': use auto or an integer"),
        ("--roundz=1", "Unknown command line flag 'roundz'"),
        ("--jit_compile=maybe", "flag --jit_compile=maybe: 'maybe': use auto, true or false"),
    ],
)
def test_a_flag_absl_cannot_parse_is_one_line_and_exit_2(flag, reason, capsys):
    """absl itself refuses these, in two lines and exit 1; every pipeline parses through
    ``parse_flags_in_one_line`` (``common.run``), which makes it the usual one line, exit 2."""
    import pipelines.imp
    from pipelines.common import parse_flags_in_one_line

    pipelines.imp.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit:
            parse_flags_in_one_line(["imp", flag])
    finally:
        pipelines.imp.FLAGS.unparse_flags()
    assert exit.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1
    assert reason in stderr


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--model=nope"], "unknown model 'nope'"),
        (["--prune_rates=fc=1.5"], "fc=1.5 is not in [0, 1)"),
        (["--rewind=soon"], "'soon' is not a step"),
        (["--rewind=40O"], "--rewind: '40O' is not a step"),  # as typed, a letter O for a 0
        (["--rewind=stabel"], "--rewind=stabel is not a step; did you mean --rewind=stable?"),
        (["--strategy=warp"], "unknown strategy 'warp'"),
        (["--dataset=imagenet"], "unknown dataset 'imagenet'"),
        (["--iterations=0"], "--iterations must be more than 0"),
        (["--mixed_precision=half"], "--mixed_precision: unknown 'half'"),
        # Numbers, checked in the dataclasses (NaN passes a plain comparison) or, for the
        # execution flags, by the pipeline: all before TensorFlow starts.
        (["--seed=-1"], "--seed must be an integer in [0, 2147483647], got -1"),
        (["--seed=2147483648"], "--seed must be an integer in [0, 2147483647]"),
        (["--learning_rate=nan"], "--learning_rate must be a finite number > 0, got nan"),
        (["--learning_rate=inf"], "--learning_rate must be a finite number > 0, got inf"),
        (["--learning_rate=0"], "--learning_rate must be a finite number > 0, got 0"),
        (["--weight_decay=nan"], "--weight_decay must be a finite number >= 0, got nan"),
        (["--weight_decay=-1"], "--weight_decay must be a finite number >= 0"),
        (["--optimizer=sgd", "--momentum=-5"], "--momentum must be a finite number in [0, 1)"),
        (["--optimizer=sgd", "--momentum=1"], "--momentum must be a finite number in [0, 1)"),
        (["--momentum=nan"], "--momentum must be a finite number in [0, 1), got nan"),
        (["--batch_size=0"], "--batch_size must be an integer >= 1, got 0"),
        (["--lr_drop_factor=nan"], "--lr_drop_factor must be a finite number in (0, 1]"),
        (["--lr_drop_factor=2"], "--lr_drop_factor must be a finite number in (0, 1]"),
        (["--rounds=-1"], "--rounds must be an integer in [0, 1000], got -1"),
        (["--prune_rates=fc=nan"], "fc=nan is not in [0, 1)"),
        (["--virtual_cpus=0"], "--virtual_cpus must be an integer in [1, "),
        (
            ["--branch_of=/nonexistent", "--control=random_prune", "--control_seed=-1"],
            "--control_seed must be an integer in [0, 2147483647], got -1",
        ),
    ],
)
def test_bad_flags_exit_nonzero_with_one_line(flags, reason, tmp_path):
    result = run_main("pipelines.imp", *flags, f"--output_dir={tmp_path}")
    assert_one_line_error(result, reason)
    assert list(tmp_path.iterdir()) == []  # refused before any experiment directory exists


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--pruning=global"], "different rates (conv=0.0,fc=0.2,output=0.1)"),
        (["--control=random_reinit"], "--control and --control_seed need --branch_of"),
        (["--branch_of=/nonexistent"], "--branch_of needs --control"),
        (
            ["--branch_of=/nonexistent", "--control=random_prune", "--learning_rate=0.1"],
            "--learning_rate cannot be set with --branch_of",
        ),
        (["--branch_of=/nonexistent", "--control=random_prune"], "is not a directory"),
    ],
)
def test_bad_branch_and_scope_flags_exit_with_one_line(flags, reason, tmp_path):
    result = run_main("pipelines.imp", *flags, f"--data_dir={tmp_path}", "--noprogress")
    assert_one_line_error(result, reason)


def _comparable(experiment):
    rows = io.read_csv(experiment / "results.csv")
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def test_run_stopped_by_sigterm_mid_round_says_so_and_resumes_to_the_uninterrupted_results(
    idx_dir, tmp_path
):
    """A scheduler's stop (SIGTERM) ends the run with one line and the status of the signal;
    the rerun it asks for gives the uninterrupted run's results bit for bit. (SIGKILL's
    resume is tested with a custom model, channel tickets and a recipe.)"""
    flags = [
        *SMALL_RUN,
        f"--data_dir={idx_dir}",
        "--rounds=2",
        "--iterations=300",
        "--eval_every=20",
        "--rewind=30it",
        # Killed in round 1, which draws its own batches: the resume must find them again.
        "--data_order=per_round",
        # A metric callback of the tests' own (a running mean: state the resume must restore).
        "--callback=tests.metric_callback:MaskedWeightNorm",
        f"--output_dir={tmp_path}",
    ]
    whole = run_pipeline("pipelines.imp", *flags, "--experiment_name=whole")
    assert whole.returncode == 0, whole.stderr

    stopped = run_killed_after_a_checkpoint(
        *flags, "--experiment_name=killed", stop_with=signal.SIGTERM
    )
    assert stopped.stderr.strip().splitlines()[-1] == (
        "stopped by SIGTERM; rerun the same command to resume"
    ), stopped.stderr
    assert "Traceback" not in stopped.stderr
    checkpoint = tmp_path / "killed" / "round_01" / "checkpoint.npz"
    assert checkpoint.exists(), "the run never checkpointed round 1"
    assert len(io.read_csv(tmp_path / "killed" / "results.csv")) == 1  # only round 0 finished

    resumed = run_pipeline("pipelines.imp", *flags, "--experiment_name=killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumes at iteration" in resumed.stdout
    assert _comparable(tmp_path / "killed") == _comparable(tmp_path / "whole")
    for pruning_round in range(3):
        for file in ("masks.npz", "weights.npz"):
            a = io.read_npz(tmp_path / "whole" / f"round_{pruning_round:02d}" / file)
            b = io.read_npz(tmp_path / "killed" / f"round_{pruning_round:02d}" / file)
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])
        # The callback's columns too, its running mean included.
        evaluations = f"round_{pruning_round:02d}/evaluations.csv"
        killed_rows = io.read_csv(tmp_path / "killed" / evaluations)
        assert killed_rows == io.read_csv(tmp_path / "whole" / evaluations)
        seen = [float(row["evaluations_seen"]) for row in killed_rows]
        assert seen == list(range(1, len(seen) + 1))


def test_a_control_runs_from_the_command_line_beside_its_parent(idx_dir, mnist_data, tmp_path):
    hparams = with_changes(
        paper_defaults("lenet300_100", "mnist"),
        training={"iterations": "30it"},
        pruning={"rounds": 1, "rewind": "10it"},
    )
    run_imp(hparams, tmp_path, "lenet", QUIET, data=mnist_data)
    branch = run_pipeline(
        "pipelines.imp",
        f"--branch_of={tmp_path / 'lenet'}",
        "--control=random_prune",
        "--noprogress",
        "--notensorboard",
        f"--data_dir={idx_dir}",
    )
    assert branch.returncode == 0, branch.stderr
    assert f"Results: {tmp_path / 'lenet-random_prune' / 'results.csv'}" in branch.stdout
    _, csv = write_report([tmp_path / "lenet", tmp_path / "lenet-random_prune"], tmp_path / "r")
    labels = [row["label"] for row in io.read_csv(csv)]
    assert labels == ["control=none"] * 2 + ["control=random_prune"] * 2


def test_a_run_logged_to_a_file_has_plain_progress_lines(idx_dir, tmp_path):
    """Not a terminal (a pipe here, a file under `> log 2>&1`): no carriage returns or
    backspaces, lines under 100 columns, the experiment and each round's wall time printed."""
    result = run_pipeline(
        "pipelines.imp",
        "--model=lenet300_100",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--rounds=1",
        "--iterations=300",
        f"--output_dir={tmp_path}",
        "--experiment_name=logged",
        "--notensorboard",
    )
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert "\r" not in log and "\x08" not in log
    lines = result.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert f"Experiment: {tmp_path / 'logged'}" in lines
    progress = [line for line in lines if " it/s | loss " in line]
    assert any("Round 1: 300/300 (100%)" in line for line in progress)
    round_lines = [line for line in lines if line.startswith("round ")]
    assert len(round_lines) == 2 and all(line.endswith(" s") for line in round_lines)


@pytest.mark.parametrize(
    "args, value",
    [
        ([], "auto"),
        (["--jit_compile"], True),
        (["--nojit_compile"], False),
        (["--jit_compile=auto"], "auto"),
        (["--jit_compile=false"], False),
        (["--jit_compile=True"], True),
    ],
)
def test_jit_compile_is_auto_unless_told_on_or_off(args, value):
    import pipelines.imp
    from pipelines.common import parse_flags_in_one_line

    pipelines.imp.FLAGS.unparse_flags()
    try:
        parse_flags_in_one_line(["imp", *args])
        assert pipelines.imp.FLAGS.jit_compile == value
        assert pipelines.imp.FLAGS["jit_compile"].serialize() in (
            f"--jit_compile={str(value).lower()}",
            "",  # a flag left at its default serializes to nothing
        )
    finally:
        pipelines.imp.FLAGS.unparse_flags()
