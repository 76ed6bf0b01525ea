"""What a user, a kill or the file system can do to an experiment: one line and exit 2, or a
recovery. Damaged files x pipelines, full disks, names escaping --output_dir, the lock, and the
files a kill leaves or a user deletes."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.export.ticket import open_ticket
from lth_tf.lottery.imp import run_imp
from lth_tf.monitoring.report import write_report
from lth_tf.stability.plan import plan_stability
from tests.helpers import (
    QUIET,
    TICKET_RATES,
    assert_one_line_error,
    lenet_hparams,
    run_main,
    run_pipeline,
    run_python,
)
from tests.test_io import DAMAGES, _hold_lock

# conftest's lenet_runs/plain: how it was run.
PLAIN = lenet_hparams(
    iterations="40it",
    eval_every="20it",
    rounds=2,
    pruning={"rates": TICKET_RATES, "block_size": "1x1"},
)
SMALL_RUN = [
    "--model=lenet300_100",
    "--dataset=mnist",
    "--noprogress",
    "--iterations=20",
    "--eval_every=10it",
    "--rounds=1",
]


def _set_mask_value(path: Path) -> None:
    masks = io.read_npz(path)
    name = sorted(masks)[0]
    masks[name] = masks[name] * 2
    io.write_npz(path, masks, compressed=True)


def _wrong_shape(path: Path) -> None:
    masks = io.read_npz(path)
    name = sorted(masks)[0]
    masks[name] = masks[name][:-1]
    io.write_npz(path, masks, compressed=True)


def _unnested(path: Path) -> None:
    masks = io.read_npz(path)
    masks = {name: np.ones_like(mask) for name, mask in masks.items()}
    io.write_npz(path, masks, compressed=True)


def _not_finite(path: Path) -> None:
    weights = io.read_npz(path)
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    io.write_npz(path, weights)


# (file, damage): each makes the file unusable in its own way.
DAMAGED = {
    "masks_truncated": ("round_01/masks.npz", DAMAGES["truncated"]),
    "masks_bit_flipped": ("round_01/masks.npz", DAMAGES["bit_flipped"]),
    "masks_value_2": ("round_01/masks.npz", _set_mask_value),
    "masks_wrong_shape": ("round_01/masks.npz", _wrong_shape),
    "masks_not_nested": ("round_02/masks.npz", _unnested),  # round 1 pruned what it keeps
    "weights_truncated": ("round_01/weights.npz", DAMAGES["truncated"]),
    "weights_nan": ("round_01/weights.npz", _not_finite),
    "results_binary": ("results.csv", DAMAGES["binary"]),
    "results_truncated": ("results.csv", lambda p: p.write_bytes(p.read_bytes()[:30])),
    "hparams_bad": ("hparams.json", lambda p: p.write_bytes(b'{"hparams": ')),
}


@pytest.fixture(scope="module")
def damaged(lenet_runs, tmp_path_factory) -> Path:
    """One copy of lenet_runs/plain per entry of DAMAGED, damaged so, under its key."""
    root = tmp_path_factory.mktemp("damaged")
    for key, (name, damage) in DAMAGED.items():
        copy = shutil.copytree(lenet_runs / "plain", root / key)
        damage(copy / name)
    return root


def _refusal(call) -> str:
    with pytest.raises(LthError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("key", DAMAGED)
def test_every_reader_names_the_damaged_file(damaged, key, mnist_data, tmp_path):
    name = DAMAGED[key][0]
    experiment = damaged / key
    path = str(experiment / name)
    pruning_round = 2 if name.startswith("round_02") else 1
    assert path in _refusal(lambda: open_ticket(experiment, pruning_round))
    assert path in _refusal(lambda: plan_stability(experiment, pruning_round))
    assert "has not finished" not in _refusal(lambda: open_ticket(experiment, pruning_round))
    if name in ("results.csv", "hparams.json"):  # what a report and a resume read
        assert path in _refusal(lambda: write_report([experiment], tmp_path / "r"))
        run = lambda: run_imp(PLAIN, damaged, key, QUIET, data=mnist_data)  # noqa: E731
        assert path in _refusal(run)


@pytest.mark.parametrize(
    "module, key, flags",
    [
        ("pipelines.export", "masks_bit_flipped", ["--round=1", "--output_dir={tmp}"]),
        ("pipelines.stability", "results_binary", ["--round=1"]),
    ],
)
def test_export_and_stability_print_the_damaged_file_on_one_line(
    damaged, module, key, flags, tmp_path
):
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    result = run_pipeline(module, f"--experiment_dir={damaged / key}", *flags)
    assert_one_line_error(result, str(damaged / key / DAMAGED[key][0]))


def test_report_prints_the_damaged_file_on_one_line(damaged, tmp_path):
    result = run_main(
        "pipelines.report", f"--experiments={damaged / 'hparams_bad'}", f"--output={tmp_path}/r"
    )
    assert_one_line_error(result, str(damaged / "hparams_bad" / "hparams.json"))


def test_imp_resume_on_a_damaged_results_file_is_one_line(idx_dir, tmp_path):
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}", "--experiment_name=e"]
    assert run_main("pipelines.imp", *flags, tensorflow=True).returncode == 0
    (tmp_path / "e" / "results.csv").write_bytes(b"\x00\x9f\x92\x96 garbage")
    result = run_main("pipelines.imp", *flags, tensorflow=True)
    assert_one_line_error(result, f"{tmp_path / 'e' / 'results.csv'} is damaged")


# -- the file system ---------------------------------------------------------------------------


# Every kind of file a run writes: the disk fills up at the first write of it (or at the n-th
# write of any file).
WRITE_SITES = [
    1,
    4,
    "hparams.json",
    "sessions.json",
    "rewind_point.npz",
    "masks.npz",
    "checkpoint.npz",
    "weights.npz",
    "evaluations.csv",
    "results.csv",
    "accuracy_vs_sparsity.png",
]


@pytest.mark.parametrize("fail_at", WRITE_SITES)
def test_a_full_disk_is_one_line_and_the_rerun_resumes(idx_dir, tmp_path, monkeypatch, fail_at):
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}", "--experiment_name=e"]
    calls = []
    real = io.write_bytes_atomic

    def fills_up(path, data):
        calls.append(path)
        full = (
            len(calls) == fail_at
            if isinstance(fail_at, int)
            else Path(path).name == fail_at and [Path(c).name for c in calls].count(fail_at) == 1
        )
        if full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(io, "write_bytes_atomic", fills_up)
        result = run_main("pipelines.imp", *flags, tensorflow=True)
    if isinstance(fail_at, int):
        failed = calls[fail_at - 1]
    else:
        failed = next(call for call in calls if Path(call).name == fail_at)
    assert_one_line_error(result, f"{failed}: disk full (free space")
    assert run_main("pipelines.imp", *flags, tensorflow=True).returncode == 0
    assert [r.round for r in ExperimentDir(tmp_path / "e").read_results()] == [0, 1]


def test_an_output_dir_that_is_a_file_or_under_proc_is_one_line(idx_dir, tmp_path):
    (tmp_path / "file").write_text("")
    for output_dir, reason in [
        (tmp_path / "file", "not a directory"),
        (Path("/proc/lth_tf_test"), "no such file or directory"),
    ]:
        result = run_main(
            "pipelines.imp",
            *SMALL_RUN,
            f"--data_dir={idx_dir}",
            f"--output_dir={output_dir}",
            tensorflow=True,
        )
        assert_one_line_error(result, f"{output_dir}")
        assert reason in result.stderr


# -- experiment names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "..", ".", "a\nb"])
def test_an_experiment_name_that_leaves_output_dir_is_refused(name, tmp_path, lenet_runs):
    inside = tmp_path / "out"
    result = run_main(
        "pipelines.imp", *SMALL_RUN, f"--output_dir={inside}", f"--experiment_name={name}"
    )
    assert_one_line_error(result, "is not a plain name")
    branch = run_main(
        "pipelines.imp",
        f"--branch_of={lenet_runs / 'plain'}",
        "--control=random_reinit",
        f"--experiment_name={name}",
    )
    assert_one_line_error(branch, "is not a plain name")
    with pytest.raises(LthError, match="is not a plain name"):
        run_imp(PLAIN, inside, name, QUIET, data=object())  # refused before the data is used
    assert not tmp_path.joinpath("x").exists() and not inside.exists()


# -- the lock, leftovers and recovery ----------------------------------------------------------


def test_a_second_run_is_refused_then_a_killed_runs_leftovers_are_no_obstacle(tmp_path, mnist_data):
    root = tmp_path / "e"
    root.mkdir()
    leftover = root / ".hparams.json.k1ll3d.tmp"  # a kill during the very first write
    leftover.write_bytes(b'{"half')
    holder = _hold_lock(root)
    hparams = lenet_hparams(iterations="20it", eval_every="10it", rounds=0)
    try:
        message = _refusal(lambda: run_imp(hparams, tmp_path, "e", QUIET, data=mnist_data))
        assert f"pid {holder.pid}" in message and str(root) in message
        assert not (root / "hparams.json").exists()
    finally:
        holder.kill()
        holder.wait()
    run_imp(hparams, tmp_path, "e", QUIET, data=mnist_data)
    assert ExperimentDir(root).completed_rounds() == {0}
    assert not leftover.exists()


def test_a_lost_mask_is_recomputed_and_a_lost_round_retrained_with_tensorboard_on(
    lenet_runs, tmp_path, mnist_data
):
    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    original = io.read_npz(experiment.masks(1))
    weights_1 = experiment.weights(1).read_bytes()
    experiment.masks(1).unlink()
    shutil.rmtree(experiment.round_dir(2))  # its results row stays
    logged = dataclasses.replace(QUIET, tensorboard=True)
    run_imp(PLAIN, tmp_path, "plain", logged, data=mnist_data)
    recomputed = io.read_npz(experiment.masks(1))
    assert recomputed.keys() == original.keys()
    for name, mask in original.items():
        np.testing.assert_array_equal(recomputed[name], mask)
    assert experiment.weights(1).read_bytes() == weights_1  # round 1 was not retrained
    assert experiment.completed_rounds() == {0, 1, 2}


@pytest.mark.parametrize("lost", [0, 2])
def test_a_finished_experiment_recomputes_a_lost_mask_as_its_error_says(
    lenet_runs, tmp_path, mnist_data, lost
):
    # "delete it and rerun" is what a damaged masks file's error says: with every round done.
    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    original = io.read_npz(experiment.masks(lost))
    weights = {r: experiment.weights(r).read_bytes() for r in range(3)}
    experiment.masks(lost).unlink()
    # The stability analysis says the same, not that a finished round has not finished.
    refusal = _refusal(lambda: plan_stability(experiment.root, max(lost, 1)))
    assert refusal.endswith("masks.npz is missing; rerun the IMP command to recompute it")
    run_imp(PLAIN, tmp_path, "plain", QUIET, data=mnist_data)
    recomputed = io.read_npz(experiment.masks(lost))
    assert recomputed.keys() == original.keys()
    for name, mask in original.items():
        np.testing.assert_array_equal(recomputed[name], mask)
    assert {r: experiment.weights(r).read_bytes() for r in range(3)} == weights  # none retrained
    assert experiment.completed_rounds() == {0, 1, 2}


def _drop_a_layer(path: Path) -> None:
    arrays = io.read_npz(path)
    del arrays[sorted(name for name in arrays if not name.startswith("__"))[0]]
    io.write_npz(path, arrays, compressed=True)


LONGER = dataclasses.replace(PLAIN, pruning=dataclasses.replace(PLAIN.pruning, rounds=3))


@pytest.mark.parametrize("damage", [_drop_a_layer, _wrong_shape])
@pytest.mark.parametrize("name", ["round_02/weights.npz", "round_02/masks.npz"])
def test_a_round_pruned_from_a_file_that_does_not_fit_the_network_names_it(
    lenet_runs, tmp_path, mnist_data, name, damage
):
    # A readable .npz of the wrong content: round 3 prunes round 2's weights under its masks.
    copy = shutil.copytree(lenet_runs / "plain", tmp_path / "plain")
    damage(copy / name)
    message = _refusal(lambda: run_imp(LONGER, tmp_path, "plain", QUIET, data=mnist_data))
    assert message.startswith(f"{copy / name} is damaged (")
    assert message.endswith(
        "rerun the IMP command to "
        + (
            "retrain the round, or restore it from a copy"
            if "weights" in name
            else "recompute it, or restore it from a copy"
        )
    )


def test_an_export_of_masks_that_lack_a_layer_names_the_masks_file(lenet_runs, tmp_path):
    copy = shutil.copytree(lenet_runs / "plain", tmp_path / "plain")
    _drop_a_layer(copy / "round_01" / "masks.npz")
    message = _refusal(lambda: open_ticket(copy, 1))
    assert message.startswith(f"{copy / 'round_01' / 'masks.npz'} is damaged (no ")


def test_weights_that_a_rounds_masks_prune_are_refused_with_a_fix_that_works(lenet_runs, tmp_path):
    # Recomputing the masks gives the same masks, so deleting masks.npz would not end this.
    copy = shutil.copytree(lenet_runs / "plain", tmp_path / "plain")
    path = copy / "round_01" / "weights.npz"
    weights = io.read_npz(path)
    kernel = next(name for name in sorted(weights) if name.endswith("kernel"))
    weights[kernel] = weights[kernel] + 1.0  # nonzero everywhere, pruned places too
    io.write_npz(path, weights)
    message = _refusal(lambda: open_ticket(copy, 1))
    assert message == (
        f"{copy / 'round_01' / 'masks.npz'} prunes {kernel} weights that weights.npz holds: the "
        f"round's files are not of one training; delete {copy / 'round_01'} and rerun the IMP "
        "command to train the round again"
    )


def test_a_finished_rounds_checkpoint_that_a_kill_left_is_removed_by_the_rerun(
    lenet_runs, tmp_path, mnist_data
):
    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    left = experiment.checkpoint(1)  # killed after its results row, before its removal
    left.write_bytes(b"spent")
    run_imp(PLAIN, tmp_path, "plain", QUIET, data=mnist_data)
    assert not left.exists()


def test_a_checkpoint_that_lacks_a_variable_names_itself_on_resume(
    lenet_runs, tmp_path, mnist_data
):
    from lth_tf.training.loop import TrainingProgress

    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    checkpoint = experiment.checkpoint(3)
    checkpoint.parent.mkdir()
    # The progress and the model's weights, but no masks and no optimizer slots.
    planted = {
        **TrainingProgress(iteration=25).to_arrays(),
        **experiment.read_arrays(experiment.weights(2)),
        **experiment.stamp(checkpoint),
    }
    io.write_npz(checkpoint, planted)
    message = _refusal(lambda: run_imp(LONGER, tmp_path, "plain", QUIET, data=mnist_data))
    assert message.startswith(f"{checkpoint} is damaged (no saved value for variable ")
    assert message.endswith("train the round again from its start")


def _round_3_trainer(experiment: ExperimentDir, data):
    """A trainer as round 3 of ``LONGER`` resumes it, its masks written to masks.npz."""
    from lth_tf.builder import build_run
    from lth_tf.lottery.controls import ControlContext, get_control

    trainer = build_run(LONGER, data).trainer
    trainer.pruned.set_round(3)
    masks = get_control("none").masks(ControlContext(experiment, LONGER), 3, trainer.pruned)
    path = experiment.masks(3)
    path.parent.mkdir()
    uint8 = {name: mask.astype(np.uint8) for name, mask in masks.items()}
    io.write_npz(path, {**uint8, **experiment.stamp(path)}, compressed=True)
    trainer.pruned.set_masks({name: mask.astype(np.float32) for name, mask in masks.items()})
    return trainer


def _nan_in(arrays: dict, name: str) -> str:
    arrays[name].flat[7] = np.nan
    return f"{name} is not finite everywhere"


def _ints_in(arrays: dict, name: str) -> str:
    arrays[name] = arrays[name].astype(np.int32)
    return f"saved {name!r} holds int32 values, the model's are float32"


def _halves_in(arrays: dict, name: str) -> str:
    arrays[name] = arrays[name].astype(np.float16)
    return f"saved {name!r} holds float16 values, the model's are float32"


def _missing(arrays: dict, name: str) -> str:
    del arrays[name]
    return f"no saved value for variable {name!r}"


# A diverging round stops at the evaluation before its checkpoint: a NaN weight in one was put
# there by something else, and a resume would train on it (or blame the learning rate). Integers
# would be cast without a word; the early stop's weights are only restored at the round's end,
# after all its training, so they are checked when the checkpoint is read.
@pytest.mark.parametrize(
    "where, damage",
    [
        ("model", _nan_in),
        ("model", _ints_in),
        ("model", _halves_in),
        ("early stop", _nan_in),
        ("early stop", _ints_in),
        ("early stop", _missing),
    ],
)
def test_a_checkpoint_with_a_weight_that_is_not_finite_or_not_float_is_refused_as_damaged(
    lenet_runs, tmp_path, mnist_data, where, damage
):
    from lth_tf.pruning.wrapping import snapshot
    from lth_tf.training.loop import TrainingProgress, checkpoint_arrays

    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    checkpoint = experiment.checkpoint(3)
    trainer = _round_3_trainer(experiment, mnist_data)
    early_stop = snapshot(trainer.pruned.rewindable)
    if where == "model":
        state = checkpoint_arrays(trainer, TrainingProgress(25))
        kernel = next(key for key in sorted(state) if key.endswith("kernel"))
        what = damage(state, kernel)
    else:
        kernel = next(key for key in sorted(early_stop) if key.endswith("kernel"))
        what = damage(early_stop, kernel)
        if damage is _nan_in:  # named as the checkpoint holds it
            what = "__early_stop__/" + what
        state = checkpoint_arrays(trainer, TrainingProgress(25, early_stop_weights=early_stop))
    io.write_npz(checkpoint, {**state, **experiment.stamp(checkpoint)})
    message = _refusal(lambda: run_imp(LONGER, tmp_path, "plain", QUIET, data=mnist_data))
    assert message.startswith(f"{checkpoint} is damaged ({what})")
    assert message.endswith("train the round again from its start")


def test_a_rate_for_a_layer_the_network_lacks_writes_nothing_so_the_fix_can_resume(
    tmp_path, mnist_data
):
    from lth_tf.config import PruneRates

    def rates(layer: str):
        return lenet_hparams(
            iterations="10it", rounds=0, pruning={"rates": PruneRates(fc=0.5, layers={layer: 0.3})}
        )

    with pytest.raises(LthError, match="fc3: no prunable layer of 'lenet300_100' has that name"):
        run_imp(rates("fc3"), tmp_path, "named", QUIET, data=mnist_data)
    assert not (tmp_path / "named").exists()  # an hparams.json of the typo would refuse the fix
    run_imp(rates("fc2"), tmp_path, "named", QUIET, data=mnist_data)
    assert ExperimentDir(tmp_path / "named").completed_rounds() == {0}


def test_tensorflows_own_file_errors_are_one_line_and_a_bug_is_not(capsys):
    """A SavedModel or event file that cannot be written fails with TensorFlow's error types,
    not OSError: still one line and exit 2. Any other error is a bug: traceback and exit 1."""
    import tensorflow as tf

    from pipelines.common import user_errors_as_one_line

    def full_disk(argv):
        raise tf.errors.ResourceExhaustedError(None, None, "saved_model: No space left on device")

    with pytest.raises(SystemExit) as exited:
        user_errors_as_one_line(full_disk)(["export"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: TensorFlow: out of disk space or memory: saved_model: No space")

    def bug(argv):
        raise tf.errors.InvalidArgumentError(None, None, "shapes [2] and [3] differ")

    with pytest.raises(SystemExit) as exited:
        user_errors_as_one_line(bug)(["export"])
    assert exited.value.code == 1 and "is a bug in lth_tf" in capsys.readouterr().err


def test_a_stopped_command_says_whether_a_rerun_resumes_or_starts_again(capsys):
    from pipelines.common import STARTS_OVER, user_errors_as_one_line

    def stopped(argv):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        user_errors_as_one_line(stopped)(["imp"])
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted; rerun the same command to resume\n"
    with pytest.raises(SystemExit):
        user_errors_as_one_line(after_a_stop=STARTS_OVER)(stopped)(["report"])
    assert capsys.readouterr().err == "interrupted; rerun the same command to start it again\n"


_EVALUATION = {"iteration": 20, "val_loss": 0.5, "val_accuracy": 0.9, "test_loss": 0.5}


def _progress(**changes):
    def damage(state: dict) -> None:
        from lth_tf.training.loop import _PROGRESS_KEY

        progress = json.loads(str(state[_PROGRESS_KEY]))
        state[_PROGRESS_KEY] = np.array(json.dumps({**progress, **changes}))

    return damage


def _all_ones(state: dict) -> None:
    mask = next(key for key in sorted(state) if key.endswith("/mask"))
    state[mask] = np.ones_like(state[mask])


def _negative_step_count(state: dict) -> None:
    count = next(k for k in sorted(state) if k.startswith("optimizer/") and state[k].ndim == 0)
    state[count] = np.asarray(-5, state[count].dtype)


def _nan_slot(state: dict) -> None:
    slot = next(k for k in sorted(state) if k.startswith("optimizer/") and state[k].ndim == 2)
    state[slot].flat[0] = np.nan


# Each would have resumed: into wrong results written with exit 0 (a mask that is not the
# round's, progress past the round's end, an early stop at iteration 99999), NaN weights, or a
# traceback (progress of the wrong types).
@pytest.mark.parametrize(
    "damage, what",
    [
        (_all_ones, r"its \S+ mask is not the round's"),
        (_nan_slot, r"optimizer/\d+ is not finite everywhere"),
        (_negative_step_count, r"optimizer/\d+ counts -5 steps"),
        (_progress(iteration=500), r"it is at iteration 500, outside this training's \d+ to 40"),
        (_progress(iteration=-5), "its iteration is -5, not a count"),
        (_progress(iteration="25"), "its iteration is '25', not a count"),
        (_progress(iteration=25.5), "its iteration is 25.5, not a count"),
        (_progress(train_seconds=math.nan), "its train_seconds is nan"),
        (
            _progress(evaluations=[{**_EVALUATION, "val_loss": "low", "test_accuracy": 0.9}]),
            "its evaluation at 20: val_loss is 'low', not a number",
        ),
        (
            _progress(evaluations=[{**_EVALUATION, "val_accuracy": 7.0, "test_accuracy": 0.9}]),
            "its evaluation at 20: val_accuracy is 7.0",
        ),
        (
            _progress(evaluations=[{**_EVALUATION, "scalars": "x", "test_accuracy": 0.9}]),
            "its evaluation at 20: its scalars are 'x'",
        ),
        (
            _progress(evaluations=[{**_EVALUATION, "iteration": 30, "test_accuracy": 0.9}]),
            r"its evaluations at \[30\] are not in order up to its iteration 25",
        ),
        (
            _progress(evaluations=[{**_EVALUATION, "test_accuracy": math.nan}]),
            "the weights of its early stop at 20 are missing",
        ),
    ],
)
def test_a_checkpoint_whose_masks_slots_or_progress_do_not_fit_the_round_is_damaged(
    lenet_runs, tmp_path, mnist_data, damage, what
):
    from lth_tf.training.loop import TrainingProgress, checkpoint_arrays

    experiment = ExperimentDir(shutil.copytree(lenet_runs / "plain", tmp_path / "plain"))
    checkpoint = experiment.checkpoint(3)
    trainer = _round_3_trainer(experiment, mnist_data)
    state = checkpoint_arrays(trainer, TrainingProgress(25))
    damage(state)
    io.write_npz(checkpoint, {**state, **experiment.stamp(checkpoint)})
    message = _refusal(lambda: run_imp(LONGER, tmp_path, "plain", QUIET, data=mnist_data))
    assert re.match(rf"{re.escape(str(checkpoint))} is damaged \({what}\): ", message), message
    assert message.endswith("train the round again from its start")


FINALIZER_SCRIPT = """
import gc, os, signal, time
from pipelines.common import user_errors_as_one_line

# A shell's background job starts with Ctrl-C ignored: give it Python's own handling back.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Finalized:
    def __del__(self):
        # As TensorFlow's objects do while the TFLite converter collects garbage: the signal
        # arrives while this runs, and Python drops an exception raised here.
        os.kill(os.getpid(), signal.{name})
        time.sleep(0.5)

def main(argv):
    Finalized()
    gc.collect()
    time.sleep(5)  # the rest of the command, which the stop must cut short
    print("finished")

user_errors_as_one_line(main)(["export"])
"""


@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_that_comes_during_a_finalizer_is_not_lost(name, status):
    result = run_python("-c", FINALIZER_SCRIPT.format(name=name), timeout=60)
    assert result.returncode == status, result.stdout + result.stderr
    assert "finished" not in result.stdout


# Ctrl-C while Python still imports a pipeline (its first second): as `python -m pipelines.imp`
# imports the package, with argv[0] "-m"; the signal lands inside the next import.
EARLY_INTERRUPT_SCRIPT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a foreground command starts
sys.argv = ["-m"]
import pipelines
os.kill(os.getpid(), signal.SIGINT)
import pipelines.common  # the rest of the imports, which the stop cuts short
print("imported")
"""


def test_ctrl_c_while_a_pipeline_is_imported_is_one_line_not_a_traceback():
    result = run_python("-c", EARLY_INTERRUPT_SCRIPT, timeout=60)
    assert result.returncode == 130, result.stdout + result.stderr
    assert "imported" not in result.stdout
    assert (
        result.stderr.strip()
        == "interrupted while starting; nothing was written; rerun the command"
    )


def test_a_program_that_imports_pipelines_keeps_its_own_ctrl_c():
    script = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import pipelines.common\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    result = run_python("-c", script, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
