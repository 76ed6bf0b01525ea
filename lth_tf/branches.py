"""Controls, run as branches of an existing IMP experiment (its masks, rewind point, round 0).

A branch is an experiment directory beside its parent, ``<parent>-<control>``, with the same
files and ``results.csv`` columns; its ``hparams.json`` is the parent's plus
``branch: {control, parent, control_seed}``. Its round 0 is the parent's dense round, copied.
From round 1 on, each control changes one thing about the parent's rounds:

``random_reinit``  the parent's masks, but every variable rewound to *fresh* random initial values
                   (the model's initialisers under seed ``seed + 1 + control_seed``), untrained;
``random_prune``   random masks with exactly the parent's per-layer counts (nested, seeded by
                   ``(seed, control_seed, round)``), rewound to the parent's rewind point;
``lr_rewind``      masks pruned from its own trained weights as IMP does, but the weights are *not*
                   rewound: training continues from the previous round's trained weights
                   (masked) with the learning-rate schedule restarted (Renda et al. 2020).

NumPy only: a pipeline checks a branch here before TensorFlow starts.

>>> hparams, output_dir, name = branch_of("runs/lenet", "random_reinit")  # doctest: +SKIP
>>> name  # doctest: +SKIP
'lenet-random_reinit'
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lth_tf import io
from lth_tf.config import CONTROLS, BranchHparams, ExperimentHparams
from lth_tf.errors import LthError
from lth_tf.experiment import FORMAT_VERSION, RESULT_COLUMNS, ExperimentDir
from lth_tf.pruning.masks import random_masks

# Controls that take the parent's masks (as they are, or their per-layer counts).
USES_PARENT_MASKS = ("random_reinit", "random_prune")


def read_parent(path: str | Path) -> tuple[ExperimentDir, ExperimentHparams]:
    """The experiment at ``path`` and its hyperparameters; anything else is refused."""
    parent = ExperimentDir(Path(path))
    if not parent.root.is_dir():
        raise LthError(f"--branch_of: {path} is not a directory; give an experiment directory")
    try:
        saved = io.read_json(parent.hparams)
        hparams = ExperimentHparams.from_dict(saved["hparams"])
    except FileNotFoundError:
        raise LthError(
            f"--branch_of: {path} is not an lth_tf experiment (no hparams.json)"
        ) from None
    except (ValueError, KeyError, TypeError, LthError):
        raise LthError(f"--branch_of: {parent.hparams} is not an lth_tf hparams file") from None
    if saved.get("format_version") != FORMAT_VERSION:
        raise LthError(f"--branch_of: {path} was written by another lth_tf version")
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
    if control not in CONTROLS[1:]:
        raise LthError(
            f"--control: unknown control {control!r}; choose one of {', '.join(CONTROLS[1:])}"
        )
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


def parent_dir(experiment: ExperimentDir, hparams: ExperimentHparams) -> ExperimentDir:
    """A branch's parent: the directory beside it that ``branch.parent`` names."""
    return ExperimentDir(experiment.root.parent / hparams.branch.parent)


def check_parent(parent: ExperimentDir, hparams: ExperimentHparams) -> None:
    """Refuses a parent that is not this branch's, or has not got as far as the branch needs."""
    _, parent_hparams = read_parent(parent.root)
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
    if hparams.branch.control in USES_PARENT_MASKS:
        have = 0
        while have < rounds and parent.masks(have + 1).exists():
            have += 1
        if have < rounds:
            raise LthError(
                f"--branch_of: {parent.root} has masks up to round {have} only, and "
                f"--control={hparams.branch.control} needs them up to round {rounds}: let the "
                f"parent run further, or pass --rounds={have}"
            )
    if hparams.branch.control == "random_prune" and rounds and not parent.rewind_point.exists():
        raise LthError(f"--branch_of: {parent.root} has no rewind_point.npz yet")


def start_branch(experiment: ExperimentDir, hparams: ExperimentHparams) -> None:
    """Copies the parent's round 0 (masks, weights, evaluations, results row) into the branch,
    and random_prune's rewind point (the parent's). Does nothing the second time."""
    parent = parent_dir(experiment, hparams)
    check_parent(parent, hparams)
    if 0 not in experiment.completed_rounds():
        for path in (parent.masks(0), parent.evaluations(0), parent.weights(0)):
            target = experiment.root / path.relative_to(parent.root)
            io.write_bytes_atomic(target, path.read_bytes())
        row = next(r for r in parent.read_results() if int(r["round"]) == 0)
        rows = [r for r in experiment.read_results() if int(r["round"]) != 0]
        io.write_csv(experiment.results, [row, *rows], RESULT_COLUMNS)
    if hparams.branch.control == "random_prune" and not experiment.rewind_point.exists():
        io.write_bytes_atomic(experiment.rewind_point, parent.rewind_point.read_bytes())


def control_masks(
    experiment: ExperimentDir,
    hparams: ExperimentHparams,
    pruning_round: int,
    previous: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Round ``pruning_round``'s masks of a random_reinit or random_prune branch."""
    parent_masks = io.read_npz(parent_dir(experiment, hparams).masks(pruning_round))
    if hparams.branch.control == "random_reinit":
        return parent_masks
    counts = {name: int(mask.sum()) for name, mask in parent_masks.items()}
    rng = np.random.default_rng((hparams.training.seed, hparams.branch.control_seed, pruning_round))
    return random_masks(previous, counts, rng)


def reinit_seed(hparams: ExperimentHparams) -> int:
    """The seed of random_reinit's fresh initial values: one the parent never used.

    >>> from lth_tf.models import paper_defaults
    >>> reinit_seed(paper_defaults("lenet300_100"))
    1
    """
    return hparams.training.seed + 1 + hparams.branch.control_seed
