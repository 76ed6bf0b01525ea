"""Run a sweep on Ray: ``python -m pipelines.sweep --model=lenet300_100 --dataset=fashion_mnist
--seeds=0-4 --rewind=0,100it --controls=random_reinit,random_prune --output_dir=runs/sweeps/lth``.

One experiment per rewind point and seed, each control as a branch of each; every other
hyperparameter flag of ``pipelines.imp`` applies to all members. A local Ray instance starts and
stops with the sweep; ``--ray_address=auto`` (or ``RAY_ADDRESS``) uses a running cluster.
Rerunning the same command resumes every member; a rerun with fewer seeds keeps the others
listed in sweep.json. A second sweep into a directory while one runs there is refused. Exits 1
when a member failed.
"""

from __future__ import annotations

import sys

from absl import flags

from lth_tf.lottery.controls import branch_controls
from pipelines import common, hparam_flags
from pipelines.common import setup_logging, user_errors_as_one_line
from pipelines.hparam_flags import define_hparam_flags

FLAGS = flags.FLAGS
define_hparam_flags(FLAGS)
flags.adopt_module_key_flags(hparam_flags)
# What the sweep varies itself: its help says so (--seed stays defined, to be refused in words).
FLAGS["seed"].help = "Not for a sweep, which varies the seed: give --seeds."
FLAGS["rewind"].help = (
    "Rewind points, comma-separated, a member each: e.g. 0,500it,2ep (0 = initial weights, as "
    "in LTH; k into round 0, as in Stabilizing LTH). Default: the recipe's (0 for lenet300_100)."
)
flags.DEFINE_string(
    "seeds", "0", "Seeds of the members: 0-4, 0,1,2 or a mix (0-2,7); at most 1000 members."
)
flags.DEFINE_list(
    "controls",
    [],
    f"Controls run as branches of every member: {', '.join(branch_controls())} (comma-separated).",
)
flags.DEFINE_string("output_dir", None, "The sweep's directory (members and sweep.json go here).")
common.define_integer(
    "max_parallel", None, "Members at once, 1-1024 (default: one per GPU, or 1 without GPUs)."
)
flags.DEFINE_string(
    "ray_address",
    None,
    "A running Ray cluster: auto, HOST:6379 (its head node) or ray://HOST:10001 (Ray Client); "
    "default: $RAY_ADDRESS, else a local Ray started for this sweep. Refused at once when "
    "nothing answers there.",
)
# Each member runs as pipelines.imp would with these (no progress bars: members share one
# output stream).
common.define_execution_flags(
    "data_dir",
    "jit_compile",
    "steps_per_execution",
    "mixed_precision",
    "tensorboard",
    "test_every_evaluation",
    tensorboard="Write each member's TensorBoard logs.",
)
common.define_callback_flag(
    "every round of every member, built in the member's own process (the module must import "
    "there: on a cluster, install it on every node)"
)
flags.adopt_module_key_flags(common)

# Flags of pipelines.imp that a sweep member cannot take: the sweep names them and runs them.
_VARIED = {"seed": "--seeds", "model": None, "dataset": None, "recipe": None}


def plan_from_flags():
    """The sweep's members from the flags (every check before Ray or TensorFlow starts)."""
    from lth_tf.config import STABLE_REWIND
    from lth_tf.errors import LthError
    from lth_tf.sweep import check_max_parallel, parse_seeds, plan_sweep

    if not FLAGS.output_dir:
        raise LthError("--output_dir: give the sweep's directory, e.g. runs/sweeps/lenet")
    if FLAGS.seed is not None:
        raise LthError("--seed: a sweep varies the seed; give --seeds=0-4 (or 0,1,2)")
    check_max_parallel(FLAGS.max_parallel)
    changes = {
        spec.name: FLAGS[spec.name].value
        for spec in hparam_flags.hparam_flags()
        if spec.name not in _VARIED and spec.name != "rewind" and FLAGS[spec.name].value is not None
    }
    rewinds = [r.strip() for r in FLAGS.rewind.split(",")] if FLAGS.rewind is not None else []
    if FLAGS.rewind is not None and not all(rewinds):
        raise LthError(f"--rewind: {FLAGS.rewind!r} has an empty entry; use e.g. 0,100it")
    if STABLE_REWIND in [rewind.lower() for rewind in rewinds]:
        raise LthError(
            f"--rewind={STABLE_REWIND} is pipelines.imp's; for a sweep, find k once on the dense "
            "network (pipelines.stability --find_rewind) and pass it, e.g. --rewind=0,2000it"
        )
    return plan_sweep(
        FLAGS.output_dir,
        FLAGS.model,
        FLAGS.dataset,
        FLAGS.recipe,
        changes,
        seeds=parse_seeds(FLAGS.seeds),
        rewinds=rewinds,
        controls=[c.strip() for c in FLAGS.controls],
    )


@user_errors_as_one_line
def main(argv: list[str]) -> None:
    from lth_tf.sweep import run_sweep

    setup_logging()
    plan = plan_from_flags()
    execution = common.execution_from_flags()
    result = run_sweep(
        plan,
        execution,
        max_parallel=FLAGS.max_parallel,
        ray_address=FLAGS.ray_address,
        callbacks=FLAGS.callback,
    )
    print(result.summary())
    if not result.ok:
        print(
            "rerun the same command to resume the members that did not finish (where a failed "
            "member's line above names a flag, fix it first: a rerun repeats it)",
            file=sys.stderr,
        )
        sys.exit(1)


def run() -> None:
    """The console script's entry point (``lth-sweep``)."""
    common.run(main)


if __name__ == "__main__":
    run()
