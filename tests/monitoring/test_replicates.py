"""Reports over replicates (experiments that differ only in seed) and the figure's formats, on
experiment directories written here with known results (no training)."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from lth_tf import io
from lth_tf.config import BranchHparams
from lth_tf.errors import LthError
from lth_tf.experiment import FORMAT_VERSION, ExperimentDir, RoundResult
from lth_tf.monitoring import report
from lth_tf.monitoring.report import GROUP_COLUMNS, REPORT_COLUMNS, write_report
from lth_tf.sweep import SWEEP_FILE
from tests.helpers import PNG_MAGIC, lenet_hparams

PERCENTS = (100.0, 80.04)


def fake_experiment(root, name, seed, rewind="0it", control="none", accuracies=(0.9, 0.8)):
    """An experiment directory with two finished rounds of these early-stop accuracies;
    early-stop iterations (and iterations trained to them) are 1000 times the accuracy, so they
    differ with it."""
    hparams = lenet_hparams(rewind=rewind, training={"seed": seed})
    if control != "none":
        hparams = dataclasses.replace(hparams, branch=BranchHparams(control, f"p{seed}", 0))
    experiment = ExperimentDir(root / name)
    io.write_json(
        experiment.hparams, {"format_version": FORMAT_VERSION, "hparams": hparams.to_dict()}
    )
    pairs = zip(PERCENTS[: len(accuracies)], accuracies, strict=True)
    for pruning_round, (percent, accuracy) in enumerate(pairs):
        experiment.write_result(
            RoundResult(
                pruning_round,
                percent,
                round(100 * percent),  # of 10,000 weights
                accuracy,
                0.5,
                round(1000 * accuracy),
                accuracy,
                0.4,
                100,
                1.0,
                early_stop_trained=round(1000 * accuracy),
            )
        )
    return experiment.root


@pytest.fixture
def sweep_like(tmp_path):
    """Seeds 0 and 1 of: rewind 0, rewind 100it, and random_reinit of rewind 0; and a
    sweep.json listing them."""
    made = [
        fake_experiment(tmp_path, "r0-s0", 0, accuracies=(0.90, 0.80)),
        fake_experiment(tmp_path, "r0-s1", 1, accuracies=(0.94, 0.70)),
        fake_experiment(tmp_path, "r100-s0", 0, "100it", accuracies=(0.91, 0.85)),
        fake_experiment(tmp_path, "r100-s1", 1, "100it", accuracies=(0.93, 0.87)),
        fake_experiment(tmp_path, "r0-s0-ri", 0, control="random_reinit", accuracies=(0.9, 0.6)),
        fake_experiment(tmp_path, "r0-s1-ri", 1, control="random_reinit", accuracies=(0.9, 0.5)),
    ]
    io.write_json(tmp_path / SWEEP_FILE, {"members": [{"name": p.name} for p in made]})
    return tmp_path


def test_replicates_form_groups_with_mean_std_min_max_and_n_per_round(sweep_like, tmp_path):
    figure, csv = write_report([str(sweep_like / "r*")], tmp_path / "out" / "lth")
    assert figure == tmp_path / "out" / "lth.png" and csv == tmp_path / "out" / "lth.csv"
    rows = io.read_csv(csv)
    assert list(rows[0]) == GROUP_COLUMNS
    by_label = {(row["label"], int(row["round"])): row for row in rows}
    assert len(by_label) == 6 and {int(row["n"]) for row in rows} == {2}
    labels = {label for label, _ in by_label}
    assert labels == {
        "rewind=0it, control=none",
        "rewind=100it, control=none",
        "rewind=0it, control=random_reinit",
    }
    ticket = by_label[("rewind=0it, control=none", 1)]
    assert float(ticket["early_stop_test_accuracy_mean"]) == pytest.approx(0.75)
    assert float(ticket["early_stop_test_accuracy_std"]) == pytest.approx(0.0707107, rel=1e-5)
    assert float(ticket["early_stop_test_accuracy_min"]) == pytest.approx(0.70)
    assert float(ticket["early_stop_test_accuracy_max"]) == pytest.approx(0.80)
    assert float(ticket["early_stop_iteration_mean"]) == pytest.approx(750)
    assert float(ticket["percent_remaining_mean"]) == pytest.approx(80.04)
    assert ticket["experiments"] == f"{sweep_like / 'r0-s0'};{sweep_like / 'r0-s1'}"


def test_a_sweep_directory_reports_its_members_as_the_glob_does(sweep_like, tmp_path):
    _, from_glob = write_report([str(sweep_like / "r*")], tmp_path / "glob")
    _, from_sweep = write_report([sweep_like], tmp_path / "sweep")
    # The same rows; the glob's in name order, the sweep's in its members' order.
    assert sorted(io.read_csv(from_sweep), key=str) == sorted(io.read_csv(from_glob), key=str)
    assert [row["label"] for row in io.read_csv(from_sweep)][::2] == [
        "rewind=0it, control=none",
        "rewind=100it, control=none",
        "rewind=0it, control=random_reinit",
    ]


def test_the_figure_draws_each_groups_mean_with_its_min_max_band(sweep_like, tmp_path, monkeypatch):
    drawn = {}

    def capture(curves, **kwargs):
        drawn["curves"], drawn["kwargs"] = curves, kwargs
        return b"figure"

    monkeypatch.setattr(report, "sparsity_figure", capture)
    write_report([sweep_like], tmp_path / "fig.pdf")
    curves = {curve.label: curve for curve in drawn["curves"]}
    assert drawn["kwargs"]["format"] == "pdf"
    reinit = curves["rewind to 0it, random reinit"]
    assert reinit.legend == "rewind to 0it, random reinit (mean, band min\u2013max, n=2)"
    assert reinit.reported_accuracy == pytest.approx((0.9, 0.55))
    low, high = reinit.accuracy_band
    assert (low, high) == (pytest.approx((0.9, 0.5)), pytest.approx((0.9, 0.6)))
    assert reinit.iteration_band == ((900, 500), (900, 600))
    assert set(curves) == {
        "rewind to 0it, ticket (IMP)",
        "rewind to 100it, ticket (IMP)",
        "rewind to 0it, random reinit",
    }


def test_a_replicate_that_stopped_early_shows_in_n_and_in_a_note(tmp_path, monkeypatch):
    # A sweep whose seed 1 failed after round 0: round 1 is seed 0's alone, which the legend
    # and the report's note must say rather than draw it as a mean of two.
    made = [
        fake_experiment(tmp_path, "s0", 0, accuracies=(0.90, 0.80)),
        fake_experiment(tmp_path, "s1", 1, accuracies=(0.94,)),
    ]
    entries = [{"name": p.name, "status": "failed"} for p in made]
    io.write_json(tmp_path / SWEEP_FILE, {"members": entries})
    drawn = {}

    def capture(curves, **kwargs):
        drawn["c"] = curves
        return b"figure"

    monkeypatch.setattr(report, "sparsity_figure", capture)
    _, csv = write_report([tmp_path], tmp_path / "out")
    assert [int(row["n"]) for row in io.read_csv(csv)] == [2, 1]
    assert drawn["c"][0].legend.endswith("(mean, band min\u2013max, n=1\u20132)")
    assert report.unfinished_sweeps([tmp_path, tmp_path / "s0"]) == [
        f"{tmp_path}: 2 of 2 members have not finished every round (s0, s1); the report draws "
        "the rounds they have (n in the table and legend)"
    ]


@pytest.mark.parametrize(
    "output, written, magic",
    [
        ("rep", "rep.png", PNG_MAGIC),
        ("rep.png", "rep.png", PNG_MAGIC),
        ("rep.csv", "rep.png", PNG_MAGIC),
        ("rep.pdf", "rep.pdf", b"%PDF"),
        ("rep.svg", "rep.svg", b"<?xml"),
        ("rep.v2", "rep.v2.png", PNG_MAGIC),
    ],
)
def test_the_figure_format_comes_from_the_extension(sweep_like, tmp_path, output, written, magic):
    figure, csv = write_report([sweep_like / "r0-s0"], tmp_path / output)
    assert figure == tmp_path / written and figure.read_bytes().startswith(magic)
    assert csv == (tmp_path / written).with_suffix(".csv")
    # A single experiment keeps the per-experiment table.
    assert list(io.read_csv(csv)[0]) == REPORT_COLUMNS


def test_pngs_are_written_at_300_dpi(sweep_like, tmp_path):
    figure, _ = write_report([sweep_like], tmp_path / "print")
    with Image.open(figure) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)


@pytest.mark.parametrize(
    "inputs, output, message",
    [
        (["{root}/nothing-*"], "x", "matches no experiment directory"),
        (["{root}/r0-s0"], "x.jpg", ".jpg is not a report format"),
        (["{root}/empty_sweep"], "x", "no member of the sweep"),
        # PREFIX.csv would be the experiment's own results.csv.
        (["{root}/r0-s0"], "{root}/r0-s0/results", "writes into the experiment .*r0-s0, among"),
        (["{root}/r0-s0"], "{root}/r0-s0/round_01/x", "writes into the experiment .*r0-s0, among"),
    ],
)
def test_bad_report_inputs_are_refused(sweep_like, tmp_path, inputs, output, message):
    empty = sweep_like / "empty_sweep"
    empty.mkdir()
    io.write_json(empty / SWEEP_FILE, {"members": [{"name": "not_yet"}]})
    results = (sweep_like / "r0-s0" / "results.csv").read_bytes()
    with pytest.raises(LthError, match=message):
        write_report(
            [i.format(root=sweep_like) for i in inputs], tmp_path / output.format(root=sweep_like)
        )
    assert (sweep_like / "r0-s0" / "results.csv").read_bytes() == results


def test_report_and_stability_expand_a_sweep_into_its_members_one_way(sweep_like):
    # lth-report draws the members with a finished round; lth-stability takes them all (its
    # plan names a member without the round).
    from lth_tf.sweep import expand_experiments

    started = expand_experiments([sweep_like], started_only=True)
    (sweep_like / "r0-s2").mkdir()
    (sweep_like / "r0-s2" / "hparams.json").write_text(
        (sweep_like / "r0-s0/hparams.json").read_text()
    )
    listed = io.read_json(sweep_like / SWEEP_FILE)
    io.write_json(sweep_like / SWEEP_FILE, {"members": [*listed["members"], {"name": "r0-s2"}]})
    assert expand_experiments([sweep_like], started_only=True) == started
    assert expand_experiments([sweep_like]) == [*started, sweep_like / "r0-s2"]
    assert [p.name for p in started] == [
        "r0-s0",
        "r0-s1",
        "r100-s0",
        "r100-s1",
        "r0-s0-ri",
        "r0-s1-ri",
    ]
