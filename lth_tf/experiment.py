"""The experiment directory: where every file of an IMP run lives, and its hyperparameter check.

<output_dir>/<experiment>/
  hparams.json          every hyperparameter, defaults resolved
  sessions.json         how each run (or resume) ran: strategy, devices, precision, XLA
  results.csv           one row per completed round
  rewind_point.npz      the weights every round rewinds to (written once)
  round_NN/masks.npz    0/1 mask per prunable weight, keyed by weight name
  round_NN/weights.npz  the round's trained (masked) weights
  round_NN/evaluations.csv   validation/test metrics at every evaluation
  round_NN/checkpoint.npz    while the round runs: where a resume picks up
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lth_tf import io
from lth_tf.config import ExperimentHparams
from lth_tf.errors import LthError

RESULT_COLUMNS = [
    "round",
    "percent_remaining",
    "weights_remaining",
    "test_accuracy",
    "test_loss",
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "val_loss_min",
    "iterations",
    "train_seconds",
]
FORMAT_VERSION = 1
# In hparams.json: how rounds after round 0 train. Directories without it were written when a
# round rewound to k trained all T iterations again, from the schedule's start.
ROUNDS_KEY = "rounds_train"
ROUNDS_FROM_REWIND_POINT = "from the rewind point k to T"


@dataclasses.dataclass(frozen=True)
class ExperimentDir:
    """Paths of one experiment.

    >>> ExperimentDir(Path("runs/e")).masks(3).as_posix()
    'runs/e/round_03/masks.npz'
    """

    root: Path

    @property
    def hparams(self) -> Path:
        return self.root / "hparams.json"

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions.json"

    @property
    def rewind_point(self) -> Path:
        return self.root / "rewind_point.npz"

    def round_dir(self, pruning_round: int) -> Path:
        return self.root / f"round_{pruning_round:02d}"

    def masks(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "masks.npz"

    def weights(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "weights.npz"

    def evaluations(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "evaluations.csv"

    def checkpoint(self, pruning_round: int) -> Path:
        return self.round_dir(pruning_round) / "checkpoint.npz"

    def record_session(self, session: dict[str, Any]) -> None:
        """Appends how this run executes (none of it is a hyperparameter) to sessions.json.

        Results of one experiment may come from several runs (a resume on other hardware, in
        other precision); this says which rounds each one trained, and how.
        """
        sessions = io.read_json(self.sessions) if self.sessions.exists() else []
        io.write_json(self.sessions, [*sessions, session])

    def read_results(self) -> list[dict[str, str]]:
        return io.read_csv(self.results) if self.results.exists() else []

    def completed_rounds(self) -> set[int]:
        """Rounds with a results row *and* saved weights (a row is written last)."""
        return {
            int(row["round"])
            for row in self.read_results()
            if self.weights(int(row["round"])).exists()
        }


def default_experiment_name(hparams: ExperimentHparams, defaults: ExperimentHparams) -> str:
    """``<model>-<dataset>-<hash of the hyperparameters that differ from the paper's>``."""
    return f"{hparams.model.name}-{hparams.dataset.name}-{hparams.short_hash(defaults)}"


def open_experiment(root: Path, hparams: ExperimentHparams, extra: dict[str, Any]) -> ExperimentDir:
    """Creates the experiment directory, or checks that an existing one ran these hyperparameters.

    Resuming into a directory that holds a different experiment would mix two runs' rounds, so
    any difference is refused, naming the first values that differ.
    """
    experiment = ExperimentDir(root)
    if experiment.hparams.exists():
        try:
            saved = io.read_json(experiment.hparams)
            # Through the dataclasses and back: an option added since the directory was written
            # takes its neutral default, so older experiments still resume.
            saved_hparams = ExperimentHparams.from_dict(saved["hparams"]).to_dict()
        except (ValueError, KeyError, TypeError, LthError):
            raise LthError(
                f"{experiment.hparams} is not an lth_tf hparams file; "
                "choose another --output_dir or --experiment_name"
            ) from None
        if saved.get("format_version") != FORMAT_VERSION:
            raise LthError(
                f"{root} was written by another lth_tf version (format "
                f"{saved.get('format_version')}, this is {FORMAT_VERSION}); use a new "
                "--experiment_name"
            )
        mine = hparams.to_dict()
        if saved_hparams != mine:
            diffs = _differences(saved_hparams, mine)
            raise LthError(
                f"{root} holds an experiment with other hyperparameters ({'; '.join(diffs[:3])}); "
                "rerun with the same flags to resume, or pick another --experiment_name"
            )
        _check_eval_spacing(root, hparams, saved.get("resolved"), extra.get("resolved"))
        if saved.get(ROUNDS_KEY) != ROUNDS_FROM_REWIND_POINT:
            check_rounds_semantics(experiment, saved)
            io.write_json(experiment.hparams, {**saved, ROUNDS_KEY: ROUNDS_FROM_REWIND_POINT})
        return experiment
    if root.exists() and any(root.iterdir()):
        raise LthError(
            f"{root} exists and is not an lth_tf experiment (no hparams.json); "
            "choose another --output_dir or --experiment_name"
        )
    io.write_json(
        experiment.hparams,
        {
            "format_version": FORMAT_VERSION,
            "hparams": hparams.to_dict(),
            ROUNDS_KEY: ROUNDS_FROM_REWIND_POINT,
            **extra,
        },
    )
    return experiment


def check_rounds_semantics(experiment: ExperimentDir, saved: dict[str, Any]) -> None:
    """Refuses to resume or extend a directory whose rewound rounds trained the old way.

    Before rounds trained k -> T, a round rewound to iteration k > 0 trained all T iterations
    with the schedule and data order restarted. Such rounds stay valid to export and report,
    but more rounds now would mix two procedures in one experiment. With k = 0, or before any
    rewound round trained, the two are the same.
    """
    if saved.get(ROUNDS_KEY) == ROUNDS_FROM_REWIND_POINT:
        return
    rewind = int(saved.get("resolved", {}).get("rewind_iteration", 0))
    rounds = [int(row["round"]) for row in experiment.read_results()]
    started = [r for r in rounds if r > 0] or [
        r
        for r in range(1, int(saved.get("hparams", {}).get("pruning", {}).get("rounds", 0)) + 1)
        if experiment.checkpoint(r).exists() or experiment.weights(r).exists()
    ]
    if rewind > 0 and started:
        raise LthError(
            f"{experiment.root} was trained by an older lth_tf whose rounds after round 0 "
            f"trained all iterations from the rewind point ({rewind}it) with the schedule and "
            "data restarted; rounds now train from iteration k to the end, as the papers do. "
            "It still exports and reports; to continue, start a new --experiment_name"
        )


def _check_eval_spacing(root: Path, hparams: ExperimentHparams, saved: Any, resolved: Any) -> None:
    """Refuses to resume where the same ``--eval_every`` now means another spacing.

    ``auto`` is per model (:class:`lth_tf.config.AutoEval`); before that it was half an epoch
    for every model, so an older lenet experiment on MNIST evaluated every 500 iterations
    under ``auto``, which now means 100. Its later rounds would find their early-stop
    iteration at another resolution than its first ones.
    """
    if not (isinstance(saved, dict) and isinstance(resolved, dict)):
        return
    before, now = saved.get("eval_every"), resolved.get("eval_every")
    if before is None or now is None or before == now:
        return
    flag = hparams.training.eval_every
    why = " (what 'auto' means is per model now)" if flag == "auto" else ""
    raise LthError(
        f"{root} evaluated every {before} iterations, but --eval_every={flag} now means every "
        f"{now}{why}; its rounds would not share one early-stopping resolution: report or "
        "export it as it is, or run it again under another --experiment_name"
    )


def _differences(saved: dict, mine: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(mine)):
        old, new = saved.get(key), mine.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            diffs.append(f"{prefix}{key}: saved {old!r}, now {new!r}")
    return diffs


def read_experiment(
    experiment_dir: str | Path, use: str, data_keys: tuple[str, ...] = ()
) -> tuple[ExperimentDir, ExperimentHparams, dict]:
    """An existing experiment of this format: its paths, hyperparameters and data description.

    ``use`` names what the caller does with it ("export", "analyse") in the version error;
    ``data_keys`` are entries of the saved data description the caller needs.

    >>> experiment, hparams, data = read_experiment("runs/demo", "export")  # doctest: +SKIP
    """
    root = Path(experiment_dir)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise LthError(
            f"--experiment_dir: {root} {what}; pass the directory an IMP run wrote "
            "(e.g. runs/<experiment>)"
        )
    experiment = ExperimentDir(root)
    if not experiment.hparams.exists():
        raise LthError(f"{root} is not an lth_tf experiment (no hparams.json)")
    try:
        saved = io.read_json(experiment.hparams)
        version = saved.get("format_version")
    except (ValueError, AttributeError):
        raise LthError(f"{experiment.hparams} is not an lth_tf hparams file") from None
    if version != FORMAT_VERSION:
        raise LthError(
            f"{root} was written by another lth_tf version (format {version}, this is "
            f"{FORMAT_VERSION}); {use} it with that version"
        )
    try:
        hparams = ExperimentHparams.from_dict(saved["hparams"])
        data = dict(saved["data"])
    except (KeyError, TypeError) as error:
        raise LthError(f"{experiment.hparams} is incomplete or malformed ({error!r})") from None
    missing = [key for key in data_keys if key not in data]
    if missing:
        raise LthError(f"{experiment.hparams} has no data.{missing[0]}; was it written by lth_tf?")
    return experiment, hparams, data
