"""Stability across experiments (one per rewind point, each with its own masks): the figure and
CSV against the rewind iteration, and the sets of experiments refused before TensorFlow runs."""

import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.lottery.imp import run_imp
from lth_tf.stability import figures
from lth_tf.stability.across import output_paths, plan_across, run_across
from tests.helpers import PNG_MAGIC, QUIET, lenet_hparams
from tests.hook_log_callback import HookLog

OPTIONS = Execution(show_progress=False, steps_per_execution=10)


@pytest.fixture(scope="module")
def experiments(tmp_path_factory, mnist_data):
    """Two experiments of one round of 40 iterations, rewinding to iterations 10 and 0."""
    root = tmp_path_factory.mktemp("across")
    return [
        run_imp(
            lenet_hparams(iterations="40it", eval_every="20it", rewind=rewind),
            root,
            f"rewind_{rewind}",
            QUIET,
            data=mnist_data,
        ).root
        for rewind in ("10it", "0it")
    ]


def test_each_experiment_at_its_own_rewind_point_then_one_figure_and_csv(
    experiments, mnist_data, tmp_path
):
    plan = plan_across(experiments, 1, seeds=2, points=3)
    assert [p.own_rewind for p in plan.plans] == [0, 10]
    log = HookLog()
    results, figure, table = run_across(plan, mnist_data, OPTIONS, tmp_path / "own", [log])
    assert (figure, table) == (tmp_path / "own.png", tmp_path / "own.csv")
    rows = io.read_csv(table)
    assert [int(row["rewind_iteration"]) for row in rows] == [0, 10]
    assert {row["masks"] for row in rows} == {"own"}
    assert [row["experiment"] for row in rows] == [str(experiments[1]), str(experiments[0])]
    assert [r.train_from_iteration for r in results] == [0, 10]
    assert figure.read_bytes().startswith(PNG_MAGIC)
    assert figures.sweep_figure(results, masks=figures.OWN_MASKS, format="pdf")[:4] == b"%PDF"
    # Each experiment's analysis is a run for the callback, each copy a round.
    assert log.calls.count("run_start lenet300_100") == 2 and log.calls.count("run_end") == 2
    ends = [line.split(" in ")[0] for line in log.calls if line.startswith("round_end")]
    assert ends == [
        f"round_end round 1 rewind {k} seed {seed} trained {40 - k} seen {40 - k}"
        for k in (0, 10)
        for seed in (0, 1)
    ]
    # Each experiment keeps its own results, as a single analysis writes them.
    for root in experiments:
        assert (root / "stability" / "round_01.json").exists()


def test_experiments_differing_in_more_than_the_rewind_point_are_refused(
    experiments, mnist_data, tmp_path
):
    other = run_imp(
        lenet_hparams(iterations="40it", eval_every="20it", rewind="20it", training={"seed": 7}),
        tmp_path,
        "other_seed",
        QUIET,
        data=mnist_data,
    ).root
    with pytest.raises(LthError, match=r"differs from .* in training\.seed \(7, not 0\)"):
        plan_across([*experiments, other], 1)
    # More rounds extend an experiment: they are no difference.
    longer = run_imp(
        lenet_hparams(iterations="40it", eval_every="20it", rewind="20it", rounds=2),
        tmp_path,
        "longer",
        QUIET,
        data=mnist_data,
    ).root
    assert len(plan_across([*experiments, longer], 1).plans) == 3


@pytest.mark.parametrize(
    "which, reason",
    [([0], "needs at least two"), ([0, 0], "both rewind to iteration 10")],
)
def test_too_few_or_repeated_rewind_points_are_refused(experiments, which, reason):
    with pytest.raises(LthError, match=reason):
        plan_across([experiments[i] for i in which], 1)


def test_output_names():
    assert output_paths("a/b.svg")[0].name == "b.svg"
    assert output_paths("a/b.csv")[0].name == "b.png"
    with pytest.raises(LthError, match="not a file name prefix"):
        output_paths("")


@pytest.mark.parametrize("trailing", ["", "/"])
def test_an_output_that_names_a_directory_is_refused_by_both_reports(tmp_path, trailing):
    from lth_tf.monitoring.report import figure_path

    # Not tmp_path.png beside it: the directory's files would land where nobody looks.
    given = f"{tmp_path}{trailing}"
    for paths in (output_paths, figure_path):
        with pytest.raises(LthError, match=f"--output={given} is a directory; give a file name"):
            paths(given)
    assert output_paths(tmp_path / "sweep")[1] == tmp_path / "sweep.csv"
