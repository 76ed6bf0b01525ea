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
(``tests/magnitude_init_control.py`` is one) or here. Its methods are handed a
:class:`ControlContext`: the experiment and its parent, checked reads of their masks, weights
and rewind points, theta_0 and fresh initial values; no control opens a file itself. NumPy
only (TensorFlow is imported where a control builds a model), so the pipelines check controls
before TensorFlow starts.

>>> get_control("random_prune").uses_parent_masks
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import ExperimentDir, check_shapes, parent_dir
from lth_tf.pruning.masks import imp_masks, random_masks

if TYPE_CHECKING:
    from lth_tf.config import ExperimentHparams
    from lth_tf.data.sources import ImageDataset
    from lth_tf.models import ModelSpec
    from lth_tf.pruning.wrapping import PrunedModel, Snapshot


@dataclasses.dataclass
class ControlContext:
    """What a control is handed: its experiment and, for a branch, its parent's, the
    hyperparameters, and (while a run prepares and trains) the data and what builds the model.
    Every read is checked to be that experiment's file of that place (its stamp) and, once the
    run has built its network, to hold each of its variables in its shape; ``theta_0``
    and ``fresh_values`` build the model for their values, which re-seeds the random
    generators: call them from ``prepare``, before the run builds its network.

    >>> context = ControlContext(ExperimentDir(Path("runs/e")), hparams)  # doctest: +SKIP
    >>> context.masks(2)["fc1/kernel"].mean()  # doctest: +SKIP
    0.64
    """

    experiment: ExperimentDir
    hparams: ExperimentHparams
    # What the run trains on and what builds its model (None where a control is only checked,
    # e.g. before a stability analysis).
    data: ImageDataset | None = None
    model: ModelSpec | None = None
    _theta_0: Snapshot | None = dataclasses.field(default=None, repr=False)
    # The network's shapes by name (set once the run has built it): every file read for a
    # round is checked against them, so a damaged one is named, not a KeyError in the pruning.
    weight_shapes: Mapping[str, tuple[int, ...]] | None = None
    mask_shapes: Mapping[str, tuple[int, ...]] | None = None

    @property
    def parent(self) -> ExperimentDir | None:
        """A branch's parent experiment (None for IMP itself)."""
        return parent_dir(self.experiment, self.hparams) if self.hparams.is_branch else None

    def masks(self, pruning_round: int) -> dict[str, np.ndarray]:
        """This experiment's masks of ``pruning_round``, checked to be its own file."""
        return self._read(self.experiment, self.experiment.masks(pruning_round), self.mask_shapes)

    def parent_masks(self, pruning_round: int) -> dict[str, np.ndarray]:
        """The parent's masks of ``pruning_round``, checked to be the parent's file."""
        parent = self._parent()
        return self._read(parent, parent.masks(pruning_round), self.mask_shapes)

    def trained_weights(self, pruning_round: int) -> Snapshot:
        """This experiment's trained weights of ``pruning_round``, checked."""
        path = self.experiment.weights(pruning_round)
        return self._read(self.experiment, path, self.weight_shapes)

    def rewind_point(self) -> Snapshot:
        """The values this experiment's rounds rewind to (its rewind_point.npz), checked."""
        return self._read(self.experiment, self.experiment.rewind_point, self.weight_shapes)

    def parent_rewind_point(self) -> Snapshot:
        """The parent's rewind point, checked to be the parent's."""
        parent = self._parent()
        return self._read(parent, parent.rewind_point, self.weight_shapes)

    def write_rewind_point(self, values: Snapshot) -> None:
        """``values`` as this experiment's rewind point (stamped as its own), unless it has one:
        a branch's rounds then start from it."""
        path = self.experiment.rewind_point
        if not path.exists():
            io.write_npz(path, {**values, **self.experiment.stamp(path)})

    def theta_0(self) -> Snapshot:
        """The values the experiment's network starts from (built under its seed, untrained),
        as run_imp built it; computed once."""
        if self._theta_0 is None:
            self._theta_0 = self.fresh_values(self.hparams.training.seed)
        return self._theta_0

    def fresh_values(self, seed: int) -> Snapshot:
        """The network's values as built under ``seed``, untrained (TensorFlow builds it)."""
        if self.data is None:
            raise RuntimeError("a ControlContext without data builds no model")
        from lth_tf.builder import untrained_values

        return untrained_values(self.hparams, self.data, seed, self.model)

    @staticmethod
    def _read(
        experiment: ExperimentDir, path: Path, shapes: Mapping[str, tuple[int, ...]] | None
    ) -> dict[str, np.ndarray]:
        return check_shapes(path, experiment.read_arrays(path), shapes)

    def _parent(self) -> ExperimentDir:
        parent = self.parent
        if parent is None:
            raise RuntimeError(f"{self.experiment.root} is not a branch: it has no parent")
        return parent


class Control:
    """Plain IMP (``none``): the base every control changes one thing of. Each method is
    handed a :class:`ControlContext`."""

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
        self, context: ControlContext, pruning_round: int, pruned: PrunedModel
    ) -> dict[str, np.ndarray]:
        """Round ``pruning_round`` (> 0)'s masks: round r-1's trained weights (``one_shot``:
        round 0's, from all ones) pruned by magnitude to the round's sparsities."""
        source = 0 if context.hparams.pruning.one_shot else pruning_round - 1
        return magnitude_masks(
            context.trained_weights(source),
            context.masks(source),
            context.hparams,
            pruned,
            source=f"round {source}'s weights ({context.experiment.weights(source)})",
        )

    def start_values(self, context: ControlContext, pruning_round: int) -> Snapshot:
        """What round ``pruning_round`` (> 0) starts from, before masking: the rewind point."""
        return context.rewind_point()

    def prepare(self, context: ControlContext) -> None:
        """Writes what the rounds need before any of them trains (once; nothing for IMP)."""

    def check_analysable(
        self, context: ControlContext, rewind_labels: Sequence[tuple[str, int]], own: int
    ) -> None:
        """Refuses stability analysis at rewind points the rounds did not start from.

        ``rewind_labels`` are (label, iteration) of the points asked for; ``own`` is the
        experiment's rewind iteration. IMP can be analysed anywhere: every point is a point of
        its own dense training.
        """


class RandomReinit(Control):
    name = "random_reinit"
    uses_parent_masks = True

    def masks(self, context, pruning_round, pruned):
        return context.parent_masks(pruning_round)

    def prepare(self, context):
        if not context.experiment.rewind_point.exists():
            context.write_rewind_point(context.fresh_values(reinit_seed(context.hparams)))

    def check_analysable(self, context, rewind_labels, own):
        _only_own_rewind_point(self, context, rewind_labels, own)


class RandomPrune(Control):
    name = "random_prune"
    uses_parent_masks = True
    needs_parent_rewind_point = True

    def masks(self, context, pruning_round, pruned):
        parent_masks = context.parent_masks(pruning_round)
        previous = context.masks(pruning_round - 1)
        training = context.hparams.training
        rng = np.random.default_rng(
            (training.seed, context.hparams.branch.control_seed, pruning_round)
        )
        if pruned.channels is not None:  # the parent's channel counts per group
            return pruned.channels.random_masks(previous, parent_masks, rng)
        counts = {name: int(mask.sum()) for name, mask in parent_masks.items()}
        return random_masks(previous, counts, rng)

    def prepare(self, context):
        # The parent's values, checked to be the parent's, stamped as the branch's own.
        if not context.experiment.rewind_point.exists():
            context.write_rewind_point(context.parent_rewind_point())

    def check_analysable(self, context, rewind_labels, own):
        _only_own_rewind_point(self, context, rewind_labels, own)


class LrRewind(Control):
    name = "lr_rewind"

    def start_values(self, context, pruning_round):
        return context.trained_weights(pruning_round - 1)

    def check_analysable(self, context, rewind_labels, own):
        raise LthError(
            f"{context.experiment.root} is an lr_rewind branch: its rounds continue from the "
            "previous round's trained weights, not from a rewind point; analyse its parent "
            f"{context.hparams.branch.parent}"
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


def _only_own_rewind_point(
    control: Control,
    context: ControlContext,
    rewind_labels: Sequence[tuple[str, int]],
    own: int,
) -> None:
    others = [label for label, iteration in rewind_labels if iteration != own]
    if others:
        raise LthError(
            f"{context.experiment.root} is a {control.name} branch: its rounds start from its "
            f"own rewind point ({own}it), the only one it can be analysed at (asked for "
            f"{', '.join(others)}); sweep rewind points on the parent "
            f"{context.hparams.branch.parent}"
        )
