"""Compare experiments: ``python -m pipelines.report --experiments=runs/a,runs/b --output=cmp``.

Writes ``cmp.png`` (test accuracy at early stop and early-stop iteration against percent of
weights remaining, one line per experiment) and ``cmp.csv`` (one row per experiment and round).
``--experiments`` also takes sweep directories and quoted globs (``'runs/lenet-*'``);
experiments that differ only in seed are drawn as one group's mean with a min-max band, and
the CSV then has their statistics per group and round. ``--output=cmp.pdf`` (or ``.svg``,
``.png``) picks the figure's format; ``--x_axis=shrunk_parameters`` (or
``shrunk_multiply_adds``) draws channel tickets against the size (or cost) of the smaller
network each round shrinks into.
"""

from __future__ import annotations

from absl import flags

from pipelines import common
from pipelines.common import STARTS_OVER, user_errors_as_one_line

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "experiments",
    [],
    "Experiment directories, sweep directories or quoted globs, comma-separated (e.g. "
    "runs/lth,runs/rewind500 or runs/sweeps/lth or 'runs/lenet-*').",
)
flags.DEFINE_string(
    "output",
    None,
    "Where the report goes: PREFIX writes PREFIX.png and PREFIX.csv; PREFIX.pdf, PREFIX.svg or "
    "PREFIX.png picks the figure's format (PNGs at 300 dpi).",
)

flags.DEFINE_string(
    "x_axis",
    "percent_remaining",
    "What accuracy is drawn against: percent_remaining, or for channel tickets "
    "(--granularity=channel) shrunk_parameters or shrunk_multiply_adds (the smaller dense "
    "network each round shrinks into).",
)


@user_errors_as_one_line(after_a_stop=STARTS_OVER)
def main(argv: list[str]) -> None:
    from lth_tf.errors import LthError
    from lth_tf.monitoring.report import unfinished_sweeps, write_report, xnnpack_marks

    if not FLAGS.output:
        raise LthError("--output: give a path prefix for the report, e.g. --output=reports/lenet")
    figure, csv = write_report(FLAGS.experiments, FLAGS.output, FLAGS.x_axis)
    print(f"Figure: {figure}")
    print(f"Table: {csv}")
    for line in xnnpack_marks(FLAGS.experiments):
        print(line)
    for line in unfinished_sweeps(FLAGS.experiments):
        print(f"note: {line}")


def run() -> None:
    """The console script's entry point (``lth-report``)."""
    common.run(main)


if __name__ == "__main__":
    run()
