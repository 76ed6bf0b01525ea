"""Weight against channel tickets on the device: ``python -m benchmarks.channel_tickets``.

Runs, as a user would (each pipeline in a process of its own, on the same flags):

=================  =========================================================================
``weight``         ``pipelines.imp --granularity=weight``: the papers' unstructured ticket
``channel``        ``pipelines.imp --granularity=channel``: whole channels and units
``random_reinit``  the channel experiment's ``random_reinit`` branch: its channel masks, fresh
                   initial values (Liu et al. 2019 ask whether this does as well)
=================  =========================================================================

and exports the last round of each with ``pipelines.export``. Prints one row per experiment:
test accuracy (LiteRT, float file), weights left, the parameters and multiply-adds of the network
that runs (the shrunk one for channel tickets), and each ``.tflite`` file's latency as a ratio to
the dense network's, both timed side by side in one process under LiteRT's default options
(``export.json``'s ``comparison``). The table is also written as JSON beside the runs.

Run: ``python -m benchmarks.channel_tickets --model=conv4 --rounds=5 --iterations=1ep``
(about 40 minutes on two cores); ``--model=tests.user_model:mobilenet_v2_style`` for a
MobileNetV2-style network of a user's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from absl import app, flags

FLAGS = flags.FLAGS
KINDS = ("weight", "channel", "random_reinit")

flags.DEFINE_string("model", "conv4", "Model (as pipelines.imp's --model).")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (as pipelines.imp's --dataset).")
flags.DEFINE_integer("rounds", 5, "Pruning rounds of each experiment; the last one is exported.")
flags.DEFINE_string("iterations", "1ep", "Training length of each round.")
flags.DEFINE_string("prune_rates", "conv=0.2,fc=0.2", "Per-round rates, the same for both kinds.")
flags.DEFINE_list("imp_flags", [], "More pipelines.imp flags for both experiments.")
flags.DEFINE_string("output_dir", "runs/channel_tickets", "Where the runs and exports go.")
flags.DEFINE_list("only", list(KINDS), f"Experiments to run, of {', '.join(KINDS)}.")


def _run(*args: str) -> None:
    """``python -m args``, its output passed through; a failure stops the benchmark."""
    print("$ python -m " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", *args], check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {args[0]} exited with {result.returncode}")


def _row(kind: str, report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one export: the shrunk network's where the ticket has one."""
    from lth_tf.export import deploy

    ticket, dense, comparison = report["ticket"], report["dense"], report["comparison"]
    dense_files = dense["files"]
    shrunk = report.get("shrunk")
    if shrunk is not None:
        files, prefix = shrunk["files"], "shrunk_"
        float_file, int8_file = files[deploy.SHRUNK_FLOAT_FILE], files[deploy.SHRUNK_INT8_FILE]
        parameters, multiply_adds = shrunk["parameters"], shrunk["multiply_adds"]
    else:
        files, prefix = ticket["files"], ""
        float_file, int8_file = files[deploy.FLOAT_FILE], files[deploy.INT8_FILE]
        parameters, multiply_adds = ticket["parameters"]["nonzero"], dense["multiply_adds"]
    return {
        "experiment": kind,
        "round": report["round"],
        "percent_remaining": ticket["percent_remaining"],
        "litert_accuracy": float_file["litert_test_accuracy"],
        "litert_int8_accuracy": int8_file["litert_test_accuracy"],
        "dense_litert_accuracy": dense_files[deploy.FLOAT_FILE]["litert_test_accuracy"],
        "parameters": parameters,
        "dense_parameters": dense["parameters"]["total"],
        "multiply_adds": multiply_adds,
        "dense_multiply_adds": dense["multiply_adds"],
        "float_kb": float_file["bytes"] / 1000,
        "float_latency_us": float_file["median_latency_us"],
        "dense_float_latency_us": dense_files[deploy.FLOAT_FILE]["median_latency_us"],
        "float_speedup": comparison[f"{prefix}float_speedup_vs_dense_float"],
        "int8_kb": int8_file["bytes"] / 1000,
        "int8_latency_us": int8_file["median_latency_us"],
        "dense_int8_latency_us": dense_files[deploy.INT8_FILE]["median_latency_us"],
        "int8_speedup": comparison[f"{prefix}int8_speedup_vs_dense_int8"],
    }


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| ticket | weights left | LiteRT accuracy (float / int8) | parameters | multiply-adds "
        "| float .tflite: latency vs dense | int8 .tflite: latency vs dense |",
        "|---|---|---|---|---|---|---|",
    ]
    if rows:
        first = rows[0]
        lines.append(
            f"| dense (round 0) | 100% | {100 * first['dense_litert_accuracy']:.2f}% | "
            f"{first['dense_parameters']:,} | {first['dense_multiply_adds']:,} | "
            f"{first['dense_float_latency_us']:.0f} µs | {first['dense_int8_latency_us']:.0f} µs |"
        )
    for row in rows:
        lines.append(
            f"| {row['experiment']} (round {row['round']}) | {row['percent_remaining']:.1f}% | "
            f"{100 * row['litert_accuracy']:.2f}% / {100 * row['litert_int8_accuracy']:.2f}% | "
            f"{row['parameters']:,} | {row['multiply_adds']:,} | "
            f"{row['float_latency_us']:.0f} µs vs {row['dense_float_latency_us']:.0f}: "
            f"**{row['float_speedup']:.2f}x** | {row['int8_latency_us']:.0f} µs vs "
            f"{row['dense_int8_latency_us']:.0f}: **{row['int8_speedup']:.2f}x** |"
        )
    return lines


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(FLAGS.only) - set(KINDS))
    if unknown:
        raise app.UsageError(f"--only: unknown {', '.join(unknown)}; choose from {KINDS}")
    runs, exports = Path(FLAGS.output_dir), Path(FLAGS.output_dir) / "exports"
    name = FLAGS.model.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    experiments = {kind: f"{name}_{kind}" for kind in KINDS}
    common = [
        f"--model={FLAGS.model}",
        f"--dataset={FLAGS.dataset}",
        f"--rounds={FLAGS.rounds}",
        f"--iterations={FLAGS.iterations}",
        f"--prune_rates={FLAGS.prune_rates}",
        f"--output_dir={runs}",
        *FLAGS.imp_flags,
    ]
    for kind in ("weight", "channel"):
        if kind in FLAGS.only or (kind == "channel" and "random_reinit" in FLAGS.only):
            granularity = f"--granularity={kind}"
            _run("pipelines.imp", *common, granularity, f"--experiment_name={experiments[kind]}")
    if "random_reinit" in FLAGS.only:
        _run(
            "pipelines.imp",
            f"--branch_of={runs / experiments['channel']}",
            "--control=random_reinit",
            f"--experiment_name={experiments['random_reinit']}",
        )
    from lth_tf.export.deploy import REPORT_FILE

    rows = []
    for kind in (kind for kind in KINDS if kind in FLAGS.only):
        _run(
            "pipelines.export",
            f"--experiment_dir={runs / experiments[kind]}",
            f"--round={FLAGS.rounds}",
            f"--output_dir={exports}",
        )
        report = exports / experiments[kind] / f"round_{FLAGS.rounds:02d}" / REPORT_FILE
        rows.append(_row(kind, json.loads(report.read_text())))
    lines = _table(rows)
    print("\n".join(lines))
    (runs / "channel_tickets.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
