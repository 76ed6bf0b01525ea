"""Sweeps: seeds x rewind points x controls, each member an ordinary experiment, run on Ray.

A sweep directory holds one experiment directory per member, named from what the sweep varies
(``rewind100it-seed0``), its controls beside it as branches (``rewind100it-seed0-random_reinit``)
and ``sweep.json``, the members and their status. A branch member runs once its parent member
has finished. Rerunning the same sweep resumes every member (finished ones are skipped);
adding seeds adds members. ``sweep.json`` only ever gains members: one a rerun leaves out (fewer
seeds) stays listed with ``"in_this_run": false``, so a report over the directory still sees
it. While a sweep runs it holds the directory's lock: a second sweep there is refused.

Planning reads no TensorFlow and no Ray, so a bad input is refused at once; :func:`run_sweep`
then runs the members as Ray tasks, each through :func:`lth_tf.lottery.imp.run_imp`.

>>> plan = plan_sweep("runs/sweeps/demo", "lenet300_100", "fashion_mnist",
...                   changes={"rounds": 3}, seeds=[0, 1], rewinds=["0", "100it"],
...                   controls=["random_reinit"])
>>> [member.name for member in plan.members][:3]
['rewind0it-seed0', 'rewind0it-seed1', 'rewind100it-seed0']
>>> plan.members[-1].name, plan.members[-1].parent
('rewind100it-seed1-random_reinit', 'rewind100it-seed1')
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lth_tf import io
from lth_tf.callbacks import load_callbacks
from lth_tf.config import (
    MAX_SEED,
    BranchHparams,
    ExperimentHparams,
    check_number,
)
from lth_tf.errors import LthError, counted, one_line
from lth_tf.execution import Execution
from lth_tf.experiment import (
    ExperimentDir,
    experiment_identity,
    hparam_differences,
    named_as_mine,
    read_saved,
    refuse_foreign_directory,
    settings_of_directory,
)
from lth_tf.lottery.branches import branch_name
from lth_tf.lottery.controls import CONTROLS, branch_controls
from lth_tf.orphans import start_watchdog
from lth_tf.provenance import check_model_file
from lth_tf.startup import owns_run_temp_dir, quiet_stderr, use_run_temp_dir

log = logging.getLogger("lth_tf")

SWEEP_FILE = "sweep.json"
# A member's status in sweep.json: not started, finished (every round), the error it stopped
# with, or never started because its parent did not finish.
PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
# Ray's own variables the members inherit; TF_USE_LEGACY_KERAS must be set before a worker
# imports TensorFlow (importing lth_tf first sets it too; this covers any other import order).
MEMBER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
# Planning builds every member's hyperparameters and checks its directory: a typo such as
# --seeds=0-100000 must be refused at once rather than planned for minutes.
MAX_MEMBERS = 1000
# More members at once than any cluster here runs; a local Ray starts one worker per slot.
MAX_PARALLEL = 1024
# Ray retries an address where nothing listens for minutes; a plain connect says so in seconds.
RAY_PROBE_SECONDS = 3.0
_RAY_ADDRESS = re.compile(
    r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})"
)
SWEEP_TODO = (
    "delete it and rerun the sweep, which writes it again (members of earlier runs that this "
    "one leaves out are then no longer listed)"
)


@dataclasses.dataclass(frozen=True)
class Member:
    """One experiment of a sweep: its directory name, hyperparameters and, for a control, the
    member it is a branch of."""

    name: str
    hparams: ExperimentHparams
    parent: str | None = None

    @property
    def control(self) -> str:
        return self.hparams.branch.control


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The members of a sweep under ``root``, parents before their branches."""

    root: Path
    members: tuple[Member, ...]

    def experiment(self, member: Member) -> ExperimentDir:
        return ExperimentDir(self.root / member.name)

    def is_finished(self, member: Member) -> bool:
        """Every round of the member is on disk (a rerun would train nothing)."""
        wanted = set(range(member.hparams.pruning.rounds + 1))
        return self.experiment(member).completed_rounds() >= wanted


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0-4`` (both ends included), ``0,3,7``, or a mix such as ``0-2,9``.

    >>> parse_seeds("0-4"), parse_seeds("3"), parse_seeds("0-1,5")
    ([0, 1, 2, 3, 4], [3], [0, 1, 5])
    """
    if not text.strip():
        raise LthError("--seeds: the sweep has no seeds; give e.g. --seeds=0-4")
    ranges: list[range] = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", item)
        if not match:
            raise LthError(f"--seeds: {item!r} is not a seed or a range; use e.g. 0-4 or 0,1,2")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise LthError(f"--seeds: the range {item} is empty; write it low-high, e.g. 0-4")
        if last > MAX_SEED:
            raise LthError(f"--seeds: seed {last} is above the largest seed, {MAX_SEED}")
        ranges.append(range(first, last + 1))
    # Counted before the ranges are expanded: 0-100000000 is refused without a list of it.
    count = sum(len(seeds) for seeds in ranges)
    if count > MAX_MEMBERS:
        raise LthError(
            f"--seeds: {text.strip()} is {count} seeds; a sweep has at most {MAX_MEMBERS} "
            "members: give fewer seeds (e.g. 0-9), and sweep the rest in further runs"
        )
    seeds = [seed for seeds in ranges for seed in seeds]
    seen: set[int] = set()
    for seed in seeds:
        if seed in seen:
            raise LthError(f"--seeds: seed {seed} is given twice")
        seen.add(seed)
    return seeds


def plan_sweep(
    root: str | Path,
    model: str,
    dataset: str | None = None,
    recipe: str | None = None,
    changes: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    rewinds: Sequence[str] = (),
    controls: Sequence[str] = (),
) -> SweepPlan:
    """The members of a sweep: every rewind point (default: the recipe's) x seed, plus each
    control as a branch of each of them. ``changes`` are hyperparameters by flag name, as for
    :func:`lth_tf.models.experiment_hparams`; they may not set ``seed`` or ``rewind``, which
    the sweep varies.

    Refuses an empty sweep, an unknown control and a member directory that holds another
    experiment, before anything runs.
    """
    if (Path(root) / "hparams.json").exists():
        raise LthError(
            f"--output_dir={root} is an experiment's directory; a sweep needs a directory of its "
            "own (its members go in it), e.g. runs/sweeps/NAME"
        )
    changes = dict(changes or {})
    for varied, flag in (("seed", "--seeds"), ("rewind", "--rewind")):
        if varied in changes:
            raise LthError(f"--{varied} is what the sweep varies: give it as {flag}")
    if not seeds:
        raise LthError("--seeds: the sweep has no seeds; give e.g. --seeds=0-4")
    choices = ", ".join(branch_controls())
    for control in controls:
        if control not in CONTROLS:
            raise LthError(f"--controls: unknown control {control!r}; choose from {choices}")
        if control not in branch_controls():
            raise LthError(
                f"--controls: {control!r} is IMP itself, which every member runs; choose from "
                f"{choices}"
            )
    if len(set(controls)) < len(controls):
        raise LthError("--controls: a control is given twice")
    # Before any member is built: each costs a hyperparameter check and a look at its folder.
    count = len(seeds) * max(len(rewinds), 1) * (1 + len(controls))
    if count > MAX_MEMBERS:
        raise LthError(
            f"the sweep would have {count} members ({len(seeds)} seeds x "
            f"{max(len(rewinds), 1)} rewind points x {1 + len(controls)} with the controls); "
            f"at most {MAX_MEMBERS}: give fewer --seeds or --rewind points"
        )
    from lth_tf.models import experiment_hparams

    tickets: list[Member] = []
    for rewind in rewinds or [None]:
        for seed in seeds:
            member_changes = {**changes, "seed": seed}
            if rewind is not None:
                member_changes["rewind"] = rewind
            hparams = experiment_hparams(model, dataset, recipe, member_changes)
            # A rewind point past the round's end would fail its member after the others
            # trained, and again on every rerun: refused now, where no data is needed to tell.
            hparams.check_rewind_without_data()
            # The normalised step string (0 -> 0it), so 0 and 0it are one member.
            name = f"rewind{hparams.pruning.rewind}-seed{seed}"
            if any(member.name == name for member in tickets):
                raise LthError(f"--rewind: {rewind!r} is given twice (as {hparams.pruning.rewind})")
            tickets.append(Member(name, hparams))
    members = list(tickets)
    for ticket in tickets:
        for control in controls:
            rounds = ticket.hparams.pruning.rounds
            branch = BranchHparams(control, ticket.name, 0)
            name = branch_name(ticket.name, branch, rounds, rounds)
            members.append(
                Member(name, dataclasses.replace(ticket.hparams, branch=branch), ticket.name)
            )
    plan = SweepPlan(Path(root), tuple(members))
    _check_resumable(plan)
    _check_same_sweep(plan)
    return plan


def _shared_identity(hparams: ExperimentHparams) -> dict[str, Any]:
    """What every member of one sweep shares: all but the seed, the rewind point and the
    control (and the rounds, which extend a run)."""
    identity = experiment_identity(hparams)
    identity.pop("branch", None)
    identity["training"] = {k: v for k, v in identity["training"].items() if k != "seed"}
    identity["pruning"] = {k: v for k, v in identity["pruning"].items() if k != "rewind"}
    return identity


def _check_same_sweep(plan: SweepPlan) -> None:
    """A sweep directory holds one sweep: members of earlier runs that this one leaves out
    must share its hyperparameters but the seed, rewind point and control, or the report
    would draw two sweeps' members as one sweep's (and a rerun add to the wrong one)."""
    if not plan.members or not (plan.root / SWEEP_FILE).exists():
        return
    planned = {member.name for member in plan.members}
    mine = _shared_identity(plan.members[0].hparams)
    for name in member_names(plan.root):
        experiment = ExperimentDir(plan.root / name)
        if name in planned or not experiment.hparams.exists():
            continue
        try:
            record = read_saved(experiment)
        except LthError:
            continue  # a damaged member: its own run says so
        theirs = named_as_mine(
            _shared_identity(record.hparams), record.fields, plan.members[0].hparams
        )
        if theirs != mine:
            differing = hparam_differences(theirs, mine)
            raise LthError(
                f"{plan.root} holds a sweep of other hyperparameters (member {name}: "
                f"{'; '.join(differing[:3])}); rerun it with its own flags, or choose another "
                "--output_dir"
            )


def _check_resumable(plan: SweepPlan) -> None:
    """A member directory that exists must hold that member's experiment, so a rerun resumes
    it rather than failing member by member once Ray has started."""
    for member in plan.members:
        experiment = plan.experiment(member)
        if member.parent is None:  # a branch trains from its parent's copy of the model
            check_model_file(member.hparams, experiment.root)
        if not experiment.hparams.exists():
            # A driver killed as a member started leaves its directory with only the lock or
            # a temporary file in it: that member starts anew. Anything else is someone's.
            refuse_foreign_directory(experiment.root, "choose another --output_dir")
            continue
        todo = (
            f"restore it from a copy, or delete {experiment.root} and rerun the sweep to train "
            "that member again"
        )
        record = read_saved(experiment, f"sweep member {member.name}: ", todo)
        saved = named_as_mine(experiment_identity(record.hparams), record.fields, member.hparams)
        # A member written before a field existed resumes with what it ran, as run_imp does.
        mine = experiment_identity(settings_of_directory(experiment, member.hparams))
        if saved != mine:
            differing = hparam_differences(saved, mine)
            raise LthError(
                f"{plan.root} already has member {member.name} with other hyperparameters "
                f"({'; '.join(differing[:3])}); rerun the sweep with its own flags, or choose "
                "another --output_dir"
            )


# -- running ---------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """Each member's status and, for a failed or skipped one, why; the wall time."""

    status: dict[str, str]
    errors: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(status == DONE for status in self.status.values())

    def summary(self) -> str:
        """``8 members: 7 done, 1 failed, 0 skipped in 95 s`` and a line per problem."""
        counts = {s: sum(v == s for v in self.status.values()) for s in (DONE, FAILED, SKIPPED)}
        lines = [
            f"{counted(len(self.status), 'member')}: {counts[DONE]} done, {counts[FAILED]} failed, "
            f"{counts[SKIPPED]} skipped in {self.seconds:.0f} s"
        ]
        lines += [f"  {name}: {self.status[name]}: {error}" for name, error in self.errors.items()]
        return "\n".join(lines)


def run_member(
    hparams: dict[str, Any],
    output_dir: str,
    name: str,
    execution: Execution,
    callbacks: Sequence[str] = (),
) -> tuple[str, str]:
    """Runs one member to its last round (a Ray task's body; also callable directly).

    ``callbacks`` are ``package.module:Class`` specs (:func:`lth_tf.callbacks.load_callbacks`),
    built here, in the member's own process: each member has its own instances.
    Returns ``(DONE, "")`` or ``(FAILED, one-line error)``: a member's failure is reported, not
    raised, so that the others go on.
    """
    import lth_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow, in a fresh worker)

    _log_with_prefix(name)
    # TensorFlow's autograph files go where a kill cannot leave them for good (the sweep's own
    # temporary folder on a local Ray; on a cluster, the worker's own).
    use_run_temp_dir()
    try:
        _import_tensorflow_quietly()
        from lth_tf.lottery.imp import run_imp

        run_imp(
            ExperimentHparams.from_dict(hparams),
            output_dir,
            name,
            # Several members share one output stream: bars would interleave.
            dataclasses.replace(execution, show_progress=False),
            callbacks=load_callbacks(callbacks),
        )
        return DONE, ""
    except Exception as error:  # noqa: BLE001  (any failure is this member's, reported as such)
        return FAILED, one_line(error)


def _crash_line(crash: BaseException) -> str:
    """Why a member's Ray task ended without an outcome. Ray's own words for a dead worker
    point at its log files, which go with the sweep's temporary folder when the sweep ends.

    >>> class WorkerCrashedError(Exception): ...
    >>> _crash_line(WorkerCrashedError("The worker died unexpectedly. Check python-core-worker"))
    'its worker process died (killed, or out of memory); rerun the sweep to resume it'
    """
    died = type(crash).__name__ in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError")
    if died or "worker died" in str(crash):
        return "its worker process died (killed, or out of memory); rerun the sweep to resume it"
    return one_line(crash)


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ start-up lines (CUDA probing, oneDNN) go to the process's stderr, which
    Ray forwards from every worker; they are dropped unless the import fails."""
    import sys

    from lth_tf.startup import start_tensorflow_quietly

    if "tensorflow" not in sys.modules:
        start_tensorflow_quietly()


def _log_with_prefix(name: str) -> None:
    """The round lines of a member, prefixed with its name (Ray adds the worker's pid)."""
    logger = logging.getLogger("lth_tf")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
    logger.addHandler(handler)


def check_max_parallel(max_parallel: int | None) -> None:
    """``--max_parallel``: unset (the default) or a whole number in [1, :data:`MAX_PARALLEL`].

    >>> check_max_parallel(0)
    Traceback (most recent call last):
    lth_tf.errors.LthError: --max_parallel: 0 must be at least 1
    """
    if max_parallel is None:
        return
    if isinstance(max_parallel, int) and max_parallel < 1:
        raise LthError(f"--max_parallel: {max_parallel} must be at least 1")
    check_number(
        "--max_parallel",
        max_parallel,
        low=1,
        high=MAX_PARALLEL,
        integer=True,
        why="members at once",
    )


def check_ray_address(
    address: str | None, flag: str = "--ray_address", timeout: float = RAY_PROBE_SECONDS
) -> str | None:
    """The Ray cluster to connect to, checked: None for a local Ray started for the sweep
    (no address, or ``local``), else ``auto``'s cluster, ``HOST:PORT`` (the head's GCS port,
    6379 by default) or ``ray://HOST:PORT`` (Ray Client, 10001), once something answers
    there within ``timeout`` seconds. ``flag`` names where the address came from.

    >>> check_ray_address("local") is None
    True
    >>> check_ray_address("head node")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lth_tf.errors.LthError: --ray_address='head node' is not a Ray address; give auto, HOST:PORT...
    """
    if address is None or not address.strip() or address.strip() == "local":
        return None
    address = address.strip()
    if address == "auto":
        found = _auto_address(flag)
        if found is None:
            return address
        host, port = found
    else:
        match = _RAY_ADDRESS.fullmatch(address)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise LthError(
                f"{flag}={address!r} is not a Ray address; give auto, HOST:PORT (the head node's "
                "GCS port, e.g. 10.0.0.5:6379) or ray://HOST:10001, or leave it out for a local Ray"
            )
        host, port = match["host"].strip("[]"), int(match["port"])
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        why = (
            f"no answer within {timeout:g} s"
            if isinstance(error, TimeoutError)
            else (error.strerror or str(error) or type(error).__name__).lower()
        )
        raise LthError(
            f"{flag}={address}: nothing answers at {host}:{port} ({why}); start the cluster "
            "(ray start --head) or correct the address, or leave it out to run on a local Ray"
        ) from None
    with connection:
        # Ray joins a GCS (or a Ray Client server) that does not answer gRPC by retrying for
        # good; a listener that is not one is told apart here. TLS clusters speak it under TLS.
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true") and not _answers_grpc(
            connection
        ):
            raise LthError(
                f"{flag}={address}: something listens at {host}:{port}, but it is not a Ray "
                f"cluster (no gRPC answer within {timeout:g} s); give the head node's GCS port "
                "(6379 unless the head was started on another) or ray://HOST:10001"
            )
    return address


# An HTTP/2 client's first bytes, and an empty SETTINGS frame: a gRPC server answers with its
# own SETTINGS frame (type 4) before anything else.
_HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_grpc(connection: socket.socket) -> bool:
    """Whether the server at the other end of ``connection`` speaks HTTP/2, as gRPC does."""
    try:
        connection.sendall(_HTTP2_GREETING)
        reply = b""
        while len(reply) < 9:
            chunk = connection.recv(9 - len(reply))
            if not chunk:
                return False
            reply += chunk
    except OSError:  # a timeout, or the connection closed
        return False
    return reply[3] == 4


def _auto_address(flag: str) -> tuple[str, int] | None:
    """``auto``: the cluster Ray itself would find (the last ``ray start`` on this machine);
    None where this Ray does not say (``ray.init`` then reports an absent cluster itself)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a private function: another Ray version may not have it
        return None
    try:
        host, _, port = canonicalize_bootstrap_address_or_die("auto").rpartition(":")
        return host.strip("[]"), int(port)
    except (ConnectionError, ValueError) as error:
        # Ray's own words name its flag (--address); only another problem needs them.
        why = "" if "Could not find any running Ray" in str(error) else f" ({one_line(error)})"
        raise LthError(
            f"{flag}=auto: no running Ray cluster found on this machine{why}; start one "
            "(ray start --head), give its address, or leave it out for a local Ray"
        ) from None


def run_sweep(
    plan: SweepPlan,
    execution: Execution = Execution(),
    max_parallel: int | None = None,
    ray_address: str | None = None,
    say: Callable[[str], None] = print,
    callbacks: Sequence[str] = (),
) -> SweepResult:
    """Runs every unfinished member of ``plan`` on Ray; writes ``sweep.json`` as they go.

    ``callbacks``: ``package.module:Class`` specs of :class:`lth_tf.callbacks.RunCallback`
    classes that watch every member (built in each member's process; each spec is imported and
    built once here first, so a wrong one is one line before Ray starts).

    Without ``ray_address`` (or ``RAY_ADDRESS``) a local Ray instance starts here and stops at
    the end; with one (``auto``, ``ray://host:10001``) the members run on that cluster, which
    must see ``plan.root`` and ``execution.data_dir`` at the same paths. At most ``max_parallel``
    members run at once (default: one per GPU, else one); with GPUs each member gets one.
    The sweep directory is locked meanwhile: a second sweep into it is refused.
    """
    check_max_parallel(max_parallel)
    load_callbacks(callbacks)  # a wrong spec is one line here, before Ray starts
    # Checked before the directory is touched: a wrong address leaves nothing behind.
    flag = "--ray_address" if ray_address else "RAY_ADDRESS"
    address = check_ray_address(ray_address or os.environ.get("RAY_ADDRESS"), flag)
    started = time.monotonic()
    with io.locked(plan.root, "another sweep"):
        earlier = _earlier_members(plan)
        status = {m.name: DONE if plan.is_finished(m) else PENDING for m in plan.members}
        errors: dict[str, str] = {}
        todo = [m for m in plan.members if status[m.name] == PENDING]
        if not todo:
            _write_sweep_file(plan, status, errors, earlier)
            say(f"Every member of {plan.root} is finished already.")
            return SweepResult(status, errors, time.monotonic() - started)
        ray = _start_ray(address, flag, max_parallel)
        try:
            _write_sweep_file(plan, status, errors, earlier)
            _run_members(
                ray,
                plan,
                todo,
                status,
                errors,
                earlier,
                execution,
                max_parallel,
                address,
                say,
                list(callbacks),
            )
        except BaseException:
            # Stopped (SIGTERM, Ctrl-C) or broken: no member runs once this driver is gone.
            stopped = {n: PENDING if s == "running" else s for n, s in status.items()}
            _write_sweep_file(plan, stopped, errors, earlier)
            raise
        finally:
            ray.shutdown()
    return SweepResult(status, errors, time.monotonic() - started)


def _start_ray(address: str | None, flag: str, max_parallel: int | None) -> Any:
    """``ray``, connected to ``address`` or to a local instance started here. A SIGTERM
    handler the program set (the pipelines': stop with one line) is put back afterwards:
    ``ray.init`` replaces it with its own, which exits with status 1."""
    with _sigterm_handler_kept():
        return _init_ray(address, flag, max_parallel)


@contextlib.contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    chosen = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit as exited:
        # Ray's own handler, while it starts, exits with the signal's number and no word: the
        # SIGTERM goes to the handler the program chose instead (one line, how to resume).
        if exited.code == signal.SIGTERM and callable(chosen):
            chosen(signal.SIGTERM, None)
        raise
    finally:
        if callable(chosen) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, chosen)


def _init_ray(address: str | None, flag: str, max_parallel: int | None) -> Any:
    # A member's lines start with its name: Ray's "(run_member pid=...)" before them, in
    # colour codes that a log file keeps, only repeats it. Read when Ray is imported.
    os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
    if not address:
        # What a local Ray does by default (a token in ~/.ray), without its warning about it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    # "Started a local Ray instance.": the sweep's own first line says where it runs.
    logging.getLogger("ray._private.worker").setLevel(logging.WARNING)
    runtime_env = {"env_vars": MEMBER_ENV}
    if not address:
        # Ray's session files (logs, sockets, spilled objects) go in this run's temporary
        # folder, removed when it ends, or by the next run after a kill.
        run_temp = use_run_temp_dir()
        if run_temp is not None and owns_run_temp_dir():
            start_watchdog(run_temp)  # Ray's agents outlive a driver killed with kill -9
        ray.init(
            address="local",
            # The sweep's own slots; the rest of the machine stays free.
            num_cpus=max_parallel or os.cpu_count() or 1,
            include_dashboard=False,
            runtime_env=runtime_env,
            **({"_temp_dir": str(run_temp / "ray")} if run_temp is not None else {}),
        )
        return ray
    failure = None
    # Ray's C++ client logs every retry while it tries to join; the failure is one line here.
    with quiet_stderr():
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
            failure = error
    if failure is not None:
        # Something answered at the address, but not a Ray cluster this Ray can join.
        raise LthError(
            f"{flag}={address}: cannot join the Ray cluster there ({one_line(failure)}); check "
            "the address and that the cluster runs the same Ray and Python versions"
        ) from None
    return ray


def _run_members(
    ray: Any,
    plan: SweepPlan,
    todo: list[Member],
    status: dict[str, str],
    errors: dict[str, str],
    earlier: list[dict[str, Any]],
    execution: Execution,
    max_parallel: int | None,
    address: str | None,
    say: Callable[[str], None],
    callbacks: list[str],
) -> None:
    """Runs ``todo`` on the connected Ray, parents before their branches, at most
    ``max_parallel`` at once, updating ``status``, ``errors`` and ``sweep.json``."""
    root = plan.root.resolve()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    slots = max_parallel or max(gpus, 1)
    say(
        f"Sweep {plan.root}: {len(todo)} of {counted(len(plan.members), 'member')} to run, "
        f"{slots} at a time on {'Ray at ' + address if address else 'a local Ray'}"
        f"{f' ({gpus} GPUs, one per member)' if gpus else ''}."
    )
    # No retries: a crashed member resumes when the sweep is rerun, which says so.
    task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)(run_member)
    execution = dataclasses.replace(
        execution,
        data_dir=str(Path(execution.data_dir).resolve()) if execution.data_dir else None,
    )
    running: dict[Any, Member] = {}
    while todo or running:
        for member in list(todo):
            parent = status.get(member.parent) if member.parent else DONE
            if parent in (FAILED, SKIPPED):
                todo.remove(member)
                status[member.name] = SKIPPED
                errors[member.name] = f"its parent {member.parent} did not finish"
            elif parent == DONE and len(running) < slots:
                todo.remove(member)
                hparams = member.hparams.to_dict()
                ref = task.remote(hparams, str(root), member.name, execution, callbacks)
                running[ref] = member
                status[member.name] = "running"
                say(f"{member.name}: started")
        _write_sweep_file(plan, status, errors, earlier)
        if not running:
            continue
        finished, _ = ray.wait(list(running), num_returns=1)
        for ref in finished:
            member = running.pop(ref)
            try:
                outcome, error = ray.get(ref)
            except Exception as crash:  # noqa: BLE001  (a worker that died, not an error it raised)
                outcome, error = FAILED, _crash_line(crash)
            status[member.name] = outcome
            if error:
                errors[member.name] = error
            say(f"{member.name}: {outcome}{': ' + error if error else ''}")
    _write_sweep_file(plan, status, errors, earlier)


def _earlier_members(plan: SweepPlan) -> list[dict[str, Any]]:
    """The entries of ``sweep.json`` as an earlier run left it (oldest first; none without
    the file), each member this run leaves out refreshed from its directory."""
    path = plan.root / SWEEP_FILE
    if not path.exists():
        return []
    entries = _sweep_entries(path)
    planned = {member.name for member in plan.members}
    for entry in entries:
        if entry["name"] not in planned:
            entry["status"] = _status_on_disk(plan.root / entry["name"], entry.get("status"))
    return entries


def _sweep_entries(path: Path) -> list[dict[str, Any]]:
    """``sweep.json``'s member entries, each a dict naming a folder of the sweep directory;
    anything else is a damaged file."""
    saved = io.read_json(path, SWEEP_TODO)
    entries = saved.get("members") if isinstance(saved, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and _is_member_name(entry.get("name")) for entry in entries
    ):
        raise io.damaged(path, "not a list of named members", SWEEP_TODO)
    names = [entry["name"] for entry in entries]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:  # every run writes each member once
        raise io.damaged(path, f"it lists member {twice} twice", SWEEP_TODO)
    return entries


def _is_member_name(name: Any) -> bool:
    """A folder directly in the sweep directory (an edited file must not name ``../x``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


def _status_on_disk(directory: Path, recorded: Any) -> str:
    """A member no longer run: done if every round is on disk, otherwise what was recorded
    (``running`` becomes ``pending``: the lock says no sweep runs it now; so does ``done``
    whose rounds are gone)."""
    try:
        experiment = ExperimentDir(directory)
        rounds = read_saved(experiment).hparams.pruning.rounds
        if experiment.completed_rounds() >= set(range(rounds + 1)):
            return DONE
    except (LthError, OSError):
        pass  # no experiment there (yet), or a damaged one: the record stands
    # Not every round on disk: "done" was true once (the folder was moved or deleted since).
    return PENDING if recorded in (None, "running", DONE) else str(recorded)


def _write_sweep_file(
    plan: SweepPlan,
    status: dict[str, str],
    errors: dict[str, str],
    earlier: Sequence[dict[str, Any]] = (),
) -> None:
    """``sweep.json``: every member with what it varies and where it stands; the members of
    earlier runs that this one leaves out stay listed, ``in_this_run: false``."""
    current = {
        member.name: {
            "name": member.name,
            "seed": member.hparams.training.seed,
            "rewind": member.hparams.pruning.rewind,
            "control": member.control,
            "parent": member.parent,
            "status": status[member.name],
            "error": errors.get(member.name),
            "in_this_run": True,
        }
        for member in plan.members
    }
    # Earlier members keep their place; this run's new ones follow in the plan's order.
    listed = [current.pop(e["name"], None) or {**e, "in_this_run": False} for e in earlier]
    io.write_json(
        plan.root / SWEEP_FILE,
        {
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "members": listed + list(current.values()),
        },
    )


def unfinished_members(root: str | Path) -> list[str]:
    """The members ``sweep.json`` lists that have not finished every round on disk (pending,
    running, failed or stopped).

    >>> unfinished_members("runs/sweeps/demo")  # doctest: +SKIP
    ['rewind500it-seed1']
    """
    root = Path(root)
    return [
        entry["name"]
        for entry in _sweep_entries(root / SWEEP_FILE)
        if _status_on_disk(root / entry["name"], entry.get("status")) != DONE
    ]


def expand_experiments(entries: Sequence[str | Path], started_only: bool = False) -> list[Path]:
    """``--experiments``' directories: each entry an experiment directory, a sweep directory
    (its members that exist; with ``started_only``, those with a finished round) or a quoted
    glob (the experiment directories it matches, sorted).

    >>> expand_experiments(["runs/sweeps/lth", "runs/lenet-*"])  # doctest: +SKIP
    [PosixPath('runs/sweeps/lth/rewind0it-seed0'), ..., PosixPath('runs/lenet-a')]
    """
    found: list[Path] = []
    texts = [str(item) for item in entries]
    for start in (i for i, text in enumerate(texts) if not os.path.exists(text)):
        for end in range(start + 2, len(texts) + 1):
            joined = ",".join(texts[start:end])
            if not os.path.isdir(joined):
                continue
            # A glob takes experiments, not sweeps (it stands for several names at once).
            instead = (
                "rename it"
                if os.path.isfile(os.path.join(joined, SWEEP_FILE))
                else f"give it by a glob, e.g. --experiments='{joined.replace(',', '?')}'"
            )
            raise LthError(
                f"--experiments: {joined} has a comma in its name, and commas separate the "
                f"experiments; {instead}"
            )
    for item in entries:
        text = str(item)
        if not text.strip():  # "runs/a,": Path("") would be the working directory
            raise LthError(
                f"--experiments: empty entry in {','.join(map(str, entries))!r}; remove the "
                "extra comma"
            )
        if glob.has_magic(text):
            matches = sorted(
                Path(p) for p in glob.glob(text) if (Path(p) / "hparams.json").is_file()
            )
            if not matches:
                raise LthError(f"--experiments: {text} matches no experiment directory")
            if started_only:  # 'runs/*' while one of them still runs its round 0
                matches = [m for m in matches if ExperimentDir(m).read_results()]
                if not matches:
                    raise LthError(
                        f"--experiments: no experiment {text} matches has finished a round"
                    )
            found += matches
        elif (Path(text) / SWEEP_FILE).is_file():
            members = read_sweep(text)
            if started_only:
                members = [m for m in members if ExperimentDir(m).read_results()]
            if not members:
                done = "has finished a round" if started_only else "has started"
                raise LthError(f"--experiments: no member of the sweep {text} {done}")
            found += members
        else:
            found.append(Path(text))
    return found


def member_names(root: str | Path) -> list[str]:
    """The names of the members ``sweep.json`` lists, in its order."""
    return [entry["name"] for entry in _sweep_entries(Path(root) / SWEEP_FILE)]


def read_sweep(root: str | Path) -> list[Path]:
    """The member directories ``sweep.json`` lists that exist (for reports).

    >>> read_sweep("runs/sweeps/demo")  # doctest: +SKIP
    [PosixPath('runs/sweeps/demo/rewind0it-seed0'), ...]
    """
    root = Path(root)
    return [root / name for name in member_names(root) if (root / name / "hparams.json").exists()]
