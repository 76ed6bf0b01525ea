"""Controls run as branches of an existing IMP experiment (its masks, rewind point, round 0).

A branch is an experiment directory beside its parent, ``<parent>-<control>``, with the same
files and ``results.csv`` columns; its ``hparams.json`` is the parent's plus
``branch: {control, parent, control_seed}``. Its round 0 is the parent's dense round, copied;
what each control changes from round 1 on is in :mod:`lth_tf.lottery.controls`.

NumPy only: a pipeline checks a branch here before TensorFlow starts.

>>> hparams, output_dir, name = branch_of("runs/lenet", "random_reinit")  # doctest: +SKIP
>>> name  # doctest: +SKIP
'lenet-random_reinit'
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lth_tf import io
from lth_tf.config import BranchHparams, ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import (
    ExperimentDir,
    check_experiment_name,
    parent_dir,
    read_saved,
)
from lth_tf.legacy import check_rounds_semantics
from lth_tf.lottery.controls import branch_controls, get_control


def read_parent(path: str | Path) -> tuple[ExperimentDir, ExperimentHparams]:
    """The experiment at ``path`` and its hyperparameters; anything else is refused."""
    parent = ExperimentDir(Path(path))
    if not parent.root.is_dir():
        raise LthError(f"--branch_of: {path} is not a directory; give an experiment directory")
    hparams = read_saved(parent, "--branch_of: ").hparams
    if hparams.is_branch:
        raise LthError(
            f"--branch_of: {path} is itself a branch ({hparams.branch.control} of "
            f"{hparams.branch.parent}); branch from the IMP experiment"
        )
    return parent, hparams


def branch_name(parent: str, branch: BranchHparams, rounds: int, parent_rounds: int) -> str:
    """``<parent>-<control>``, plus what else tells it apart from the default branch.

    >>> branch_name("lenet", BranchHparams("random_prune", "lenet", 2), 5, 20)
    'lenet-random_prune-seed2-5rounds'
    """
    name = f"{parent}-{branch.control}"
    if branch.control_seed:
        name += f"-seed{branch.control_seed}"
    if rounds != parent_rounds:
        name += f"-{rounds}rounds"
    return name


def branch_of(
    parent_path: str | Path,
    control: str,
    rounds: int | None = None,
    control_seed: int = 0,
    name: str | None = None,
) -> tuple[ExperimentHparams, Path, str]:
    """A branch's hyperparameters, output directory (the parent's) and directory name.

    The branch runs the parent's hyperparameters, except ``rounds`` (default: the parent's);
    :func:`check_parent` then checks the parent has what those rounds need.
    """
    if name is not None:
        check_experiment_name(name)  # a branch, too, stays beside its parent
    if not get_control(control).is_branch:
        choices = ", ".join(branch_controls())
        raise LthError(f"--control: {control!r} is IMP itself; choose one of {choices}")
    parent, parent_hparams = read_parent(parent_path)
    parent_name = parent.root.resolve().name
    branch = BranchHparams(control, parent_name, control_seed)
    parent_rounds = parent_hparams.pruning.rounds
    branch_rounds = parent_rounds if rounds is None else rounds
    hparams = dataclasses.replace(
        parent_hparams,
        pruning=dataclasses.replace(parent_hparams.pruning, rounds=branch_rounds),
        branch=branch,
    )
    check_parent(parent, hparams)
    name = name or branch_name(parent_name, branch, branch_rounds, parent_rounds)
    return hparams, parent.root.resolve().parent, name


def check_parent(parent: ExperimentDir, hparams: ExperimentHparams) -> None:
    """Refuses a parent that is not this branch's, or has not got as far as the branch needs,
    or whose rewound rounds trained the old way (its rounds and the branch's would differ)."""
    _, parent_hparams = read_parent(parent.root)
    check_rounds_semantics(parent, read_saved(parent, "--branch_of: "), for_more_rounds=True)
    same = dataclasses.replace(
        hparams,
        pruning=dataclasses.replace(hparams.pruning, rounds=parent_hparams.pruning.rounds),
        branch=BranchHparams(),
    )
    if same != parent_hparams:
        raise LthError(
            f"{parent.root} ran other hyperparameters than this branch of it; a branch reruns "
            "its parent's (only --rounds may differ)"
        )
    if 0 not in parent.completed_rounds():
        raise LthError(
            f"--branch_of: {parent.root} has not finished round 0 yet; a branch starts from "
            "the parent's dense round"
        )
    rounds = hparams.pruning.rounds
    control = get_control(hparams.branch.control)
    if control.uses_parent_masks:
        have = 0
        while have < rounds and parent.masks(have + 1).exists():
            have += 1
        if have < rounds:
            raise LthError(
                f"--branch_of: {parent.root} has masks up to round {have} only, and "
                f"--control={hparams.branch.control} needs them up to round {rounds}: let the "
                f"parent run further, or pass --rounds={have}"
            )
    if control.needs_parent_rewind_point and rounds and not parent.rewind_point.exists():
        raise LthError(f"--branch_of: {parent.root} has no rewind_point.npz yet")


def start_branch(experiment: ExperimentDir, hparams: ExperimentHparams) -> None:
    """Copies the parent's round 0 (masks, weights, evaluations, results row) into the branch.
    Does nothing the second time."""
    parent = parent_dir(experiment, hparams)
    check_parent(parent, hparams)
    if 0 not in experiment.completed_rounds():
        # The arrays checked to be the parent's and stamped as the branch's own (a byte copy
        # would carry the parent's stamp); masks compressed as the rounds write them.
        for path in (experiment.masks(0), experiment.evaluations(0), experiment.weights(0)):
            source = parent.root / path.relative_to(experiment.root)
            if path.suffix == ".npz":
                arrays = {**parent.read_arrays(source), **experiment.stamp(path)}
                io.write_npz(path, arrays, compressed=path.name == "masks.npz")
            else:
                io.write_bytes_atomic(path, source.read_bytes())
        experiment.write_result(next(r for r in parent.read_results() if r.round == 0))
