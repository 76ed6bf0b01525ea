"""The guest side of :mod:`lth_tf.export.arm`: runs inside the emulated arm64 Python.

It imports only the standard library, NumPy and ``ai_edge_litert`` (the guest Python has no
TensorFlow and no lth_tf). The host calls it as a script with one command:

  arm_guest.py smoke                          # an Interpreter runs a one-op ADD model
  arm_guest.py kernels MODEL RESOLVER X.npy   # invoke once, print where the library is mapped
  arm_guest.py run JOB_DIR                    # JOB_DIR/job.json in, outputs + results.json out

Before each file's work it prints ``RUNNING <name>`` on stdout, so that the host can name the
file that was running when the emulator crashed.

>>> main(["smoke"])  # doctest: +SKIP
smoke test OK: aarch64 python 3.11.2 numpy 2.2.6 ai_edge_litert 2.3.0
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

# The shared library that holds XNNPACK's micro-kernels; the host maps its symbols.
KERNEL_LIBRARY = "libpywrap_litert_common.so"


def open_interpreter(model_path: str, resolver: str) -> Interpreter:
    """LiteRT's default options with one thread, and the op resolver the host chose."""
    return Interpreter(
        model_path=model_path,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType[resolver],
    )


def announce(name: str) -> None:
    # Flushed at once: after a segfault, stdout is all the host has to name the file.
    print(f"RUNNING {name}", flush=True)


def smoke() -> None:
    """Builds a one-op ADD model and runs it: creating an Interpreter runs LiteRT's CPU
    detection (which crashes without the fake ARM /proc and /sys) and applies XNNPACK."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    model.operatorCodes = [code]
    tensors = []
    for name in ("a", "b", "sum"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type = [1, 8], schema.TensorType.FLOAT32
        tensor.buffer, tensor.name = 0, name
        tensors.append(tensor)
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0, 1], [2]
    operator.builtinOptionsType = schema.BuiltinOptions.AddOptions
    operator.builtinOptions = schema.AddOptionsT()
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0, 1], [2], [operator]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")

    interpreter = Interpreter(model_content=bytes(builder.Output()), num_threads=1)
    interpreter.allocate_tensors()
    values = np.arange(8, dtype=np.float32).reshape(1, 8)
    for details in interpreter.get_input_details():
        interpreter.set_tensor(details["index"], values)
    interpreter.invoke()
    total = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if not np.array_equal(total, 2 * values):
        sys.exit(f"smoke test failed: 2 * {values.tolist()} gave {total.tolist()}")
    import ai_edge_litert

    print(
        f"smoke test OK: {platform.machine()} python {platform.python_version()} numpy "
        f"{np.__version__} ai_edge_litert {ai_edge_litert.__version__}"
    )


def kernels(model_path: str, resolver: str, example_path: str) -> None:
    """Invokes the model once on the example and prints the kernel library's mappings."""
    interpreter = open_interpreter(model_path, resolver)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    interpreter.set_tensor(source["index"], np.load(example_path))
    interpreter.invoke()
    with open("/proc/self/maps") as maps:
        for line in maps:
            if KERNEL_LIBRARY in line:
                print("MAP", line.strip())


def run(job_dir: str) -> None:
    """Outputs for each file's batch, then interleaved batch-1 timings; see job.json's keys
    in :func:`lth_tf.export.arm.run_on_arm`."""
    with open(os.path.join(job_dir, "job.json")) as handle:
        job = json.load(handle)
    results: dict[str, dict] = {}
    timed = {}
    for entry in job["files"]:
        name = entry["name"]
        announce(name)
        batch = np.load(entry["input"])
        interpreter = open_interpreter(entry["model"], entry["resolver"])
        source = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(source["index"], list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()
        target = interpreter.get_output_details()[0]
        np.save(entry["output"], interpreter.get_tensor(target["index"]))
        results[name] = {"round_medians_us": [], "times_us": []}
        if job["rounds"]:
            # A fresh interpreter at batch 1: the same graph kernels_that_ran sees.
            single = open_interpreter(entry["model"], entry["resolver"])
            single.allocate_tensors()
            index = single.get_input_details()[0]["index"]
            examples = [batch[i : i + 1] for i in range(len(batch))]
            timed[name] = (single, index, examples)

    for name, (single, index, examples) in timed.items():
        announce(name)
        for i in range(job["warmup"]):
            single.set_tensor(index, examples[i % len(examples)])
            single.invoke()
    turns = dict.fromkeys(timed, 0)  # each file cycles through its examples across rounds
    for _ in range(job["rounds"]):
        for name, (single, index, examples) in timed.items():
            announce(name)
            times = []
            for _ in range(job["invocations"]):
                single.set_tensor(index, examples[turns[name] % len(examples)])
                turns[name] += 1
                began = time.perf_counter()
                single.invoke()
                times.append(1e6 * (time.perf_counter() - began))
            results[name]["round_medians_us"].append(statistics.median(times))
            results[name]["times_us"].extend(times)
    with open(os.path.join(job_dir, "results.json"), "w") as handle:
        json.dump(results, handle)


def main(argv: list[str]) -> None:
    command, arguments = argv[0], argv[1:]
    if command == "smoke":
        smoke()
    elif command == "kernels":
        kernels(*arguments)
    elif command == "run":
        run(*arguments)
    else:
        sys.exit(f"unknown command {command!r}: use smoke, kernels or run")


if __name__ == "__main__":
    main(sys.argv[1:])
