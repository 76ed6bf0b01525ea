"""Export one ticket: SavedModel, float and int8 .tflite, and ``export.json``, all verified.

``<output_dir>/<experiment>/round_NN/``:

- ``saved_model/``: the stripped Keras model (no wrappers, pruned weights exactly 0);
- ``ticket.tflite``: float32, weights stored sparse, input float32 raw pixels (0..255), or
  whatever values the dataset holds, as float32;
- ``ticket_int8.tflite``: full-integer int8, input uint8 raw pixels (a dataset that is not
  uint8: float32 input, quantized inside), its weights stored sparse only where that is
  smaller and no slower than dense storage (:class:`ExportOptions`);
- ``ticket.keras`` (``ExportOptions.keras3``): the ticket as a Keras 3 model, its outputs
  checked against the tf_keras ticket's;
- ``export.json``: sizes, accuracies (Keras and LiteRT, whole test set) and LiteRT latencies
  of this ticket and of the same architecture's dense round 0, exported the same way.

A channel ticket (``--granularity=channel``) is also shrunk into a smaller dense network
(:mod:`lth_tf.pruning.shrink`), checked to compute the masked ticket's logits on the whole test
set, and written as ``saved_model_shrunk/``, ``ticket_shrunk.tflite`` (float32) and
``ticket_shrunk_int8.tflite`` (int8), stored dense: those are the files that run faster.

The round is written to a temporary directory beside it and moved into place when complete.

>>> report = export_ticket(ticket, dense, data, "saved_models")  # doctest: +SKIP
>>> report["ticket"]["files"]["ticket.tflite"]["bytes"] < 0.2 * report["dense"]["files"][
...     "ticket.tflite"]["bytes"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import gzip
import io as bytes_io
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tf_keras
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf import io
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError, counted
from lth_tf.export import litert, verdict
from lth_tf.export.destination import (
    PREVIOUS,
    REPORT_FILE,
    check_replaceable,
    export_dir,
    move_into_place,
    remove_stale_staging,
    staging_prefix,
)
from lth_tf.export.options import ExportOptions
from lth_tf.export.stripped import save_saved_model, shrunk_ticket_model, stripped_model
from lth_tf.export.tflite import float_tflite, fp16_tflite, int8_tflite, representative_images
from lth_tf.export.ticket import Ticket
from lth_tf.export.verdict import (
    FLOAT_FILE,
    FP16_FILE,
    INT8_FILE,
    SHRUNK_FLOAT_FILE,
    SHRUNK_INT8_FILE,
)
from lth_tf.pruning.shrink import DEPTHWISE, multiply_adds

if TYPE_CHECKING:
    from lth_tf.export.arm import ArmRuntime

log = logging.getLogger("lth_tf")

SAVED_MODEL = "saved_model"
SHRUNK_SAVED_MODEL = "saved_model_shrunk"
# The ticket as a Keras 3 model (ExportOptions.keras3).
KERAS3_FILE = "ticket.keras"
# Interleaved slices every file's latency is timed in (their medians' spread is the timing's own).
LATENCY_ROUNDS = 10
# The shrunk network computes the masked ticket's logits up to float rounding (sums of fewer
# terms, in another order): this far apart, relative to the logits' scale, is a bug.
SHRUNK_LOGITS_TOLERANCE = 1e-4


def check_dataset(ticket: Ticket, data: ImageDataset) -> None:
    """Refuses a dataset other than the one the experiment trained on (by shape and size)."""
    expected_shape, expected_test = ticket.input_shape, ticket.data.test_examples
    if data.input_shape != expected_shape or len(data.test_labels) != expected_test:
        raise LthError(
            f"{data.source} has {len(data.test_labels)} test images of shape {data.input_shape}, "
            f"but {ticket.experiment.root} trained on {expected_test} of shape {expected_shape} "
            f"({ticket.data.source or 'unknown source'}); pass --data_dir pointing at that "
            "data"
        )


def export_ticket(
    ticket: Ticket,
    dense: Ticket,
    data: ImageDataset,
    output_dir: str | Path,
    options: ExportOptions | None = None,
) -> dict[str, Any]:
    """Writes the ticket's export directory (see the module docstring); returns export.json.

    ``dense`` is round 0 of the same experiment: the dense network, exported the same way
    (in a temporary directory) for comparison. With ``options.arm`` every file also runs on an
    emulated ARM (:mod:`lth_tf.export.arm_check`).
    """
    options = options or ExportOptions()
    check_dataset(ticket, data)
    destination = export_dir(output_dir, ticket)
    check_replaceable(destination, ticket)
    runtime = None
    if options.arm:
        from lth_tf.export.arm import arm_runtime

        runtime = arm_runtime()  # set up (or refused) before anything is converted
    created = not destination.parent.exists()
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _export(ticket, dense, data, destination, options, runtime)
    except BaseException:
        # A failed first export of an experiment leaves no empty folder behind.
        if created and not any(destination.parent.iterdir()):
            destination.parent.rmdir()
        raise


def _export(
    ticket: Ticket,
    dense: Ticket,
    data: ImageDataset,
    destination: Path,
    options: ExportOptions,
    runtime: ArmRuntime | None,
) -> dict[str, Any]:
    """:func:`export_ticket` once the checks passed and the experiment's folder exists."""
    representative = representative_images(
        data.train_images, options.representative_examples, seed=ticket.hparams.training.seed
    )
    removed = remove_stale_staging(destination)
    if removed:
        log.info("Removed %s left by killed exports.", counted(len(removed), "staging folder"))
    prefix = staging_prefix(destination)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=prefix) as tmp:
        staging = Path(tmp)
        ticket_dir, dense_dir = staging / "ticket", staging / "dense"
        # uint8 pixels go in as they are; other data (a user's floats) stays a float input.
        uint8_input = data.train_images.dtype == np.uint8
        check_images = data.test_images[: options.storage_check_examples]
        ticket_model, ticket_files, ticket_storage = _write_model(
            ticket, ticket_dir, representative, uint8_input, check_images, options
        )
        if dense.round == ticket.round:  # exporting round 0: it is its own dense reference
            dense_dir, dense_model, dense_files = ticket_dir, ticket_model, ticket_files
            dense_storage = ticket_storage
        else:
            dense_model, dense_files, dense_storage = _write_model(
                dense, dense_dir, representative, uint8_input, check_images, options
            )

        shrunk = None
        if ticket.hparams.pruning.granularity == "channel":
            shrunk = _write_shrunk(
                ticket, ticket_model, ticket_dir, representative, uint8_input, data
            )

        # Every file side by side in one process, so that any two of them compare.
        contents = {f"ticket/{file}": content for file, content in ticket_files.items()}
        if dense_files is not ticket_files:
            contents |= {f"dense/{file}": content for file, content in dense_files.items()}
        if shrunk is not None:
            contents |= {f"shrunk/{file}": content for file, content in shrunk[1].items()}
        timings = litert.time_side_by_side(
            contents,
            data.test_images[: options.latency_examples],
            invocations=options.latency_invocations,
            warmup=options.latency_warmup,
            num_threads=options.latency_threads,
            rounds=LATENCY_ROUNDS,
        )

        images = data.test_images.astype(np.float32)
        logits = {"ticket": ticket_model.predict(images, batch_size=1000, verbose=0)}
        logits["dense"] = (
            logits["ticket"]
            if dense_model is ticket_model
            else dense_model.predict(images, batch_size=1000, verbose=0)
        )
        report = {
            "experiment": str(ticket.experiment.root.resolve()),
            "experiment_id": ticket.experiment.identity,
            "round": ticket.round,
            "selection": ticket.selection,
            "model": ticket.hparams.model.name,
            "dataset": ticket.hparams.dataset.name,
            # Output i is class classes[i]: a device prints names (None: labels were indices).
            "classes": None if data.classes is None else list(data.classes),
            "block_size": ticket.hparams.pruning.block_size,
            "granularity": ticket.hparams.pruning.granularity,
            "prune_for": ticket.hparams.pruning.prune_for,
            "data": {
                "source": data.source,
                "test_examples": len(data.test_labels),
                "representative_examples": len(representative),
                "representative_split": "train",
            },
            "latency": {
                "statistic": "median microseconds per invoke(), batch 1",
                "invocations": options.latency_invocations,
                "rounds": LATENCY_ROUNDS,
                "warmup": options.latency_warmup,
                "threads": options.latency_threads,
                "machine": verdict.host_name(),
            },
            "ticket": _figures(
                ticket, logits["ticket"], ticket_model, ticket_dir, ticket_files, data
            ),
            "dense": _figures(dense, logits["dense"], dense_model, dense_dir, dense_files, data),
        }
        for which, storage in (("ticket", ticket_storage), ("dense", dense_storage)):
            for file, entries in storage.items():
                report[which]["files"][file].update(entries)
        if shrunk is not None:
            logits["shrunk"] = shrunk[3]
            report["shrunk"] = shrunk[2]
        for name, timing in timings.items():
            which, file = name.split("/", 1)
            report[which]["files"][file] |= {
                "median_latency_us": round(timing.median_us, 3),
                "round_latencies_us": [round(t, 3) for t in timing.round_medians_us],
            }
        if dense_files is ticket_files:
            report["dense"]["files"] = report["ticket"]["files"]
        report["comparison"] = _comparison(report["ticket"]["files"], report["dense"]["files"])
        if shrunk is not None:
            report["comparison"] |= _shrunk_comparison(report["shrunk"], report["dense"])
        if runtime is not None:
            from lth_tf.export.arm_check import check_on_arm

            count = min(options.arm_examples, len(data.test_labels))
            report["arm"] = check_on_arm(
                runtime,
                contents,
                {which: values[:count] for which, values in logits.items()},
                data.test_images[:count],
                data.test_labels[:count],
                options,
            )
        report["verdict"] = _verdict(report, ticket_model)
        if options.keras3:
            report["keras3"] = _write_keras3(ticket, ticket_model, ticket_dir, check_images)
        io.write_json(ticket_dir / REPORT_FILE, report)
        move_into_place(ticket_dir, destination, staging / PREVIOUS)
    return report


def _write_keras3(
    ticket: Ticket, model: tf_keras.Model, directory: Path, images: np.ndarray
) -> dict[str, Any]:
    """``ticket.keras``: the ticket as a Keras 3 model (:func:`lth_tf.models.keras3.to_keras3`),
    its weights checked equal to the tf_keras ticket's (so pruned ones exactly zero) and its
    outputs on ``images`` (test examples) equal; export.json's ``keras3`` entry."""
    import keras

    from lth_tf.models.keras3 import check_same_outputs, to_keras3

    what = f"round {ticket.round}'s Keras 3 ticket"
    converted = to_keras3(model, what)
    for layer in model.layers:
        theirs = converted.get_layer(layer.name).get_weights()
        if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), theirs, strict=True)):
            raise RuntimeError(f"{what}: layer {layer.name!r} holds other weights than the ticket")
    difference = check_same_outputs(model, converted, images.astype(np.float32), what)
    path = directory / KERAS3_FILE
    converted.save(path)
    return {
        "file": KERAS3_FILE,
        "bytes": path.stat().st_size,
        "keras_version": keras.__version__,
        "loads_with": f"keras.saving.load_model('{KERAS3_FILE}')",
        "checked_examples": len(images),
        "max_output_difference": difference,
    }


def _verdict(report: dict[str, Any], model: tf_keras.Model) -> dict[str, Any]:
    """export.json's ``verdict``: per target, each file against its dense counterpart, the
    smallest and fastest shippable files; and what would make a ticket faster."""
    targets: dict[str, Any] = {}
    host = []
    for which, file, figures in _exported_files(report):
        dense = report["dense"]["files"][verdict.DENSE_COUNTERPART[file]]
        keras = report[which]["keras_test_accuracy"]
        drop = verdict.points_below(keras, figures["litert_test_accuracy"])
        allowed = verdict.ALLOWED_ACCURACY_DROP[file]
        why = (
            f"LiteRT test accuracy {drop:.2f} points below Keras's (at most {allowed} allowed)"
            if drop > allowed
            else None
        )
        timing = {
            "median_us": figures["median_latency_us"],
            "round_medians_us": figures["round_latencies_us"],
        }
        dense_timing = {
            "median_us": dense["median_latency_us"],
            "round_medians_us": dense["round_latencies_us"],
        }
        host.append(
            verdict.file_verdict(file, figures, dense, timing, dense_timing, why is None, why)
        )
    targets[verdict.host_name()] = verdict.target_verdict(host)
    shippable_here = {f["file"]: f["not_shippable_because"] for f in host}
    arm = report.get("arm")
    if arm is not None:
        on_arm = []
        for which, file, figures in _exported_files(report):
            mine = arm["files"][f"{which}/{file}"]
            counterpart = verdict.DENSE_COUNTERPART[file]
            # Round 0 is its own dense network: its files ran once, as the ticket's.
            files = arm["files"]
            theirs = files.get(f"dense/{counterpart}") or files[f"ticket/{counterpart}"]
            dense = report["dense"]["files"][verdict.DENSE_COUNTERPART[file]]
            # Not shippable anywhere when its accuracy already falls short on this machine.
            why = shippable_here[file] or mine["not_shippable_because"]
            on_arm.append(
                verdict.file_verdict(file, figures, dense, mine, theirs, why is None, why)
            )
        targets[verdict.ARM] = verdict.target_verdict(on_arm)
    context = _speed_context(report, model)
    return {
        "targets": targets,
        "advice": verdict.advice(context, arm is not None),
        "context": context,
        "rule": (
            f"faster/slower: every timing round agrees and the median differs by at least "
            f"{100 * verdict.SAME_SPEED_BAND:.0f}%; otherwise same speed"
        ),
    }


def _exported_files(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(``ticket`` or ``shrunk``, file name, its figures) for every .tflite file shipped."""
    found = [
        ("ticket", file, figures)
        for file, figures in report["ticket"]["files"].items()
        if file.endswith(".tflite")
    ]
    if "shrunk" in report:
        found += [
            ("shrunk", file, figures)
            for file, figures in report["shrunk"]["files"].items()
            if file.endswith(".tflite")
        ]
    return found


def _speed_context(report: dict[str, Any], model: tf_keras.Model) -> dict[str, Any]:
    """What :func:`lth_tf.export.verdict.advice` needs to know of the ticket."""
    from lth_tf.pruning.xnnpack import (
        check_sparse_subgraph,
        one_by_one_zero_fraction,
        symmetric_padding,
    )

    kernels = {  # the first weight of a conv or Dense layer is its kernel (depthwise too)
        layer.name: int(np.prod(layer.weights[0].shape))
        for layer in model.layers
        if isinstance(layer, tf_keras.layers.Dense | Conv) and layer.weights
    }
    dense_weights = sum(
        size
        for layer in model.layers
        if isinstance(layer, tf_keras.layers.Dense)
        for size in [kernels[layer.name]]
    )
    context: dict[str, Any] = {
        "granularity": report["granularity"],
        "prune_for": report["prune_for"],
        "block_size": report["block_size"],
        "has_conv": any(isinstance(layer, Conv) for layer in model.layers),
        "dense_weight_fraction": round(dense_weights / max(1, sum(kernels.values())), 4),
        "percent_remaining": report["ticket"]["percent_remaining"],
        "xnnpack_shaped": False,
    }
    try:
        shaped, _ = symmetric_padding(model)
        subgraph = check_sparse_subgraph(shaped)
    except LthError:
        return context
    context["xnnpack_shaped"] = True
    context["one_by_one_zeros"] = round(one_by_one_zero_fraction(model, subgraph), 4)
    return context


def summary_lines(report: dict[str, Any], destination: Path) -> list[str]:
    """Lines for a terminal: what was written, each file's size and LiteRT accuracy, what ran
    on ARM (``--arm``), then the verdict (:func:`lth_tf.export.verdict.verdict_lines`)."""
    ticket, dense = report["ticket"], report["dense"]
    lines = [
        f"Exported round {report['round']} ({ticket['percent_remaining']:.2f}% of weights "
        f"remain, {ticket['parameters']['nonzero']:,} of {ticket['parameters']['total']:,} "
        f"parameters non-zero) to {destination}",
        f"  Keras test accuracy {100 * ticket['keras_test_accuracy']:.2f}% "
        f"(dense {100 * dense['keras_test_accuracy']:.2f}%)",
    ]
    for _, file, figures in _exported_files(report):
        storage = figures.get("weight_storage", "")
        if storage:
            storage = f" | stored {storage.split(':', 1)[0]}"
        elif "sparse_tensors" in figures:  # the converter chose (the float32 file)
            sparse = sum(figures["sparse_tensors"].values())
            storage = (
                f" | {counted(sparse, 'tensor')} stored sparse" if sparse else " | stored dense"
            )
        lines.append(
            f"  {file:<26} {figures['bytes'] / 1000:9.1f} KB ({figures['gzip_bytes'] / 1000:.1f} "
            f"KB gzipped) | LiteRT test accuracy {100 * figures['litert_test_accuracy']:.2f}%"
            f"{storage}"
        )
    saved = ticket["files"][SAVED_MODEL]
    lines.append(
        f"  {SAVED_MODEL + '/':<26} {saved['bytes'] / 1000:9.1f} KB "
        f"({saved['gzip_bytes'] / 1000:.1f} KB gzipped)"
    )
    keras3 = report.get("keras3")
    if keras3 is not None:
        lines.append(
            f"  {keras3['file']:<26} {keras3['bytes'] / 1000:9.1f} KB | Keras "
            f"{keras3['keras_version']} model, outputs equal the tf_keras ticket's within "
            f"{keras3['max_output_difference']:.2g} on {keras3['checked_examples']} test examples"
        )
    shrunk = report.get("shrunk")
    if shrunk is not None:
        lines.append(
            f"  Shrunk into a smaller dense network: {shrunk['parameters']:,} parameters "
            f"(dense {dense['parameters']['total']:,}), {shrunk['multiply_adds']:,} "
            f"multiply-adds per example (dense {dense['multiply_adds']:,}); logits equal the "
            f"masked ticket's within {shrunk['logits_max_difference']:.2g}"
        )
    arm = report.get("arm")
    if arm is not None:
        from lth_tf.export.arm_check import arm_lines

        lines.extend(arm_lines(arm))
    lines.extend(verdict.verdict_lines(report["verdict"]))
    return lines


def _write_shrunk(
    ticket: Ticket,
    stripped: tf_keras.Model,
    directory: Path,
    representative: np.ndarray,
    uint8_input: bool,
    data: ImageDataset,
) -> tuple[tf_keras.Model, dict[str, bytes], dict[str, Any], np.ndarray]:
    """The channel ticket shrunk, checked against the masked one on the whole test set, as a
    SavedModel and two .tflite files stored dense; its export.json figures and its logits."""
    small = shrunk_ticket_model(ticket, stripped)
    images = data.test_images.astype(np.float32)
    masked = stripped.predict(images, batch_size=1000, verbose=0)
    logits = small.predict(images, batch_size=1000, verbose=0)
    difference = float(np.max(np.abs(masked - logits)))
    scale = max(1.0, float(np.max(np.abs(masked))))
    if difference > SHRUNK_LOGITS_TOLERANCE * scale:
        raise LthError(
            f"the shrunk network of round {ticket.round} computes other logits than the masked "
            f"ticket (up to {difference:.3g} apart, {scale:.3g} at most): this is a bug in "
            "lth_tf's channel shrinking; the unshrunk files are still right, export with a "
            "weight ticket or report the model"
        )
    save_saved_model(small, directory / SHRUNK_SAVED_MODEL)
    files = {
        SHRUNK_FLOAT_FILE: float_tflite(directory / SHRUNK_SAVED_MODEL),
        SHRUNK_INT8_FILE: int8_tflite(
            directory / SHRUNK_SAVED_MODEL, representative, uint8_input, sparse=False
        ),
    }
    for name, content in files.items():
        io.write_bytes_atomic(directory / name, content)
    figures: dict[str, Any] = {
        "parameters": int(small.count_params()),
        "multiply_adds": multiply_adds(small),
        # Output channels of every convolution and Dense layer, as shrunk.
        "channels": {
            layer.name: int(layer.kernel.shape[-1] if hasattr(layer, "kernel") else layer.filters)
            for layer in small.layers
            if isinstance(layer, tf_keras.layers.Dense | Conv) and not isinstance(layer, DEPTHWISE)
        },
        "logits_max_difference": difference,
        "keras_test_accuracy": float(np.mean(logits.argmax(axis=-1) == data.test_labels)),
        "files": {SHRUNK_SAVED_MODEL: _directory_sizes(directory / SHRUNK_SAVED_MODEL)},
    }
    for name, content in files.items():
        figures["files"][name] = _file_figures(content, data)
    return small, files, figures, logits


def _shrunk_comparison(shrunk: dict[str, Any], dense: dict[str, Any]) -> dict[str, float]:
    def ratio(a: float, b: float) -> float:
        return round(a / b, 4)

    files, dense_files = shrunk["files"], dense["files"]
    return {
        "shrunk_parameters_vs_dense": ratio(shrunk["parameters"], dense["parameters"]["total"]),
        "shrunk_multiply_adds_vs_dense": ratio(shrunk["multiply_adds"], dense["multiply_adds"]),
        "shrunk_float_size_vs_dense_float": ratio(
            files[SHRUNK_FLOAT_FILE]["bytes"], dense_files[FLOAT_FILE]["bytes"]
        ),
        "shrunk_float_speedup_vs_dense_float": ratio(
            dense_files[FLOAT_FILE]["median_latency_us"],
            files[SHRUNK_FLOAT_FILE]["median_latency_us"],
        ),
        "shrunk_int8_speedup_vs_dense_int8": ratio(
            dense_files[INT8_FILE]["median_latency_us"],
            files[SHRUNK_INT8_FILE]["median_latency_us"],
        ),
    }


def _write_model(
    ticket: Ticket,
    directory: Path,
    representative: np.ndarray,
    uint8_input: bool,
    check_images: np.ndarray,
    options: ExportOptions,
) -> tuple[tf_keras.Model, dict[str, bytes], dict[str, Any]]:
    """The stripped model, its files, and how the int8 and float16 files store their weights
    (and why)."""
    model = stripped_model(ticket)
    save_saved_model(model, directory / SAVED_MODEL)
    int8, int8_storage = _checked_int8(
        directory / SAVED_MODEL, representative, uint8_input, check_images, ticket.round, options
    )
    fp16, fp16_storage = _checked_fp16(directory / SAVED_MODEL, check_images, ticket.round)
    files = {FLOAT_FILE: float_tflite(directory / SAVED_MODEL), FP16_FILE: fp16, INT8_FILE: int8}
    for name, content in files.items():
        io.write_bytes_atomic(directory / name, content)
    return model, files, {INT8_FILE: int8_storage, FP16_FILE: fp16_storage}


# A sparse weight encoding (int8 or float16) may disagree with the same weights stored dense on
# at most this fraction of the checked examples (it should agree on all of them).
SPARSE_DISAGREEMENT = 0.01


def _disagreement(sparse: bytes, dense: bytes, images: np.ndarray) -> float:
    """Fraction of ``images`` on which two encodings of one model predict other classes."""
    a = litert.predict(sparse, images).argmax(axis=-1)
    b = litert.predict(dense, images).argmax(axis=-1)
    return float(np.mean(a != b))


def _checked_fp16(
    saved_model: Path, images: np.ndarray, pruning_round: int
) -> tuple[bytes, dict[str, Any]]:
    """The float16 file, stored sparse where that is smaller and computes what dense storage
    does, and export.json's ``weight_storage`` saying which and why.

    TFLite's sparse float16 encoding picks block sparsity for some tensors, and on a conv2
    channel ticket that file gave 10.7% test accuracy where the dense encoding gave 75%: so the
    sparse one is kept only if its predicted classes agree with the dense one's.
    """
    dense = fp16_tflite(saved_model, sparse=False)
    if pruning_round == 0:
        return dense, {"weight_storage": "dense: round 0, the dense network"}
    sparse = fp16_tflite(saved_model, sparse=True)
    refusal = _sparse_refusal(sparse, dense, images, pruning_round, "float16")
    if refusal is not None:
        return dense, {"weight_storage": refusal}
    return sparse, {
        "weight_storage": f"sparse: {len(sparse):,} bytes, {len(dense):,} stored dense, the "
        f"same predictions on {len(images)} test examples"
    }


def _sparse_refusal(
    sparse: bytes, dense: bytes, images: np.ndarray, pruning_round: int, kind: str
) -> str | None:
    """Why a file's sparse encoding is not kept (``dense: ...``): larger than the dense one,
    or predicting other classes on ``images``; None when it may be kept."""
    if len(sparse) >= len(dense):
        return (
            f"dense: {len(dense):,} bytes stored dense, {len(sparse):,} stored sparse (an "
            "index per surviving weight outweighs the zeros it saves at this sparsity)"
        )
    disagreement = _disagreement(sparse, dense, images)
    if disagreement <= SPARSE_DISAGREEMENT:
        return None
    log.warning(
        "round %d: LiteRT's sparse %s encoding disagrees with the dense one on %.1f%% of %d "
        "test examples; the %s file is stored dense.",
        pruning_round,
        kind,
        100 * disagreement,
        len(images),
        kind,
    )
    return (
        f"dense: the sparse encoding's predictions differed from the dense encoding's on "
        f"{100 * disagreement:.1f}% of {len(images)} test examples"
    )


def _checked_int8(
    saved_model: Path,
    representative: np.ndarray,
    uint8_input: bool,
    images: np.ndarray,
    pruning_round: int,
    options: ExportOptions,
) -> tuple[bytes, dict[str, Any]]:
    """The int8 file, stored sparse or dense as ``options.int8_storage`` asks, and the
    export.json entries that say which and why (``weight_storage``, ``storage_candidates``).

    Sparse int8 storage keeps an index per surviving weight, so at moderate sparsity it is
    larger than dense storage (lenet300_100 at 51% of its weights: 430 KB against 281 KB). It
    also runs on LiteRT's builtin kernels only (the default XNNPack delegate cannot prepare it),
    which on an x86 CPU took 10x as long as the dense file under XNNPack: ``auto`` therefore
    times both. And on a small residual net with batch norm, TFLite's sparse int8 encoding (one
    tensor came out block-sparse) gave 18.5% test accuracy where dense storage gave 45%, the
    Keras model's: so both are run on ``images`` and the sparse one is kept only if their
    predicted classes disagree on at most :data:`SPARSE_DISAGREEMENT` of them.
    """
    dense = int8_tflite(saved_model, representative, uint8_input, sparse=False)
    if pruning_round == 0:
        # The dense network is the reference every ticket is compared with: stored dense, as a
        # ticket stored dense is, so the two differ only in their weights' values.
        return dense, {"weight_storage": "dense: round 0, the dense network"}
    if options.int8_storage == "dense":
        return dense, {"weight_storage": "dense: int8_storage=dense asks for it"}
    sparse = int8_tflite(saved_model, representative, uint8_input, sparse=True)
    candidates: dict[str, dict[str, Any]] = {
        "sparse": {"bytes": len(sparse), "op_resolver": litert.op_resolver_for(sparse).name},
        "dense": {"bytes": len(dense), "op_resolver": litert.op_resolver_for(dense).name},
    }

    def chosen(content: bytes, why: str) -> tuple[bytes, dict[str, Any]]:
        return content, {"weight_storage": why, "storage_candidates": candidates}

    refusal = _sparse_refusal(sparse, dense, images, pruning_round, "int8")
    if refusal is not None:
        return chosen(dense, refusal)
    if options.int8_storage == "smallest":
        return chosen(sparse, "sparse: smaller (int8_storage=smallest keeps it however fast)")
    # Side by side, each under the interpreter options it needs: a device gets the same.
    timings = litert.time_side_by_side(
        {"sparse": sparse, "dense": dense},
        images[: options.latency_examples],
        invocations=options.latency_invocations,
        warmup=options.latency_warmup,
        num_threads=options.latency_threads,
        rounds=LATENCY_ROUNDS,
    )
    latencies = {name: timing.median_us for name, timing in timings.items()}
    for name, microseconds in latencies.items():
        candidates[name]["median_latency_us"] = round(microseconds, 3)
    if latencies["sparse"] <= latencies["dense"]:
        return chosen(sparse, "sparse: smaller and no slower than dense storage")
    return chosen(
        dense,
        f"dense: stored sparse it would be {len(sparse):,} bytes instead of {len(dense):,} but "
        f"take {latencies['sparse']:.1f} us per example instead of {latencies['dense']:.1f} "
        "(int8_storage=smallest keeps the smaller file)",
    )


def _figures(
    ticket: Ticket,
    logits: np.ndarray,
    model: tf_keras.Model,
    directory: Path,
    files: dict[str, bytes],
    data: ImageDataset,
) -> dict[str, Any]:
    """Export.json's numbers for one exported model (the ticket or the dense round 0);
    ``logits``: the Keras model's on the whole test set."""
    weights = [variable.numpy() for variable in model.variables]
    report: dict[str, Any] = {
        "round": ticket.round,
        "percent_remaining": ticket.percent_remaining,
        "prunable_weights": {
            "remaining": int(sum(int(mask.sum()) for mask in ticket.masks.values())),
            "total": int(sum(mask.size for mask in ticket.masks.values())),
        },
        "parameters": {
            "nonzero": int(sum(np.count_nonzero(w) for w in weights)),
            "total": int(sum(w.size for w in weights)),
        },
        "multiply_adds": multiply_adds(model),
        "keras_test_accuracy": float(np.mean(logits.argmax(axis=-1) == data.test_labels)),
        # results.csv's accuracy at the end of the round: the same weights, so the same figure.
        "recorded_test_accuracy": ticket.results.test_accuracy,
        "files": {SAVED_MODEL: _directory_sizes(directory / SAVED_MODEL)},
    }
    for name, content in files.items():
        report["files"][name] = _file_figures(content, data)
    return report


def _file_figures(content: bytes, data: ImageDataset) -> dict[str, Any]:
    """Size, input, storage and LiteRT test accuracy of one .tflite file."""
    return {
        "bytes": len(content),
        "gzip_bytes": len(_gzip(content)),
        "input": litert.input_spec(content),
        "sparse_tensors": litert.sparse_tensors(content),
        "op_resolver": litert.op_resolver_for(content).name,
        "litert_test_accuracy": litert.accuracy(content, data.test_images, data.test_labels),
    }


def _comparison(ticket: dict[str, Any], dense: dict[str, Any]) -> dict[str, float]:
    def ratio(a: float, b: float) -> float:
        return round(a / b, 4)

    return {
        "float_size_vs_dense_float": ratio(ticket[FLOAT_FILE]["bytes"], dense[FLOAT_FILE]["bytes"]),
        "int8_size_vs_float_ticket": ratio(ticket[INT8_FILE]["bytes"], ticket[FLOAT_FILE]["bytes"]),
        "float_speedup_vs_dense_float": ratio(
            dense[FLOAT_FILE]["median_latency_us"], ticket[FLOAT_FILE]["median_latency_us"]
        ),
        "int8_speedup_vs_dense_int8": ratio(
            dense[INT8_FILE]["median_latency_us"], ticket[INT8_FILE]["median_latency_us"]
        ),
    }


def _directory_sizes(directory: Path) -> dict[str, int]:
    """Total bytes of the files under ``directory``, and of the directory as a .tar.gz."""
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    archive = bytes_io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(directory).as_posix())
    return {
        "bytes": sum(path.stat().st_size for path in files),
        "gzip_bytes": len(_gzip(archive.getvalue())),
    }


def _gzip(content: bytes) -> bytes:
    return gzip.compress(content, compresslevel=9, mtime=0)
