"""What a round of IMP, or of a control, starts from: its masks and its start values.

Every round r > 0 trains from the rewind point's iteration k to the end, T (k = 0 for LTH).
A :class:`Control` decides the two things that differ between IMP and its controls: the masks
of round r and the values the round starts from. Controls run as branches of an IMP
experiment (:mod:`lth_tf.lottery.branches`), beside it:

``none``           plain IMP: round r-1's trained weights pruned by magnitude, survivors rewound
                   to the rewind point (theta_k);
``random_reinit``  the parent's masks, every variable rewound to *fresh* random initial values
                   (the model's initialisers under seed ``seed + 1 + control_seed``), untrained;
``random_prune``   random masks with exactly the parent's per-layer counts (nested, seeded by
                   ``(seed, control_seed, round)``; channel tickets: its channel counts per
                   group), rewound to the parent's rewind point;
``lr_rewind``      masks pruned by magnitude from its own trained weights, as IMP does, but the
                   weights are *not* rewound: training continues from round r-1's trained
                   weights (masked), with the learning-rate schedule rewound to iteration k and
                   trained k -> T (Renda et al. 2020; with k = 0, the whole schedule again).

Adding a control is one class and one :func:`register_control` call, in your own module
(``tests/magnitude_init_control.py`` is one) or here. NumPy only (TensorFlow is imported
where a control builds a model), so the pipelines check controls before TensorFlow starts.

>>> get_control("random_prune").uses_parent_masks
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import parent_dir
from lth_tf.pruning.masks import imp_masks, random_masks

if TYPE_CHECKING:
    from lth_tf.config import ExperimentHparams
    from lth_tf.data.sources import ImageDataset
    from lth_tf.experiment import ExperimentDir
    from lth_tf.pruning.wrapping import PrunedModel, Snapshot


class Control:
    """Plain IMP (``none``): the base every control changes one thing of."""

    name = "none"
    # Takes the parent's masks (as they are, or their per-layer counts): the parent must have
    # pruned as far as the branch runs.
    uses_parent_masks = False
    # Starts every round from the branch's own rewind_point.npz, copied from the parent
    # (random_prune) or made by the control (random_reinit): written before training.
    needs_parent_rewind_point = False

    @property
    def is_branch(self) -> bool:
        return self.name != Control.name

    def masks(
        self,
        experiment: ExperimentDir,
        hparams: ExperimentHparams,
        pruning_round: int,
        pruned: PrunedModel,
    ) -> dict[str, np.ndarray]:
        """Round ``pruning_round`` (> 0)'s masks: round r-1's trained weights (``one_shot``:
        round 0's, from all ones) pruned by magnitude to the round's sparsities."""
        source = 0 if hparams.pruning.one_shot else pruning_round - 1
        trained = experiment.read_arrays(experiment.weights(source))
        previous = experiment.read_arrays(experiment.masks(source))
        return magnitude_masks(
            trained,
            previous,
            hparams,
            pruned,
            source=f"round {source}'s weights ({experiment.weights(source)})",
        )

    def start_values(self, experiment: ExperimentDir, pruning_round: int) -> Snapshot:
        """What round ``pruning_round`` (> 0) starts from, before masking: the rewind point."""
        return experiment.read_rewind_point()

    def prepare(
        self, experiment: ExperimentDir, hparams: ExperimentHparams, data: ImageDataset
    ) -> None:
        """Writes what the rounds need before any of them trains (once; nothing for IMP)."""

    def check_analysable(
        self,
        experiment: ExperimentDir,
        hparams: ExperimentHparams,
        rewind_labels: Sequence[tuple[str, int]],
        own: int,
    ) -> None:
        """Refuses stability analysis at rewind points the rounds did not start from.

        ``rewind_labels`` are (label, iteration) of the points asked for; ``own`` is the
        experiment's rewind iteration. IMP can be analysed anywhere: every point is a point of
        its own dense training.
        """


class RandomReinit(Control):
    name = "random_reinit"
    uses_parent_masks = True

    def masks(self, experiment, hparams, pruning_round, pruned):
        parent = _parent(experiment, hparams)
        return parent.read_arrays(parent.masks(pruning_round))

    def prepare(self, experiment, hparams, data):
        if not experiment.rewind_point.exists():
            from lth_tf.builder import untrained_values
            from lth_tf.provenance import experiment_model

            model = experiment_model(experiment, hparams)
            values = untrained_values(hparams, data, reinit_seed(hparams), model)
            io.write_npz(
                experiment.rewind_point, {**values, **experiment.stamp(experiment.rewind_point)}
            )

    def check_analysable(self, experiment, hparams, rewind_labels, own):
        _only_own_rewind_point(self, experiment, hparams, rewind_labels, own)


class RandomPrune(Control):
    name = "random_prune"
    uses_parent_masks = True
    needs_parent_rewind_point = True

    def masks(self, experiment, hparams, pruning_round, pruned):
        parent = _parent(experiment, hparams)
        parent_masks = parent.read_arrays(parent.masks(pruning_round))
        previous = experiment.read_arrays(experiment.masks(pruning_round - 1))
        seed = (hparams.training.seed, hparams.branch.control_seed, pruning_round)
        rng = np.random.default_rng(seed)
        if pruned.channels is not None:  # the parent's channel counts per group
            return pruned.channels.random_masks(previous, parent_masks, rng)
        counts = {name: int(mask.sum()) for name, mask in parent_masks.items()}
        return random_masks(previous, counts, rng)

    def prepare(self, experiment, hparams, data):
        if not experiment.rewind_point.exists():
            # The parent's values, checked to be the parent's, stamped as the branch's own.
            values = _parent(experiment, hparams).read_rewind_point()
            io.write_npz(
                experiment.rewind_point, {**values, **experiment.stamp(experiment.rewind_point)}
            )

    def check_analysable(self, experiment, hparams, rewind_labels, own):
        _only_own_rewind_point(self, experiment, hparams, rewind_labels, own)


class LrRewind(Control):
    name = "lr_rewind"

    def start_values(self, experiment, pruning_round):
        return experiment.read_arrays(experiment.weights(pruning_round - 1))

    def check_analysable(self, experiment, hparams, rewind_labels, own):
        raise LthError(
            f"{experiment.root} is an lr_rewind branch: its rounds continue from the previous "
            f"round's trained weights, not from a rewind point; analyse its parent "
            f"{hparams.branch.parent}"
        )


CONTROLS: dict[str, Control] = {
    control.name: control for control in (Control(), RandomReinit(), RandomPrune(), LrRewind())
}


def register_control(control: Control) -> Control:
    """Adds a control of your own to the registry (from your module, at its import): it then
    runs as a branch (``--branch_of=DIR --control=NAME``, ``pipelines.sweep --controls``).

    >>> class Mine(Control):
    ...     name = "mine"
    >>> register_control(Mine()).name in branch_controls()
    True
    >>> _ = CONTROLS.pop("mine")
    """
    if not isinstance(control, Control):
        raise LthError(f"{control!r} is not a lth_tf.lottery.controls.Control; subclass it")
    if control.name in CONTROLS and type(CONTROLS[control.name]) is not type(control):
        raise LthError(f"a control named {control.name!r} is registered already")
    CONTROLS[control.name] = control
    return control


def branch_controls() -> tuple[str, ...]:
    """What ``--control`` accepts: the registered controls that run as branches."""
    return tuple(name for name, control in CONTROLS.items() if control.is_branch)


def get_control(name: str) -> Control:
    """The registered control called ``name``; an unknown name is a user error."""
    try:
        return CONTROLS[name]
    except KeyError:
        raise LthError(
            f"--control: unknown control {name!r}; choose one of {', '.join(branch_controls())}"
        ) from None


def magnitude_masks(
    values: dict[str, np.ndarray],
    previous: dict[str, np.ndarray],
    hparams: ExperimentHparams,
    pruned: PrunedModel,
    source: str,
) -> dict[str, np.ndarray]:
    """``previous`` pruned further by the magnitudes of ``values`` (named as the prunable
    weights; ``source`` says where they came from) to the round's sparsities, as IMP prunes:
    layerwise or global, by kind, in blocks or channels as the experiment says."""
    return imp_masks(
        {name: values[name] for name in pruned.weights},
        previous,
        pruned.kinds,
        pruned.target_sparsities(),
        hparams.pruning,
        pruned.layers,
        source=source,
        channels=pruned.channels,
    )


def reinit_seed(hparams: ExperimentHparams) -> int:
    """The seed of random_reinit's fresh initial values: one the parent never used.

    >>> from lth_tf.models import paper_defaults
    >>> reinit_seed(paper_defaults("lenet300_100"))
    1
    """
    return hparams.training.seed + 1 + hparams.branch.control_seed


def _parent(experiment: ExperimentDir, hparams: ExperimentHparams) -> ExperimentDir:
    return parent_dir(experiment, hparams)


def _only_own_rewind_point(
    control: Control,
    experiment: ExperimentDir,
    hparams: ExperimentHparams,
    rewind_labels: Sequence[tuple[str, int]],
    own: int,
) -> None:
    others = [label for label, iteration in rewind_labels if iteration != own]
    if others:
        raise LthError(
            f"{experiment.root} is a {control.name} branch: its rounds start from its own "
            f"rewind point ({own}it), the only one it can be analysed at (asked for "
            f"{', '.join(others)}); sweep rewind points on the parent {hparams.branch.parent}"
        )
