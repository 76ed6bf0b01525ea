"""Monitoring: TensorBoard events read back with TensorBoard's reader, figures, the report."""

import dataclasses
import math
import re
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import RESULT_COLUMNS, ExperimentDir
from lth_tf.lottery.imp import run_imp
from lth_tf.monitoring import tensorboard
from lth_tf.monitoring.figures import Curve, percent_ticks, sparsity_figure
from lth_tf.monitoring.report import (
    REPORT_COLUMNS,
    experiment_labels,
    flat_hparams,
    load_results,
    write_report,
)
from lth_tf.monitoring.tensorboard import (
    BY_REMAINING_PREFIX,
    FIGURE_FILE,
    HPARAMS_CONFIG_TAG,
    HPARAMS_TAG,
    SUMMARY_FIELDS,
    SUMMARY_TAGS,
    TensorBoardMonitor,
    tensorboard_dir,
    trial_id,
)
from lth_tf.training.strategies import device_description
from tests.helpers import (
    PNG_MAGIC,
    QUIET,
    assert_one_line_error,
    lenet_hparams,
    run_main,
    run_pipeline,
)

# Training chunks of 5 iterations, evaluations every 10: train scalars at 5, 10, ..., 30.
OPTIONS = dataclasses.replace(QUIET, steps_per_execution=5)
LOGGED = dataclasses.replace(OPTIONS, tensorboard=True)


# Rounds after round 0 train from the rewind point, 10, to 30.
REWIND = "10it"


def read_run(logdir) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Every tag of one TensorBoard run: (step, value) in file order, repeats included."""
    accumulator = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return {
        tag: [
            (event.step, tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
    }


def steps(series) -> list[int]:
    return [step for step, _ in series]


def values(series) -> list[float]:
    return [float(value) for _, value in series]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, data) -> ExperimentDir:
    """Three rounds (0, 1, 2) of lenet, watched by TensorBoardMonitor from start to end.

    The figure is redrawn no more often than FIGURE_EVERY_SECONDS; pinned to an hour here, so
    what the tests read does not depend on how fast this machine ran the rounds.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensorboard, "FIGURE_EVERY_SECONDS", 3600.0)
        return run_imp(
            lenet_hparams(rounds=2, rewind=REWIND),
            tmp_path_factory.mktemp("runs"),
            "monitored",
            LOGGED,
            data=data,
        )


class _StopAt(TensorBoardMonitor):
    """Interrupts round 1 (iterations 10 to 30) right after its evaluation at iteration 30 is
    logged, before the checkpoint is saved: the resume retrains 20..30 from the checkpoint at 20
    and must not log anything twice."""

    def on_evaluation_recorded(self, context, evaluation):
        super().on_evaluation_recorded(context, evaluation)
        if context.pruning_round == 1 and evaluation.iteration == 30:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data) -> ExperimentDir:
    """Rounds 0 and 1 of the same lenet, interrupted in round 1 and resumed."""
    output = tmp_path_factory.mktemp("resumed")
    with pytest.raises(KeyboardInterrupt):
        run_imp(
            lenet_hparams(rounds=1, rewind=REWIND),
            output,
            "resumed",
            OPTIONS,  # no TensorBoard of the run's own: _StopAt logs instead
            data=data,
            callbacks=[_StopAt()],
        )
    return run_imp(
        lenet_hparams(rounds=1, rewind=REWIND),
        output,
        "resumed",
        LOGGED,
        data=data,
    )


# -- TensorBoard -------------------------------------------------------------------------------


def test_every_round_logs_training_and_evaluations_against_the_iteration(monitored):
    runs = sorted(p.name for p in tensorboard_dir(monitored).iterdir())
    assert runs == ["layers", "round_00", "round_01", "round_02", "summary"]
    for pruning_round in range(3):
        run = read_run(tensorboard_dir(monitored) / f"round_{pruning_round:02d}")
        # Global iterations: rounds after round 0 train from the rewind point, 10, to 30.
        chunks = [5, 10, 15, 20, 25, 30] if pruning_round == 0 else [15, 20, 25, 30]
        assert steps(run["train/loss"]) == steps(run["train/accuracy"]) == chunks
        assert all(0 < v < 10 for v in values(run["train/loss"]))
        assert all(0 <= v <= 1 for v in values(run["train/accuracy"]))
        evaluations = io.read_csv(monitored.evaluations(pruning_round))
        for tag, column in [
            ("val/loss", "val_loss"),
            ("val/accuracy", "val_accuracy"),
            ("test/loss", "test_loss"),
            ("test/accuracy", "test_accuracy"),
        ]:
            # The test split is measured only where a result needs it (NaN in the csv).
            measured = [e for e in evaluations if not math.isnan(float(e[column]))]
            assert steps(run[tag]) == [int(e["iteration"]) for e in measured]
            expected = [float(e[column]) for e in measured]
            assert values(run[tag]) == pytest.approx(expected, rel=1e-6), tag
        assert steps(run["val/loss"]) == ([10, 20, 30] if pruning_round == 0 else [20, 30])
        assert steps(run["test/loss"])[-1] == 30


def test_summary_run_has_one_point_per_round_of_every_result(monitored):
    run = read_run(tensorboard_dir(monitored) / "summary")
    rows = monitored.read_results()
    assert SUMMARY_TAGS == (
        "round/percent_remaining",
        "round/test_accuracy",
        "round/early_stop_iteration",
        "round/early_stop_test_accuracy",
        "round/val_loss_min",
        "round/early_stop_trained",
    )
    for field, tag in zip(SUMMARY_FIELDS, SUMMARY_TAGS, strict=True):
        assert steps(run[tag]) == [0, 1, 2], tag
        expected = [getattr(r, field) for r in rows]
        assert values(run[tag]) == pytest.approx(expected, rel=1e-6), tag
    # Apart from the per-iteration test/accuracy of the round runs.
    assert not any(tag.startswith(("test/", "val/", "train/")) for tag in run)
    # One unit per quantity: percent remaining in percent, accuracies as fractions.
    assert values(run["round/percent_remaining"]) == pytest.approx([100.0, 80.0, 64.0], abs=1)
    for tag in ("round/test_accuracy", "round/early_stop_test_accuracy"):
        assert all(0 <= v <= 1 for v in values(run[tag])), tag


def test_the_summary_is_also_plotted_against_the_per_mille_of_weights_remaining(monitored):
    run = read_run(tensorboard_dir(monitored) / "summary")
    rows = monitored.read_results()
    permille = [round(r.percent_remaining * 10) for r in rows]
    assert permille[0] == 1000 and permille == sorted(permille, reverse=True)
    by_remaining = {tag for tag in run if tag.startswith(BY_REMAINING_PREFIX)}
    expected = {BY_REMAINING_PREFIX + f for f in SUMMARY_FIELDS if f != "percent_remaining"}
    assert by_remaining == expected
    for field in SUMMARY_FIELDS[1:]:
        series = run[BY_REMAINING_PREFIX + field]
        # TensorBoard keeps a run's points in the order written: round 0 (1000) first.
        assert steps(series) == permille, field
        assert values(series) == pytest.approx([getattr(r, field) for r in rows], rel=1e-6)


def test_layers_run_has_each_weights_sparsity_and_surviving_weights_per_round(monitored):
    run = read_run(tensorboard_dir(monitored) / "layers")
    for name in ("fc1/kernel", "fc2/kernel", "output/kernel"):
        assert steps(run[f"sparsity/{name}"]) == [0, 1, 2]
        assert steps(run[f"surviving_weights/{name}"]) == [0, 1, 2]
        for pruning_round in range(3):
            mask = io.read_npz(monitored.masks(pruning_round))[name]
            sparsity = values(run[f"sparsity/{name}"])[pruning_round]
            assert sparsity == pytest.approx(1 - mask.mean(), abs=1e-6)
            # A histogram is (left edge, right edge, count) rows; it counts the survivors only.
            histogram = run[f"surviving_weights/{name}"][pruning_round][1]
            assert histogram[:, 2].sum() == pytest.approx(mask.sum())
    assert values(run["sparsity/fc1/kernel"])[2] == pytest.approx(1 - 0.8**2, abs=1e-3)


def test_hparams_session_holds_the_experiments_hyperparameters(monitored):
    accumulator = event_accumulator.EventAccumulator(
        str(tensorboard_dir(monitored) / "summary"), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    assert [event.step for event in accumulator.Tensors(HPARAMS_TAG)] == [0]
    content = accumulator.SummaryMetadata(HPARAMS_TAG).plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    # Relative to the output directory's parent, not an absolute path.
    assert info.group_name == f"{monitored.root.parent.name}/monitored"
    assert info.group_name == trial_id(monitored)
    assert info.hparams["model"].string_value == "lenet300_100"
    assert info.hparams["rewind"].string_value == "10it"
    assert info.hparams["rounds"].string_value == "2"
    assert info.hparams["prune_rates.fc"].number_value == pytest.approx(0.2)
    assert info.hparams["learning_rate"].number_value == pytest.approx(0.0012)
    # The replicate group: the seed and the control are hyperparameters.
    assert info.hparams["seed"].string_value == "0"
    assert info.hparams["control"].string_value == "none"
    assert info.hparams["control_seed"].string_value == "0"
    # Integer options as their digits (a double would show as 60.000), the others as they are.
    hparams = flat_hparams(lenet_hparams(rounds=2, rewind=REWIND).to_dict())
    for name in ("rounds", "batch_size", "seed", "control_seed"):
        assert type(hparams[name]) is int, name
        assert info.hparams[name].string_value == str(hparams[name]), name
    # The experiment's configuration: every hyperparameter, the five that tell runs apart
    # first (the dashboard shows its first five), and the round results as metrics.
    assert [event.step for event in accumulator.Tensors(HPARAMS_CONFIG_TAG)] == [0]
    content = accumulator.SummaryMetadata(HPARAMS_CONFIG_TAG).plugin_data.content
    config = hparams_metadata.parse_experiment_plugin_data(content)
    names = [info.name for info in config.hparam_infos]
    assert names[:5] == ["model", "dataset", "rewind", "seed", "control"]
    assert sorted(names) == sorted(hparams)
    metrics = [info.name.tag for info in config.metric_infos]
    assert set(SUMMARY_TAGS) <= set(metrics)


def test_trial_id_is_the_experiment_relative_to_its_output_dirs_parent(tmp_path):
    assert trial_id(ExperimentDir(tmp_path / "runs" / "lenet")) == "runs/lenet"
    member = ExperimentDir(tmp_path / "sweeps" / "demo" / "rewind100it-seed0")
    assert trial_id(member) == "demo/rewind100it-seed0"


def test_accuracy_figure_is_an_image_summary_and_a_png_file(monitored):
    run = read_run(tensorboard_dir(monitored) / "summary")
    # Redrawn at most once an hour here (see `monitored`), and always at the end: drawn once.
    assert steps(run["accuracy_vs_sparsity"]) == [2]
    width, height, encoded = run["accuracy_vs_sparsity"][-1][1]
    # Large enough to read in the Images dashboard (11 x 4.3 inches at 150 dpi).
    assert encoded.startswith(PNG_MAGIC) and int(width) >= 1500 and int(height) >= 600
    with Image.open(monitored.root / FIGURE_FILE) as image:
        image.verify()
        assert image.format == "PNG" and image.size == (int(width), int(height))


def test_a_long_run_redraws_the_figure_as_rounds_finish(tmp_path, data, monkeypatch):
    monkeypatch.setattr(tensorboard, "FIGURE_EVERY_SECONDS", 0.0)
    run_imp(
        lenet_hparams(rounds=1, rewind=REWIND),
        tmp_path,
        "slow",
        LOGGED,
        data=data,
    )
    run = read_run(tmp_path / "slow" / "tensorboard" / "summary")
    assert steps(run["accuracy_vs_sparsity"]) == [0, 1]


def test_each_run_of_an_experiment_records_how_it_ran(monitored, resumed):
    (only,) = io.read_json(monitored.sessions)
    assert only["first_round"] == 0 and not only["resumes_mid_round"]
    assert only["replicas"] == 1 and only["mixed_precision"] == "float32"
    assert isinstance(only["xla_training"], bool) and isinstance(only["xla_evaluation"], bool)
    assert only["tensorflow"] == tf.__version__ and only["hardware"] == device_description()
    first, second = io.read_json(resumed.sessions)
    assert (first["first_round"], first["resumes_mid_round"]) == (0, False)
    assert (second["first_round"], second["resumes_mid_round"]) == (1, True)


def test_a_resumed_round_logs_each_step_once_with_the_uninterrupted_values(monitored, resumed):
    for run_name in ("round_00", "round_01"):
        uninterrupted = read_run(tensorboard_dir(monitored) / run_name)
        run = read_run(tensorboard_dir(resumed) / run_name)
        assert set(run) == set(uninterrupted)
        for tag, series in run.items():
            assert steps(series) == steps(uninterrupted[tag]), (run_name, tag)
            assert values(series) == values(uninterrupted[tag]), (run_name, tag)
    summary = read_run(tensorboard_dir(resumed) / "summary")
    assert steps(summary["round/test_accuracy"]) == [0, 1]
    assert steps(summary[HPARAMS_TAG]) == [0]


def test_monitoring_an_experiment_that_ran_without_it_backfills_summary_and_layers(
    monitored, tmp_path
):
    copy = ExperimentDir(tmp_path / "copy")
    shutil.copytree(monitored.root, copy.root)
    shutil.rmtree(tensorboard_dir(copy))
    (copy.root / FIGURE_FILE).unlink()
    for _ in range(2):  # the second start finds everything logged and writes nothing
        monitor = TensorBoardMonitor()
        monitor.on_run_start(copy, lenet_hparams(rounds=2, rewind=REWIND))
        monitor.on_run_end()
    assert sorted(p.name for p in tensorboard_dir(copy).iterdir()) == ["layers", "summary"]
    for run_name in ("summary", "layers"):
        assert len(list((tensorboard_dir(copy) / run_name).iterdir())) == 1
        backfilled = read_run(tensorboard_dir(copy) / run_name)
        original = read_run(tensorboard_dir(monitored) / run_name)
        assert set(backfilled) == set(original)
        for tag in SUMMARY_TAGS if run_name == "summary" else backfilled:
            assert backfilled[tag][0][0] == 0 and steps(backfilled[tag]) == steps(original[tag])
    # A figure for the last round only: the earlier ones were never drawn.
    assert steps(read_run(tensorboard_dir(copy) / "summary")["accuracy_vs_sparsity"]) == [2]
    assert (copy.root / FIGURE_FILE).read_bytes().startswith(PNG_MAGIC)


# -- figures and the report ----------------------------------------------------------------------


def test_percent_ticks_keep_both_ends_and_thin_out_on_a_log_scale():
    percents = [100 * 0.8**r for r in range(25)]
    ticks = percent_ticks(percents, max_ticks=6)
    assert len(ticks) <= 6 and ticks[0] == 100 and ticks[-1] == pytest.approx(percents[-1])
    assert ticks == sorted(ticks, reverse=True)
    assert percent_ticks([100.0]) == [100.0]


def test_figure_of_several_curves_is_a_png():
    curves = [
        Curve((f"rewind={r}"), (100.0, 51.2, 26.2), (0.97, 0.975, 0.96), (900, 700, 800))
        for r in ("0it", "500it")
    ]
    png = sparsity_figure(curves, title="lenet")
    assert png.startswith(PNG_MAGIC)
    # A name the font has no glyph for is drawn as a box, not warned of at every figure.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparsity_figure(curves, title="lenet \N{PARTY POPPER}")
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_experiments_that_differ_in_many_settings_share_one_legend_below_the_panels():
    # Labels naming seven settings used to squeeze both panels to nothing (matplotlib warned
    # and drew slivers): the figure grows a legend below them instead, and keeps its panels.
    label = ", ".join(f"setting_{i}=value_{i}" for i in range(7))
    curves = [
        Curve(f"{label}, rewind={r}", (100.0, 81.0, 65.6), (0.9, 0.91, 0.9), (900, 700, 800))
        for r in ("0it", "1ep")
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tall = sparsity_figure(curves, title="many settings")
    assert not [w for w in caught if "constrained_layout" in str(w.message)]
    short = sparsity_figure(
        [dataclasses.replace(c, label=f"rewind={c.label[-3:]}") for c in curves]
    )

    def height(png: bytes) -> int:
        return int.from_bytes(png[20:24], "big")

    assert height(short) == 430  # 4.3 inches at 100 dpi: the legends inside the panels
    assert height(tall) > 430 + 2 * 19  # the legend's four wrapped lines below them


@pytest.fixture(scope="module")
def faster(tmp_path_factory, data) -> ExperimentDir:
    """Rounds 0 and 1 of the same lenet at another learning rate."""
    return run_imp(
        lenet_hparams(rounds=1, rewind=REWIND, training={"learning_rate": 0.002}),
        tmp_path_factory.mktemp("faster"),
        "faster",
        OPTIONS,
        data=data,
    )


def test_report_writes_both_experiments_curves_and_rows(monitored, faster, tmp_path):
    result = run_main(
        "pipelines.report",
        f"--experiments={monitored.root},{faster.root}",
        f"--output={tmp_path / 'out' / 'cmp'}",
    )
    assert result.returncode == 0, result.stderr
    png, csv = tmp_path / "out" / "cmp.png", tmp_path / "out" / "cmp.csv"
    with Image.open(png) as image:
        image.verify()
    rows = io.read_csv(csv)
    assert list(rows[0]) == REPORT_COLUMNS
    assert [(r["experiment"], r["round"]) for r in rows] == [
        (str(monitored.root), "0"),
        (str(monitored.root), "1"),
        (str(monitored.root), "2"),
        (str(faster.root), "0"),
        (str(faster.root), "1"),
    ]
    # The number of rounds is no part of an experiment: the learning rate tells them apart.
    assert [r["label"] for r in rows] == ["learning_rate=0.0012"] * 3 + ["learning_rate=0.002"] * 2
    results = monitored.read_results()
    for row, expected in zip(rows, results, strict=False):
        # An empty column (a weight ticket's channel counts) is written as nothing.
        as_written = {
            column: "" if value is None else str(value)
            for column, value in expected.to_row().items()
        }
        assert {c: row[c] for c in RESULT_COLUMNS} == as_written


def test_a_run_and_its_extension_by_more_rounds_are_one_replicate_not_two(
    monitored, resumed, tmp_path
):
    # The same seed and hyperparameters, one run for 2 rounds, the other for 1: rounds 0 and 1
    # are the same training, which two replicates would count twice.
    result = run_main(
        "pipelines.report",
        f"--experiments={monitored.root},{resumed.root}",
        f"--output={tmp_path / 'cmp'}",
    )
    assert_one_line_error(result, "ran the same hyperparameters with the same seed (0)")


def test_labels_fall_back_to_names_when_hyperparameters_do_not_tell_experiments_apart(monitored):
    experiment = load_results(monitored.root)
    assert experiment_labels([experiment]) == ["monitored"]
    twin = dataclasses.replace(experiment, path="elsewhere/monitored2")
    assert experiment_labels([experiment, twin]) == ["monitored", "monitored2"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("dangling", "does not exist (a link to "),
        # tmp_path holds the experiments below: the glob of them all is offered.
        ("not_an_experiment", "is not an lth_tf experiment (no hparams.json) but holds "),
        ("unfinished", "has no finished round yet"),
        ("lost_rows", "has rounds on disk but no results.csv rows for them; restore"),
        ("lost_row", "has no row for round 1, though round 2 has one; rerun the IMP command"),
        # Refused before the figure is written: a new figure never stands beside an old table.
        ("table_is_a_folder", "report.csv is a directory; move it away"),
        ("twice", "is given twice"),
        # Not a copy (another id): the same run again, which is not a second replicate.
        ("rerun", "ran the same hyperparameters with the same seed (0): one replicate, not two"),
    ],
)
def test_report_refuses_bad_experiments_with_one_line(monitored, tmp_path, case, message):
    experiments = {
        "missing": [tmp_path / "nope"],
        "dangling": [tmp_path / "dangling"],
        "not_an_experiment": [tmp_path],
        "unfinished": [tmp_path / "unfinished"],
        "lost_rows": [tmp_path / "lost_rows"],
        "lost_row": [tmp_path / "lost_row"],
        "table_is_a_folder": [monitored.root],
        "twice": [monitored.root, monitored.root],
        "rerun": [monitored.root, tmp_path / "rerun"],
    }[case]
    (tmp_path / "dangling").symlink_to(tmp_path / "moved")
    unfinished = ExperimentDir(tmp_path / "unfinished")
    unfinished.root.mkdir()
    shutil.copy(monitored.hparams, unfinished.hparams)
    lost_rows = ExperimentDir(shutil.copytree(monitored.root, tmp_path / "lost_rows"))
    lost_rows.results.unlink()  # the rounds stay on disk
    lost_row = ExperimentDir(shutil.copytree(monitored.root, tmp_path / "lost_row"))
    rows = lost_row.read_results()
    assert [row.round for row in rows] == [0, 1, 2]
    io.write_csv(lost_row.results, [rows[0].to_row(), rows[2].to_row()], RESULT_COLUMNS)
    if case == "table_is_a_folder":
        (tmp_path / "report.csv").mkdir()
    rerun = ExperimentDir(shutil.copytree(monitored.root, tmp_path / "rerun"))
    io.write_json(rerun.hparams, {**io.read_json(rerun.hparams), "experiment_id": "rerun-id"})
    with pytest.raises(LthError, match=re.escape(message)):
        write_report(experiments, tmp_path / "report")
    assert not (tmp_path / "report.png").exists()


def test_imp_pipeline_writes_tensorboard_logs_by_default(idx_dir, tmp_path):
    result = run_pipeline(
        "pipelines.imp",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--rounds=1",
        "--iterations=20",
        "--noprogress",
        f"--output_dir={tmp_path}",
        "--experiment_name=e",
    )
    assert result.returncode == 0, result.stderr
    logs = tmp_path / "e" / "tensorboard"
    assert sorted(p.name for p in logs.iterdir()) == ["layers", "round_00", "round_01", "summary"]
    assert steps(read_run(logs / "summary")["round/test_accuracy"]) == [0, 1]
    assert steps(read_run(logs / "round_01")["test/accuracy"]) == [20]
    assert (tmp_path / "e" / FIGURE_FILE).read_bytes().startswith(PNG_MAGIC)


def test_runs_on_other_data_are_not_replicates(monitored, tmp_path):
    """Two seeds of one npz: path whose contents changed between them are two groups, labelled
    by their data's fingerprint; the same data (or data an older lth_tf did not record), or
    two datasets told apart by --dataset already, are not labelled by it."""
    from lth_tf.monitoring.report import (
        ExperimentResults,
        _data_only_where_it_differs,
        replicate_groups,
    )

    # What an npz: run records: its file's sha256, read back as 8 hex digits.
    copy = ExperimentDir(shutil.copytree(monitored.root, tmp_path / "npz_run"))
    saved = io.read_json(copy.hparams)
    saved["data"]["provenance"] = {"kind": "npz", "sha256": "9de91d13" + "0" * 56}
    io.write_json(copy.hparams, saved)
    assert load_results(copy.root).hparams["data"] == "9de91d13"
    assert "data" not in load_results(monitored.root).hparams  # none recorded

    def run(path, seed, data, dataset="npz:d.npz"):
        hparams = {"dataset": dataset, "seed": seed, **({"data": data} if data else {})}
        return ExperimentResults(path, hparams, [])

    def grouped(experiments):
        return [[e.path for e in g] for g in replicate_groups(experiments)]

    other = _data_only_where_it_differs([run("a", 0, "9de91d13"), run("b", 1, "f55728c2")])
    assert grouped(other) == [["a"], ["b"]]
    assert experiment_labels(other) == ["seed=0, data=9de91d13", "seed=1, data=f55728c2"]
    same = _data_only_where_it_differs([run("a", 0, "9de91d13"), run("b", 1, "9de91d13")])
    assert grouped(same) == [["a", "b"]]
    older = _data_only_where_it_differs([run("a", 0, "9de91d13"), run("b", 1, None)])
    assert grouped(older) == [["a", "b"]]
    files = [run("a", 0, "9de91d13", "npz:a.npz"), run("b", 0, "f55728c2", "npz:b.npz")]
    beside = _data_only_where_it_differs([*files, run("c", 0, None, "fashion_mnist")])
    assert experiment_labels(beside) == [
        "dataset=npz:a.npz",
        "dataset=npz:b.npz",
        "dataset=fashion_mnist",
    ]


def test_a_curve_without_early_stops_is_not_called_at_early_stop():
    """--holdout=0 has no validation split: its accuracy is the end of training's, and the
    figure's title and legend say so (text kept as text in an SVG, to read it back)."""
    import matplotlib

    nan = math.nan
    no_stop = Curve("holdout=0", (100.0, 80.0), (0.7, 0.71), (nan, nan), (0.7, 0.71))
    no_stop_in_a_report = dataclasses.replace(no_stop, final_test_accuracy=None)
    stopped = Curve("holdout=auto", (100.0, 80.0), (0.72, 0.73), (40.0, 40.0))
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        alone = sparsity_figure([no_stop], format="svg").decode()
        mixed = sparsity_figure([no_stop_in_a_report, stopped], format="svg").decode()
        both = sparsity_figure([stopped, stopped], format="svg").decode()
    assert "at end of training (no validation split)" in alone
    assert "at early stop" not in alone
    assert "holdout=0, end of training" in mixed and "Test accuracy at early stop" in mixed
    assert "Test accuracy at early stop" in both and "end of training" not in both


def test_a_glob_reports_the_experiments_that_finished_a_round(monitored, tmp_path):
    """--experiments='runs/*' (what lth-report offers for a folder of experiments) while one of
    them is still in its round 0: the others are reported."""
    folder = tmp_path / "runs"
    shutil.copytree(monitored.root, folder / "done")
    (folder / "running").mkdir()
    shutil.copy(monitored.hparams, folder / "running" / "hparams.json")
    write_report([f"{folder}/*"], tmp_path / "report")
    rows = io.read_csv(tmp_path / "report.csv")
    assert {row["experiment"] for row in rows} == {str(folder / "done")}
    with pytest.raises(LthError, match="has finished a round"):
        write_report([f"{folder}/run*"], tmp_path / "none")
