"""Export a ticket for the edge: ``python -m pipelines.export --experiment_dir=runs/<experiment>``.

Writes ``<output_dir>/<experiment>/round_NN/``: the stripped SavedModel, ``ticket.tflite``
(float32, stored sparse), ``ticket_fp16.tflite`` (float16 weights) and ``ticket_int8.tflite``
(full-integer, stored as ``--int8_storage`` says), and ``export.json`` with sizes, LiteRT
accuracy and latency next to the dense round 0's. It ends with the verdict: which file to ship
on this machine (and on ARM, emulated, with ``--arm``), or what would make a ticket faster.
A channel ticket (``--granularity=channel``) also gets ``saved_model_shrunk/``,
``ticket_shrunk.tflite`` and ``ticket_shrunk_int8.tflite``: the smaller dense network without its
pruned channels, with fewer multiply-adds on any CPU. ``--keras3`` also writes ``ticket.keras``,
the ticket as a Keras 3 model.
"""

from __future__ import annotations

from absl import flags

from pipelines import common
from pipelines.common import (
    STARTS_OVER,
    setup_logging,
    start_tensorflow_quietly,
    user_errors_as_one_line,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment_dir", None, "The experiment directory an IMP run wrote.")
flags.DEFINE_string(
    "round",
    "best",
    "Round to export: a number, or 'best' (the sparsest round whose weights as exported, those "
    "at the end of its training, score at most --tolerance points below round 0's on the test "
    "set).",
)
common.define_float("tolerance", 0.5, "For --round=best: accuracy points below round 0 allowed.")
flags.DEFINE_string("output_dir", "saved_models", "Exports go to <output_dir>/<experiment>/.")
common.refuse_empty("output_dir")
flags.DEFINE_string(
    "data_dir",
    None,
    "Where the experiment's dataset is (as for pipelines.imp): test set and calibration images.",
)

flags.DEFINE_string(
    "int8_storage",
    "auto",
    "How ticket_int8.tflite stores its weights. auto: sparse where that is smaller and no "
    "slower in LiteRT than dense storage (never larger, never slower than the dense int8 "
    "export); smallest: sparse wherever that is smaller; dense: always dense.",
)

flags.DEFINE_bool(
    "arm",
    False,
    "Also run every exported file on an emulated ARM LiteRT: which kernels ran (XNNPack's "
    "sparse ones?), accuracy there, emulated speed against dense; adds 30-60 s for a small "
    "model. Set up once (~15 s, about 200 MB from Debian's mirrors and PyPI) under "
    "~/.cache/lth_tf/arm64-litert or $LTH_TF_ARM_CACHE; needs qemu-user-static, or root to "
    "install it.",
)
flags.DEFINE_bool(
    "keras3",
    False,
    "Also write the ticket as a Keras 3 model, ticket.keras (load it with "
    "keras.saving.load_model), its outputs checked against the tf_keras ticket's.",
)
common.define_integer(
    "arm_examples",
    200,
    "With --arm: how many test examples (the first ones) run on the emulated ARM.",
)


@user_errors_as_one_line(after_a_stop=STARTS_OVER)
def main(argv: list[str]) -> None:
    from lth_tf.errors import LthError
    from lth_tf.export.destination import check_replaceable, export_dir
    from lth_tf.export.options import ExportOptions
    from lth_tf.export.ticket import open_ticket

    if not FLAGS.experiment_dir:
        raise LthError("--experiment_dir is required: the directory an IMP run wrote")
    if FLAGS["arm_examples"].present and not FLAGS.arm:
        raise LthError("--arm_examples is for the emulated ARM run: add --arm, or drop it")
    # Refused before any work.
    options = ExportOptions(
        int8_storage=FLAGS.int8_storage,
        arm=FLAGS.arm,
        arm_examples=FLAGS.arm_examples,
        keras3=FLAGS.keras3,
    )
    setup_logging()
    # Every check on the experiment comes before TensorFlow starts.
    ticket = open_ticket(FLAGS.experiment_dir, FLAGS.round, FLAGS.tolerance)
    dense = open_ticket(FLAGS.experiment_dir, 0)
    check_replaceable(export_dir(FLAGS.output_dir, ticket), ticket)
    print(f"Exporting {ticket.selection}")
    start_tensorflow_quietly()

    from lth_tf.export.deploy import export_ticket, summary_lines
    from lth_tf.provenance import experiment_data

    data = experiment_data(ticket.experiment, ticket.hparams, FLAGS.data_dir)
    report = export_ticket(ticket, dense, data, FLAGS.output_dir, options)
    print("\n".join(summary_lines(report, export_dir(FLAGS.output_dir, ticket))))


def run() -> None:
    """The console script's entry point (``lth-export``)."""
    common.run(main)


if __name__ == "__main__":
    run()
