"""Sizes and sweeps (issue 27): upper bounds on the flags that multiply work, the Ray address
checked in seconds, ``sweep.json`` that only gains members and the sweep's lock, a model builder
that exits, the API's argument types, and each run's own temporary folder (TensorFlow's
autograph files gone at exit, and after a kill by the next run).

Most are refusals before Ray or TensorFlow starts; no test here starts Ray.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lth_tf
from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.stability.plan import plan_stability
from lth_tf.startup import OWNER_LOCK, remove_dead_run_temp_dirs
from lth_tf.sweep import (
    MAX_MEMBERS,
    SWEEP_FILE,
    SweepPlan,
    check_max_parallel,
    check_ray_address,
    parse_seeds,
    plan_sweep,
    read_sweep,
    run_sweep,
)
from tests.helpers import (
    KILLED_AFTER_A_CHECKPOINT,
    ROOT,
    assert_one_line_error,
    free_port,
    run_pipeline,
)

CHANGES = {"rounds": 1, "iterations": "40", "eval_every": "20"}
SWEEP = ("--model=lenet300_100", "--dataset=mnist", "--rounds=1", "--iterations=40")


def members(root: Path) -> dict[str, dict]:
    return {member["name"]: member for member in io.read_json(root / SWEEP_FILE)["members"]}


def write_member(plan: SweepPlan, name: str) -> None:
    """The member's hparams.json, as its run writes it first (no round finished)."""
    member = next(m for m in plan.members if m.name == name)
    io.write_json(
        plan.root / name / "hparams.json",
        {"format_version": 1, "hparams": member.hparams.to_dict()},
    )


@pytest.fixture
def all_finished(monkeypatch):
    """Every member counts as finished: run_sweep writes sweep.json and never starts Ray."""
    monkeypatch.setattr(SweepPlan, "is_finished", lambda self, member: True)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


# -- bounds ------------------------------------------------------------------------------------


def test_a_huge_seed_range_is_refused_before_it_is_expanded():
    started = time.monotonic()
    with pytest.raises(LthError, match=r"0-100000000 is 100000001 seeds; .* at most 1000"):
        parse_seeds("0-100000000")
    with pytest.raises(LthError, match="above the largest seed"):
        parse_seeds("99999999999999999999")
    assert time.monotonic() - started < 1
    assert len(parse_seeds(f"0-{MAX_MEMBERS - 1}")) == MAX_MEMBERS


def test_seeds_take_ascii_digits_only():
    with pytest.raises(LthError, match="--seeds: '٣' is not a seed"):
        parse_seeds("0,٣")


def test_a_sweep_of_too_many_members_is_refused_before_any_is_planned(tmp_path):
    started = time.monotonic()
    with pytest.raises(LthError, match="1203 members .*401 seeds x 3 rewind points"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", seeds=range(401), rewinds=["0", "1", "2"])
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "value, message",
    [
        (0, "--max_parallel: 0 must be at least 1"),
        (5000, r"--max_parallel must be an integer in \[1, 1024\], got 5000"),
        ("4", "got '4'"),
    ],
)
def test_max_parallel_is_bounded(value, message):
    check_max_parallel(None)
    check_max_parallel(1024)
    with pytest.raises(LthError, match=message):
        check_max_parallel(value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": 101}, "--seeds must be an integer <= 100, got 101"),
        ({"points": 100_000}, "--points must be an integer <= 1000, got 100000"),
        ({"seeds": 1}, "--seeds must be an integer >= 2, got 1"),
    ],
)
def test_stability_copies_and_points_are_bounded(tmp_path, kwargs, message):
    # The numbers are checked before the experiment is read: no experiment needed.
    with pytest.raises(LthError, match=message):
        plan_stability(tmp_path / "none", 1, **kwargs)


def test_virtual_cpus_are_bounded_before_tensorflow_builds_a_device_list():
    from lth_tf.training.strategies import MAX_VIRTUAL_CPUS, split_cpu

    assert MAX_VIRTUAL_CPUS >= 64
    with pytest.raises(LthError, match=r"--virtual_cpus must be an integer in \[1, \d+\]"):
        split_cpu(10**9)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds=0-100000"], "--seeds: 0-100000 is 100001 seeds"),
        (["--seeds=0-400", "--rewind=0,1it,2it"], "the sweep would have 1203 members"),
        (["--max_parallel=5000"], "--max_parallel must be an integer in [1, 1024]"),
        (["--ray_address=head node"], "--ray_address='head node' is not a Ray address"),
        (["--ray_address=10.0.0.5:99999"], "is not a Ray address"),
        (["--ray_address=http://10.0.0.5:6379"], "is not a Ray address"),
    ],
)
def test_a_sweep_too_big_or_with_a_bad_address_is_one_line(tmp_path, flags, message):
    root = tmp_path / "sweep"
    result = run_pipeline("pipelines.sweep", *SWEEP, f"--output_dir={root}", *flags, timeout=120)
    assert_one_line_error(result, message)
    assert not root.exists()


def test_stability_points_beyond_the_bound_are_one_line(tmp_path):
    result = run_pipeline(
        "pipelines.stability",
        f"--experiment_dir={tmp_path / 'e'}",
        "--round=1",
        "--points=5000",
        timeout=120,
    )
    assert_one_line_error(result, "--points must be an integer <= 1000, got 5000")


# -- the Ray address ---------------------------------------------------------------------------


@pytest.mark.parametrize("address", [None, "", "local", " local "])
def test_no_address_or_local_means_a_local_ray(address):
    assert check_ray_address(address) is None


@pytest.mark.parametrize(
    "address", ["head", "head:", ":6379", "ray://head", "grpc://head:6379", "head:0", "a b:1"]
)
def test_an_address_of_another_form_is_refused(address):
    with pytest.raises(LthError, match="is not a Ray address; give auto, HOST:PORT"):
        check_ray_address(address)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nothing_listens_is_refused_in_seconds(scheme):
    address = f"{scheme}127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(LthError, match=f"RAY_ADDRESS={address}: nothing answers at 127.0.0.1"):
        check_ray_address(address, "RAY_ADDRESS")
    assert time.monotonic() - started < 5


def test_an_address_where_a_grpc_server_answers_is_handed_on():
    # Ray's GCS and its Ray Client server are gRPC servers (a real head passes the same way).
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert check_ray_address(f"127.0.0.1:{port}") == f"127.0.0.1:{port}"
        assert check_ray_address(f"ray://localhost:{port}") == f"ray://localhost:{port}"
    finally:
        server.stop(None)


def test_an_address_where_something_else_listens_is_refused_in_seconds():
    # Ray would retry joining it for good.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(LthError, match=f"listens at 127.0.0.1:{port}, but it is not a Ray"):
            check_ray_address(f"127.0.0.1:{port}", timeout=1)
        assert time.monotonic() - started < 5


def test_a_sweep_to_a_dead_cluster_is_one_line_and_leaves_nothing(tmp_path):
    root = tmp_path / "sweep"
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_pipeline(
        "pipelines.sweep", *SWEEP, f"--output_dir={root}", f"--ray_address={address}", timeout=120
    )
    assert_one_line_error(result, f"--ray_address={address}: nothing answers")
    assert time.monotonic() - started < 60  # Ray's own retries take minutes
    assert not root.exists()


# -- sweep.json and the lock -------------------------------------------------------------------


def test_a_rerun_with_fewer_seeds_keeps_the_earlier_members_listed(tmp_path, all_finished):
    both = plan_sweep(
        tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0, 1], controls=["random_reinit"]
    )
    run_sweep(both, say=lambda line: None)
    for name in ("rewind0it-seed1", "rewind0it-seed1-random_reinit"):
        write_member(both, name)
    listed = members(tmp_path)
    assert list(listed) == [m.name for m in both.members]
    assert all(m["in_this_run"] and m["status"] == "done" for m in listed.values())

    fewer = plan_sweep(
        tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0], controls=["random_reinit"]
    )
    run_sweep(fewer, say=lambda line: None)
    after = members(tmp_path)
    assert list(after) == list(listed)  # the same members, in the same places
    left_out = {name for name, member in after.items() if not member["in_this_run"]}
    assert left_out == {"rewind0it-seed1", "rewind0it-seed1-random_reinit"}
    # Its rounds are not on disk here (all_finished only said so): a "done" whose rounds are
    # gone is pending again, as after a deleted or moved member folder.
    assert after["rewind0it-seed1"]["seed"] == 1 and after["rewind0it-seed1"]["status"] == "pending"
    # The report over the sweep directory still finds them.
    assert {p.name for p in read_sweep(tmp_path)} >= left_out

    # More seeds again: the new member is added after the others.
    more = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0, 1, 2])
    run_sweep(more, say=lambda line: None)
    again = members(tmp_path)
    assert list(again) == [*listed, "rewind0it-seed2"]
    assert not again["rewind0it-seed0-random_reinit"]["in_this_run"]


def test_a_left_out_member_recorded_as_running_is_pending_now(tmp_path, all_finished):
    io.write_json(
        tmp_path / SWEEP_FILE,
        {"members": [{"name": "rewind0it-seed7", "seed": 7, "status": "running"}]},
    )
    run_sweep(plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES), say=lambda line: None)
    listed = members(tmp_path)
    assert listed["rewind0it-seed7"] == {
        "name": "rewind0it-seed7",
        "seed": 7,
        "status": "pending",
        "in_this_run": False,
    }
    assert listed["rewind0it-seed0"]["in_this_run"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"members": 3}', b'{"members": [{"name": "../elsewhere"}]}'],
)
def test_a_damaged_sweep_file_is_one_line_naming_it(tmp_path, all_finished, content):
    (tmp_path / SWEEP_FILE).write_bytes(content)
    # Planning reads it (its members must be of this sweep), before Ray starts.
    with pytest.raises(LthError, match=rf"{SWEEP_FILE} is damaged .*delete it and rerun"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES)
    assert (tmp_path / SWEEP_FILE).read_bytes() == content


def test_members_of_another_sweep_in_the_directory_are_refused(tmp_path, all_finished):
    # A sweep of 40 iterations ran seed 0; a rerun of 20 iterations with seed 1 would add a
    # member the report draws beside it as one sweep's.
    from lth_tf.experiment import FORMAT_VERSION, ExperimentDir

    first = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[0])
    run_sweep(first, say=lambda line: None)
    member = ExperimentDir(tmp_path / first.members[0].name)
    member.root.mkdir()
    hparams = {"format_version": FORMAT_VERSION, "hparams": first.members[0].hparams.to_dict()}
    io.write_json(member.hparams, hparams)
    # The same sweep with more seeds (or a control) goes on.
    more = plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES, seeds=[1, 2])
    assert [m.name for m in more.members] == ["rewind0it-seed1", "rewind0it-seed2"]
    shorter = {**CHANGES, "iterations": "20"}
    with pytest.raises(
        LthError,
        match=r"holds a sweep of other hyperparameters \(member rewind0it-seed0: "
        r"training.iterations: saved '40it', now '20it'\); rerun it with its own flags",
    ):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=shorter, seeds=[1])


def test_a_sweep_into_an_experiments_directory_is_refused(tmp_path):
    (tmp_path / "hparams.json").write_text("{}")
    with pytest.raises(LthError, match="is an experiment's directory; a sweep needs a directory"):
        plan_sweep(tmp_path, "lenet300_100", "mnist", changes=CHANGES)


def test_a_second_sweep_into_a_running_sweep_is_refused(tmp_path, all_finished):
    root = tmp_path / "sweep"
    plan = plan_sweep(root, "lenet300_100", "mnist", changes=CHANGES)
    with io.locked(root, "a sweep of this test"):
        with pytest.raises(
            LthError, match=rf"{root} is in use by another sweep \(pid {os.getpid()}\)"
        ):
            run_sweep(plan, say=lambda line: None)
        assert not (root / SWEEP_FILE).exists()
        # The pipeline: one line, exit 2.
        result = run_pipeline("pipelines.sweep", *SWEEP, f"--output_dir={root}", timeout=120)
        assert_one_line_error(result, f"{root} is in use by another sweep (pid {os.getpid()})")
    run_sweep(plan, say=lambda line: None)
    assert list(members(root)) == ["rewind0it-seed0"]


# -- a builder that exits ----------------------------------------------------------------------


def test_a_builder_that_exits_is_one_line_not_a_silent_exit(tmp_path, monkeypatch):
    from lth_tf.models.custom import call_builder, import_builder

    (tmp_path / "exiting_nets.py").write_text(
        "import sys\n\n\ndef build(input_shape, num_classes):\n    sys.exit()\n"
    )
    (tmp_path / "exits_on_import.py").write_text("import sys\n\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    build = import_builder("exiting_nets:build")
    with pytest.raises(LthError, match=r"--model=exiting_nets:build: the builder exited \(sys"):
        call_builder(build, "--model=exiting_nets:build", (28, 28, 1), 10)
    with pytest.raises(LthError, match=r"importing exits_on_import exited \(sys.exit\(3\)\)"):
        import_builder("exits_on_import:build")


# -- the API's argument types ------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: lth_tf.find_tickets("lenet300_100", dataset="mnist", output_dir=None),
            "find_tickets: output_dir must be a path (str or pathlib.Path), got None",
        ),
        (
            lambda: lth_tf.find_tickets("lenet300_100", dataset="mnist", strategy="mirrored"),
            "strategy must be a tf.distribute.Strategy or None, got 'mirrored' (str); "
            "lth_tf.training.strategies.make_strategy('mirrored')",
        ),
        (
            lambda: lth_tf.find_tickets("lenet300_100", dataset="mnist", jit_compile="no"),
            "find_tickets: jit_compile must be True, False or 'auto', got 'no'",
        ),
        (
            lambda: lth_tf.find_tickets(42, dataset="mnist"),
            "find_tickets: model must be a tf_keras model, a builder function",
        ),
        (
            lambda: lth_tf.find_tickets("lenet300_100", dataset=7),
            "find_tickets: dataset must be a str or None, got 7 (int)",
        ),
        (lambda: lth_tf.Experiment(123), "Experiment: path must be a path"),
        (lambda: lth_tf.Experiment(None), "Experiment: path must be a path"),
    ],
)
def test_an_api_argument_of_the_wrong_type_is_named(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)  # where output_dir="runs" would go
    with pytest.raises(LthError) as refused:
        call()
    assert message in str(refused.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("export", {"arm": "yes"}, "Experiment.export: arm must be True or False, got 'yes'"),
        ("export", {"output_dir": None}, "Experiment.export: output_dir must be a path"),
        (
            "export",
            {"arm_examples": 2.5},
            "Experiment.export: arm_examples must be a whole number, got 2.5",
        ),
        ("model", {"pruning_round": None}, "Experiment.model: pruning_round must be a round"),
        (
            "model",
            {"tolerance": "0.5"},
            "Experiment.model: tolerance must be a number, got '0.5' (str)",
        ),
    ],
)
def test_an_experiment_method_argument_of_the_wrong_type_is_named(method, kwargs, message):
    # The types are checked before the experiment is used: an unread one is enough.
    unread = lth_tf.Experiment.__new__(lth_tf.Experiment)
    with pytest.raises(LthError, match="^" + re.escape(message)):
        getattr(unread, method)(**kwargs)


# -- each run's own temporary folder ----------------------------------------------------------


def in_own_temp(temp: Path, *args: str, script: str | None = None) -> subprocess.CompletedProcess:
    """``python -m args`` (or ``python -c script args``) with ``temp`` as the system's temporary
    directory, so what runs leave there is theirs alone."""
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m"]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(temp)),
        capture_output=True,
        text=True,
        timeout=600,
    )


def autograph_files(temp: Path) -> list[Path]:
    return sorted(temp.rglob("__autograph_generated_file*"))


def test_a_run_folder_is_removed_at_exit_and_a_dead_runs_by_the_next(tmp_path):
    show = (
        "import sys, tempfile; from lth_tf.startup import use_run_temp_dir; "
        "print(use_run_temp_dir(), tempfile.gettempdir()); "
        "sys.argv[1:] and __import__('os').kill(__import__('os').getpid(), 9)"
    )
    killed = in_own_temp(tmp_path, "kill", script=show)
    assert killed.returncode == -signal.SIGKILL
    left, temp = killed.stdout.split()
    assert left == temp and Path(left).parent == tmp_path
    assert Path(left, OWNER_LOCK).exists()  # a kill leaves it
    not_a_folder = tmp_path / "lth_tf-1-notafolder"
    not_a_folder.write_text("a file of a run folder's name is no run's folder")

    clean = in_own_temp(tmp_path, script=show)
    assert clean.returncode == 0, clean.stderr
    mine, _ = clean.stdout.split()
    assert mine != left and not Path(left).exists() and not Path(mine).exists()
    assert sorted(tmp_path.iterdir()) == [not_a_folder]


def test_a_live_runs_folder_is_kept(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lth_tf.startup import use_run_temp_dir; print(use_run_temp_dir(), flush=True); "
            "input()",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        folder = Path(holder.stdout.readline().strip())
        assert folder.is_dir()
        assert remove_dead_run_temp_dirs(tmp_path) == []
        assert folder.is_dir()
    finally:
        holder.communicate("\n", timeout=60)
    assert not folder.exists()


def test_autograph_files_of_a_killed_run_go_with_the_next_run(tmp_path, idx_dir):
    """A real run of pipelines.imp, SIGKILLed mid-round: its autograph files stay in its
    folder (nowhere else); resuming removes them and leaves no folder of its own."""
    temp = tmp_path / "temp"
    temp.mkdir()
    flags = [
        "--model=lenet300_100",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--rounds=1",
        "--iterations=20",
        "--eval_every=10it",
        "--noprogress",
        "--nojit_compile",
        f"--output_dir={tmp_path / 'runs'}",
    ]
    killed = in_own_temp(temp, *flags, script=KILLED_AFTER_A_CHECKPOINT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = autograph_files(temp)
    assert left and {path.parent.name.split("-")[0] for path in left} == {"lth_tf"}

    resumed = in_own_temp(temp, "pipelines.imp", *flags)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert autograph_files(temp) == [] and list(temp.iterdir()) == []


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "missing", "binary"])
def test_a_flagfile_that_is_no_file_of_flags_is_one_line(path, tmp_path):
    import os

    from tests.helpers import run_pipeline

    if path == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    elif path == "missing":
        path = str(tmp_path / "missing")
    elif path == "binary":  # e.g. a .keras file passed by mistake: absl's reader would raise
        path = str(tmp_path / "model.keras")
        Path(path).write_bytes(b"PK\x03\x04\xec\xff--rounds=1\n")
    result = run_pipeline("pipelines.imp", f"--flagfile={path}", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --flagfile={path}")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "pipeline, flag",
    [
        ("pipelines.imp", "output_dir"),
        ("pipelines.export", "output_dir"),
        ("pipelines.imp", "branch_of"),  # was read as ".", "not an lth_tf experiment"
    ],
)
def test_an_empty_output_dir_is_refused_not_read_as_the_current_directory(pipeline, flag):
    from tests.helpers import run_pipeline

    result = run_pipeline(pipeline, f"--{flag}=", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: flag --{flag}=: it is empty; give a directory, or leave the flag out for its "
        "default (--helpshort lists the flags)\n"
    )
