"""Distribution strategies by name: ``default``, ``mirrored``, ``multi_worker``, ``tpu``.

The global batch size is what the hyperparameters say; each replica gets
``batch_size / replicas`` examples and gradients are summed across replicas, so a run gives the
same updates (up to floating point) on any number of replicas with the same learning rate.
"""

from __future__ import annotations

from collections.abc import Callable

from lth_tf.errors import LthError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(logical_devices: int) -> None:
    """Splits the host CPU into ``logical_devices`` devices, so multi-replica code runs on CPU.

    Must run before TensorFlow initialises its devices (before any op runs).
    """
    import tensorflow as tf

    if logical_devices < 1:
        raise LthError(f"--virtual_cpus must be at least 1, got {logical_devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_devices
        )
    except RuntimeError as error:
        raise LthError(
            f"--virtual_cpus: TensorFlow already started its devices ({error})"
        ) from None


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


def _tpu(tpu: str | None):
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise LthError(
            f"--strategy=tpu: cannot reach TPU {tpu or '(auto)'}: {error}; pass --tpu=NAME"
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
