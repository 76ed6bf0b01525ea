"""Distribution strategies by name: ``default``, ``mirrored``, ``multi_worker``, ``tpu``.

The global batch size is what the hyperparameters say; each replica trains on
``batch_size / replicas`` examples of the same global batch and gradients are summed across
replicas, so a run gives the same updates (up to floating point) on any number of replicas with
the same learning rate: scaling out changes the speed, not the experiment.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable

from lth_tf.errors import LthError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Logical CPUs beyond a few per core only add replicas that wait for each other (and a huge
# number would have TensorFlow build a device list of it): 64, or 4 per core on a larger host.
MAX_VIRTUAL_CPUS = max(64, 4 * (os.cpu_count() or 1))


def check_virtual_cpus(logical_devices: int) -> None:
    """``--virtual_cpus`` is a count of 1 to :data:`MAX_VIRTUAL_CPUS`, checked before
    TensorFlow starts."""
    from lth_tf.config import check_number

    check_number(
        "--virtual_cpus",
        logical_devices,
        low=1,
        high=MAX_VIRTUAL_CPUS,
        integer=True,
        why=f"logical devices on {os.cpu_count()} cores",
    )


def split_cpu(logical_devices: int) -> None:
    """Splits the host CPU into ``logical_devices`` devices, so multi-replica code runs on CPU.

    Must run before TensorFlow initialises its devices (before any op runs).
    """
    check_virtual_cpus(logical_devices)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_devices
        )
    except RuntimeError as error:
        raise LthError(
            f"--virtual_cpus: TensorFlow already started its devices ({error})"
        ) from None


def device_description() -> str:
    """The hardware TensorFlow computes on, e.g. ``1x NVIDIA H100`` or
    ``CPU (2 cores, Intel(R) Xeon(R) Processor, x86_64)``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)}x {details.get('device_name', 'GPU')}"
    model = _cpu_model_name()
    named = f"{model}, " if model else ""
    return f"CPU ({os.cpu_count()} cores, {named}{platform.machine()})"


def _cpu_model_name() -> str:
    """The processor's name, e.g. ``Intel(R) Xeon(R) Processor`` (``/proc/cpuinfo`` on Linux, where
    ``platform.processor()`` is empty or the architecture): speed figures from two machines
    differ by the processor, so a record names it. Empty where the system does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    processor = platform.processor()
    return "" if processor == platform.machine() else processor


def _default():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    # Without GPUs, mirror over the (possibly virtual) CPUs instead of a single one.
    devices = [d.name for d in gpus] if gpus else [d.name for d in cpus]
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker():
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raises a clear error unless ``grpc://HOST:PORT`` accepts a connection."""
    host, _, port = address.removeprefix("grpc://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise LthError(
            f"--tpu={address}: nothing answers there ({error}); check the TPU's address and "
            "that it is running"
        ) from None


def _tpu(tpu: str | None):
    import tensorflow as tf

    if tpu and tpu.startswith("grpc://"):
        _probe(tpu)  # TensorFlow would wait on an unreachable address for good
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    # OSError: resolving a TPU name asks the cloud metadata server, unreachable off-cloud.
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:
        raise LthError(
            f"--strategy=tpu: cannot reach TPU {tpu or '(auto)'}: {error}; pass --tpu=NAME "
            "(a Cloud TPU name, or grpc://HOST:8470)"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


_BUILDERS: dict[str, Callable[..., object]] = {
    "default": lambda tpu: _default(),
    "mirrored": lambda tpu: _mirrored(),
    "multi_worker": lambda tpu: _multi_worker(),
    "tpu": _tpu,
}


def check_strategy_name(name: str) -> None:
    if name not in STRATEGIES:
        raise LthError(
            f"--strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        )


def make_strategy(name: str, tpu: str | None = None):
    """The ``tf.distribute.Strategy`` called ``name``.

    >>> make_strategy("default").num_replicas_in_sync
    1
    """
    check_strategy_name(name)
    return _BUILDERS[name](tpu)


def precision_for(strategy_name: str, requested: str | None) -> str | None:
    """The mixed precision a run uses: as requested, else bfloat16 on TPUs, else none.

    >>> precision_for("tpu", None), precision_for("mirrored", "float16")
    ('bfloat16', 'float16')
    """
    if requested is not None:
        if requested not in ("float16", "bfloat16", "float32"):
            raise LthError(
                f"--mixed_precision: unknown {requested!r}; choose float16 (GPUs), bfloat16 "
                "(TPUs, CPUs) or float32"
            )
        return None if requested == "float32" else requested
    return "bfloat16" if strategy_name == "tpu" else None


def worker_output_dir(strategy, output_dir: str) -> str:
    """``output_dir`` for the chief (or a single worker); a private folder for other workers.

    Every worker of a multi-worker run trains every round in step, so every worker needs a
    full experiment directory to resume from; only the chief's is the result.
    """
    if strategy.extended.should_checkpoint:
        return output_dir
    resolver = strategy.cluster_resolver
    return os.path.join(output_dir, ".workers", f"{resolver.task_type}_{resolver.task_id}")


def agreed_seconds(strategy, seconds: float) -> float:
    """The mean of every worker's ``seconds`` under ``MultiWorkerMirroredStrategy``, the same
    number on each; ``seconds`` itself under any other strategy.

    Each worker times its own compiled calls, and what a timing decides (iterations per call
    under ``--steps_per_execution=auto``, XLA or not under ``--jit_compile=auto``) must be the
    same on every worker: a worker that runs 5 iterations in a call while another runs 4 waits
    for all-reduces the other never starts, and the run hangs. Every worker calls this at the
    same point (it is an all-reduce itself).

    >>> agreed_seconds(make_strategy("default"), 0.25)
    0.25
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return seconds
    local = strategy.run(lambda: tf.constant(seconds, tf.float32))
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None))
