"""A control written outside lth_tf, as a user would: one class and one registry entry.

``magnitude_init``: round r's masks are the magnitudes of the *initial* weights, theta_0,
pruned to round r's sparsities (nested, as IMP's), not those of trained weights; every round
starts from the parent's rewind point, as IMP's rounds do. (The "magnitude at initialisation"
baseline of the pruning-at-initialisation literature.)
"""

from __future__ import annotations

from lth_tf import io
from lth_tf.builder import untrained_values
from lth_tf.lottery.branches import parent_dir
from lth_tf.lottery.controls import Control, magnitude_masks, register_control
from lth_tf.provenance import experiment_model

INITIAL_VALUES = "initial_values.npz"  # theta_0, kept in the branch's directory


class MagnitudeAtInit(Control):
    name = "magnitude_init"
    needs_parent_rewind_point = True

    def prepare(self, experiment, hparams, data):
        if not experiment.rewind_point.exists():
            values = parent_dir(experiment, hparams).read_rewind_point()
            stamp = experiment.stamp(experiment.rewind_point)
            io.write_npz(experiment.rewind_point, {**values, **stamp})
        path = experiment.root / INITIAL_VALUES
        if not path.exists():
            # The experiment's seed builds its model as run_imp built it: its theta_0.
            model = experiment_model(experiment, hparams)
            io.write_npz(path, untrained_values(hparams, data, hparams.training.seed, model))

    def masks(self, experiment, hparams, pruning_round, pruned):
        theta_0 = io.read_npz(experiment.root / INITIAL_VALUES)
        previous = experiment.read_arrays(experiment.masks(pruning_round - 1))
        source = f"theta_0 ({experiment.root / INITIAL_VALUES})"
        return magnitude_masks(theta_0, previous, hparams, pruned, source)

register_control(MagnitudeAtInit())
