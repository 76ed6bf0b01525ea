"""Which file to ship: every exported file's size and speed as ratios of the dense export of
the same kind, per target (this machine; an emulated ARM when ``--arm`` ran), the smallest and
the fastest shippable file, and what would make a ticket faster when nothing is.

A file is *faster* only when every interleaved timing round says so and the median by at least
:data:`SAME_SPEED_BAND`; likewise *slower*; anything else is *same speed* (a difference inside
the timing's own spread is no win). It is *shippable* on a target when its accuracy there is
within :data:`ALLOWED_ACCURACY_DROP` of the Keras model's (and, on ARM, its outputs match the
same file's on this machine).

>>> speed_word([1.1, 1.2, 1.15])
'faster'
>>> speed_word([0.97, 1.04, 1.01])
'same speed'
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Sequence
from typing import Any

FLOAT_FILE = "ticket.tflite"
FP16_FILE = "ticket_fp16.tflite"
INT8_FILE = "ticket_int8.tflite"
SHRUNK_FLOAT_FILE = "ticket_shrunk.tflite"
SHRUNK_INT8_FILE = "ticket_shrunk_int8.tflite"
# Each file's kind, and the dense export it is compared with (the dense round 0's file of that
# kind: a shrunk file is a smaller dense network of the same number format).
DENSE_COUNTERPART = {
    FLOAT_FILE: FLOAT_FILE,
    FP16_FILE: FP16_FILE,
    INT8_FILE: INT8_FILE,
    SHRUNK_FLOAT_FILE: FLOAT_FILE,
    SHRUNK_INT8_FILE: INT8_FILE,
}
# LiteRT accuracy this far below the Keras model's (points) is not shippable: float32 computes
# the same sums in another order, float16 rounds each weight to 11 significant bits, int8
# quantizes every activation too.
ALLOWED_ACCURACY_DROP = {
    FLOAT_FILE: 0.1,
    FP16_FILE: 0.1,
    INT8_FILE: 1.0,
    SHRUNK_FLOAT_FILE: 0.1,
    SHRUNK_INT8_FILE: 1.0,
}


def points_below(reference: float, accuracy: float) -> float:
    """How many accuracy points ``accuracy`` is below ``reference`` (both fractions), without
    the float residue that would put a drop of exactly the allowance over it.

    >>> 100 * (0.32 - 0.31), points_below(0.32, 0.31)
    (1.0000000000000009, 1.0)
    """
    return round(100 * (reference - accuracy), 9)


# A median speed-up under 5% is no speed-up a user can count on: two runs of the same file on
# one machine drift that much.
SAME_SPEED_BAND = 0.05
HOST = "this machine"
ARM = "arm64, emulated"


def speed_word(round_speedups: Sequence[float], band: float = SAME_SPEED_BAND) -> str:
    """``faster``, ``slower`` or ``same speed``, from the dense/file latency ratio of each
    interleaved timing round."""
    median = statistics.median(round_speedups)
    if min(round_speedups) > 1 and median >= 1 + band:
        return "faster"
    if max(round_speedups) < 1 and median <= 1 / (1 + band):
        return "slower"
    return "same speed"


def file_verdict(
    name: str,
    figures: dict[str, Any],
    dense: dict[str, Any],
    timing: dict[str, Any],
    dense_timing: dict[str, Any],
    shippable: bool,
    why_not: str | None,
) -> dict[str, Any]:
    """One file on one target: size and speed as ratios of its dense counterpart."""
    rounds = [
        d / f
        for d, f in zip(dense_timing["round_medians_us"], timing["round_medians_us"], strict=True)
    ]
    return {
        "file": name,
        "bytes": figures["bytes"],
        "size_vs_dense": round(figures["bytes"] / dense["bytes"], 4),
        "median_latency_us": timing["median_us"],
        "speedup_vs_dense": round(dense_timing["median_us"] / timing["median_us"], 4),
        "round_speedups": [round(r, 4) for r in rounds],
        "speed": speed_word(rounds),
        "shippable": shippable,
        "not_shippable_because": why_not,
    }


def target_verdict(files: list[dict[str, Any]]) -> dict[str, Any]:
    """The smallest and the fastest shippable file among one target's file verdicts."""
    shippable = [f for f in files if f["shippable"]]
    smallest = min(shippable, key=lambda f: f["bytes"], default=None)
    fastest = min(shippable, key=lambda f: f["median_latency_us"], default=None)
    # Files within the band of the fastest are as fast: naming one of them alone would make a
    # win of a drift.
    as_fast = [
        f["file"]
        for f in sorted(shippable, key=lambda f: f["median_latency_us"])
        if fastest
        and f["median_latency_us"] <= fastest["median_latency_us"] * (1 + SAME_SPEED_BAND)
    ]
    return {
        "files": files,
        "smallest_shippable": smallest["file"] if smallest else None,
        "fastest_shippable": fastest["file"] if fastest else None,
        "as_fast_shippable": as_fast,
        "any_faster_than_dense": any(f["speed"] == "faster" for f in shippable),
    }


def advice(context: dict[str, Any], arm_ran: bool) -> list[str]:
    """What would make a ticket faster than dense, from what the export saw of it.

    ``context``: ``granularity``, ``prune_for``, ``block_size``, ``has_conv``,
    ``dense_weight_fraction`` (of the prunable weights, in Dense layers), ``xnnpack_shaped``
    (the model follows XNNPack's sparse-subgraph rules), ``one_by_one_zeros`` (when shaped),
    ``percent_remaining``.
    """
    hints = []
    # --granularity=channel is another experiment than --prune_for=xnnpack (they exclude each
    # other): not offered to one that chose XNNPack.
    if context["has_conv"] and context["granularity"] == "weight" and context["prune_for"] == "any":
        hints.append(
            "--granularity=channel: whole channels are pruned and the ticket shrinks into a "
            "smaller dense network: fewer multiply-adds on any CPU"
        )
    zeros = context.get("one_by_one_zeros")
    if context["xnnpack_shaped"] and context["prune_for"] != "xnnpack":
        hints.append(
            "--prune_for=xnnpack (a float MobileNet-shaped model, on ARM): XNNPack runs 1x1 "
            "convolutions that are over 2/3 zeros with sparse kernels, 2-4x faster"
        )
    elif context["prune_for"] == "xnnpack" and zeros is not None and zeros <= 2 / 3:
        hints.append(
            f"more rounds: {100 * zeros:.1f}% of the 1x1 weights are zero, XNNPack's sparse "
            "kernels need more than 2/3"
        )
    elif context["prune_for"] == "xnnpack" and not arm_ran:
        hints.append(
            "pipelines.export --arm: XNNPack never runs sparse kernels on x86 CPUs with AVX; "
            "on ARM this ticket's float file runs them: --arm measures it on an emulated ARM"
        )
    # Blocks are of single weights: a channel experiment refuses --block_size.
    blocks_possible = context["block_size"] == "1x1" and context["granularity"] == "weight"
    if context["dense_weight_fraction"] > 0.5 and blocks_possible:
        hints.append(
            "--block_size=4x1: TFLite's sparse FullyConnected kernel runs 4x1 blocks of Dense "
            "weights fast in float"
        )
    hints.append(
        f"more rounds: this ticket keeps {context['percent_remaining']:.1f}% of its weights"
    )
    return hints


def host_name() -> str:
    return f"{platform.machine()}, {HOST}"


def verdict_lines(verdict: dict[str, Any]) -> list[str]:
    """The verdict for a terminal: a table per target, then what to ship (or what to try)."""
    lines = [
        "Which file to ship: size and speed against the dense export of the same kind, timed",
        "side by side under LiteRT's default options (median; range over interleaved rounds)",
    ]
    for target, entry in verdict["targets"].items():
        lines.append(f"  on {target}:")
        for f in entry["files"]:
            spread = f"{min(f['round_speedups']):.2f}-{max(f['round_speedups']):.2f}"
            ship = "" if f["shippable"] else f"; NOT SHIPPABLE: {f['not_shippable_because']}"
            lines.append(
                f"    {f['file']:<26} {f['bytes'] / 1000:8.1f} KB = {f['size_vs_dense']:.2f}x "
                f"dense | {f['median_latency_us']:9.1f} us, {f['speedup_vs_dense']:.2f}x as "
                f"fast ({spread}): {f['speed']}{ship}"
            )
        if entry["smallest_shippable"] is None:
            lines.append("    no file is shippable here")
            continue
        as_fast = entry.get("as_fast_shippable") or [entry["fastest_shippable"]]
        fastest = (
            as_fast[0]
            if len(as_fast) == 1
            else f"{', '.join(as_fast)} (the same speed, within {SAME_SPEED_BAND:.0%})"
        )
        lines.append(
            f"    smallest shippable: {entry['smallest_shippable']}; fastest shippable: {fastest}"
        )
        if not entry["any_faster_than_dense"]:
            lines.append("    no file is faster than the dense network here; to make one:")
            lines.extend(f"      {hint}" for hint in verdict["advice"])
    return lines
