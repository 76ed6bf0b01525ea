"""The paper's figures: test accuracy and iterations to early stop against percent of weights
remaining.

The iterations are those a round had trained at its early stop, counted from its start (the
rewind point for rewound rounds), as the LTH paper plots them. Rounds without a validation split
(``--holdout=0``) have no early stop: their accuracy is the end of training's, and they have no
point on the iterations panel.

As in Frankle & Carbin (2019), the x axis is logarithmic and the percentage decreases to the
right, so each IMP round is one step to the right, evenly spaced for a constant prune rate.
Channel tickets can be drawn against their shrunk network's parameters or multiply-adds instead
(``x_axis``, :data:`X_AXES`).

>>> png = sparsity_figure([Curve("lenet", (100.0, 51.2), (0.97, 0.96), (900.0, 700.0))])
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import dataclasses
import io
import math
import textwrap
import warnings
from collections.abc import Sequence

# Figure, not pyplot: no global figure state and no GUI backend; PNGs render with Agg.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from lth_tf.experiment import RoundResult

MAX_TICKS = 11
# Legends inside the panels for at most this many curves with labels this short; else below.
LEGEND_INSIDE_CURVES = 6
LEGEND_INSIDE_CHARACTERS = 45
LEGEND_BELOW_CHARACTERS = 120
# Figure formats by file extension; PNG is the default (and what TensorBoard shows).
FORMATS = ("png", "pdf", "svg")
# Lines of a report must not hide each other: each gets its own marker and dash besides colour.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
# What the x axis can show: a results.csv column, and its label. The shrunk network's size and
# cost are columns of channel tickets (--granularity=channel) only.
X_AXES = {
    "percent_remaining": "percent of weights remaining",
    "shrunk_parameters": "parameters of the shrunk network",
    "shrunk_multiply_adds": "multiply-adds per example of the shrunk network",
}
Band = tuple[tuple[float, ...], tuple[float, ...]]


@dataclasses.dataclass(frozen=True)
class Curve:
    """One experiment's results (or one group's means), one point per finished round, at ``x``:
    percent of weights remaining, or the column the figure's ``x_axis`` names.

    ``reported_accuracy`` is the test accuracy at the early stop (at the end of training for a
    round without one, :attr:`RoundResult.reported_accuracy`); ``early_stop_trained`` the
    iterations trained to the early stop (NaN without one).

    ``final_test_accuracy``, when given, is drawn dashed beside the accuracy at early stop.
    ``accuracy_band`` and ``iteration_band`` (lows, highs) are drawn shaded around a group's
    mean line, whose legend then says so, with the group's size ``n``.
    """

    label: str
    x: tuple[float, ...]
    reported_accuracy: tuple[float, ...]
    early_stop_trained: tuple[float, ...]
    final_test_accuracy: tuple[float, ...] | None = None
    accuracy_band: Band | None = None
    iteration_band: Band | None = None
    n: int | str | None = None

    @classmethod
    def from_results(
        cls,
        label: str,
        rows: Sequence[RoundResult],
        with_final: bool = False,
        x_axis: str = "percent_remaining",
    ) -> Curve:
        """From an experiment's results, in round order."""

        def column(name: str) -> tuple[float, ...]:
            values = [getattr(row, name) for row in rows]
            return tuple(math.nan if value is None else float(value) for value in values)

        return cls(
            label=label,
            x=column(x_axis),
            reported_accuracy=column("reported_accuracy"),
            early_stop_trained=column("early_stop_trained"),
            final_test_accuracy=column("test_accuracy") if with_final else None,
        )

    @property
    def legend(self) -> str:
        if self.accuracy_band is None:
            return self.label
        return f"{self.label} (mean, band min\u2013max, n={self.n})"


def sparsity_figure(
    curves: Sequence[Curve],
    title: str | None = None,
    format: str = "png",
    dpi: int = 100,
    x_axis: str = "percent_remaining",
) -> bytes:
    """Two panels, accuracy at early stop and early-stop iteration, one line per curve (a
    group's mean with its min-max band); the file's bytes in ``format`` (png, pdf or svg).
    ``x_axis`` names what the curves' ``x`` are (:data:`X_AXES`).

    A lone curve is named by the title, so its legend tells early stop from end of training.
    """
    if format not in FORMATS:
        raise ValueError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    alone = len(curves) == 1
    finals = any(curve.final_test_accuracy is not None for curve in curves)
    stops = any(not math.isnan(i) for curve in curves for i in curve.early_stop_trained)
    # Labels of experiments that differ in many settings crowd the panels out: then one
    # legend for both, wrapped, below them, the figure taller by its lines.
    below = not alone and (
        len(curves) > LEGEND_INSIDE_CURVES
        or any(len(curve.legend) > LEGEND_INSIDE_CHARACTERS for curve in curves)
    )
    wrapped = {
        curve.legend: textwrap.fill(curve.legend, LEGEND_BELOW_CHARACTERS) for curve in curves
    }
    legend_lines = sum(text.count("\n") + 1 for text in wrapped.values()) * (1 + finals)
    height = 4.3 + (0.19 * legend_lines + 0.3 if below else 0)
    figure = Figure(figsize=(11, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    accuracy_axes, iteration_axes = figure.subplots(1, 2)
    for index, curve in enumerate(curves):
        style = {
            "color": f"C{index % 10}",
            "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "markersize": 5,
            "linewidth": 1.6,
        }
        x = curve.x
        # A curve without a validation split (--holdout=0) has no early stop: its accuracy is
        # the end of training's, and its legend says so where others' are at early stop.
        stopped = any(not math.isnan(i) for i in curve.early_stop_trained)
        if alone and curve.accuracy_band is None:
            label = "at early stop" if stopped else "at end of training (no validation split)"
        else:
            label = curve.legend if stopped or not stops else f"{curve.legend}, end of training"
        accuracy_axes.plot(x, [100 * a for a in curve.reported_accuracy], label=label, **style)
        if curve.accuracy_band is not None:
            low, high = curve.accuracy_band
            accuracy_axes.fill_between(
                x,
                [100 * a for a in low],
                [100 * a for a in high],
                color=style["color"],
                alpha=0.18,
                linewidth=0,
            )
        if curve.final_test_accuracy is not None and stopped:  # else the line above is it
            accuracy_axes.plot(
                x,
                [100 * a for a in curve.final_test_accuracy],
                "s--",
                color=style["color"],
                markersize=3,
                alpha=0.7,
                label="at end of training" if alone else f"{curve.label}, end of training",
            )
        iteration_axes.plot(x, curve.early_stop_trained, label=curve.legend, **style)
        if curve.iteration_band is not None:
            low, high = curve.iteration_band
            iteration_axes.fill_between(x, low, high, color=style["color"], alpha=0.18, linewidth=0)
    ticks = percent_ticks([p for curve in curves for p in curve.x])
    for axes, ylabel, heading in (
        (
            accuracy_axes,
            "test accuracy (%)",
            "Test accuracy" + ("" if finals or not stops else " at early stop"),
        ),
        (
            iteration_axes,
            "iterations trained to early stop\n(from the rewind point; min. validation loss)",
            "Early stop" + ("" if stops else " (none: no validation split)"),
        ),
    ):
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(FixedLocator(ticks))
        axes.xaxis.set_major_formatter(FixedFormatter([compact(t) for t in ticks]))
        axes.xaxis.set_minor_locator(NullLocator())
        if ticks and max(ticks) > min(ticks):
            # Smaller networks to the right, with a little room at both ends.
            axes.set_xlim(max(ticks) * 1.15, min(ticks) / 1.15)
        else:
            axes.invert_xaxis()
        axes.set_xlabel(f"{X_AXES[x_axis]} (log scale)", fontsize=11)
        axes.set_ylabel(ylabel, fontsize=11)
        axes.set_title(heading, fontsize=12)
        axes.tick_params(labelsize=10)
        axes.grid(True, which="major", alpha=0.3)
        if not below and (axes is accuracy_axes or not alone):
            axes.legend(fontsize="small")
    if below:
        handles, labels = accuracy_axes.get_legend_handles_labels()
        labels = [
            wrapped.get(label) or textwrap.fill(label, LEGEND_BELOW_CHARACTERS) for label in labels
        ]
        figure.legend(handles, labels, loc="outside lower center", fontsize="small")
    iteration_axes.set_ylim(bottom=0)
    if title:
        figure.suptitle(title, fontsize=13)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # An experiment named with an emoji: its box in the figure says as much, and the
        # warning would come again at every figure a run draws.
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from", UserWarning)
        figure.savefig(buffer, format=format, dpi=dpi)
    return buffer.getvalue()


def compact(value: float) -> str:
    """A tick label: three significant digits, thousands and millions as k and M.

    >>> compact(51.2), compact(1_233_713), compact(30_629)
    ('51.2', '1.23M', '30.6k')
    """
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def percent_ticks(values: Sequence[float], max_ticks: int = MAX_TICKS) -> list[float]:
    """At most ``max_ticks`` of ``values``, spread evenly on a log scale, ends included.

    The paper labels its x axis with the rounds' own percentages rather than decades.

    >>> percent_ticks([100, 80, 64, 51.2, 41, 32.8], max_ticks=3)
    [100.0, 51.2, 32.8]

    Few values keep a tick each, but two experiments' nearly equal ones (81 and 80.04) one:
    their labels would print over each other.

    >>> percent_ticks([100, 81, 80.04, 72.9, 65.6, 59])
    [100.0, 81.0, 72.9, 65.6, 59.0]
    """
    points = sorted({float(v) for v in values if v > 0}, reverse=True)
    if len(points) < 2:
        return points
    span = math.log10(points[0] / points[-1])
    # Evenly spread when there are too many; otherwise only the labels' width apart.
    gap = span / (max_ticks - 1) if len(points) > max_ticks else span / (2 * (max_ticks - 1))
    kept = [points[0]]
    for value in points[1:-1]:
        if math.log10(kept[-1] / value) >= gap * 0.999:
            kept.append(value)
    # The smallest value always gets a tick; its neighbour gives way when too close.
    if len(kept) > 1 and math.log10(kept[-1] / points[-1]) < gap / 2:
        kept.pop()
    return kept[: max_ticks - 1] + [points[-1]]
