"""How fast IMP trains here, against plain Keras: ``python -m benchmarks.imp_throughput``.

Measures, in one process, on the same in-memory ``tf.data`` stream
(:func:`lth_tf.data.pipeline.training_batches`):

==================  ==========================================================================
``fit``             plain ``tf_keras`` ``fit`` of the unwrapped model, default settings
``fit_xla``         the same with ``jit_compile=True`` and ``steps_per_execution``
``imp_round``       one IMP training round of this project, a tenth of the weights left, as a run
                    trains it (``--jit_compile=auto``: XLA if it times faster here; the
                    TF-MOT-wrapped model, masked gradients, the unwrapped forward pass)
``imp_round_remask``  the same with TF-MOT's own per-call re-masking: what the wrapper costs
``imp_round_per_step``  ``imp_round`` under XLA with one program per step, not one per chunk
``overhead``        wall time of a whole short IMP run (evaluations, mask updates, rewinding,
                    checkpoints, TensorBoard logs) / the sum of its rounds' training time
``pipeline``        (only when ``--only`` names it) the conv-speed issue's own protocol: the
                    marginal wall time per iteration of ``python -m pipelines.imp --rounds=0``
                    between whole runs of ``--pipeline_iterations`` (20 and 120: start-up
                    and the one evaluation cancel out), each pair followed by the
                    marginal time of plain ``fit`` and ``fit_xla`` (those ``--only`` names)
                    and of the PyTorch peer from runs of as many iterations (a run this
                    short trains without XLA unless ``--jit_compile`` says otherwise):
                    ``--only=pipeline,fit,fit_xla`` is the issue's whole comparison
==================  ==========================================================================

Each throughput is the median over ``--repeats`` timed runs of ``--steps`` iterations (by
default as many as take about ``--seconds``), after one untimed warm-up run that traces and
compiles. ``--model`` takes several models, comma-separated: each gets its table, then one
summary compares every model's IMP round with its best plain ``fit`` (XLA on or off); each
model's figures are written as JSON.

Run: ``python -m benchmarks.imp_throughput`` (lenet300_100, resnet20 and a MobileNetV2-style
net on Fashion-MNIST, each at its recipe's batch: 128 for resnet20, 60 for the others), or one
model:
``python -m benchmarks.imp_throughput --model=lenet300_100 --only=fit,fit_xla,imp_round``.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from absl import flags

from pipelines import common
from pipelines.common import setup_logging, start_tensorflow_quietly, user_errors_as_one_line

FLAGS = flags.FLAGS
MEASUREMENTS = (
    "fit",
    "fit_xla",
    "imp_round",
    "imp_round_remask",
    "imp_round_per_step",
    "overhead",
    "pipeline",
)
# Whole pipeline runs in subprocesses: minutes, and for a fast model mostly start-up noise.
OPT_IN = ("pipeline",)
# The models benchmarks.torch_peer writes in PyTorch.
TORCH_PEERS = ("resnet20", "lenet300_100")

flags.DEFINE_string(
    "model",
    "lenet300_100,resnet20,tests.user_model:mobilenet_v2_style",
    "Models to benchmark, comma-separated (what pipelines.imp's --model takes).",
)
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset (loaded as pipelines.imp loads it).")
flags.DEFINE_integer(
    "batch_size",
    None,
    "Global batch size (default: the model's recipe's, as pipelines.imp takes it: 128 for "
    "resnet20, 60 for lenet300_100 and for a user's model under the default recipe).",
)
flags.DEFINE_integer(
    "steps", None, "Training iterations per timed run (default: about --seconds' worth)."
)
flags.DEFINE_float("seconds", 8.0, "Length of a timed run when --steps is not given.")
flags.DEFINE_integer(
    "repeats",
    5,
    "Timed runs per measurement (for pipeline: pairs of whole runs); the median is reported.",
)
flags.DEFINE_integer("steps_per_execution", 100, "Iterations per compiled call (fit_xla, IMP).")
# Its own --steps_per_execution above: a benchmark times a fixed count.
common.define_execution_flags(
    "data_dir",
    "jit_compile",
    jit_compile="XLA for the IMP rounds (fit_xla is always XLA, fit never): auto (the default) "
    "decides as a paper-length run would, by timing both; --jit_compile or --nojit_compile "
    "force it.",
)
flags.adopt_module_key_flags(common)
flags.DEFINE_string(
    "augment",
    "none",
    "Augmentation of every measurement's batches (none, cifar): none by default, as the "
    "PyTorch peer trains, whatever the model's paper recipe says (resnet20's is cifar).",
)
flags.DEFINE_float("remaining", 0.1, "Fraction of weights left for the IMP round (about 0.1).")
flags.DEFINE_integer("overhead_rounds", 10, "Rounds after round 0 in the overhead run.")
flags.DEFINE_string("overhead_iterations", "2ep", "Training length per overhead round.")
flags.DEFINE_string(
    "overhead_eval_every",
    None,
    "Evaluation spacing of the overhead run, e.g. 500it (default: the model's --eval_every=auto).",
)
flags.DEFINE_integer("overhead_repeats", 3, "Whole IMP runs timed for the overhead (median).")
flags.DEFINE_string(
    "pipeline_iterations",
    "20,120",
    "The two run lengths of the pipeline measurement, SHORT,LONG iterations.",
)
flags.DEFINE_string(
    "only",
    None,
    f"Comma-separated subset of {','.join(MEASUREMENTS)} (default: all but {','.join(OPT_IN)}).",
)
flags.DEFINE_string(
    "mixed_precision",
    None,
    "float16 or bfloat16: every measurement computes in 16 bits (fit under the Keras policy, "
    "IMP as --mixed_precision does). Default: float32.",
)
flags.DEFINE_string(
    "torch_python",
    None,
    "A Python interpreter with PyTorch (e.g. a venv's bin/python): benchmarks.torch_peer runs "
    f"there for {' and '.join(TORCH_PEERS)}, each of its timed runs right after one of the IMP "
    "round's, and the summary adds IMP / PyTorch.",
)
flags.DEFINE_bool(
    "interleave_fit",
    True,
    "Beside imp_round and pipeline, time fit and fit_xla from processes of their own, each "
    "run right after one of the round's or the pipeline's (as the PyTorch peer's are); "
    "--nointerleave_fit times them first, in this process, with no extra processes to start "
    "(what the GPU check does).",
)
flags.DEFINE_enum(
    "serve",
    None,
    ["fit", "fit_xla"],
    "Internal: serve this measurement of --model to a benchmark that runs it beside its IMP "
    "round (prints 'ready', then the seconds of each N iterations read from stdin).",
)
flags.DEFINE_string(
    "output",
    None,
    "JSON file (default: benchmarks/results/<model>-<dataset>-<device>.json); with several "
    "models, {model} in it stands for each.",
)


def median_images_per_second(
    run: Callable[[int], float | None],
    steps: int | None,
    batch: int,
    repeats: int,
    peers: dict[str, Peer] | None = None,
) -> dict:
    """Runs ``run`` once untimed, then ``repeats`` timed runs of ``steps`` iterations (None:
    about ``--seconds`` of them, from the untimed run's pace); images/s of each timed run. A
    ``run`` that returns its own training seconds is timed by them, else by the wall clock.
    Each timed run is followed by one of every one of ``peers`` of as many iterations, in turn
    (``peers``: each one's ``images_per_second`` and ``runs``)."""
    peers = peers or {}
    warmup = min(steps or 20, 200)
    run(warmup)
    if steps is None:
        began = time.perf_counter()
        run(warmup)
        pace = (time.perf_counter() - began) / warmup
        steps = max(10, min(5000, round(FLAGS.seconds / pace)))
    rates: list[float] = []
    peer_rates: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeats):
        began = time.perf_counter()
        seconds = run(steps)
        rates.append(steps * batch / (seconds or time.perf_counter() - began))
        for name, peer in peers.items():
            peer_rates[name].append(steps * batch / peer.seconds(steps))
    result = {"images_per_second": statistics.median(rates), "runs": rates, "steps": steps}
    if peers:
        result["peers"] = {
            name: {"images_per_second": statistics.median(r), "runs": r, "steps": steps}
            for name, r in peer_rates.items()
        }
    return result


def benchmark_fit(spec, data, training, steps, repeats, xla: bool) -> dict:
    run = fit_runner(spec, data, training, xla)
    return median_images_per_second(run, steps, training.batch_size, repeats)


def fit_runner(spec, data, training, xla: bool) -> Callable[[int], float]:
    """A plain ``tf_keras`` ``fit`` of ``spec``'s network, as a user would run it: ``run(n)``
    trains n iterations in one epoch and returns the epoch's seconds."""
    import tf_keras

    from lth_tf.data.pipeline import training_batches
    from lth_tf.steps import iterations_per_epoch
    from lth_tf.training.optimizers import make_optimizer
    from lth_tf.training.precision import mixed_precision_policy

    tf_keras.utils.set_random_seed(training.seed)
    # Under mixed_float16, compile wraps the optimizer in dynamic loss scaling itself.
    with mixed_precision_policy(FLAGS.mixed_precision):
        model = spec.build(data.input_shape, data.num_classes)
    extra = {"jit_compile": True, "steps_per_execution": FLAGS.steps_per_execution} if xla else {}
    # The optimizer knows no dataset size: a schedule in epochs (resnet20's) is resolved first.
    per_epoch = iterations_per_epoch(len(data.train_labels), training.batch_size)
    model.compile(
        optimizer=make_optimizer(training.schedule_in_iterations(per_epoch), fused=False),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **extra,
    )
    stream = training_batches(
        data.train_images,
        data.train_labels,
        training.batch_size,
        seed=training.seed,
        augment=training.augment,
    )

    class EpochTimer(tf_keras.callbacks.Callback):
        """The epoch's own seconds: after fit returns, tearing down its tf.data iterator
        here took up to 2.5 s more at random (a fixed cost of each fit call, not of its
        iterations); epoch hooks only, so no per-batch call slows fit."""

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.began

    def run(n: int) -> float:
        timer = EpochTimer()
        model.fit(stream, steps_per_epoch=n, epochs=1, verbose=0, callbacks=[timer])
        return timer.seconds

    return run


def paper_run_iterations(hparams, data) -> int:
    """Iterations of the whole IMP run the hyperparameters describe (every round)."""
    from lth_tf.models import resolve_steps

    resolved = resolve_steps(hparams, len(data.train_labels))
    return resolved.iterations * (hparams.pruning.rounds + 1)


def benchmark_imp_round(
    spec,
    data,
    hparams,
    steps,
    repeats,
    remask: bool,
    whole_chunk: bool = True,
    peers: dict[str, Peer] | None = None,
) -> dict:
    import math

    from lth_tf.builder import build_run
    from lth_tf.execution import Execution
    from lth_tf.pruning.masks import layerwise_masks, percent_remaining

    # The network and trainer exactly as an IMP run builds them (weight decay included).
    built = build_run(
        hparams,
        data,
        execution=Execution(
            # As a paper-length run decides (timed on the dense network); per step: XLA's.
            jit_compile=FLAGS.jit_compile if whole_chunk else True,
            steps_per_execution=FLAGS.steps_per_execution,
            mixed_precision=FLAGS.mixed_precision,
            xla_whole_chunk=whole_chunk,
        ),
        remask_every_step=remask,
        planned_iterations=paper_run_iterations(hparams, data),
    )
    pruned, trainer = built.pruned, built.trainer
    # The round whose fc sparsity leaves about --remaining of the weights.
    rate = hparams.pruning.rates.fc or hparams.pruning.rates.conv
    pruned.set_round(round(math.log(FLAGS.remaining) / math.log(1 - rate)))
    masks = layerwise_masks(
        {name: w.numpy() for name, w in pruned.weights.items()},
        pruned.get_masks(),
        pruned.target_sparsities(),
    )
    pruned.set_masks(masks)
    pruned.apply_masks()
    chunk = FLAGS.steps_per_execution

    def run(n: int) -> None:
        # As lth_tf.training.loop.train does: a fresh stream, then compiled chunks of iterations.
        iterator = trainer.batches_from(0)
        for start in range(0, n, chunk):
            trainer.train_steps(iterator, min(chunk, n - start))

    result = median_images_per_second(run, steps, hparams.training.batch_size, repeats, peers)
    result["percent_remaining"] = percent_remaining(masks)
    result["pruned_weights_nonzero"] = pruned.pruned_nonzero()
    result["xla_training"] = trainer.xla_training
    result["xla_timing"] = trainer.xla_timing
    return result


def benchmark_overhead(hparams, data, repeats) -> dict:
    from lth_tf.execution import Execution
    from lth_tf.lottery.imp import run_imp
    from lth_tf.models import resolve_steps

    ratios, walls, trains = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            experiment = run_imp(
                hparams,
                tmp,
                "overhead",
                # As pipelines.imp runs it: TensorBoard logs on.
                Execution(
                    jit_compile=True, show_progress=False, mixed_precision=FLAGS.mixed_precision
                ),
                data=data,
            )
            wall = time.perf_counter() - began
            train = sum(row.train_seconds for row in experiment.read_results())
        walls.append(wall)
        trains.append(train)
        ratios.append(wall / train)
    return {
        "overhead": statistics.median(ratios),
        # The first run also pays the process's one-time costs (autograph, matplotlib import).
        "overheads": ratios,
        "wall_seconds": walls,
        "train_seconds": trains,
        "rounds": hparams.pruning.rounds + 1,
        "iterations": hparams.training.iterations,
        "eval_every": resolve_steps(hparams, len(data.train_labels)).eval_every,
    }


def pipeline_iterations() -> tuple[int, int]:
    """``--pipeline_iterations`` as (short, long); a malformed value is one line."""
    from lth_tf.errors import LthError

    try:
        short, long = (int(part) for part in FLAGS.pipeline_iterations.split(","))
    except ValueError:
        short = long = 0
    if not 0 < short < long:
        raise LthError(
            f"--pipeline_iterations={FLAGS.pipeline_iterations}: give two run lengths, "
            "SHORT,LONG with 0 < SHORT < LONG, e.g. 20,120"
        )
    return short, long


def mixed_precision_flags() -> list[str]:
    """This benchmark's ``--mixed_precision``, for a subprocess that computes as it does."""
    return [f"--mixed_precision={FLAGS.mixed_precision}"] if FLAGS.mixed_precision else []


def pipeline_command(model: str, iterations: int, batch: int, output_dir: str) -> list[str]:
    """``python -m pipelines.imp`` for one round 0 of ``iterations``, evaluated once, at its
    end (so that a short and a long run differ by their training alone), on this benchmark's
    data and numerics, with the pipeline's defaults for everything else."""
    passed = [
        FLAGS[name].serialize() for name in ("data_dir", "jit_compile") if FLAGS[name].present
    ]
    return [
        sys.executable,
        "-m",
        "pipelines.imp",
        f"--model={model}",
        f"--dataset={FLAGS.dataset}",
        f"--batch_size={batch}",
        f"--augment={FLAGS.augment}",
        "--rounds=0",
        f"--iterations={iterations}it",
        f"--eval_every={iterations}it",
        "--rewind=0it",  # the default (resnet20's 500it) lies past a 20-iteration round
        f"--output_dir={output_dir}",
        *mixed_precision_flags(),
        *passed,
    ]


def pipeline_seconds(model: str, iterations: int, batch: int) -> float:
    """Wall seconds of one whole :func:`pipeline_command` run (start-up, data, training, the
    evaluation, its files), in a fresh directory."""
    import subprocess

    from lth_tf.errors import LthError

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        done = subprocess.run(
            pipeline_command(model, iterations, batch, tmp), capture_output=True, text=True
        )
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-5000:])
        raise LthError(
            f"pipelines.imp --model={model} --iterations={iterations}it failed in the pipeline "
            f"measurement (exit {done.returncode}; its error is above)"
        )
    return seconds


def benchmark_pipeline(model: str, batch: int, repeats: int, peers: dict[str, Peer]) -> dict:
    """The conv-speed issue's protocol, ``repeats`` times: the marginal wall time per
    iteration of ``pipelines.imp --rounds=0`` between a short and a long whole run, then each
    peer's (plain ``fit``, ``fit_xla``, the PyTorch loop) between its runs of as many
    iterations, right after it."""
    short, long = pipeline_iterations()

    def marginal(seconds: Callable[[int], float]) -> float:
        # The long run first, then the short one: start-up and the one evaluation cancel out.
        return (seconds(long) - seconds(short)) / (long - short)

    marginals: list[float] = []
    peer_marginals: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeats):
        marginals.append(marginal(lambda n: pipeline_seconds(model, n, batch)))
        for name, peer in peers.items():
            peer_marginals[name].append(marginal(peer.seconds))
    median = statistics.median(marginals)
    return {
        # None: the long runs took no longer than the short ones, start-up's noise swamped
        # the difference (the other measurements are still kept and written).
        "seconds_per_iteration": median if median > 0 else None,
        "marginals": marginals,
        "iterations": [short, long],
        "peers": {
            name: {
                "seconds_per_iteration": statistics.median(theirs),
                "marginals": theirs,
                # Pair by pair: each pipeline pair against the peer's right after it.
                "pair_ratios": [
                    p / m if m > 0 else None for m, p in zip(marginals, theirs, strict=True)
                ],
            }
            for name, theirs in peer_marginals.items()
        },
    }


class Peer:
    """A measurement serving in a process of its own: after its warm-up it prints ``ready``,
    then for each N read from stdin trains N iterations and prints their seconds. So
    ``seconds(n)`` runs there while this process waits, and its runs interleave with this
    benchmark's own, on the same machine, at the same moment (no drift of the machine's speed
    between the two sets of runs)."""

    def __init__(self, what: str, command: list[str], cwd: Path | None = None):
        import subprocess

        self._what = what
        self._process = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        from lth_tf.errors import LthError

        line = self._process.stdout.readline().strip()
        if not line or (what == "ready" and line != "ready"):
            self.close()
            raise LthError(f"{self._what} failed (see above)")
        return line

    def seconds(self, iterations: int) -> float:
        from lth_tf.errors import LthError

        try:
            self._process.stdin.write(f"{iterations}\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise LthError(f"{self._what} stopped (killed, or see above); rerun") from None
        return float(self._expect("seconds"))

    def close(self) -> None:
        if self._process.stdin:
            with contextlib.suppress(BrokenPipeError):  # it has stopped already
                self._process.stdin.close()
        self._process.wait(timeout=60)


def torch_peer(model: str, batch: int) -> Peer:
    """benchmarks.torch_peer (a plain PyTorch loop that re-masks after each step) serving in
    ``--torch_python``."""
    command = [
        FLAGS.torch_python,
        "-m",
        "benchmarks.torch_peer",
        "--serve",
        f"--model={model}",
        f"--batch_size={batch}",
        f"--remaining={FLAGS.remaining}",
        # Like for like: the peer computes in the 16 bits this benchmark does.
        *mixed_precision_flags(),
    ]
    # That Python has PyTorch, not necessarily this project: it imports the peer from here.
    repository = Path(__file__).resolve().parents[1]
    return Peer(f"benchmarks.torch_peer in {FLAGS.torch_python}", command, cwd=repository)


def fit_peer(model: str, name: str) -> Peer:
    """This benchmark's plain ``fit`` (``name``: fit or fit_xla) of ``model`` serving in a
    process of its own, with this run's flags: a user's fit, without the op determinism that
    IMP switches on in this process."""
    return Peer(f"the {name} peer", own_process_command(model, f"--serve={name}"))


@contextlib.contextmanager
def peers_beside(model: str, batch: int, names: list[str]) -> Iterator[dict[str, Peer]]:
    """The peers ``names`` (fit, fit_xla, torch_peer) of ``model`` serving while the block
    runs; torch_peer only with ``--torch_python`` and for a model it is written for."""
    peers: dict[str, Peer] = {}
    try:
        for name in names:
            if name in ("fit", "fit_xla"):
                peers[name] = fit_peer(model, name)
            elif FLAGS.torch_python and model in TORCH_PEERS:
                peers[name] = torch_peer(model, batch)
        yield peers
    finally:
        for peer in peers.values():
            peer.close()


PEER_NAMES = {"fit": "plain fit", "fit_xla": "fit_xla", "torch_peer": "PyTorch peer"}


def pipeline_line(p: dict) -> str:
    """The pipeline measurement in words: its marginal time, and each peer's beside it."""
    short, long = p["iterations"]
    line = f"pipelines.imp --rounds=0, marginal from {short} to {long} iterations: "
    seconds = p["seconds_per_iteration"]
    if seconds is None:
        return line + (
            "none (the long runs took no longer than the short ones: start-up noise); "
            "lengthen --pipeline_iterations"
        )
    line += f"{seconds:.4f} s/it"
    for name, peer in p["peers"].items():
        pairs = ", ".join(f"{r:.2f}" if r else "-" for r in peer["pair_ratios"])
        line += (
            f"; {PEER_NAMES[name]} {peer['seconds_per_iteration']:.4f} s/it: "
            f"{peer['seconds_per_iteration'] / seconds:.2f}x (pairs {pairs})"
        )
    if p["peers"]:
        line += " (medians; a ratio above 1.00x: the pipeline trains faster)"
    return line


def print_table(results: dict, baseline: float | None) -> None:
    # Throughputs in images/s; overhead and pipeline are figures of their own, below.
    rows = [
        name
        for name in (*MEASUREMENTS, "torch_peer")
        if name in results and name not in ("overhead", "pipeline")
    ]
    if rows:
        print(f"\n{'measurement':<18} {'images/s':>10} {'x fit':>7}")
    for name in rows:
        rate = results[name]["images_per_second"]
        ratio = f"{rate / baseline:6.2f}x" if baseline else ""
        print(f"{name:<18} {rate:>10,.0f} {ratio:>7}")
    if "imp_round" in results:
        timing = results["imp_round"]["xla_timing"] or {}
        chosen = "with" if results["imp_round"]["xla_training"] else "without"
        figures = ", ".join(f"{kind} {seconds:.3g} s/it" for kind, seconds in timing.items())
        why = f"--jit_compile=auto timed {figures}" if figures else "as --jit_compile says"
        print(f"imp_round trains {chosen} XLA ({why})")
    if "pipeline" in results:
        print(pipeline_line(results["pipeline"]))
    if "overhead" in results:
        o = results["overhead"]
        print(
            f"overhead of a {o['rounds']}-round x {o['iterations']} run "
            f"(eval every {o['eval_every']} iterations): {o['overhead']:.3f}x "
            f"(median of {', '.join(f'{r:.3f}' for r in o['overheads'])}; "
            f"wall {statistics.median(o['wall_seconds']):.1f} s, "
            f"training {statistics.median(o['train_seconds']):.1f} s)"
        )


def print_summary(every: dict[str, dict]) -> None:
    """One line per model: its IMP round against its best plain ``fit`` (XLA on or off), then
    the pipeline measurement of each model that has one."""
    names = ("fit", "fit_xla", "imp_round", "torch_peer")
    measured = {model: r for model, r in every.items() if any(n in r for n in names)}
    if measured:
        print(
            f"\n{'model':<40} {'fit':>8} {'fit_xla':>8} {'imp_round':>10} {'pytorch':>8} "
            f"{'IMP / best fit':>15} {'IMP / PyTorch':>14}"
        )
    for model, results in measured.items():
        rates = {name: results.get(name, {}).get("images_per_second") for name in names}
        fits = [rate for rate in (rates["fit"], rates["fit_xla"]) if rate]
        imp = rates["imp_round"]
        to_fit = f"{imp / max(fits):.2f}x" if fits and imp else ""
        to_torch = f"{imp / rates['torch_peer']:.2f}x" if imp and rates["torch_peer"] else ""
        cells = [f"{rates[n]:,.0f}" if rates[n] else "-" for n in names]
        print(
            f"{model:<40} {cells[0]:>8} {cells[1]:>8} {cells[2]:>10} {cells[3]:>8} "
            f"{to_fit:>15} {to_torch:>14}"
        )
    if measured:
        print("(images per second; a ratio above 1.00x: the IMP round trains faster)")
    for model, results in every.items():
        if "pipeline" in results:
            print(f"{model}: {pipeline_line(results['pipeline'])}")


def benchmark_model(model: str, only: list[str]) -> dict:
    """Every measurement of ``only`` for one model; prints its table, writes its JSON."""
    import dataclasses

    import tensorflow as tf

    from lth_tf import io
    from lth_tf.steps import Step
    from lth_tf.training.strategies import device_description

    spec, hparams, data = model_setup(model)
    training = hparams.training
    overhead_iterations = str(Step.parse(FLAGS.overhead_iterations, "--overhead_iterations"))
    device = device_description()
    print(f"\n{model} / {FLAGS.dataset}, batch {training.batch_size}, on {device}")
    steps, repeats = FLAGS.steps, FLAGS.repeats
    results: dict = {}
    fits = [name for name in ("fit", "fit_xla") if name in only]
    # Beside the IMP round, plain Keras serves from processes of its own (as a user runs it,
    # without the op determinism IMP switches on here), each run right after one of the round's,
    # as the PyTorch peer does: a drift of this machine's speed cannot favour either.
    # So do they beside the issue's own protocol, the whole pipelines.
    beside_imp = "imp_round" in only or "pipeline" in only
    interleaved = fits if beside_imp and FLAGS.interleave_fit else []
    for name in fits:
        if name not in interleaved:
            results[name] = benchmark_fit(spec, data, training, steps, repeats, name == "fit_xla")
    # IMP runs deterministic (exact resumes); build_run switches that on.
    for name, remask, whole_chunk in (
        ("imp_round", False, True),
        ("imp_round_remask", True, True),
        ("imp_round_per_step", False, False),
    ):
        if name not in only:
            continue
        beside = [*interleaved, "torch_peer"] if name == "imp_round" else []
        with peers_beside(model, training.batch_size, beside) as peers:
            results[name] = benchmark_imp_round(
                spec, data, hparams, steps, repeats, remask, whole_chunk, peers
            )
        results.update(results[name].pop("peers", {}))
    if "overhead" in only:
        short = dataclasses.replace(
            hparams,
            training=dataclasses.replace(
                training,
                iterations=overhead_iterations,
                eval_every=FLAGS.overhead_eval_every or training.eval_every,
            ),
            pruning=dataclasses.replace(hparams.pruning, rounds=FLAGS.overhead_rounds),
        )
        results["overhead"] = benchmark_overhead(short, data, FLAGS.overhead_repeats)
    if "pipeline" in only:
        with peers_beside(model, training.batch_size, [*interleaved, "torch_peer"]) as peers:
            results["pipeline"] = benchmark_pipeline(model, training.batch_size, repeats, peers)
    baseline = results.get("fit", {}).get("images_per_second")
    print_table(results, baseline)
    record = {
        "model": model,
        "dataset": FLAGS.dataset,
        "batch_size": training.batch_size,
        "steps": steps,
        "repeats": repeats,
        "device": device,
        "precision": FLAGS.mixed_precision or "float32",
        "tensorflow": tf.__version__,
        "results": results,
    }
    output = output_file(model)
    io.write_json(output, record)
    print(f"Wrote {output}")
    return results


def model_setup(model: str) -> tuple:
    """``model``'s spec, its paper hyperparameters with this run's batch and augmentation, and
    the dataset: what every measurement of it (and its fit peers) trains."""
    import dataclasses

    from lth_tf.data.sources import load_dataset
    from lth_tf.models import get_model, paper_defaults

    spec = get_model(model)
    hparams = paper_defaults(model, FLAGS.dataset)
    # The same batches for every measurement and the PyTorch peer: augmentation is work too.
    training = dataclasses.replace(hparams.training, augment=FLAGS.augment)
    if FLAGS.batch_size is not None:
        training = dataclasses.replace(training, batch_size=FLAGS.batch_size)
    data = load_dataset(FLAGS.dataset, FLAGS.data_dir)
    return spec, dataclasses.replace(hparams, training=training), data


def serve_fit(model: str, name: str) -> None:
    """``--serve=fit`` or ``fit_xla``: :func:`fit_runner` serving as a :class:`Peer`."""
    spec, hparams, data = model_setup(model)
    run = fit_runner(spec, data, hparams.training, xla=name == "fit_xla")
    run(20)  # traces (and compiles), as the measured side's untimed run does
    run(20)
    print("ready", flush=True)
    for line in sys.stdin:
        print(run(int(line)), flush=True)


def output_file(model: str) -> Path:
    """Where ``model``'s figures go: ``--output`` (its ``{model}`` filled in) or the default."""
    import tensorflow as tf

    kind = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", model)
    if FLAGS.output:
        return Path(FLAGS.output.replace("{model}", stem))
    return Path(f"benchmarks/results/{stem}-{FLAGS.dataset}-{kind}.json")


def own_process_command(model: str, *extra: str) -> list[str]:
    """This benchmark's own command line for ``model`` alone, ``extra`` flags added."""
    args = [a for a in sys.argv[1:] if not a.startswith(("--model=", "-model="))]
    return [sys.executable, "-m", "benchmarks.imp_throughput", f"--model={model}", *args, *extra]


def benchmark_in_own_process(model: str) -> dict:
    """This benchmark for one model in a process of its own: every model's plain ``fit`` runs
    as a user's would, before IMP switches op determinism on (it cannot be switched off)."""
    import subprocess

    from lth_tf import io
    from lth_tf.errors import LthError

    if subprocess.run(own_process_command(model)).returncode != 0:
        raise LthError(f"the benchmark of {model} failed (its error is above)")
    return io.read_json(output_file(model))["results"]


@user_errors_as_one_line
def main(argv: list[str]) -> None:
    from lth_tf.config import check_number
    from lth_tf.errors import LthError
    from lth_tf.models import get_model
    from lth_tf.steps import Step
    from lth_tf.training.strategies import precision_for

    only = FLAGS.only.split(",") if FLAGS.only else [m for m in MEASUREMENTS if m not in OPT_IN]
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        raise LthError(f"--only: unknown {unknown}; choose from {', '.join(MEASUREMENTS)}")
    if (FLAGS.steps is not None and FLAGS.steps < 1) or FLAGS.repeats < 1:
        raise LthError("--steps and --repeats must be at least 1")
    if "pipeline" in only:
        pipeline_iterations()  # a malformed one is refused before anything is timed
    if FLAGS.seconds <= 0:
        raise LthError("--seconds must be more than 0")
    check_number("--remaining", FLAGS.remaining, low=0, high=1, low_open=True, high_open=True)
    check_number("--overhead_repeats", FLAGS.overhead_repeats, low=1, integer=True)
    check_number("--overhead_rounds", FLAGS.overhead_rounds, low=0, integer=True)
    for flag in ("overhead_iterations", "overhead_eval_every"):
        value = getattr(FLAGS, flag)
        if value is not None and Step.parse(value, f"--{flag}") == Step():
            raise LthError(f"--{flag}={value}: give a length of more than 0 iterations")
    models = [name.strip() for name in FLAGS.model.split(",") if name.strip()]
    if not models:
        raise LthError("--model: name at least one model")
    if FLAGS.output and len(models) > 1 and "{model}" not in FLAGS.output:
        raise LthError("--output: with several models, put {model} in the file name")
    precision_for("default", FLAGS.mixed_precision)  # refuses a name it does not know
    if FLAGS.torch_python and not os.access(FLAGS.torch_python, os.X_OK):
        raise LthError(
            f"--torch_python={FLAGS.torch_python}: not an executable file; give the path of a "
            "Python with PyTorch installed (e.g. /path/to/venv/bin/python)"
        )
    setup_logging()
    start_tensorflow_quietly()
    import logging

    import tensorflow as tf

    # Peers and pipelines run beside this process: none may take the whole GPU's memory.
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    logging.getLogger("lth_tf").setLevel(logging.WARNING)
    for model in models:
        get_model(model)  # an unknown one is refused before anything is timed
    if FLAGS.serve:
        serve_fit(models[0], FLAGS.serve)
        return
    if len(models) == 1:
        print_summary({models[0]: benchmark_model(models[0], only)})
        return
    print_summary({model: benchmark_in_own_process(model) for model in models})


if __name__ == "__main__":
    common.run(main)
