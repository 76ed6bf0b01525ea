"""Training on several replicas gives the one-device run: mirrored on virtual CPUs, and
multi_worker from TF_CONFIG. Both need a process of their own (the CPU is split before
TensorFlow starts; each worker is a process), so they run ``python -m pipelines.imp``.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir
from lth_tf.training.strategies import make_strategy
from tests.helpers import ROOT, free_port, make_images, run_pipeline


def test_two_replica_mirrored_run_on_virtual_cpus(idx_dir, tmp_path):
    result = run_pipeline(
        "pipelines.imp",
        "--model=lenet300_100",
        "--dataset=mnist",
        "--noprogress",
        f"--data_dir={idx_dir}",
        "--rounds=2",
        "--iterations=40",
        "--strategy=mirrored",
        "--virtual_cpus=2",
        f"--output_dir={tmp_path}",
        "--experiment_name=mirrored",
    )
    assert result.returncode == 0, result.stderr
    assert len(io.read_csv(tmp_path / "mirrored" / "results.csv")) == 3
    rates = {"fc1/kernel": 0.2, "fc2/kernel": 0.2, "output/kernel": 0.1}
    for pruning_round in range(3):
        masks = io.read_npz(tmp_path / "mirrored" / f"round_{pruning_round:02d}" / "masks.npz")
        weights = io.read_npz(tmp_path / "mirrored" / f"round_{pruning_round:02d}" / "weights.npz")
        for name, rate in rates.items():
            assert abs(masks[name].sum() - masks[name].size * (1 - rate) ** pruning_round) <= 1
            assert np.all(weights[name][masks[name] == 0] == 0)


SMALL_RUN = [
    "--model=lenet300_100",
    "--dataset=mnist",
    "--noprogress",
    "--notensorboard",
    "--rounds=1",
    "--iterations=150",
    "--eval_every=50",
]


def _relative_distance(a: dict, b: dict) -> float:
    """|a - b| / |a| over every variable of two weight files together."""
    difference = sum(float(np.sum((a[key] - b[key]) ** 2)) for key in a)
    return math.sqrt(difference / sum(float(np.sum(a[key] ** 2)) for key in a))


def test_two_replicas_train_the_single_device_run(idx_dir, tmp_path):
    """Same global batches, summed gradients: mirrored on 2 CPUs trains the 1-device run.

    Not bit for bit: the all-reduce adds the two halves' gradients in another order than one
    device sums the whole batch, so the weights differ in the last bits at first, and Adam
    (which divides by the root of tiny second moments) grows that to about 0.3% of the weights'
    norm in 150 iterations here. Masks IMP derives are the same counts per layer; only weights
    within that difference of the threshold swap places. float16 compute rounds every
    activation, so it lands further off (about 12% of the norm after 150 iterations) and trains
    as well; on CPUs without float16 arithmetic it runs about 20x slower, so its run is short
    and on a small dataset.
    """
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}"]
    mirrored_flags = ["--strategy=mirrored", "--virtual_cpus=2"]
    # float16 is emulated on a CPU: its run (round 0's first 50 iterations, against the single
    # run's) takes a small dataset, 120 validation images rather than 5,000 to evaluate.
    x_train, y_train = make_images(1200, seed=1)
    x_test, y_test = make_images(200, seed=2)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    short = [f"--dataset=npz:{small}", "--rounds=0", "--iterations=50"]
    runs = {
        "single": flags,
        "mirrored": [*flags, *mirrored_flags],
        "single_small": [*flags, *short],
        "mirrored_float16": [*flags, *mirrored_flags, "--mixed_precision=float16", *short],
    }
    for name, run_flags in runs.items():
        result = run_pipeline("pipelines.imp", *run_flags, f"--experiment_name={name}")
        assert result.returncode == 0, result.stderr
    single = ExperimentDir(tmp_path / "single")
    mirrored = ExperimentDir(tmp_path / "mirrored")
    # Round 0, the dense network trained both ways (round 1 starts from masks that differ).
    dense = io.read_npz(single.weights(0))
    assert _relative_distance(dense, io.read_npz(mirrored.weights(0))) <= 0.03
    mine, theirs = io.read_npz(single.masks(1)), io.read_npz(mirrored.masks(1))
    for key in mine:
        assert mine[key].sum() == theirs[key].sum()
        assert np.mean(mine[key] == theirs[key]) >= 0.99, key
    for a, b in zip(single.read_results(), mirrored.read_results(), strict=True):
        assert a.percent_remaining == b.percent_remaining
        assert abs(a.test_accuracy - b.test_accuracy) <= 0.05
    (at_50,) = io.read_csv(ExperimentDir(tmp_path / "single_small").evaluations(0))
    (half,) = io.read_csv(ExperimentDir(tmp_path / "mirrored_float16").evaluations(0))
    assert int(half["iteration"]) == 50 and float(half["val_accuracy"]) > 0.3  # it learns
    assert abs(float(half["val_accuracy"]) - float(at_50["val_accuracy"])) <= 0.1


def test_multi_worker_run_from_tf_config(idx_dir, tmp_path):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    flags = [*SMALL_RUN, f"--data_dir={idx_dir}", f"--output_dir={tmp_path}", "--tensorboard"]
    # Worker 1 times its calls 50x slower than worker 0: under --steps_per_execution=auto
    # (the default) both must still run the same iterations per call, or the run hangs.
    flags += ["--strategy=multi_worker", "--callback=tests.skewed_clock_callback:SkewedClock"]
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CONFIG=json.dumps(config))
        command = [sys.executable, "-m", "pipelines.imp", *flags, "--experiment_name=mw"]
        workers.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        )
    for worker in workers:
        try:
            _, stderr = worker.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for each in workers:
                each.kill()
            raise AssertionError("the workers did not finish in 300 s (a hang?)") from None
        assert worker.returncode == 0, stderr
    chief, other = tmp_path / "mw", tmp_path / ".workers" / "worker_1" / "mw"
    assert len(io.read_csv(chief / "results.csv")) == 2
    assert (chief / "tensorboard").is_dir() and not (other / "tensorboard").exists()
    # The workers are replicas of one model: they end every round with the same weights.
    for pruning_round in range(2):
        a = io.read_npz(chief / f"round_{pruning_round:02d}" / "weights.npz")
        b = io.read_npz(other / f"round_{pruning_round:02d}" / "weights.npz")
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_unreachable_tpu_is_one_line():
    # What `python -m pipelines.imp --strategy=tpu --tpu=ADDRESS` gets (the wrapper prints it).
    address = f"grpc://localhost:{free_port()}"
    with pytest.raises(LthError) as caught:
        make_strategy("tpu", address)
    message = str(caught.value)
    assert message.splitlines() == [message]
    assert f"--tpu={address}: nothing answers there" in message


_MIRRORED_SGD = """
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tf_keras
from lth_tf.training.optimizers import FusedSGD
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
images = tf.constant(np.linspace(-1, 1, 64, dtype=np.float32).reshape(16, 4))
found = {}
for optimizer_class in (FusedSGD, tf_keras.optimizers.SGD):
    with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
        optimizer = optimizer_class(0.1, momentum=0.9)
        optimizer.build(model.trainable_variables)
    batches = strategy.experimental_distribute_values_from_function(
        lambda context: images[context.replica_id_in_sync_group :: 2]
    )

    @tf.function
    def step(batch):
        def replica(batch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(batch) ** 2)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        strategy.run(replica, args=(batch,))

    for _ in range(3):
        step(batches)
    found[optimizer_class] = [
        [copy.numpy() for copy in variable.values]
        for variable in model.trainable_variables + optimizer.momentums
    ]
for fused, keras in zip(found[FusedSGD], found[tf_keras.optimizers.SGD], strict=True):
    # Bit for bit on x86; a build that fuses the kernel's multiply-add may round otherwise.
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(fused, keras, strict=True))
    assert np.array_equal(fused[0], fused[1]) and np.any(fused[0] != 0)
print("every replica's copy, as Keras's SGD")
"""


def test_the_fused_sgd_updates_every_replicas_copy_as_kerass_sgd_does():
    """Under MirroredStrategy (two virtual CPUs, a process of its own) the kernel updates each
    replica's copy of the weights and momenta, to what Keras's own SGD gives."""
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SGD],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "every replica's copy, as Keras's SGD" in result.stdout
