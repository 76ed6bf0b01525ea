"""The rewind point found by measuring (--find_rewind, --rewind=stable): the grid, the choice,
what is recorded, and the flags that cannot go with it."""

import dataclasses

import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import read_saved
from lth_tf.stability import rewind_finder
from lth_tf.stability.rewind_finder import (
    choose_rewind,
    plan_rewind_search,
    read_choice,
    rewind_grid,
    run_imp_with_stable_rewind,
)
from tests.helpers import QUIET, assert_one_line_error, lenet_hparams, run_main, run_pipeline
from tests.hook_log_callback import HookLog


def test_the_grid_spans_0_to_7_percent_of_training_without_repeats():
    assert rewind_grid(10_000) == [0, 10, 25, 50, 100, 200, 400, 700]
    assert rewind_grid(200) == [0, 1, 2, 4, 8, 14]  # 0.1% and 0.25% of 200 round to 0


def test_the_choice_is_the_earliest_k_below_the_threshold():
    curve = [(40, 0.5), (0, 9.0), (10, 1.9), (20, 2.5)]
    assert choose_rewind(curve, threshold=2.0) == 10  # 20 is above again: the earliest counts
    assert choose_rewind(curve, threshold=0.5) is None  # below, not at


@pytest.fixture(scope="module")
def hparams():
    return lenet_hparams(iterations="200it", eval_every="100it", rounds=1)


def test_stable_rewind_measures_round_0_then_runs_imp_from_the_k_it_chose(
    tmp_path, hparams, mnist_data
):
    # Any instability is below 100 points: k = 0, and the dense run itself is extended.
    log = HookLog()
    experiment = run_imp_with_stable_rewind(
        hparams,
        tmp_path,
        execution=QUIET,
        threshold=100.0,
        say=lambda _: None,
        data=mnist_data,
        callbacks=[log],
    )
    found = read_choice(experiment.root)
    assert [row["rewind_iteration"] for row in found["grid"]] == rewind_grid(200)
    assert found["rewind_iteration"] == 0
    fields = read_saved(experiment).fields
    assert fields["rewind_found"]["rewind_iteration"] == 0
    assert fields["rewind_found"]["dense_experiment"] == str(experiment.root)
    assert sorted(experiment.completed_rounds()) == [0, 1]
    csv = io.read_csv(experiment.root / "stability" / "round_00-sweep.csv")
    assert [int(row["rewind_iteration"]) for row in csv] == rewind_grid(200)
    # The callbacks watched the dense run's round 0, each copy of the search, then round 1.
    assert log.calls.count("run_end") == 3
    rounds = [line.split(" in ")[0] for line in log.calls if line.startswith("round_end")]
    assert rounds == [
        "round_end round 0 trained 200 seen 200",
        *(
            f"round_end round 0 rewind {k} seed {seed} trained {200 - k} seen {200 - k}"
            for k in rewind_grid(200)
            for seed in (0, 1)
        ),
        "round_end round 1 trained 200 seen 200",
    ]


def test_a_later_k_makes_its_own_experiment_that_records_it(
    tmp_path, hparams, mnist_data, monkeypatch
):
    monkeypatch.setattr(rewind_finder, "choose_rewind", lambda curve, threshold: 8)
    experiment = run_imp_with_stable_rewind(
        hparams, tmp_path, execution=QUIET, say=lambda _: None, data=mnist_data
    )
    saved = read_saved(experiment)
    assert saved.hparams.pruning.rewind == "8it"
    assert saved.resolved.rewind_iteration == 8
    assert saved.fields["rewind_found"]["rewind_iteration"] == 8
    assert saved.fields["rewind_found"]["dense_experiment"] != str(experiment.root)
    # Round 0 of both is the same training: the dense experiment's weights, bit for bit.
    dense = type(experiment)(tmp_path / saved.fields["rewind_found"]["dense_experiment"])
    ours, theirs = experiment.read_weights(0), dense.read_weights(0)
    assert all((ours[name] == theirs[name]).all() for name in ours)


def test_none_stable_is_one_line_naming_the_file(tmp_path, hparams, mnist_data, monkeypatch):
    monkeypatch.setattr(rewind_finder, "choose_rewind", lambda curve, threshold: None)
    with pytest.raises(LthError, match=r"no rewind point up to 14it .* is stable .*--threshold"):
        run_imp_with_stable_rewind(
            hparams, tmp_path, execution=QUIET, say=lambda _: None, data=mnist_data
        )


def test_a_search_needs_a_finished_dense_round_and_a_sane_threshold(tmp_path):
    with pytest.raises(LthError, match="--threshold must be"):
        plan_rewind_search(tmp_path, threshold=0)
    with pytest.raises(LthError):
        plan_rewind_search(tmp_path / "none")


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--find_rewind", "--round=1"], "--find_rewind analyses the dense network"),
        (["--find_rewind", "--rewind=10it"], "--find_rewind chooses the rewind points itself"),
        (["--threshold=3", "--round=0"], "--threshold is for --find_rewind only"),
    ],
)
def test_find_rewind_flags_that_cannot_go_together(tmp_path, flags, reason):
    result = run_pipeline("pipelines.stability", f"--experiment_dir={tmp_path}", *flags)
    assert_one_line_error(result, reason)


def test_stable_rewind_is_for_new_experiments(tmp_path):
    result = run_main(
        "pipelines.imp", "--rewind=stable", f"--branch_of={tmp_path}", "--control=random_reinit"
    )
    assert_one_line_error(result, "--rewind=stable is for a new experiment")


def test_the_dense_run_is_rewind_0_without_rounds(hparams):
    dense = dataclasses.replace(
        hparams, pruning=dataclasses.replace(hparams.pruning, rewind="0it", rounds=0)
    )
    assert dense.pruning.rewind == "0it" and dense.training == hparams.training
