"""Running .tflite files in the LiteRT interpreter (``ai_edge_litert``): predictions, accuracy,
per-example latency, and what the file stores sparse.

Every file runs with LiteRT's default op resolver (XNNPACK applied, as on a device by default),
except an integer file with sparse weights: XNNPACK fails to prepare quantized sparse
FullyConnected ops, so it runs on the builtin kernels alone (:func:`op_resolver_for`).

>>> logits = predict(content, test_images)  # doctest: +SKIP
>>> time_side_by_side({"ticket": content, "dense": dense}, test_images[:100])  # doctest: +SKIP
{'ticket': Timing(median_us=8.8, ...), 'dense': Timing(median_us=24.8, ...)}
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from lth_tf.startup import quiet_stderr


def is_integer_model(content: bytes) -> bool:
    """Whether the file takes an integer input (a full-integer quantized model)."""
    details = _peek(content).get_input_details()[0]
    return np.issubdtype(details["dtype"], np.integer)


def op_resolver_for(content: bytes) -> OpResolverType:
    """LiteRT's default options, except for an integer file with sparse weights: the default
    XNNPack delegate fails to prepare quantized sparse FullyConnected ops, so those run on the
    builtin kernels without delegates."""
    stored = sparse_tensors(content)
    if is_integer_model(content) and (stored["sparse"] or stored["block_sparse"]):
        return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return OpResolverType.AUTO


def open_interpreter(content: bytes, num_threads: int | None = None) -> Interpreter:
    """An interpreter for ``content`` with :func:`op_resolver_for`'s resolver, not allocated
    (LiteRT's "Created TensorFlow Lite XNNPACK delegate" line kept off the terminal)."""
    with quiet_stderr():
        return Interpreter(
            model_content=content,
            experimental_op_resolver_type=op_resolver_for(content),
            num_threads=num_threads,
        )


def predict(
    content: bytes, images: np.ndarray, batch_size: int = 1000, num_threads: int | None = None
) -> np.ndarray:
    """Float outputs for raw-pixel ``images``, in batches (the input tensor is resized).

    Pixels are quantized with the input's scale and zero point when the input is an integer
    (for the exported int8 files that is the identity); integer outputs are dequantized.
    """
    interpreter = open_interpreter(content, num_threads)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    outputs, allocated = [], None
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if len(chunk) != allocated:
            interpreter.resize_tensor_input(source["index"], [len(chunk), *chunk.shape[1:]])
            with quiet_stderr():
                interpreter.allocate_tensors()
            allocated = len(chunk)
        interpreter.set_tensor(source["index"], to_input(chunk, source))
        interpreter.invoke()
        outputs.append(from_output(interpreter.get_tensor(target["index"]), target))
    return np.concatenate(outputs)


def accuracy(content: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` whose highest output is their label."""
    return float(np.mean(predict(content, images).argmax(axis=-1) == labels))


@dataclasses.dataclass(frozen=True)
class Timing:
    """One file's latency, timed side by side with others: the median microseconds per
    ``invoke()`` over all rounds, and each round's median (their spread is the timing's own)."""

    median_us: float
    round_medians_us: tuple[float, ...]


def time_side_by_side(
    contents: dict[str, bytes],
    examples: np.ndarray,
    invocations: int = 2000,
    warmup: int = 200,
    num_threads: int = 1,
    rounds: int = 10,
) -> dict[str, Timing]:
    """Microseconds per ``invoke()`` at batch 1 for each file, measured side by side.

    The files take turns in ``rounds`` slices, so that a slower or busier stretch of the
    machine falls on all of them alike; inputs cycle through ``examples`` and only the
    ``invoke()`` itself is timed.
    """
    runners = {}
    for name, content in contents.items():
        interpreter = open_interpreter(content, num_threads)
        with quiet_stderr():
            interpreter.allocate_tensors()
        source = interpreter.get_input_details()[0]
        inputs = [to_input(examples[i : i + 1], source) for i in range(len(examples))]
        for i in range(warmup):
            interpreter.set_tensor(source["index"], inputs[i % len(inputs)])
            interpreter.invoke()
        runners[name] = (interpreter, source["index"], inputs)
    times: dict[str, list[list[float]]] = {name: [] for name in contents}
    per_slice = math.ceil(invocations / rounds)
    for _ in range(rounds):
        for name, (interpreter, index, inputs) in runners.items():
            slice_times = []
            for i in range(per_slice):
                interpreter.set_tensor(index, inputs[i % len(inputs)])
                began = time.perf_counter()
                interpreter.invoke()
                slice_times.append(time.perf_counter() - began)
            times[name].append(slice_times)
    return {
        name: Timing(
            median_us=1e6 * float(np.median(np.concatenate(slices))),
            round_medians_us=tuple(1e6 * float(np.median(s)) for s in slices),
        )
        for name, slices in times.items()
    }


def sparse_tensors(content: bytes) -> dict[str, int]:
    """How many tensors the file stores sparse, and how many of those in blocks.

    A block-sparse FullyConnected weight is what TFLite's fast sparse kernel runs; a sparse
    tensor without blocks is densified when the model is loaded.
    """
    details = _peek(content).get_tensor_details()
    stored = [d["sparsity_parameters"] for d in details if d.get("sparsity_parameters")]
    return {
        "sparse": len(stored),
        "block_sparse": sum(1 for p in stored if len(p.get("block_map", ())) > 0),
    }


def input_spec(content: bytes) -> dict:
    """The input's dtype, shape (-1: any batch) and quantization, as plain JSON values."""
    details = _peek(content).get_input_details()[0]
    scale, zero_point = details["quantization"]
    return {
        "dtype": np.dtype(details["dtype"]).name,
        "shape": [int(d) for d in details["shape_signature"]],
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def to_input(pixels: np.ndarray, details: dict) -> np.ndarray:
    """Raw pixels as the input tensor wants them (quantized when it is an integer tensor)."""
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(pixels, dtype=dtype)
    scale, zero_point = details["quantization"]
    values = np.asarray(pixels, np.float32)
    if scale:
        values = np.round(values / scale + zero_point)
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def from_output(values: np.ndarray, details: dict) -> np.ndarray:
    """An output tensor as float32 (dequantized when it is an integer tensor)."""
    scale, zero_point = details["quantization"]
    if np.issubdtype(details["dtype"], np.integer) and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)


def _peek(content: bytes) -> Interpreter:
    # Builtin kernels: reading the file's structure needs no delegate.
    return Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
