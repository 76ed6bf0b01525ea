"""Export one ticket: SavedModel, float and int8 .tflite, and ``export.json``, all verified.

``<output_dir>/<experiment>/round_NN/``:

- ``saved_model/``: the stripped Keras model (no wrappers, pruned weights exactly 0);
- ``ticket.tflite``: float32, weights stored sparse, input float32 raw pixels (0..255), or
  whatever values the dataset holds, as float32;
- ``ticket_int8.tflite``: full-integer int8, input uint8 raw pixels (a dataset that is not
  uint8: float32 input, quantized inside), its weights stored sparse only where that is
  smaller and no slower than dense storage (:class:`ExportOptions`);
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
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras
from tf_keras.src.layers.convolutional.base_conv import Conv

from lth_tf import io
from lth_tf.data.sources import ImageDataset
from lth_tf.errors import LthError
from lth_tf.export import litert
from lth_tf.export.options import ExportOptions
from lth_tf.export.stripped import save_saved_model, shrunk_ticket_model, stripped_model
from lth_tf.export.tflite import float_tflite, int8_tflite, representative_images
from lth_tf.export.ticket import Ticket
from lth_tf.pruning.shrink import DEPTHWISE, multiply_adds

log = logging.getLogger("lth_tf")

SAVED_MODEL = "saved_model"
FLOAT_FILE = "ticket.tflite"
INT8_FILE = "ticket_int8.tflite"
REPORT_FILE = "export.json"
SHRUNK_SAVED_MODEL = "saved_model_shrunk"
SHRUNK_FLOAT_FILE = "ticket_shrunk.tflite"
SHRUNK_INT8_FILE = "ticket_shrunk_int8.tflite"
# LiteRT accuracy this far below Keras's is worth a warning (float should match it exactly).
ACCURACY_WARNING_POINTS = {FLOAT_FILE: 0.1, INT8_FILE: 1.0}
SHRUNK_FILES = {FLOAT_FILE: SHRUNK_FLOAT_FILE, INT8_FILE: SHRUNK_INT8_FILE}
# The shrunk network computes the masked ticket's logits up to float rounding (sums of fewer
# terms, in another order): this far apart, relative to the logits' scale, is a bug.
SHRUNK_LOGITS_TOLERANCE = 1e-4


def export_dir(output_dir: str | Path, ticket: Ticket) -> Path:
    """``<output_dir>/<experiment>/round_NN``."""
    return Path(output_dir) / ticket.name / f"round_{ticket.round:02d}"


def check_dataset(ticket: Ticket, data: ImageDataset) -> None:
    """Refuses a dataset other than the one the experiment trained on (by shape and size)."""
    expected_shape, expected_test = ticket.input_shape, int(ticket.data["test_examples"])
    if data.input_shape != expected_shape or len(data.test_labels) != expected_test:
        raise LthError(
            f"{data.source} has {len(data.test_labels)} test images of shape {data.input_shape}, "
            f"but {ticket.experiment.root} trained on {expected_test} of shape {expected_shape} "
            f"({ticket.data.get('source', 'unknown source')}); pass --data_dir pointing at that "
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
    (in a temporary directory) for comparison.
    """
    options = options or ExportOptions()
    check_dataset(ticket, data)
    destination = export_dir(output_dir, ticket)
    destination.parent.mkdir(parents=True, exist_ok=True)
    representative = representative_images(
        data.train_images, options.representative_examples, seed=ticket.hparams.training.seed
    )
    removed = remove_stale_staging(destination)
    if removed:
        log.info("Removed %d staging folders left by killed exports.", len(removed))
    # The exporting process's pid in the name tells a killed export's leftovers from a live one.
    prefix = f".{destination.name}.{os.getpid()}."
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

        examples = data.test_images[: options.latency_examples]
        latencies: dict[str, dict[str, float]] = {"ticket": {}, "dense": {}, "shrunk": {}}
        for file in (FLOAT_FILE, INT8_FILE):
            # Side by side in one process: a ticket's speed is only meaningful next to the dense.
            contents = {"ticket": ticket_files[file]}
            if dense_files is not ticket_files:
                contents["dense"] = dense_files[file]
            if shrunk is not None:
                contents["shrunk"] = shrunk[1][SHRUNK_FILES[file]]
            measured = litert.median_latencies(
                contents,
                examples,
                invocations=options.latency_invocations,
                warmup=options.latency_warmup,
                num_threads=options.latency_threads,
            )
            latencies["ticket"][file] = measured["ticket"]
            latencies["dense"][file] = measured.get("dense", measured["ticket"])
            if shrunk is not None:
                latencies["shrunk"][SHRUNK_FILES[file]] = measured["shrunk"]

        report = {
            "experiment": str(ticket.experiment.root.resolve()),
            "round": ticket.round,
            "selection": ticket.selection,
            "model": ticket.hparams.model.name,
            "dataset": ticket.hparams.dataset.name,
            "block_size": ticket.hparams.pruning.block_size,
            "granularity": ticket.hparams.pruning.granularity,
            "data": {
                "source": data.source,
                "test_examples": len(data.test_labels),
                "representative_examples": len(representative),
                "representative_split": "train",
            },
            "latency": {
                "statistic": "median microseconds per invoke(), batch 1",
                "invocations": options.latency_invocations,
                "warmup": options.latency_warmup,
                "threads": options.latency_threads,
            },
            "ticket": _figures(ticket, ticket_model, ticket_dir, ticket_files, data),
            "dense": _figures(dense, dense_model, dense_dir, dense_files, data),
        }
        for which, storage in (("ticket", ticket_storage), ("dense", dense_storage)):
            for file, microseconds in latencies[which].items():
                report[which]["files"][file]["median_latency_us"] = round(microseconds, 3)
            report[which]["files"][INT8_FILE].update(storage)
        report["comparison"] = _comparison(report["ticket"]["files"], report["dense"]["files"])
        if shrunk is not None:
            figures = shrunk[2]
            for file, microseconds in latencies["shrunk"].items():
                figures["files"][file]["median_latency_us"] = round(microseconds, 3)
            report["shrunk"] = figures
            report["comparison"] |= _shrunk_comparison(figures, report["dense"])
        io.write_json(ticket_dir / REPORT_FILE, report)
        _move_into_place(ticket_dir, destination, staging / "previous")
    return report


def summary_lines(report: dict[str, Any], destination: Path) -> list[str]:
    """A few lines for a terminal: each file's size, accuracy and latency, next to the dense."""
    ticket, dense = report["ticket"], report["dense"]
    lines = [
        f"Exported round {report['round']} ({ticket['percent_remaining']:.2f}% of weights "
        f"remain, {ticket['parameters']['nonzero']:,} of {ticket['parameters']['total']:,} "
        f"parameters non-zero) to {destination}",
        f"  Keras test accuracy {100 * ticket['keras_test_accuracy']:.2f}% "
        f"(dense {100 * dense['keras_test_accuracy']:.2f}%)",
    ]
    for file in (FLOAT_FILE, INT8_FILE):
        mine, theirs = ticket["files"][file], dense["files"][file]
        lines.append(
            f"  {file:<19} {mine['bytes'] / 1000:8.1f} KB ({mine['gzip_bytes'] / 1000:.1f} KB "
            f"gzipped) | LiteRT accuracy {100 * mine['litert_test_accuracy']:.2f}% | "
            f"{mine['median_latency_us']:.1f} us/example | dense: {theirs['bytes'] / 1000:.1f} "
            f"KB, {100 * theirs['litert_test_accuracy']:.2f}%, "
            f"{theirs['median_latency_us']:.1f} us"
        )
    lines.append(f"  {INT8_FILE} weights stored {ticket['files'][INT8_FILE]['weight_storage']}")
    saved = ticket["files"][SAVED_MODEL]
    lines.append(
        f"  {SAVED_MODEL + '/':<19} {saved['bytes'] / 1000:8.1f} KB "
        f"({saved['gzip_bytes'] / 1000:.1f} KB gzipped)"
    )
    shrunk = report.get("shrunk")
    if shrunk is not None:
        lines.append(
            f"  Shrunk into a smaller dense network: {shrunk['parameters']:,} parameters "
            f"(dense {dense['parameters']['total']:,}), {shrunk['multiply_adds']:,} "
            f"multiply-adds per example (dense {dense['multiply_adds']:,}); logits equal the "
            f"masked ticket's within {shrunk['logits_max_difference']:.2g}"
        )
        for file, theirs_file in ((SHRUNK_FLOAT_FILE, FLOAT_FILE), (SHRUNK_INT8_FILE, INT8_FILE)):
            mine, theirs = shrunk["files"][file], dense["files"][theirs_file]
            lines.append(
                f"  {file:<26} {mine['bytes'] / 1000:8.1f} KB | LiteRT accuracy "
                f"{100 * mine['litert_test_accuracy']:.2f}% | {mine['median_latency_us']:.1f} "
                f"us/example, {theirs['median_latency_us'] / mine['median_latency_us']:.2f}x "
                f"as fast as the dense {theirs_file}"
            )
    checked = [
        (file, allowed, ticket["files"][file]) for file, allowed in ACCURACY_WARNING_POINTS.items()
    ]
    if shrunk is not None:
        checked += [
            (SHRUNK_FILES[file], allowed, shrunk["files"][SHRUNK_FILES[file]])
            for file, allowed in ACCURACY_WARNING_POINTS.items()
        ]
    for file, allowed, figures in checked:
        drop = 100 * (ticket["keras_test_accuracy"] - figures["litert_test_accuracy"])
        if drop > allowed:
            lines.append(
                f"  warning: {file} is {drop:.2f} points less accurate in LiteRT than in Keras"
            )
    return lines


def _write_shrunk(
    ticket: Ticket,
    stripped: tf_keras.Model,
    directory: Path,
    representative: np.ndarray,
    uint8_input: bool,
    data: ImageDataset,
) -> tuple[tf_keras.Model, dict[str, bytes], dict[str, Any]]:
    """The channel ticket shrunk, checked against the masked one on the whole test set, as a
    SavedModel and two .tflite files stored dense; and its export.json figures."""
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
    return small, files, figures


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
    """The stripped model, its files, and how the int8 file stores its weights (and why)."""
    model = stripped_model(ticket)
    save_saved_model(model, directory / SAVED_MODEL)
    int8, int8_storage = _checked_int8(
        directory / SAVED_MODEL, representative, uint8_input, check_images, ticket.round, options
    )
    files = {FLOAT_FILE: float_tflite(directory / SAVED_MODEL), INT8_FILE: int8}
    for name, content in files.items():
        io.write_bytes_atomic(directory / name, content)
    return model, files, int8_storage


# The int8 file's sparse weight encoding may disagree with the same quantization stored dense on
# at most this fraction of the checked examples (it should agree on all of them).
SPARSE_INT8_DISAGREEMENT = 0.01


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
    predicted classes disagree on at most :data:`SPARSE_INT8_DISAGREEMENT` of them.
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

    if len(sparse) >= len(dense):
        return chosen(
            dense,
            f"dense: {len(dense):,} bytes stored dense, {len(sparse):,} stored sparse (an "
            "index per surviving weight outweighs the zeros it saves at this sparsity)",
        )
    a = litert.predict(sparse, images).argmax(axis=-1)
    b = litert.predict(dense, images).argmax(axis=-1)
    disagreement = float(np.mean(a != b))
    if disagreement > SPARSE_INT8_DISAGREEMENT:
        log.warning(
            "round %d: LiteRT's sparse int8 encoding disagrees with the dense one on %.1f%% of "
            "%d test examples; the int8 file is stored dense.",
            pruning_round,
            100 * disagreement,
            len(images),
        )
        return chosen(
            dense,
            f"dense: the sparse encoding's predictions differed from the dense encoding's on "
            f"{100 * disagreement:.1f}% of {len(images)} test examples",
        )
    if options.int8_storage == "smallest":
        return chosen(sparse, "sparse: smaller (int8_storage=smallest keeps it however fast)")
    # Side by side, each under the interpreter options it needs: a device gets the same.
    latencies = litert.median_latencies(
        {"sparse": sparse, "dense": dense},
        images[: options.latency_examples],
        invocations=options.latency_invocations,
        warmup=options.latency_warmup,
        num_threads=options.latency_threads,
    )
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
    model: tf_keras.Model,
    directory: Path,
    files: dict[str, bytes],
    data: ImageDataset,
) -> dict[str, Any]:
    """Export.json's numbers for one exported model (the ticket or the dense round 0)."""
    logits = model.predict(data.test_images.astype(np.float32), batch_size=1000, verbose=0)
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


def remove_stale_staging(destination: Path) -> list[Path]:
    """Deletes the staging folders (``.round_NN.<pid>.<random>``) that exports of
    ``destination`` left when they were killed: those whose process no longer runs.

    >>> remove_stale_staging(Path("saved_models/e/round_02"))  # doctest: +SKIP
    [PosixPath('saved_models/e/.round_02.4242.k3j2')]
    """
    removed = []
    for folder in sorted(destination.parent.glob(f".{destination.name}.*")):
        pid = folder.name.removeprefix(f".{destination.name}.").split(".", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _process_runs(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def _move_into_place(source: Path, destination: Path, trash: Path) -> None:
    """Replaces ``destination`` with ``source`` (an earlier export is moved to ``trash``)."""
    if destination.exists():
        destination.rename(trash)
    source.rename(destination)
    shutil.rmtree(trash, ignore_errors=True)
