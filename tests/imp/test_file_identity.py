"""Every file knows its experiment (issue 27, item 3): the rewind point, each round's masks and
weights, and checkpoints carry the experiment's id and their place in it. A file copied in from
another experiment, or from another round, is refused with one line naming it; a directory from
before the stamps still reads; a report refuses an experiment beside its own copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import EXPERIMENT_ID_KEY, ExperimentDir
from lth_tf.export.ticket import open_ticket
from lth_tf.monitoring.report import write_report
from tests.helpers import assert_one_line_error, run_main, run_pipeline

SEEDS = {"a": 0, "b": 1}


def imp(idx_dir: Path, out: Path, name: str, rounds: int):
    """``pipelines.imp`` in this process: lenet300_100 on the tests' MNIST files, 20
    iterations a round, experiment ``name`` (seed :data:`SEEDS`) under ``out``."""
    return run_main(
        "pipelines.imp",
        "--model=lenet300_100",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--iterations=20",
        "--eval_every=10it",
        f"--seed={SEEDS[name]}",
        f"--rounds={rounds}",
        f"--output_dir={out}",
        f"--experiment_name={name}",
        "--noprogress",
        "--notensorboard",
        tensorflow=True,
    )


@pytest.fixture(scope="module")
def twins(tmp_path_factory, idx_dir) -> Path:
    """Experiments ``a`` and ``b``: the same hyperparameters but the seed, rounds 0 and 1."""
    out = tmp_path_factory.mktemp("twins")
    for name in SEEDS:
        result = imp(idx_dir, out, name, rounds=1)
        assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def runs(twins, tmp_path) -> Path:
    """A copy of ``twins`` that a test may change."""
    return shutil.copytree(twins, tmp_path / "runs")


def _refusal(call) -> str:
    with pytest.raises(LthError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_files_carry_the_experiment_and_their_place_and_readers_never_see_it(twins):
    experiment = ExperimentDir(twins / "a")
    identity = io.read_json(experiment.hparams)[EXPERIMENT_ID_KEY]
    assert identity != ExperimentDir(twins / "b").identity  # same hyperparameters, other run
    for path in (experiment.rewind_point, experiment.masks(1), experiment.weights(1)):
        stamp = io.read_stamp(path)
        assert stamp["__experiment__"] == identity
        assert stamp["__file__"] == path.relative_to(experiment.root).as_posix()
    masks = lth_tf.Experiment(experiment.root).masks(1)
    assert not set(io.STAMP_KEYS) & set(masks)
    assert set(masks) == set(experiment.read_masks(1))
    assert not set(io.STAMP_KEYS) & set(lth_tf.Experiment(experiment.root).weights(1))


def test_a_rewind_point_of_another_seed_is_refused_when_the_experiment_is_extended(runs, idx_dir):
    shutil.copyfile(runs / "b" / "rewind_point.npz", runs / "a" / "rewind_point.npz")
    result = imp(idx_dir, runs, "a", rounds=2)
    rewind_point = runs / "a" / "rewind_point.npz"
    assert_one_line_error(result, f"{rewind_point} belongs to another experiment")
    assert not (runs / "a" / "round_02").exists()  # refused before anything of round 2


def test_a_round_swapped_in_from_another_experiment_is_not_exported(runs, tmp_path):
    for name in ("masks.npz", "weights.npz"):
        shutil.copyfile(runs / "b" / "round_01" / name, runs / "a" / "round_01" / name)
    out = tmp_path / "tickets"
    result = run_pipeline(
        "pipelines.export", f"--experiment_dir={runs / 'a'}", "--round=1", f"--output_dir={out}"
    )
    assert_one_line_error(result, f"{runs / 'a' / 'round_01'}/")
    assert "belongs to another experiment" in result.stderr
    assert not out.exists()


def test_a_file_of_another_round_is_refused(lenet_runs, tmp_path):
    copy = shutil.copytree(lenet_runs / "plain", tmp_path / "plain")
    shutil.copyfile(copy / "round_01" / "masks.npz", copy / "round_02" / "masks.npz")
    message = _refusal(lambda: open_ticket(copy, 2))
    assert message.startswith(f"{copy / 'round_02' / 'masks.npz'} is this experiment's ")
    assert "round_01/masks.npz, not its round_02/masks.npz" in message


def test_a_checkpoint_of_another_experiment_is_refused_on_resume(runs, idx_dir):
    theirs = ExperimentDir(runs / "b")
    foreign = theirs.checkpoint(2)
    io.write_npz(runs / "a" / "round_02" / "checkpoint.npz", theirs.stamp(foreign))
    result = imp(idx_dir, runs, "a", rounds=2)
    checkpoint = runs / "a" / "round_02" / "checkpoint.npz"
    assert_one_line_error(result, f"{checkpoint} belongs to another experiment")
    assert not (runs / "a" / "round_02" / "weights.npz").exists()


def test_a_stamp_that_is_not_one_line_of_text_is_damage(runs):
    experiment = ExperimentDir(runs / "a")
    masks = io.read_npz(experiment.masks(1))
    planted = {
        "__experiment__": np.array(["x\ny", "z"]),
        "__file__": np.array("round_01/masks.npz"),
    }
    io.write_npz(experiment.masks(1), {**masks, **planted}, compressed=True)
    message = _refusal(lambda: experiment.read_masks(1))
    assert message.startswith(f"{experiment.masks(1)} is damaged (its __experiment__ entry")


def _strip_stamps(root: Path) -> None:
    """Makes ``root`` look written before stamps: no id, no stamp in any .npz."""
    fields = io.read_json(root / "hparams.json")
    del fields[EXPERIMENT_ID_KEY]
    io.write_json(root / "hparams.json", fields)
    for path in root.rglob("*.npz"):
        io.write_npz(path, io.read_npz(path), compressed=path.name == "masks.npz")


def test_an_experiment_from_before_stamps_still_reads_and_gains_them_as_it_runs(
    runs, idx_dir, twins
):
    old = ExperimentDir(runs / "a")
    _strip_stamps(old.root)
    assert old.identity is None and io.read_stamp(old.masks(1)) == {}
    ticket = open_ticket(old.root, 1)
    original = ExperimentDir(twins / "a")
    for name, mask in original.read_masks(1).items():
        np.testing.assert_array_equal(ticket.masks[name], mask)
    result = imp(idx_dir, runs, "a", rounds=2)
    assert result.returncode == 0, result.stderr
    identity = old.identity
    assert identity is not None
    assert io.read_stamp(old.masks(1)) == {}  # old files stay as they were, and still read
    assert io.read_stamp(old.weights(2))["__experiment__"] == identity
    assert open_ticket(old.root, 2).round == 2
    # A stamped file in a directory without an id comes from another experiment.
    _strip_stamps(old.root)
    shutil.copyfile(runs / "b" / "round_01" / "masks.npz", old.masks(1))
    assert "belongs to another experiment" in _refusal(lambda: old.read_masks(1))


def test_a_report_refuses_an_experiment_beside_its_copy(twins, tmp_path):
    copy = shutil.copytree(twins / "a", tmp_path / "a-copy")
    identity = ExperimentDir(copy).identity
    message = _refusal(lambda: write_report([twins / "a", copy], tmp_path / "report"))
    assert message == (
        f"--experiments: {twins / 'a'} and {copy} are the same run (experiment id {identity}: "
        "one is a copy of the other); give only one of them"
    )
    assert not (tmp_path / "report.png").exists()
    figure, _ = write_report([twins / "a", twins / "b"], tmp_path / "seeds")
    assert figure.exists()
