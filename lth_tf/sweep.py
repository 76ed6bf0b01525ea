"""Sweeps: seeds x rewind points x controls, each member an ordinary experiment, run on Ray.

A sweep directory holds one experiment directory per member, named from what the sweep varies
(``rewind100it-seed0``), its controls beside it as branches (``rewind100it-seed0-random_reinit``)
and ``sweep.json``, the members and their status. A branch member runs once its parent member
has finished. Rerunning the same sweep resumes every member (finished ones are skipped);
adding seeds adds members.

Planning reads no TensorFlow and no Ray, so a bad input is refused at once; :func:`run_sweep`
then runs the members as Ray tasks, each through :func:`lth_tf.imp.run_imp`.

>>> plan = plan_sweep("runs/sweeps/demo", "lenet300_100", "fashion_mnist",
...                   changes={"rounds": 3}, seeds=[0, 1], rewinds=["0", "100it"],
...                   controls=["random_reinit"])
>>> [member.name for member in plan.members][:3]
['rewind0it-seed0', 'rewind0it-seed1', 'rewind100it-seed0']
>>> plan.members[-1].name, plan.members[-1].parent
('rewind100it-seed1-random_reinit', 'rewind100it-seed1')
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lth_tf import io
from lth_tf.branches import branch_name
from lth_tf.config import BranchHparams, ExperimentHparams
from lth_tf.controls import BRANCH_CONTROLS, CONTROLS
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir, experiment_identity, read_saved

log = logging.getLogger("lth_tf")

SWEEP_FILE = "sweep.json"
# A member's status in sweep.json: not started, finished (every round), the error it stopped
# with, or never started because its parent did not finish.
PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
# Ray's own variables the members inherit; TF_USE_LEGACY_KERAS must be set before a worker
# imports TensorFlow (importing lth_tf first sets it too; this covers any other import order).
MEMBER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


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
    seeds: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise LthError(f"--seeds: {item!r} is not a seed or a range; use e.g. 0-4 or 0,1,2")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise LthError(f"--seeds: the range {item} is empty; write it low-high, e.g. 0-4")
        seeds += range(first, last + 1)
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise LthError(f"--seeds: seed {repeated[0]} is given twice")
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
    changes = dict(changes or {})
    for varied, flag in (("seed", "--seeds"), ("rewind", "--rewind")):
        if varied in changes:
            raise LthError(f"--{varied} is what the sweep varies: give it as {flag}")
    if not seeds:
        raise LthError("--seeds: the sweep has no seeds; give e.g. --seeds=0-4")
    for control in controls:
        if control not in CONTROLS:
            raise LthError(
                f"--controls: unknown control {control!r}; choose from {', '.join(BRANCH_CONTROLS)}"
            )
        if control not in BRANCH_CONTROLS:
            raise LthError(
                f"--controls: {control!r} is IMP itself, which every member runs; choose from "
                f"{', '.join(BRANCH_CONTROLS)}"
            )
    if len(set(controls)) < len(controls):
        raise LthError("--controls: a control is given twice")
    from lth_tf.models import experiment_hparams

    tickets: list[Member] = []
    for rewind in rewinds or [None]:
        for seed in seeds:
            member_changes = {**changes, "seed": seed}
            if rewind is not None:
                member_changes["rewind"] = rewind
            hparams = experiment_hparams(model, dataset, recipe, member_changes)
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
    return plan


def _check_resumable(plan: SweepPlan) -> None:
    """A member directory that exists must hold that member's experiment, so a rerun resumes
    it rather than failing member by member once Ray has started."""
    for member in plan.members:
        experiment = plan.experiment(member)
        if not experiment.root.exists():
            continue
        saved = experiment_identity(read_saved(experiment, f"sweep member {member.name}: ").hparams)
        mine = experiment_identity(member.hparams)
        if saved != mine:
            differing = sorted(
                f"{group}.{key}"
                for group in mine
                for key in mine[group]
                if saved.get(group, {}).get(key) != mine[group][key]
            )
            raise LthError(
                f"{plan.root} already has member {member.name} with other hyperparameters "
                f"({', '.join(differing[:3])}); rerun the sweep with its own flags, or choose "
                "another --output_dir"
            )


# -- running ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemberOptions:
    """How each member runs (what :class:`lth_tf.imp.RunOptions` takes, plus TensorBoard)."""

    data_dir: str | None = None
    jit_compile: bool = True
    steps_per_execution: int = 100
    tensorboard: bool = True


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
            f"{len(self.status)} members: {counts[DONE]} done, {counts[FAILED]} failed, "
            f"{counts[SKIPPED]} skipped in {self.seconds:.0f} s"
        ]
        lines += [f"  {name}: {self.status[name]}: {error}" for name, error in self.errors.items()]
        return "\n".join(lines)


def run_member(
    hparams: dict[str, Any], output_dir: str, name: str, options: MemberOptions
) -> tuple[str, str]:
    """Runs one member to its last round (a Ray task's body; also callable directly).

    Returns ``(DONE, "")`` or ``(FAILED, one-line error)``: a member's failure is reported, not
    raised, so that the others go on.
    """
    import lth_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow, in a fresh worker)

    _log_with_prefix(name)
    try:
        _import_tensorflow_quietly()
        from lth_tf.imp import RunOptions, run_imp

        observer = None
        if options.tensorboard:
            from lth_tf.monitoring.tensorboard import TensorBoardMonitor

            observer = TensorBoardMonitor()
        run_imp(
            ExperimentHparams.from_dict(hparams),
            output_dir,
            name,
            RunOptions(
                data_dir=options.data_dir,
                jit_compile=options.jit_compile,
                steps_per_execution=options.steps_per_execution,
                # Several members share one output stream: bars would interleave.
                show_progress=False,
            ),
            observer=observer,
        )
        return DONE, ""
    except Exception as error:  # noqa: BLE001  (any failure is this member's, reported as such)
        return FAILED, one_line(error)


def one_line(error: BaseException) -> str:
    """An error as one line: an LthError's message, otherwise its type and first line.

    >>> one_line(ValueError("bad shape\\nmore detail"))
    'ValueError: bad shape'
    """
    lines = [line for line in str(error).splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    return first if isinstance(error, LthError) else f"{type(error).__name__}: {first}".rstrip(": ")


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


def run_sweep(
    plan: SweepPlan,
    options: MemberOptions = MemberOptions(),
    max_parallel: int | None = None,
    ray_address: str | None = None,
    say: Callable[[str], None] = print,
) -> SweepResult:
    """Runs every unfinished member of ``plan`` on Ray; writes ``sweep.json`` as they go.

    Without ``ray_address`` (or ``RAY_ADDRESS``) a local Ray instance starts here and stops at
    the end; with one (``auto``, ``ray://host:10001``) the members run on that cluster, which
    must see ``plan.root`` and ``options.data_dir`` at the same paths. At most ``max_parallel``
    members run at once (default: one per GPU, else one); with GPUs each member gets one.
    """
    if max_parallel is not None and max_parallel < 1:
        raise LthError(f"--max_parallel: {max_parallel} must be at least 1")
    started = time.monotonic()
    root = plan.root.resolve()
    status = {m.name: DONE if plan.is_finished(m) else PENDING for m in plan.members}
    errors: dict[str, str] = {}
    _write_sweep_file(plan, status, errors)
    todo = [m for m in plan.members if status[m.name] == PENDING]
    if not todo:
        say(f"Every member of {plan.root} is finished already.")
        return SweepResult(status, errors, time.monotonic() - started)

    import ray

    address = ray_address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": MEMBER_ENV}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(
            address="local",
            # The sweep's own slots; the rest of the machine stays free.
            num_cpus=max_parallel or os.cpu_count() or 1,
            include_dashboard=False,
            runtime_env=runtime_env,
        )
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        slots = max_parallel or max(gpus, 1)
        say(
            f"Sweep {plan.root}: {len(todo)} of {len(plan.members)} members to run, {slots} at "
            f"a time on {'Ray at ' + address if address else 'a local Ray'}"
            f"{f' ({gpus} GPUs, one per member)' if gpus else ''}."
        )
        # No retries: a crashed member resumes when the sweep is rerun, which says so.
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)(run_member)
        options = dataclasses.replace(
            options,
            data_dir=str(Path(options.data_dir).resolve()) if options.data_dir else None,
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
                    running[task.remote(hparams, str(root), member.name, options)] = member
                    status[member.name] = "running"
                    say(f"{member.name}: started")
            _write_sweep_file(plan, status, errors)
            if not running:
                continue
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                member = running.pop(ref)
                try:
                    outcome, error = ray.get(ref)
                except Exception as crash:  # noqa: BLE001  (a worker that died, not an error it raised)
                    outcome, error = FAILED, one_line(crash)
                status[member.name] = outcome
                if error:
                    errors[member.name] = error
                say(f"{member.name}: {outcome}{': ' + error if error else ''}")
        _write_sweep_file(plan, status, errors)
    finally:
        ray.shutdown()
    return SweepResult(status, errors, time.monotonic() - started)


def _write_sweep_file(plan: SweepPlan, status: dict[str, str], errors: dict[str, str]) -> None:
    """``sweep.json``: every member with what it varies and where it stands."""
    io.write_json(
        plan.root / SWEEP_FILE,
        {
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "members": [
                {
                    "name": member.name,
                    "seed": member.hparams.training.seed,
                    "rewind": member.hparams.pruning.rewind,
                    "control": member.control,
                    "parent": member.parent,
                    "status": status[member.name],
                    "error": errors.get(member.name),
                }
                for member in plan.members
            ],
        },
    )


def read_sweep(root: str | Path) -> list[Path]:
    """The member directories ``sweep.json`` lists that exist (for reports).

    >>> read_sweep("runs/sweeps/demo")  # doctest: +SKIP
    [PosixPath('runs/sweeps/demo/rewind0it-seed0'), ...]
    """
    root = Path(root)
    names = [member["name"] for member in io.read_json(root / SWEEP_FILE)["members"]]
    return [root / name for name in names if (root / name / "hparams.json").exists()]
