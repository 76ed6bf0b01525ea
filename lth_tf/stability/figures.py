"""The stability figures: test error along the path between two copies, and the rewind sweep.

Both take :class:`lth_tf.stability.result.StabilityResult` values (what
:func:`lth_tf.stability.analysis.run_stability` returns and writes as JSON) and return PNG bytes.

>>> results = run_stability(plan, data)  # doctest: +SKIP
>>> path_figure(results[0])[:8] == b"\\x89PNG\\r\\n\\x1a\\n"  # doctest: +SKIP
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

# Figure, not pyplot: no global figure state and no GUI backend; PNGs render with Agg.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lth_tf.stability.result import StabilityResult

# How a sweep's subnetworks were found: one mask for every rewind point, or each rewind point's
# own experiment (and so its own masks), as Frankle et al. (2020) sweep.
FIXED_MASK = "fixed mask"
OWN_MASKS = "own masks (one experiment per rewind point)"
FORMATS = ("png", "pdf", "svg")


def _png(figure: Figure, format: str = "png") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format)
    return buffer.getvalue()


def path_figure(result: StabilityResult) -> bytes:
    """Test error (%) against the mixture alpha, one line per pair of copies (their mean in
    bold when there are several), with the mean of the ends and the barrier above it marked."""
    alphas, path, pairs = result.mixtures, result.path_errors, result.pairs
    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if len(pairs) > 1:
        for pair in pairs:
            seeds = pair.data_seeds
            label = f"data seeds {seeds[0]} and {seeds[1]}"
            axes.plot(alphas, pair.path_errors, "-", linewidth=1, alpha=0.5, label=label)
        label, color = "mean over pairs", "black"
    else:
        label, color = (
            "copy A: data seed {}, copy B: data seed {}".format(*pairs[0].data_seeds),
            "C0",
        )
    axes.plot(alphas, path, "o-", color=color, markersize=3.5, linewidth=2, label=label)
    ends = (result.end_errors[0] + result.end_errors[1]) / 2
    axes.axhline(ends, color="grey", linestyle="--", linewidth=1, label="mean of the ends")
    peak = max(range(len(path)), key=path.__getitem__)
    if result.instability > 0:
        top = (alphas[peak], path[peak])
        axes.annotate("", xy=top, xytext=(alphas[peak], ends), arrowprops={"arrowstyle": "<->"})
        # The label goes on the side of the arrow with more room.
        right = alphas[peak] < 0.6
        axes.annotate(
            f"instability {result.instability:.2f} points",
            xy=top,
            xytext=(6 if right else -6, -4),
            textcoords="offset points",
            ha="left" if right else "right",
            va="top",
        )
    axes.set_xlim(-0.02, 1.02)
    axes.set_xlabel("mixture α of the weights: (1 - α) · copy A + α · copy B")
    axes.set_ylabel("test error (%)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    verdict = "stable (below" if result.stable else "unstable (not below"
    axes.set_title(
        f"round {result.round} ({result.percent_remaining:.1f}% of weights remain), "
        f"rewind {result.rewind}\ninstability {result.instability:.2f} points: {verdict} "
        f"{result.stable_below:g})",
        fontsize="medium",
    )
    return _png(figure)


def sweep_figure(
    results: Sequence[StabilityResult], masks: str = FIXED_MASK, format: str = "png"
) -> bytes:
    """Instability and the two L2 distances against the rewind point, as in Frankle et al.

    ``masks`` says how the subnetworks were found (:data:`FIXED_MASK`: one experiment's round,
    every rewind point; :data:`OWN_MASKS`: one experiment per rewind point); ``format`` is
    png, pdf or svg. Rewind points are evenly spaced and labelled with their iteration (0 has
    no place on a log axis, and sweeps are usually spaced roughly geometrically anyway).
    """
    first = results[0]
    positions = list(range(len(results)))
    labels = [
        r.rewind
        if r.rewind == f"{r.rewind_iteration}it"
        else f"{r.rewind}\n({r.rewind_iteration}it)"
        for r in results
    ]
    pruned = first.round > 0
    figure = Figure(figsize=(12 if pruned else 8.5, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 3 if pruned else 2)
    instability, data_order = panels[0], panels[1]
    instability.plot(positions, [r.instability for r in results], "o-", color="C3")
    instability.axhline(
        first.stable_below,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"stable below {first.stable_below:g} points",
    )
    instability.set_ylabel("instability (percentage points)")
    instability.set_title("Instability: error barrier on the path")
    instability.legend(fontsize="small")
    data_order.plot(positions, [r.l2_distance_data_order for r in results], "o-", color="C0")
    data_order.set_ylabel("L2 distance / mean norm (lower: more stable)")
    data_order.set_title("Stability to data order: copy vs copy")
    if pruned:
        panels[2].plot(positions, [r.l2_distance_pruning for r in results], "o-", color="C2")
        panels[2].set_ylabel("L2 distance / mean norm (lower: more stable)")
        panels[2].set_title("Stability to pruning: copy 0 vs dense")
    for axes in panels:
        axes.set_xticks(positions, labels)
        axes.set_xlabel("rewind point")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
    figure.suptitle(
        f"{first.model} on {first.dataset}, round {first.round} "
        f"({first.percent_remaining:.1f}% of weights remain), {len(first.data_seeds)} copies; "
        f"{masks}"
    )
    return _png(figure, format)
