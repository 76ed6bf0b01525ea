"""Unstructured tickets on ARM through XNNPack's sparse inference: ``python -m
benchmarks.xnnpack_tickets``.

Runs, as a user would (each pipeline in a process of its own): ``pipelines.imp --prune_for=xnnpack``
on a MobileNet-shaped model, then ``pipelines.export --arm`` of several rounds. Prints one row per
exported round: the fraction of zeros in the sparse subgraph's 1x1 convolutions, whether XNNPack's
sparse kernels ran on the emulated ARM, the float file's accuracy there, and its speed against the
dense export's float file on the emulated ARM (median of interleaved rounds, and their range) and
on this machine. Emulated times are not device times: the ratio of two files timed interleaved
in one emulator, repeated across rounds, is the evidence. The table is also written as JSON.

Run: ``python -m benchmarks.xnnpack_tickets --dataset=npz:shapes.npz --rounds=10
--export_rounds=3,5,8,10`` (the tests' own MobileNet-shaped model and data, a few minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "model", "tests.user_model:xnnpack_mobilenet", "Model (as pipelines.imp's --model)."
)
flags.DEFINE_string("dataset", None, "Dataset (as pipelines.imp's --dataset); RGB images.")
flags.DEFINE_integer("rounds", 10, "Pruning rounds.")
flags.DEFINE_list("export_rounds", ["3", "5", "8", "10"], "Rounds exported with --arm.")
flags.DEFINE_string("iterations", "2ep", "Training length of each round.")
flags.DEFINE_string("prune_rates", "conv=0.2,fc=0.2,output=0.1", "Per-round rates.")
flags.DEFINE_list("imp_flags", [], "More pipelines.imp flags.")
flags.DEFINE_integer("arm_examples", 200, "Test examples run on the emulated ARM.")
flags.DEFINE_string("output_dir", "runs/xnnpack_tickets", "Where the run and exports go.")


def _run(*args: str) -> None:
    """``python -m args``, its output passed through; a failure stops the benchmark."""
    print("$ python -m " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", *args], check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {args[0]} exited with {result.returncode}")


def _row(report: dict[str, Any]) -> dict[str, Any]:
    """One exported round's figures (the float file against the dense float file)."""
    from lth_tf.export.verdict import ARM, FLOAT_FILE

    arm = report["arm"]["files"][f"ticket/{FLOAT_FILE}"]
    targets = report["verdict"]["targets"]
    on_arm = next(f for f in targets[ARM]["files"] if f["file"] == FLOAT_FILE)
    host = targets[report["latency"]["machine"]]["files"]
    here = next(f for f in host if f["file"] == FLOAT_FILE)
    return {
        "round": report["round"],
        "percent_remaining": report["ticket"]["percent_remaining"],
        "one_by_one_zeros": report["verdict"]["context"].get("one_by_one_zeros"),
        "sparse_inference": arm["sparse_inference"],
        "dense_sparse_inference": report["arm"]["files"][f"dense/{FLOAT_FILE}"]["sparse_inference"],
        "keras_accuracy": arm["keras_accuracy"],
        "arm_accuracy": arm["accuracy"],
        "arm_shippable": arm["shippable"],
        "arm_speedup": on_arm["speedup_vs_dense"],
        "arm_round_speedups": on_arm["round_speedups"],
        "arm_speed": on_arm["speed"],
        "host_speedup": here["speedup_vs_dense"],
        "host_speed": here["speed"],
        "size_vs_dense": on_arm["size_vs_dense"],
    }


def _table(rows: list[dict[str, Any]], examples: int) -> list[str]:
    lines = [
        f"| round | 1x1 weights zero | sparse kernels ran on ARM | ARM accuracy ({examples} "
        "examples) / Keras | float file size vs dense | ARM, emulated: dense/ticket time "
        "(rounds) | this machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        spread = f"{min(row['arm_round_speedups']):.2f}-{max(row['arm_round_speedups']):.2f}"
        lines.append(
            f"| {row['round']} | {100 * row['one_by_one_zeros']:.1f}% | "
            f"{'yes' if row['sparse_inference'] else 'no'} | {100 * row['arm_accuracy']:.1f}% / "
            f"{100 * row['keras_accuracy']:.1f}% | {row['size_vs_dense']:.2f}x | "
            f"**{row['arm_speedup']:.2f}x** ({spread}): {row['arm_speed']} | "
            f"{row['host_speedup']:.2f}x: {row['host_speed']} |"
        )
    return lines


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.dataset:
        raise app.UsageError("--dataset is required: RGB images, e.g. npz:shapes.npz")
    runs, exports = Path(FLAGS.output_dir), Path(FLAGS.output_dir) / "exports"
    name = FLAGS.model.rsplit(":", 1)[-1].rsplit("/", 1)[-1] + "_xnnpack"
    _run(
        "pipelines.imp",
        f"--model={FLAGS.model}",
        f"--dataset={FLAGS.dataset}",
        "--prune_for=xnnpack",
        f"--rounds={FLAGS.rounds}",
        f"--iterations={FLAGS.iterations}",
        f"--prune_rates={FLAGS.prune_rates}",
        f"--output_dir={runs}",
        f"--experiment_name={name}",
        *FLAGS.imp_flags,
    )
    from lth_tf.export.deploy import REPORT_FILE

    rows = []
    for pruning_round in (int(r) for r in FLAGS.export_rounds):
        _run(
            "pipelines.export",
            f"--experiment_dir={runs / name}",
            f"--round={pruning_round}",
            f"--output_dir={exports}",
            "--arm",
            f"--arm_examples={FLAGS.arm_examples}",
        )
        report = exports / name / f"round_{pruning_round:02d}" / REPORT_FILE
        rows.append(_row(json.loads(report.read_text())))
    print("\n".join(_table(rows, FLAGS.arm_examples)))
    (runs / "xnnpack_tickets.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
