"""The export's ARM check (``pipelines.export --arm``): every exported file run on an emulated
ARM LiteRT (:mod:`lth_tf.export.arm`), as a phone or a Raspberry Pi would run it.

Per file, ``export.json``'s ``arm`` records whether XNNPack's sparse inference ran (from the
micro-kernels that ran), the accuracy on a stated subset of the test set next to the Keras
model's on the same subset, how far the outputs are from the same file's on this machine, and
the emulated speed (interleaved rounds). A file is *not shippable* on ARM when its accuracy
there differs from its accuracy on this machine by more than the file's allowance
(:data:`lth_tf.export.verdict.ALLOWED_ACCURACY_DROP`), or a float file's from the Keras model's,
or a float file's outputs differ from its outputs on this machine beyond float rounding:
XNNPack's sparse path was seen computing wrong answers on ARM only, for one padding layout.

>>> arm = check_on_arm(arm_runtime(), contents, logits, images, labels, options)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from lth_tf.export import litert
from lth_tf.export.arm import ArmRuntime, kernels_that_ran, run_on_arm, sparse_inference_ran
from lth_tf.export.options import ExportOptions
from lth_tf.export.verdict import ALLOWED_ACCURACY_DROP, points_below

# A float file's outputs on ARM may differ from its outputs on this machine by float rounding
# (sums in another order, in sparse kernels too): up to this fraction of the largest output.
# Seen: under 1e-7 of it for sparse and dense files alike; the padding layout XNNPack's sparse
# path gets wrong on ARM was off by 1e-3 to 0.2 of it.
FLOAT_OUTPUT_TOLERANCE = 1e-4
# Outputs all smaller than this are compared as if this were the largest.
TINY_OUTPUTS = 1e-6


def check_on_arm(
    runtime: ArmRuntime,
    contents: dict[str, bytes],
    logits: dict[str, np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    options: ExportOptions,
) -> dict[str, Any]:
    """Runs ``contents`` (``<model>/<file>``: ``ticket/ticket.tflite``, ``dense/...``) on the
    emulated ARM, on the first ``options.arm_examples`` of ``images`` (raw pixels) with their
    ``labels``; ``logits[<model>]``: that Keras model's logits on ``images``."""
    count = min(options.arm_examples, len(labels))
    images, labels = images[:count], labels[:count]
    inputs, host_outputs, examples = {}, {}, {}
    for name, content in contents.items():
        interpreter = litert.open_interpreter(content, num_threads=1)
        details = interpreter.get_input_details()[0]
        inputs[name] = litert.to_input(images, details)
        host_outputs[name] = litert.predict(content, images)
        # XNNPack's sparse inference is for float networks: an integer file is not traced
        # (each trace is an emulator run of its own).
        if not litert.is_integer_model(content):
            examples[name] = litert.to_input(images[:1], details)
    # Each trace is one single-threaded emulator process: they run side by side, a core each.
    # The timed run below runs alone, so that no trace slows one file's rounds and not another's.
    with ThreadPoolExecutor(max_workers=_cores()) as pool:
        traces = {
            name: pool.submit(kernels_that_ran, runtime, contents[name], example)
            for name, example in examples.items()
        }
        kernels = {name: trace.result() for name, trace in traces.items()}
    ran = run_on_arm(
        runtime,
        contents,
        inputs,
        timing_rounds=options.arm_timing_rounds,
        timing_invocations=options.arm_timing_invocations,
    )
    files = {}
    for name, content in contents.items():
        which, file = name.split("/", 1)
        outputs = ran[name]["outputs"]
        keras_accuracy = float(np.mean(logits[which][:count].argmax(axis=-1) == labels))
        accuracy = float(np.mean(outputs.argmax(axis=-1) == labels))
        host_accuracy = float(np.mean(host_outputs[name].argmax(axis=-1) == labels))
        difference = float(np.max(np.abs(outputs - host_outputs[name])))
        scale = max(TINY_OUTPUTS, float(np.max(np.abs(host_outputs[name]))))
        why = _not_shippable(
            file, accuracy, keras_accuracy, host_accuracy, difference, scale, content
        )
        files[name] = {
            "sparse_inference": sparse_inference_ran(kernels.get(name, [])),
            # None: an integer file, not traced.
            "kernels": kernels.get(name),
            "accuracy": accuracy,
            "keras_accuracy": keras_accuracy,
            "host_accuracy": host_accuracy,
            "max_output_difference_vs_host": difference,
            "median_us": round(ran[name]["median_us"], 1),
            "round_medians_us": [round(t, 1) for t in ran[name]["round_medians_us"]],
            "shippable": why is None,
            "not_shippable_because": why,
        }
    return {
        "machine": f"arm64, emulated: qemu-aarch64 ({runtime.cpu}), ai-edge-litert, one thread",
        "timing": (
            f"emulated: {options.arm_timing_rounds} interleaved rounds of "
            f"{options.arm_timing_invocations} invokes per file, batch 1; emulated times are "
            "not device times, only ratios that repeat across rounds mean something"
        ),
        "examples": count,
        "examples_note": f"the first {count} test examples",
        "files": files,
    }


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _not_shippable(
    file: str,
    accuracy: float,
    keras_accuracy: float,
    host_accuracy: float,
    difference: float,
    scale: float,
    content: bytes,
) -> str | None:
    """Why a file is not shippable on ARM, or None. Every file must be as accurate there as on
    this machine (an int8 file's quantization is judged on this machine, on the whole test
    set); a float file also within its allowance of the Keras model's accuracy, and its
    outputs this machine's up to float rounding."""
    allowed = ALLOWED_ACCURACY_DROP[file]
    off_host = abs(points_below(host_accuracy, accuracy))
    if off_host > allowed:
        return (
            f"on ARM its accuracy is {off_host:.2f} points from its accuracy on this machine on "
            f"the same examples (at most {allowed} allowed)"
        )
    if litert.is_integer_model(content):
        return None
    off_keras = abs(points_below(keras_accuracy, accuracy))
    if off_keras > allowed:
        return (
            f"on ARM its accuracy is {off_keras:.2f} points from the Keras model's on the same "
            f"examples (at most {allowed} allowed)"
        )
    if difference > FLOAT_OUTPUT_TOLERANCE * scale:
        return (
            f"on ARM its outputs differ from its outputs on this machine by up to "
            f"{difference:.3g} (outputs up to {scale:.3g}): wrong answers on ARM"
        )
    return None


def arm_lines(arm: dict[str, Any]) -> list[str]:
    """What ran on ARM, for a terminal (the speed is in the verdict)."""
    lines = [f"  On ARM ({arm['machine']}; {arm['examples_note']}):"]
    for name, figures in arm["files"].items():
        if name.startswith("dense/"):
            continue
        sparse = "sparse kernels ran" if figures["sparse_inference"] else "dense kernels"
        why = figures["not_shippable_because"]
        ship = "" if figures["shippable"] else f"; NOT SHIPPABLE: {why}"
        lines.append(
            f"    {name.split('/', 1)[1]:<26} {sparse}; accuracy {100 * figures['accuracy']:.2f}% "
            f"(Keras {100 * figures['keras_accuracy']:.2f}%), outputs within "
            f"{figures['max_output_difference_vs_host']:.2g} of this machine's{ship}"
        )
    return lines
