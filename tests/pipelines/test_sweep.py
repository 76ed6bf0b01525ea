"""``python -m pipelines.sweep`` and :mod:`lth_tf.sweep`: the plan, the refusals, and real
sweeps through a local Ray on this machine's CPUs (killed and resumed; a failing member).

The pipeline runs in processes of its own only: its flags share names with pipelines.imp's,
which other tests load into this process's flags.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lth_tf import io
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.lottery.branches import branch_of
from lth_tf.sweep import SWEEP_FILE, parse_seeds, plan_sweep
from tests.helpers import QUIET, ROOT, assert_one_line_error, run_pipeline

# 2 seeds x rewind {0, 20it} x random_reinit: 8 members of 1 pruning round of 40 iterations.
# Without XLA, as tests.helpers.QUIET runs the same members directly.
SMALL_SWEEP = (
    "--model=lenet300_100",
    "--dataset=mnist",
    "--seeds=0-1",
    "--rewind=0,20it",
    "--controls=random_reinit",
    "--rounds=1",
    "--iterations=40",
    "--eval_every=20",
    "--nojit_compile",
    "--notensorboard",
    "--max_parallel=2",
)
CHANGES = {"rounds": 1, "iterations": "40", "eval_every": "20"}


def sweep_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.sweep", *flags]


def members(root: Path) -> dict[str, dict]:
    return {member["name"]: member for member in io.read_json(root / SWEEP_FILE)["members"]}


def results_without_time(experiment: Path) -> list[dict]:
    return [
        {k: v for k, v in dataclasses.asdict(row).items() if k != "train_seconds"}
        for row in ExperimentDir(experiment).read_results()
    ]


# -- the plan --------------------------------------------------------------------------------


def test_a_plan_names_members_by_rewind_and_seed_and_branches_each_one(tmp_path):
    plan = plan_sweep(
        tmp_path,
        "lenet300_100",
        "mnist",
        changes=CHANGES,
        seeds=[0, 1],
        rewinds=["0", "20it"],
        controls=["random_reinit", "random_prune"],
    )
    names = [member.name for member in plan.members]
    assert names[:4] == [
        "rewind0it-seed0",
        "rewind0it-seed1",
        "rewind20it-seed0",
        "rewind20it-seed1",
    ]
    assert len(names) == 12 and len(set(names)) == 12
    ticket = plan.members[2]
    assert (ticket.hparams.training.seed, ticket.hparams.pruning.rewind) == (0, "20it")
    assert ticket.hparams.training.iterations == "40it" and ticket.parent is None
    branch = next(m for m in plan.members if m.name == "rewind20it-seed0-random_prune")
    assert branch.parent == "rewind20it-seed0"
    # A branch member is what pipelines.imp --branch_of would run.
    assert dataclasses.replace(branch.hparams, branch=ticket.hparams.branch) == ticket.hparams
    assert (branch.hparams.branch.control, branch.hparams.branch.parent) == (
        "random_prune",
        "rewind20it-seed0",
    )


def test_a_rewind_point_past_every_members_round_is_refused_before_any_member_trains(tmp_path):
    # 40it rounds (CHANGES): 60it would fail its members after the others trained, every rerun.
    with pytest.raises(LthError, match=r"--rewind=60it is iteration 60, past the end of round 0"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, rewinds=["0", "60it"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "rewind, iterations, refusal",
    [
        # An epoch is at least one iteration: 41 epochs are past 40 iterations on any data.
        ("41ep", "40it", "--rewind=41ep is past the end of round 0 (--iterations=40it)"),
        ("2ep1it", "2ep", "--rewind=2ep1it is past the end of round 0 (--iterations=2ep)"),
        ("2ep", "2ep", "--rewind=2ep is the end of round 0 (--iterations=2ep)"),
        # At the end for an epoch of one iteration, past it for any longer one.
        ("40ep", "40it", "--rewind=40ep is the end of round 0 or past it (--iterations=40it)"),
        # Past the end only for epochs of more than 13 iterations: the member finds out.
        ("3ep", "40it", None),
        ("1ep", "2ep", None),
    ],
)
def test_a_rewind_in_epochs_past_the_end_on_any_data_is_refused_before_any_member_trains(
    tmp_path, rewind, iterations, refusal
):
    changes = {**CHANGES, "iterations": iterations}
    if refusal is None:
        plan = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=changes, rewinds=[rewind])
        assert [m.name for m in plan.members] == [f"rewind{rewind}-seed0"]
        return
    with pytest.raises(LthError, match=re.escape(refusal)) as error:
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=changes, rewinds=["0", rewind])
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_without_rewind_flags_the_recipe_rewind_point_is_the_only_one(tmp_path):
    plan = plan_sweep(tmp_path, "lenet300_100", "mnist", seeds=[3])
    assert [m.name for m in plan.members] == ["rewind0it-seed3"]


@pytest.mark.parametrize(
    "text, seeds",
    [("0-4", [0, 1, 2, 3, 4]), ("7", [7]), ("0-1,5", [0, 1, 5]), (" 2 , 3 ", [2, 3])],
)
def test_seeds_parse_ranges_and_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": []}, "the sweep has no seeds"),
        ({"controls": ["bogus"]}, "unknown control 'bogus'"),
        ({"controls": ["none"]}, "is IMP itself"),
        ({"rewinds": ["0", "0it"]}, "given twice"),
        ({"rewinds": ["soon"]}, "soon"),
        ({"changes": {"seed": 1}}, "give it as --seeds"),
    ],
)
def test_a_bad_plan_is_refused(tmp_path, kwargs, message):
    with pytest.raises(LthError, match=message):
        plan_sweep(tmp_path, "lenet300_100", "mnist", **kwargs)


def test_a_member_directory_of_other_hyperparameters_is_refused_before_anything_runs(tmp_path):
    plan = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    member = plan.members[0]
    other = dataclasses.replace(
        member.hparams, training=dataclasses.replace(member.hparams.training, iterations="80it")
    )
    io.write_json(
        tmp_path / member.name / "hparams.json", {"format_version": 1, "hparams": other.to_dict()}
    )
    with pytest.raises(
        LthError, match=r"other hyperparameters \(training.iterations: saved '80it', now '40it'\);"
    ):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])


def test_a_member_written_before_a_field_existed_is_planned_with_what_it_ran(tmp_path):
    # A member of an lth_tf from before --data_order ran "fixed", which the new default
    # ("per_round") is not: the same sweep command resumes it, as lth-imp resumes one.
    plan = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    member = plan.members[0]
    written = {"format_version": 1, "hparams": member.hparams.to_dict()}
    del written["hparams"]["training"]["data_order"]
    io.write_json(tmp_path / member.name / "hparams.json", written)
    assert plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0]).members


def test_a_member_directory_a_kill_left_without_hparams_starts_anew_and_a_foreign_one_is_refused(
    tmp_path,
):
    """A driver SIGKILLed just as a member started leaves the member's directory with only its
    lock (or a temporary hparams file): the rerun the sweep asks for must take it up."""
    plan = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    member = tmp_path / plan.members[0].name
    member.mkdir()
    (member / io.LOCK_FILE).write_text("4242\n")
    (member / ".hparams.json.k3j5x9.tmp").write_text("{")
    plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    (member / "notes.txt").write_text("mine")
    with pytest.raises(LthError, match="is not an lth_tf experiment .*; choose another --output_d"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    shutil.rmtree(member)
    member.write_text("a file where the member's directory goes")  # was a FileExistsError
    with pytest.raises(LthError, match="is not a directory; move it away, or choose another --o"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    member.unlink()
    member.mkdir()
    (member / "hparams.json").write_text("{")  # lth-sweep has no --experiment_name to suggest
    with pytest.raises(LthError) as refused:
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    assert str(refused.value).endswith(
        f"restore it from a copy, or delete {member} and rerun the sweep to train that member again"
    )


# -- the command line's refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds=4-2"], "--seeds: the range 4-2 is empty"),
        (["--seeds=zero"], "--seeds: 'zero' is not a seed"),
        (["--seeds="], "the sweep has no seeds"),
        (["--controls=random_reinit,shuffle"], "--controls: unknown control 'shuffle'"),
        (["--seed=3"], "give --seeds"),
        (["--rewind=0,"], "--rewind: '0,' has an empty entry"),
        (["--rewind=0,stable"], "--rewind=stable is pipelines.imp's; for a sweep, find k once"),
        (["--max_parallel=0"], "--max_parallel: 0 must be at least 1"),
        (["--callback=no_such_module:Thing"], "--callback=no_such_module:Thing: cannot import"),
        (["--callback=tests.helpers:ROOT"], "--callback=tests.helpers:ROOT"),
    ],
)
def test_a_bad_sweep_is_one_line_and_exit_2_before_ray_starts(tmp_path, flags, message):
    result = run_pipeline(
        "pipelines.sweep", f"--output_dir={tmp_path / 'sweep'}", *flags, timeout=120
    )
    assert_one_line_error(result, message)
    # Nothing ran: Ray would have printed its start and the sweep written its file.
    assert "Ray" not in result.stdout + result.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_needs_its_directory():
    assert_one_line_error(run_pipeline("pipelines.sweep", timeout=120), "--output_dir: give")


# -- real sweeps through a local Ray -----------------------------------------------------------


def _stop_once_on_disk(
    command: list[str], root: Path, pattern: str, stop_with: signal.Signals, log: Path
) -> int:
    """Starts the sweep in a process group of its own and sends the driver ``stop_with`` once
    ``root.glob(pattern)`` finds a file; the Ray it started (raylet, workers, agents) must end
    too, and its temporary folder go. Returns the driver's status; its stderr goes to ``log``."""
    environment = {k: v for k, v in os.environ.items() if k != "LTH_TF_RUN_TEMP_DIR"}
    with log.open("w") as stderr:
        sweep = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(environment, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    while not list(root.glob(pattern)):
        assert sweep.poll() is None, f"the sweep ended before {pattern} was written"
        assert time.monotonic() < deadline, f"no {pattern} in 10 minutes"
        time.sleep(0.2)
    os.kill(sweep.pid, stop_with)
    status = sweep.wait()
    deadline = time.monotonic() + 60
    while True:
        try:
            os.killpg(sweep.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            left = subprocess.run(
                ["ps", "-o", "pid,cmd", "-g", str(sweep.pid)], text=True, capture_output=True
            ).stdout
            os.killpg(sweep.pid, signal.SIGKILL)
            pytest.fail(f"processes of the stopped sweep still run a minute later:\n{left}")
        time.sleep(0.2)
    temporary = Path(tempfile.gettempdir())
    assert not list(temporary.glob(f"lth_tf-{sweep.pid}-*")), "its temporary folder stayed"
    return status


def test_a_killed_sweep_resumes_to_the_results_of_its_members_run_directly(
    tmp_path, idx_dir, mnist_data
):
    from lth_tf.lottery.imp import run_imp

    root = tmp_path / "sweep"
    command = sweep_command(*SMALL_SWEEP, f"--data_dir={idx_dir}", f"--output_dir={root}")
    killed = _stop_once_on_disk(
        command, root, "*/results.csv", signal.SIGKILL, tmp_path / "stderr.txt"
    )
    assert killed == -signal.SIGKILL
    before = members(root)
    assert len(before) == 8
    assert not all(m["status"] == "done" for m in before.values()), "killed after the end"

    resumed = run_pipeline("pipelines.sweep", *command[3:], timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "8 members: 8 done, 0 failed, 0 skipped" in resumed.stdout
    after = members(root)
    assert {m["status"] for m in after.values()} == {"done"}

    # Each member, run directly in this process (parents first), gives the same rounds.
    direct = tmp_path / "direct"
    for name, member in after.items():
        hparams = ExperimentHparams.from_dict(io.read_json(root / name / "hparams.json")["hparams"])
        if member["parent"] is None:
            assert (hparams.training.seed, hparams.pruning.rewind) == (
                member["seed"],
                member["rewind"],
            )
            run_imp(hparams, direct, name, QUIET, data=mnist_data)
    for name, member in after.items():
        if member["parent"] is not None:
            hparams, output_dir, _ = branch_of(direct / member["parent"], member["control"])
            run_imp(hparams, output_dir, name, QUIET, data=mnist_data)
    for name in after:
        swept = results_without_time(root / name)
        assert [row["round"] for row in swept] == [0, 1], name
        assert swept == results_without_time(direct / name), name


def test_a_sweep_stopped_by_sigterm_says_so_in_one_line_and_leaves_nothing_running(
    tmp_path, idx_dir
):
    """A scheduler's SIGTERM to the driver (Ray replaces the pipeline's handler with one that
    exits 1 after a stack dump, unless the sweep puts it back): one line saying how to resume,
    status 143, Ray's processes ended, and the member left for the rerun."""
    root = tmp_path / "sweep"
    flags = [f for f in SMALL_SWEEP if not f.startswith(("--seeds", "--rewind", "--controls"))]
    flags = [f if f != "--iterations=40" else "--iterations=100000" for f in flags]
    command = sweep_command(
        *flags, "--seeds=0", "--rewind=0it", f"--data_dir={idx_dir}", f"--output_dir={root}"
    )
    log = tmp_path / "stderr.txt"
    status = _stop_once_on_disk(command, root, "*/round_00/checkpoint.npz", signal.SIGTERM, log)
    stderr = log.read_text()
    assert status == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == (
        "stopped by SIGTERM; rerun the same command to resume"
    ), stderr
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr
    # No member runs once the driver is gone: sweep.json says it waits for the rerun.
    assert members(root)["rewind0it-seed0"]["status"] == "pending"


def test_a_failing_member_is_reported_and_the_others_finish(tmp_path, idx_dir):
    """rewind=3ep is past the end of 40-iteration rounds for an epoch of more than 13
    iterations, which only the data measures (the sweep does not load it): that member fails
    with its one line, its branch never starts, and the sweep exits 1 with a summary. The
    members that run carry the --callback, built in their own processes: its scalars are in
    their evaluations."""
    root = tmp_path / "sweep"
    flags = [f if f != "--seeds=0-1" else "--seeds=0" for f in SMALL_SWEEP]
    flags = [f if f != "--rewind=0,20it" else "--rewind=0,3ep" for f in flags]
    flags.append("--callback=tests.metric_callback:MaskedWeightNorm")
    result = run_pipeline(
        "pipelines.sweep", *flags, f"--data_dir={idx_dir}", f"--output_dir={root}", timeout=600
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "4 members: 2 done, 1 failed, 1 skipped" in result.stdout
    status = members(root)
    assert status["rewind0it-seed0"]["status"] == "done"
    assert status["rewind0it-seed0-random_reinit"]["status"] == "done"
    failed = status["rewind3ep-seed0"]
    assert failed["status"] == "failed" and "past the end of round 0" in failed["error"]
    assert "\n" not in failed["error"]
    assert status["rewind3ep-seed0-random_reinit"]["status"] == "skipped"
    assert f"rewind3ep-seed0: failed: {failed['error']}" in result.stdout
    # A member's lines start with its name, in a terminal as in a log file: no Ray prefix, no
    # colour codes, none of Ray's own notes.
    assert "rewind0it-seed0: Experiment: " in result.stderr, result.stderr
    for ray_text in ("\x1b[", "pid=", "Token authentication", "Started a local Ray"):
        assert ray_text not in result.stderr, result.stderr
    for name in ("rewind0it-seed0", "rewind0it-seed0-random_reinit"):
        for pruning_round in (0, 1):
            path = ExperimentDir(root / name).evaluations(pruning_round)
            rows = list(csv.DictReader(path.open()))
            assert rows and all(float(row["masked_weight_norm"]) > 0 for row in rows), path


def test_a_sigterm_while_ray_starts_goes_to_the_programs_own_handler():
    # Ray's handler, set while ray.init runs, exits with status 15 and no word; the handler the
    # program chose (the pipelines': one line, how to resume) gets the stop instead.
    from lth_tf.sweep import _sigterm_handler_kept

    class Stopped(Exception):
        pass

    def programs_own(signum, frame):
        raise Stopped(signum)

    before = signal.signal(signal.SIGTERM, programs_own)
    try:
        with pytest.raises(Stopped), _sigterm_handler_kept():
            raise SystemExit(signal.SIGTERM)  # what Ray's handler does
        with pytest.raises(SystemExit), _sigterm_handler_kept():
            raise SystemExit(1)  # any other exit is left alone
        assert signal.getsignal(signal.SIGTERM) is programs_own
    finally:
        signal.signal(signal.SIGTERM, before)
