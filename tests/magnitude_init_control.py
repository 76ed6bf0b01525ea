"""A control written outside lth_tf, as a user would: one class and one registry entry.

``magnitude_init``: round r's masks are the magnitudes of the *initial* weights, theta_0,
pruned to round r's sparsities (nested, as IMP's), not those of trained weights; every round
starts from the parent's rewind point, as IMP's rounds do. (The "magnitude at initialisation"
baseline of the pruning-at-initialisation literature.)
"""

from __future__ import annotations

from lth_tf.lottery.controls import Control, magnitude_masks, register_control


class MagnitudeAtInit(Control):
    name = "magnitude_init"
    needs_parent_rewind_point = True

    def prepare(self, context):
        context.write_rewind_point(context.parent_rewind_point())
        context.theta_0()  # built now, before the run seeds and builds its own network

    def masks(self, context, pruning_round, pruned):
        previous = context.masks(pruning_round - 1)
        # theta_0: the experiment's model built under its seed, as run_imp built it.
        return magnitude_masks(context.theta_0(), previous, context.hparams, pruned, "theta_0")


register_control(MagnitudeAtInit())
