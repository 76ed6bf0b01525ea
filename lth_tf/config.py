"""Hyperparameters as frozen dataclasses, grouped by concern, with the paper's defaults.

The pipelines build an :class:`ExperimentHparams` from flags; the library only ever sees the
dataclasses. Each field that is a command-line flag says so in its metadata (:func:`hparam`: the
help text, the flag's name where it is not the field's, how to parse its string);
``pipelines/hparam_flags.py`` defines the flags from it, and messages here name a field by its
flag (:func:`flag_of`), as users type it.

Step-valued fields (``iterations``, ``rewind``, ``eval_every``, ...) stay strings such as ``"2ep"``
until the dataset's size is known, in one spelling (``"500"`` is ``"500it"``);
:meth:`ExperimentHparams.resolve` turns them into iteration counts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import typing
from collections.abc import Callable
from typing import Any, Literal

from lth_tf.errors import LthError
from lth_tf.legacy import hashed_as_written, upgrade_hparams_groups
from lth_tf.recipe import (
    OPTIMIZER_CLASSES,
    check_lr_schedule,
    parse_augment,
    parse_optimizer_args,
)
from lth_tf.steps import MAX_COUNT, Step, decimal, is_count, iterations_per_epoch

LAYER_KINDS = ("conv", "fc", "output")
# --optimizer: every tf_keras optimizer, by its lower-case name (lth_tf.recipe has their
# arguments); "compiled" is the one a --recipe=compiled model was compiled with.
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
PRUNING_SCOPES = ("layerwise", "global")
# What one pruned unit is: a single weight, or a whole output channel (lth_tf.pruning.channels).
GRANULARITIES = ("weight", "channel")
# Which runtime the ticket is pruned for: "any" puts no constraint on the model; "xnnpack" makes
# it a float net that LiteRT's XNNPack delegate runs with sparse kernels on ARM
# (lth_tf.pruning.xnnpack: the model is checked against the delegate's sparse-subgraph rules and
# its stride-2 padding made symmetric before anything is written).
PRUNE_TARGETS = ("any", "xnnpack")
# --prune_for=xnnpack without --prune_rates: convolutions lose 20% a round, so the 1x1
# convolutions pass XNNPack's 2/3 zeros at round 5 (1 - 0.8**5 = 67%) and 80% at round 8.
XNNPACK_CONV_RATE = 0.2
# XNNPack runs its sparse kernels only when more than this fraction of the weights of the
# subgraph's 1x1 convolutions is zero (the delegate's README, "Sparse Inference").
XNNPACK_SPARSE_FRACTION = 2 / 3
# Training recipes, named after their papers (lth_tf.models.registry holds their numbers):
# "lth" = Frankle & Carbin 2019 (warmup for the deep nets, reset to iteration 0);
# "stabilizing" = Frankle et al. 2019/2020, Stabilizing LTH / Linear Mode Connectivity (no
# warmup, rewind to an early iteration). Only the deep nets have both.
# "compiled" = the optimizer, learning-rate schedule and loss a user's model was compiled with
# (TrainingHparams.compiled), pruned as "stabilizing" prunes it.
RECIPES = ("lth", "stabilizing", "compiled")
# --rewind=stable (pipelines.imp): the rewind point is measured before IMP starts
# (lth_tf.stability.rewind_finder); the experiment records the iteration found.
STABLE_REWIND = "stable"
# How older experiments' hparams.json files read (renamed keys, respelt values, defaults that
# changed): lth_tf.legacy, the one module of migrations.
# --holdout=auto: 10% of the training examples, at most the LTH paper's 5,000 (its 55,000/5,000
# MNIST split; 5,000 on every built-in dataset).
HOLDOUT_AUTO = "auto"
# --data_order: "per_round" gives every round its own batch order and augmentation, seeded by
# (seed, round), as open_lth draws a fresh order per level; "fixed" replays round 0's order in
# every round (what lth_tf did before the flag existed).
DATA_ORDERS = ("per_round", "fixed")
# --batchnorm_init, named as open_lth's models/bn_initializers.py names them: "fixed" keeps what
# the layers build with (Keras: gamma 1, beta 0; open_lth's "fixed" sets the same), "uniform"
# draws every batch-norm gamma from U[0, 1) and sets beta to 0 (open_lth's default for its CIFAR
# ResNets and VGGs, the stabilizing recipe's source).
BATCHNORM_INITS = ("fixed", "uniform")
# Seeds go to tf_keras.utils.set_random_seed (NumPy's legacy seeding wants [0, 2**32), TF's
# refuses negatives); 2**31 - 1 keeps derived seeds (random_reinit's seed + 1 + control_seed)
# inside NumPy's range too.
MAX_SEED = 2**31 - 1
MAX_ROUNDS = 1000
# A round of more iterations is a typo (10^9 steps is weeks on one GPU for any paper model).
MAX_ITERATIONS = 10**9


def hparam(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    parse: Callable[[str, Any], Any] | None = None,
    boolean: bool = False,
) -> Any:
    """A dataclass field that is a command-line flag.

    ``help`` is the flag's help text; ``flag`` its name where that is not the field's;
    ``parse(text, default)`` turns the flag's string into the value where absl's own str, int,
    float or bool parsing is not it (``default`` is the field's value in the model's recipe,
    e.g. the rates that ``--prune_rates=conv=0.15`` leaves unchanged). ``boolean``: a string
    flag that also takes a boolean's spellings, the bare flag and its ``no`` form (``parse``
    then gets ``"true"``/``"false"``; ``--augment`` was a boolean before it took a function,
    and ``--noaugment`` still works). The library
    only carries this metadata; ``pipelines/hparam_flags.py`` defines and reads the flags.
    """
    metadata: dict[str, Any] = {"help": help, "flag": flag}
    if parse is not None:
        metadata["parse"] = parse
    if boolean:
        metadata["boolean"] = True
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(hparams: Any, name: str) -> str:
    """How users type field ``name`` of a hyperparameter dataclass (or instance): for messages.

    >>> flag_of(PruningHparams, "scope")
    '--pruning'
    """
    field = next(f for f in dataclasses.fields(hparams) if f.name == name)
    return f"--{field.metadata.get('flag') or name}"


def check_number(
    flag: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    why: str = "",
) -> None:
    """Refuses ``value`` unless it is a finite number (an integer, if ``integer``) within the
    bounds (``low_open``/``high_open``: the bound itself excluded), naming ``flag`` and the range.

    NaN fails every comparison, so a plain ``value < low`` check lets it through: hence the
    explicit finiteness test.

    >>> check_number("--momentum", 0.9, low=0, high=1, high_open=True)
    >>> check_number("--momentum", float("nan"), low=0, high=1, high_open=True)
    Traceback (most recent call last):
    lth_tf.errors.LthError: --momentum must be a finite number in [0, 1), got nan
    """
    kind = "an integer" if integer else "a finite number"
    lo, hi = _bound_text(low), _bound_text(high)
    if low is not None and high is not None:
        allowed = f"{kind} in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{kind} {'>' if low_open else '>='} {lo}"
    elif high is not None:
        allowed = f"{kind} {'<' if high_open else '<='} {hi}"
    else:
        allowed = kind
    wanted = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, wanted) and not isinstance(value, bool)
    if ok and isinstance(value, numbers.Integral):
        ok = abs(value) <= MAX_COUNT  # math.isfinite would overflow on a larger one
    elif ok:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... (too large)"
        raise LthError(f"{flag} must be {allowed}, got {shown}" + (f": {why}" if why else ""))


StepsPerExecution = int | Literal["auto"]
"""Iterations per compiled call: a count, or ``"auto"`` (the default): as many as train in about
a second here, at most 100 (:func:`lth_tf.training.chunks.auto_steps_per_execution`), so
Ctrl-C and the progress line answer within about a second on a slow model and fast models run
100 a call."""


def check_steps_per_execution(
    value: object, name: str = "--steps_per_execution"
) -> StepsPerExecution:
    """``"auto"`` or an integer >= 1; else an :class:`LthError` naming ``name``.

    >>> check_steps_per_execution("auto"), check_steps_per_execution(20)
    ('auto', 20)
    >>> check_steps_per_execution(0)
    Traceback (most recent call last):
    lth_tf.errors.LthError: --steps_per_execution must be an integer >= 1 or auto, got 0
    """
    if value == "auto":
        return "auto"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise LthError(f"{name} must be an integer >= 1 or auto, got {value!r}")


JitCompile = bool | Literal["auto"]
"""``True``: XLA compiles the training step wherever it can; ``False``: never; ``"auto"``:
whichever of the two trains faster, timed on this model and machine
(:meth:`lth_tf.training.trainer.Trainer.choose_xla`)."""


def check_jit_compile(value: object, name: str = "jit_compile") -> JitCompile:
    """The value if it is True, False or "auto"; else an :class:`LthError` naming ``name``.

    >>> check_jit_compile("auto")
    'auto'
    """
    if isinstance(value, bool) or value == "auto":
        return value  # type: ignore[return-value]
    raise LthError(f"{name} must be True, False or 'auto', got {value!r}")


def _bound_text(bound: float | None) -> str:
    """2147483647 as itself (``:g`` would print 2.14748e+09), 0.5 as 0.5."""
    if bound is None or float(bound).is_integer():
        return str(None if bound is None else int(bound))
    return f"{bound:g}"


@dataclasses.dataclass(frozen=True)
class PruneRates:
    """Fraction of the still-alive weights pruned per round, per layer kind, and per layer
    where ``layers`` overrides its kind's rate (``(layer name, rate)`` pairs, sorted by name).

    >>> PruneRates.parse("fc=0.2,output=0.1")
    PruneRates(conv=0.0, fc=0.2, output=0.1, layers=())
    >>> str(PruneRates.parse("conv=0.15", base=PruneRates(fc=0.2)))
    'conv=0.15,fc=0.2,output=0.0'
    >>> rates = PruneRates.parse("fc=0.2,head=0")
    >>> str(rates), rates.for_layer("head", "fc"), rates.for_layer("fc1", "fc")
    ('conv=0.0,fc=0.2,output=0.0,head=0.0', 0.0, 0.2)
    """

    conv: float = 0.0
    fc: float = 0.0
    output: float = 0.0
    layers: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # One spelling per set of overrides (sorted, floats), so equal rates hash equally.
        layers = tuple(sorted((str(name), float(rate)) for name, rate in dict(self.layers).items()))
        object.__setattr__(self, "layers", layers)
        for name, rate in [(kind, getattr(self, kind)) for kind in LAYER_KINDS] + list(layers):
            if isinstance(rate, bool) or not (isinstance(rate, numbers.Real) and 0 <= rate < 1):
                raise LthError(
                    f"{flag_of(PruningHparams, 'rates')}: {name}={rate} is not in [0, 1); a rate "
                    "is the fraction of the surviving weights pruned per round, e.g. fc=0.2"
                )

    @classmethod
    def parse(cls, text: str, base: PruneRates | None = None) -> PruneRates:
        """Parses ``name=rate`` pairs: a kind (conv, fc, output) or a layer's name, whose rate
        then overrides its kind's; names left out keep their value in ``base``."""
        base = base or cls()
        kinds = {kind: getattr(base, kind) for kind in LAYER_KINDS}
        layers = dict(base.layers)
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise LthError(
                f"{flag_of(PruningHparams, 'rates')} is empty; give name=rate pairs (e.g. "
                "conv=0.15,fc=0.2,output=0.1), or leave the flag out for the recipe's rates"
            )
        seen: set[str] = set()
        for item in items:
            name, sep, rate = item.partition("=")
            name = name.strip()
            if name in seen:
                raise LthError(
                    f"{flag_of(PruningHparams, 'rates')}: {name} is given twice; give each kind "
                    "or layer one rate"
                )
            seen.add(name)
            if not sep or not name:
                raise LthError(
                    f"{flag_of(PruningHparams, 'rates')}: {item!r} is not name=rate with name a "
                    f"kind ({', '.join(LAYER_KINDS)}) or a layer's name (e.g. "
                    "conv=0.15,fc=0.2,output=0.1 or fc=0.2,head=0)"
                )
            try:
                value = decimal(rate)
            except ValueError:
                raise LthError(
                    f"{flag_of(PruningHparams, 'rates')}: {item!r}: {rate!r} is not a number"
                ) from None
            (kinds if name in LAYER_KINDS else layers)[name] = value
        return cls(**kinds, layers=tuple(layers.items()))

    def __str__(self) -> str:
        pairs = [(kind, getattr(self, kind)) for kind in LAYER_KINDS] + list(self.layers)
        return ",".join(f"{name}={rate}" for name, rate in pairs)

    def for_kind(self, kind: str) -> float:
        return getattr(self, kind)

    def for_layer(self, layer_name: str | None, kind: str) -> float:
        """The rate of layer ``layer_name`` of ``kind``: its override, else its kind's."""
        return dict(self.layers).get(layer_name, self.for_kind(kind))

    def to_dict(self) -> dict[str, Any]:
        """For ``hparams.json``: no ``layers`` key without overrides, so the experiments written
        before overrides existed keep their names (:meth:`ExperimentHparams.short_hash`)."""
        out: dict[str, Any] = {kind: getattr(self, kind) for kind in LAYER_KINDS}
        if self.layers:
            out["layers"] = dict(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneRates:
        values = dict(data)
        layers = tuple(values.pop("layers", {}).items())
        return cls(**values, layers=layers)


@dataclasses.dataclass(frozen=True)
class DatasetHparams:
    name: str = hparam(
        flag="dataset",
        help="mnist, fashion_mnist, cifar10, npz:PATH (arrays x_train, y_train, x_test, y_test, "
        "optional x_val, y_val) or tfds:NAME[:VERSION] (a TFDS dataset with supervised keys, "
        "from --data_dir or downloaded). Without a validation split, --holdout training "
        "examples are held out as one. Values reach the model cast to float32, unscaled. "
        "Default: mnist for lenet300_100, cifar10 for the conv nets, resnet20, vgg16 and vgg19; "
        "a model of your own needs one.",
    )
    holdout: str = hparam(
        HOLDOUT_AUTO,
        help="Training examples held out as the validation split (early stopping) when the "
        "dataset has none of its own: auto (10% of train, at most 5,000: the LTH paper's "
        "55,000/5,000 split of MNIST) or a count; 0 holds none out, trains on all of train and "
        "reports the end of training (no early stop), as open_lth does. A dataset with its own "
        "validation split (npz x_val/y_val, a TFDS validation split) keeps it, whatever this "
        "says. Default: 0 for resnet20, vgg16 and vgg19 under --recipe=stabilizing (open_lth "
        "trains on all 50,000 CIFAR-10 images), auto otherwise.",
    )

    def __post_init__(self) -> None:
        # One spelling per value (like the step strings), so 5000 and "5000" are one experiment.
        object.__setattr__(self, "holdout", parse_holdout(self.holdout))


def parse_holdout(value: Any) -> str:
    """``--holdout``'s value in its one spelling: ``"auto"`` or a count of examples.

    >>> parse_holdout(" 5000 "), parse_holdout("AUTO"), parse_holdout(0)
    ('5000', 'auto', '0')
    """
    text = str(value).strip().lower()
    if text == HOLDOUT_AUTO:
        return text
    if isinstance(value, bool) or not is_count(text):
        raise LthError(
            f"{flag_of(DatasetHparams, 'holdout')}: {value!r} is not auto or a count of training "
            "examples; give e.g. --holdout=5000, --holdout=0 (no validation split) or auto"
        )
    return str(int(text))


@dataclasses.dataclass(frozen=True)
class ModelHparams:
    """The model, the recipe its defaults came from (:data:`RECIPES`), and how its batch-norm
    layers start (:data:`BATCHNORM_INITS`).

    The recipe is recorded so ``hparams.json`` says which paper's settings a run started from;
    explicit flags may still have changed any of them. Experiments written before recipes
    existed all ran the LTH paper's, hence the default.
    """

    name: str = hparam(
        flag="model",
        help="Model: lenet300_100, conv2, conv4, conv6, resnet20, vgg16 or vgg19; or your own: "
        "a saved PATH.keras (Keras 2 or 3) or a builder package.module:function "
        "(fn(input_shape, num_classes) -> model).",
    )
    recipe: str = hparam(
        "lth",
        help="Whose defaults: lth (Frankle & Carbin 2019: warmup, reset to iteration 0) or "
        "stabilizing (Frankle et al. 2019/2020: no warmup, rewind to an early iteration). "
        "Default: stabilizing for resnet20, vgg16, vgg19; lth, the only one, for lenet300_100 "
        "and the conv nets; stabilizing (Adam 3e-4) for a model of your own, even a compiled "
        "one. Flags set explicitly override the recipe's values. For a model of "
        "your own, also compiled: train with the optimizer, learning-rate schedule and loss "
        "it was compiled with (a .keras file saved after model.compile), pruned as "
        "stabilizing prunes it (lth_tf.find_tickets's default for a compiled model).",
    )
    batchnorm_init: str = hparam(
        "fixed",
        help="Batch-norm weights at initialisation: fixed (gamma 1, beta 0: what the layers "
        "build with; a model of your own keeps its own initialisers) or uniform (every "
        "BatchNormalization gamma drawn from U[0, 1), beta 0: open_lth's, the stabilizing "
        "recipe's default for resnet20, vgg16, vgg19). Experiments written before this flag "
        "existed ran fixed, and resume so.",
    )

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise LthError(
                f"{flag_of(self, 'recipe')}: unknown recipe {self.recipe!r}; choose one of "
                f"{', '.join(RECIPES)}"
            )
        if self.batchnorm_init not in BATCHNORM_INITS:
            raise LthError(
                f"{flag_of(self, 'batchnorm_init')}: unknown initialiser "
                f"{self.batchnorm_init!r}; choose one of {', '.join(BATCHNORM_INITS)}"
            )


@dataclasses.dataclass(frozen=True)
class TrainingHparams:
    """How each round trains. ``iterations``, ``eval_every``, ``warmup`` and ``lr_drops`` are
    step strings.

    The learning rate rises linearly over ``warmup`` iterations, then is multiplied by
    ``lr_drop_factor`` at every step of ``lr_drops`` (comma-separated, e.g. ``"20000it,25000it"``
    or ``"80ep,120ep"``). ``weight_decay`` is an L2 penalty ``weight_decay / 2 * |w|^2`` on
    every conv and dense kernel, added to the loss (so, like PyTorch's SGD ``weight_decay``, it
    goes through momentum). ``augment`` is ``"none"``, ``"cifar"`` (4-pixel zero padding, a
    random crop back to size, a random horizontal flip) or a user's ``package.module:function``
    (``fn(images, labels, seed) -> (images, labels)``); ``hparams.json`` files of before, where
    it was a boolean, read as cifar/none. The defaults of these five change nothing, so
    experiments written before they existed keep their meaning.

    Later fields, whose defaults change nothing either: ``optimizer`` any tf_keras optimizer,
    ``optimizer_args`` its arguments (canonical ``name=value`` pairs, :mod:`lth_tf.recipe`),
    ``lr_schedule`` ``step`` (warmup then ``lr_drops``) or ``cosine`` (warmup then cosine decay
    to 0 at the end of the round), ``label_smoothing``. ``compiled`` (no flag: ``--recipe=
    compiled`` sets it, with ``optimizer="compiled"``) is the optimizer, schedule and loss the
    user's model was compiled with, as canonical JSON of tf_keras configs; ``hparams.json``
    shows it as a nested object. With it, the optimizer and schedule fields are unused.

    >>> TrainingHparams(lr_drops="80ep, 120ep").lr_drops
    '80ep,120ep'
    >>> TrainingHparams(optimizer="AdamW", optimizer_args="weight_decay=.05").optimizer_args
    'weight_decay=0.05'
    """

    optimizer: str = hparam(
        "adam",
        help=f"Any tf_keras optimizer: {', '.join(OPTIMIZER_CLASSES)}. Its arguments: "
        "--optimizer_args.",
    )
    learning_rate: float = hparam(1.2e-3, help="Learning rate.")
    momentum: float = hparam(0.0, help="Momentum (sgd only).")
    batch_size: int = hparam(60, help="Global batch size (split across replicas).")
    iterations: str = hparam("50000it", help="Training length per round: 50000, 50000it or 20ep.")
    eval_every: str = hparam(
        "auto",
        help="Evaluate validation/test every this many iterations (e.g. 500it), or 'auto': "
        "every 100 iterations (the LTH paper's) for lenet300_100 and the conv nets, every half "
        "epoch rounded to 100 iterations for resnet20, vgg16, vgg19, every half epoch rounded "
        "to 10 iterations for a model of your own.",
    )
    seed: int = hparam(0, help="Random seed: initialisation and data order.")
    weight_decay: float = hparam(0.0, help="L2 weight decay on conv and dense kernels.")
    warmup: str = hparam("0it", help="Linear learning-rate warmup length, e.g. 2000it or 2ep.")
    lr_drops: str = hparam(
        "", help="Steps where the learning rate drops, e.g. 20000it,25000it or 80ep,120ep."
    )
    lr_drop_factor: float = hparam(0.1, help="Learning-rate factor at each drop (e.g. 0.1).")
    augment: str = hparam(
        "none",
        parse=parse_augment,
        boolean=True,
        help="Augmentation of each training batch: --augment (or cifar) is CIFAR's (4-pixel "
        "pad, random crop, random horizontal flip), --noaugment (or none) none, and "
        "--augment=package.module:function your own, fn(images, labels, seed) -> (images, "
        "labels), called on every batch inside the compiled training step with seed a "
        "shape-[2] int64 tensor from (--seed, iteration) for tf.random.stateless_* ops, so a "
        "resumed round sees the same batches.",
    )
    optimizer_args: str = hparam(
        "",
        help="Arguments of --optimizer, e.g. weight_decay=0.05,beta_2=0.98 (adamw) or "
        "nesterov=true (sgd; its momentum is --momentum). --weight_decay is another thing: an "
        "L2 penalty in the loss; weight_decay here is the optimizer's own (decoupled).",
    )
    lr_schedule: str = hparam(
        "step",
        help="step (linear --warmup, then x --lr_drop_factor at each of --lr_drops) or cosine "
        "(linear --warmup, then cosine decay to 0 at the end of the round's iterations).",
    )
    label_smoothing: float = hparam(
        0.0, help="Label smoothing of the cross-entropy, in [0, 1) (e.g. 0.1)."
    )
    data_order: str = hparam(
        "per_round",
        help="per_round (every round draws its own batch order and augmentation, seeded by "
        "(--seed, round), as open_lth draws one per level; a control branch's round r sees its "
        "parent's round r batches; round 0 is the same either way) or fixed (every round "
        "replays round 0's batches from the rewind point on). Experiments written before this "
        "flag existed ran fixed, and resume so.",
    )
    compiled: str = ""

    def __post_init__(self) -> None:
        def flag(name: str) -> str:
            return flag_of(self, name)

        if self.data_order not in DATA_ORDERS:
            raise LthError(
                f"{flag('data_order')}: unknown data order {self.data_order!r}; choose one of "
                f"{', '.join(DATA_ORDERS)}"
            )
        # Old hparams.json files hold a boolean; read as the names it means now.
        object.__setattr__(self, "augment", parse_augment(self.augment))
        self._check_recipe(flag)
        # No upper bound on the learning rate: too large is the divergence check's to catch
        # (lth_tf.training.loop), with the iteration where it happened.
        check_number(flag("learning_rate"), self.learning_rate, low=0, low_open=True)
        # Momentum 1 or more never forgets a gradient: the velocity grows without bound.
        check_number(
            flag("momentum"),
            self.momentum,
            low=0,
            high=1,
            high_open=True,
            why="the fraction of the velocity kept per step, e.g. 0.9",
        )
        check_number(flag("batch_size"), self.batch_size, low=1, integer=True)
        check_number(flag("seed"), self.seed, low=0, high=MAX_SEED, integer=True)
        if Step.parse(self.iterations, flag("iterations")) == Step():
            raise LthError(f"{flag('iterations')} must be more than 0")
        if self.eval_every != "auto" and Step.parse(self.eval_every, flag("eval_every")) == Step():
            raise LthError(f"{flag('eval_every')} must be more than 0 (or 'auto')")
        check_number(flag("weight_decay"), self.weight_decay, low=0)
        # A factor above 1 would raise the learning rate at every "drop".
        check_number(flag("lr_drop_factor"), self.lr_drop_factor, low=0, high=1, low_open=True)
        # One spelling per step, so "500" and "500it" are the same experiment.
        for name in ("iterations", "eval_every", "warmup"):
            text = getattr(self, name)
            if not (name == "eval_every" and text == "auto"):
                object.__setattr__(self, name, str(Step.parse(text, flag(name))))
        drops = ",".join(str(step) for step in parse_steps(self.lr_drops, flag("lr_drops")))
        object.__setattr__(self, "lr_drops", drops)

    def _check_recipe(self, flag: Callable[[str], str]) -> None:
        """The optimizer, its arguments, schedule and loss fields, each in one spelling."""
        if self.compiled:
            if self.optimizer != "compiled":
                raise ValueError("a compiled recipe has optimizer='compiled'")
            # Checked and spelt as lth_tf.recipe writes it (a hand-edited file is refused).
            from lth_tf.recipe import canonical

            try:
                spelt = canonical(json.loads(self.compiled))
            except ValueError:
                raise LthError("the compiled recipe is not JSON") from None
            object.__setattr__(self, "compiled", spelt)
        elif self.optimizer == "compiled":
            raise LthError(
                f"{flag('optimizer')}=compiled: use --recipe=compiled with a compiled model"
            )
        else:
            lowered = str(self.optimizer).strip().lower()
            if lowered not in OPTIMIZERS:
                raise LthError(
                    f"{flag('optimizer')}: {self.optimizer!r} is not a tf_keras optimizer; "
                    f"choose one of {', '.join(OPTIMIZERS)}"
                )
            object.__setattr__(self, "optimizer", lowered)
            object.__setattr__(
                self, "optimizer_args", parse_optimizer_args(self.optimizer_args, lowered)
            )
        check_lr_schedule(self.lr_schedule)
        if self.lr_schedule == "cosine" and self.lr_drops.strip():
            raise LthError(
                f"{flag('lr_schedule')}=cosine decays smoothly to the end of the round; "
                f"{flag('lr_drops')} belongs to --lr_schedule=step: drop one of the two"
            )
        check_number(flag("label_smoothing"), self.label_smoothing, low=0, high=1, high_open=True)
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))

    def order_seed(self, pruning_round: int) -> int:
        """The seed of round ``pruning_round``'s training stream (batch order and augmentation).

        Round 0 and every round of ``fixed`` use ``seed``; a later round of ``per_round`` a
        seed drawn from (seed, round) by a hash, shared by a control branch with its parent's
        round. It stays below 2**31: TensorFlow's ``index_shuffle`` reads 31 bits of a seed.

        >>> TrainingHparams(seed=3).order_seed(0), TrainingHparams(seed=3).order_seed(2)
        (3, 166618803)
        >>> TrainingHparams(seed=3, data_order="fixed").order_seed(2)
        3
        """
        if self.data_order == "fixed" or pruning_round == 0:
            return self.seed
        digest = hashlib.sha256(f"data order {self.seed} {pruning_round}".encode()).digest()
        return int.from_bytes(digest[:8], "little") % 2**31

    def schedule_in_iterations(self, iterations_per_epoch: int) -> TrainingHparams:
        """A copy whose ``warmup`` and ``lr_drops`` are iteration counts, for one epoch length.

        The optimizer is built from these (:func:`lth_tf.training.optimizers.make_optimizer`),
        which knows no dataset size.

        >>> TrainingHparams(warmup="1ep", lr_drops="2ep").schedule_in_iterations(100).lr_drops
        '200it'
        """
        warmup = Step.parse(self.warmup).to_iterations(iterations_per_epoch)
        drops = [s.to_iterations(iterations_per_epoch) for s in parse_steps(self.lr_drops)]
        # The cosine schedule ends with the round: its length in iterations too.
        iterations = Step.parse(self.iterations).to_iterations(iterations_per_epoch)
        return dataclasses.replace(
            self,
            warmup=f"{warmup}it",
            lr_drops=",".join(f"{d}it" for d in drops),
            iterations=f"{iterations}it",
        )


@dataclasses.dataclass(frozen=True)
class PruningHparams:
    """How IMP prunes: per-kind rates, rounds, rewind point, Dense kernels' block shape, and
    whether each layer is pruned by itself or all of them under one threshold (``scope``).

    ``block_size`` is ROWSxCOLUMNS of a Dense kernel; ``"1x1"`` prunes weight by weight.
    """

    rates: PruneRates = hparam(
        PruneRates(fc=0.2, output=0.1),
        flag="prune_rates",
        parse=PruneRates.parse,
        help="Fraction of surviving weights pruned per round, per layer kind, e.g. "
        "conv=0.15,fc=0.2,output=0.1 (kinds left out keep the model's default); a layer's "
        "name instead of a kind overrides that layer's rate, e.g. fc=0.2,head=0.",
    )
    rounds: int = hparam(20, help="Pruning rounds after the dense round 0.")
    rewind: str = hparam(
        "0it",
        help="Rewind point: 0 = initial weights (LTH), or e.g. 500it / 2ep into round 0 "
        "(Stabilizing LTH). pipelines.imp also takes 'stable': the earliest point from which the "
        "dense network is stable to SGD noise, measured first (pipelines.stability "
        "--find_rewind, Frankle et al. 2020) and recorded in hparams.json.",
    )
    block_size: str = hparam(
        "1x1",
        help="Prune Dense kernels in blocks of ROWSxCOLUMNS (inputs x outputs), e.g. 4x1: the "
        "blocks TFLite's sparse FullyConnected kernel runs fast in float. Convolutions stay "
        "unstructured. Default 1x1 (weight by weight).",
    )
    scope: str = hparam(
        "layerwise",
        flag="pruning",
        help="layerwise (each layer loses its kind's rate) or global (one magnitude threshold "
        "over all layers whose kind has a non-zero rate; those kinds must share one rate).",
    )
    one_shot: bool = hparam(
        False, help="Prune round 0's trained weights straight to each round's sparsity."
    )
    granularity: str = hparam(
        "weight",
        help="weight (unstructured: single weights) or channel (whole output channels of "
        "convolutions and units of hidden Dense layers, grouped where the graph ties them; "
        "the ticket shrinks into a smaller dense network: fewer multiply-adds on any CPU, "
        "faster where they set the time, as the export measures).",
    )
    prune_for: str = hparam(
        "any",
        help="any (the default: no constraint on the model), or xnnpack: a float "
        "MobileNet-shaped ticket that LiteRT's XNNPack runs with sparse kernels on ARM (2-4x "
        "faster once its 1x1 convolutions are over 2/3 zeros). "
        "The model is checked against XNNPack's sparse-subgraph rules before anything is "
        "written, and its stride-2 padding made symmetric (1 on every side) before training. "
        f"Without --prune_rates, convolutions lose {XNNPACK_CONV_RATE:g} a round.",
    )

    def __post_init__(self) -> None:
        def flag(name: str) -> str:
            return flag_of(self, name)

        # Past a few hundred rounds every layer is down to its last weight (0.8**300 < 1e-29).
        check_number(flag("rounds"), self.rounds, low=0, high=MAX_ROUNDS, integer=True)
        # One spelling per step, so "500" and "500it" are the same experiment.
        object.__setattr__(self, "rewind", str(Step.parse(self.rewind, flag("rewind"))))
        rows, cols = parse_block_size(self.block_size)
        # One spelling per block shape, so "4X1" and "4x1" are the same experiment.
        object.__setattr__(self, "block_size", f"{rows}x{cols}")
        if self.scope not in PRUNING_SCOPES:
            raise LthError(
                f"{flag('scope')}: unknown scope {self.scope!r}; choose one of "
                f"{', '.join(PRUNING_SCOPES)}"
            )
        if self.granularity not in GRANULARITIES:
            raise LthError(
                f"{flag('granularity')}: unknown granularity {self.granularity!r}; choose one "
                f"of {', '.join(GRANULARITIES)}"
            )
        if self.prune_for not in PRUNE_TARGETS:
            raise LthError(
                f"{flag('prune_for')}: unknown target {self.prune_for!r}; choose one of "
                f"{', '.join(PRUNE_TARGETS)}"
            )
        if self.prune_for == "xnnpack" and self.granularity == "channel":
            raise LthError(
                f"{flag('prune_for')}=xnnpack runs single-weight (unstructured) sparsity; "
                f"{flag('granularity')}=channel shrinks the network instead: drop one of the two"
            )
        if self.granularity == "channel" and self.block_size != "1x1":
            raise LthError(
                f"{flag('block_size')}={self.block_size} prunes blocks of single weights; "
                f"{flag('granularity')}=channel prunes whole channels: drop one of the two"
            )
        if self.scope == "global":
            _ = self.global_rate  # raises unless the kinds it prunes share one rate
            pooled = [f"{name}={rate}" for name, rate in self.rates.layers if rate != 0]
            if pooled:
                # One threshold over the pooled weights leaves no room for a layer's own rate.
                raise LthError(
                    f"{flag('rates')}: {','.join(pooled)}: {flag('scope')}=global prunes every "
                    "pooled layer under one threshold, so a layer's own rate can only be 0 "
                    "(left dense); use --pruning=layerwise for per-layer rates"
                )
            if self.block_size != "1x1":
                raise LthError(
                    f"{flag('block_size')}={self.block_size} needs {flag('scope')}=layerwise: "
                    "global pruning ranks single weights across layers"
                )

    @property
    def global_rate(self) -> float:
        """The one rate of ``--pruning=global``: that of every layer kind it prunes (or 0).

        >>> PruningHparams(PruneRates(conv=0.2), scope="global").global_rate
        0.2
        """
        rates = {getattr(self.rates, kind) for kind in LAYER_KINDS} - {0.0}
        if len(rates) > 1:
            raise LthError(
                f"{flag_of(self, 'scope')}=global prunes one fraction of the pooled weights per "
                f"round, but the layer kinds have different rates ({self.rates}); give the kinds "
                "it should prune one rate and the others 0 (left dense), e.g. "
                f"{flag_of(self, 'rates')}=fc=0.2,output=0"
            )
        return rates.pop() if rates else 0.0

    def is_pruned(self, kind: str, layer: str | None = None) -> bool:
        """Whether IMP prunes layers of this kind (or this layer, when named) at all: a rate
        of 0 leaves them dense."""
        return self.rates.for_layer(layer, kind) > 0

    @property
    def block_shape(self) -> tuple[int, int]:
        """``block_size`` as (rows, columns) of a Keras Dense kernel, i.e. (inputs, outputs)."""
        return parse_block_size(self.block_size)


def parse_block_size(text: str) -> tuple[int, int]:
    """``"4x1"`` -> (4, 1): 4 consecutive input rows of one output column of a Dense kernel.

    (4, 1) is the block TFLite's fast sparse FullyConnected kernel runs in float: TFLite stores
    the kernel transposed, as (outputs, inputs), where it is a 1x4 block.

    >>> parse_block_size("4x1")
    (4, 1)
    """
    rows, sep, cols = text.strip().lower().partition("x")
    if not (sep and is_count(rows) and is_count(cols) and int(rows) > 0 and int(cols) > 0):
        raise LthError(
            f"{flag_of(PruningHparams, 'block_size')}: {text!r} is not ROWSxCOLUMNS of positive "
            "integers; use 1x1 (unstructured) or e.g. 4x1 (blocks TFLite's sparse kernel runs "
            "fast in float)"
        )
    return int(rows), int(cols)


def parse_steps(text: str, what: str | None = None) -> list[Step]:
    """Comma-separated step strings (an empty string is no steps); ``what`` names them in
    messages (default ``--lr_drops``).

    >>> [str(s) for s in parse_steps("20000, 25000it")]
    ['20000it', '25000it']
    """
    what = what or flag_of(TrainingHparams, "lr_drops")
    return [Step.parse(item, what) for item in text.split(",") if item.strip()]


@dataclasses.dataclass(frozen=True)
class BranchHparams:
    """A control run as a branch of another experiment (:mod:`lth_tf.lottery.branches`).

    ``parent`` is the parent experiment's directory name (a branch lives beside it);
    ``control_seed`` seeds the control's randomness (fresh initial values, random masks).
    ``control="none"`` is a plain IMP experiment.
    """

    control: str = "none"
    parent: str = ""
    control_seed: int = 0

    def __post_init__(self) -> None:
        # Every control but plain IMP ("none") runs as a branch of a parent; whether the name
        # is a registered control is lth_tf.lottery.controls.get_control's to say, where it runs.
        if (self.control != "none") != bool(self.parent):
            raise LthError("a control needs a parent experiment (--branch_of) and vice versa")
        check_number("--control_seed", self.control_seed, low=0, high=MAX_SEED, integer=True)


@dataclasses.dataclass(frozen=True)
class AutoEval:
    """What ``--eval_every=auto`` means for one model (a registry property).

    Every ``iterations`` iterations when that is set (the LTH paper's 100 for its small nets);
    otherwise every ``epochs`` of an epoch, rounded to ``rounding`` iterations (at least one
    ``rounding``).

    >>> AutoEval(iterations=100).every(917)
    100
    >>> AutoEval(epochs=0.5).every(430)  # half of a 430-iteration epoch, to 100 iterations
    200
    """

    iterations: int = 0
    epochs: float = 0.0
    rounding: int = 100

    def __post_init__(self) -> None:
        if (self.iterations > 0) == (self.epochs > 0):
            raise ValueError("AutoEval needs exactly one of iterations and epochs")

    def every(self, iterations_per_epoch: int) -> int:
        if self.iterations:
            return self.iterations
        steps = round(iterations_per_epoch * self.epochs / self.rounding)
        return max(1, steps) * self.rounding

    def describe(self) -> str:
        """For messages and docs: ``every 100 iterations``, ``every 0.5 epoch, to 100``."""
        if self.iterations:
            return f"every {self.iterations} iterations"
        return f"every {self.epochs:g} epoch, rounded to {self.rounding} iterations"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Step strings turned into iteration counts for one dataset size."""

    iterations: int
    eval_every: int
    rewind_iteration: int
    iterations_per_epoch: int
    warmup_iterations: int = 0
    lr_drop_iterations: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Resolved:
        """As ``hparams.json`` has it (``dataclasses.asdict``); keys of a newer lth_tf are
        ignored, a missing count is a ``KeyError``.

        >>> resolved = Resolved.from_dict({"iterations": 900, "eval_every": 100,
        ...     "rewind_iteration": 0, "iterations_per_epoch": 917, "lr_drop_iterations": [400]})
        >>> resolved.lr_drop_iterations, resolved.warmup_iterations
        ((400,), 0)
        """
        known = {field.name for field in dataclasses.fields(cls)} - {"lr_drop_iterations"}
        counts = {key: int(value) for key, value in values.items() if key in known}
        drops = tuple(int(i) for i in values.get("lr_drop_iterations", ()))
        return cls(**counts, lr_drop_iterations=drops)


def check_rewind_point(pruning: PruningHparams, rewind: int, iterations: int) -> None:
    """Refuses a rewind point (iteration ``rewind``) past the end of round 0 (``iterations``
    long), or at its end when later rounds would rewind there and train nothing."""
    flag = flag_of(pruning, "rewind")
    if rewind > iterations:
        raise LthError(
            f"{flag}={pruning.rewind} is iteration {rewind}, past the end of round 0 "
            f"({iterations} iterations); choose a rewind point within training, e.g. {flag}=0it"
        )
    if rewind == iterations and pruning.rounds > 0:
        raise LthError(
            f"{flag}={pruning.rewind} is the end of round 0 (iteration {iterations}): rounds "
            "rewound there would train nothing; choose a rewind point before the end"
        )


@dataclasses.dataclass(frozen=True)
class ExperimentHparams:
    """Everything that decides an experiment's results (not where or how fast it runs)."""

    dataset: DatasetHparams
    model: ModelHparams
    training: TrainingHparams
    pruning: PruningHparams
    branch: BranchHparams = BranchHparams()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["pruning"]["rates"] = self.pruning.rates.to_dict()
        # The compiled recipe as a readable object; absent without one, so experiments written
        # before it existed keep their names and identities.
        compiled = out["training"].pop("compiled")
        if compiled:
            out["training"]["compiled"] = json.loads(compiled)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentHparams:
        """The inverse of :meth:`to_dict`; also reads dicts an older lth_tf wrote
        (:func:`lth_tf.legacy.upgrade_hparams_groups`)."""
        groups = upgrade_hparams_groups(data)
        pruning = groups["pruning"]
        pruning["rates"] = PruneRates.from_dict(pruning["rates"])
        training = groups["training"]
        if isinstance(training.get("compiled"), dict):
            training["compiled"] = json.dumps(training["compiled"], sort_keys=True)
        return cls(
            dataset=DatasetHparams(**groups["dataset"]),
            model=ModelHparams(**groups["model"]),
            training=TrainingHparams(**groups["training"]),
            pruning=PruningHparams(**pruning),
            branch=BranchHparams(**groups.get("branch", {})),
        )

    @property
    def is_branch(self) -> bool:
        return bool(self.branch.parent)

    def short_hash(
        self, defaults: ExperimentHparams, identity: dict[str, str] | None = None
    ) -> str:
        """Hash of the values that differ from ``defaults`` (and of ``identity``, if given).

        Hashing only the differences keeps old experiment names valid when a new option with
        a neutral default is added; a renamed or respelt field is hashed as it was written
        (:func:`lth_tf.legacy.hashed_as_written`), so experiments that set it keep their names
        too. ``identity`` adds what the name shows only in part (a user's model file's path).
        """
        mine = hashed_as_written(_flatten(self.to_dict()))
        base = hashed_as_written(_flatten(defaults.to_dict()))
        changed = {key: value for key, value in mine.items() if base.get(key) != value}
        changed.update(identity or {})
        blob = json.dumps(changed, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def check_rewind_without_data(self) -> None:
        """:meth:`resolve`'s check of the rewind point, before the training set's size is
        known (a sweep's members are checked so before any of them trains): exact where the
        rewind point and the round's length are both in iterations; in epochs, a rewind point
        past the end whatever an epoch's length (at least one iteration) is refused.

        >>> hparams = ExperimentHparams(
        ...     DatasetHparams("mnist"), ModelHparams("lenet300_100"),
        ...     TrainingHparams(iterations="20it"), PruningHparams(rewind="30ep"),
        ... )
        >>> hparams.check_rewind_without_data()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        lth_tf.errors.LthError: --rewind=30ep is past the end of round 0 (--iterations=20it) ...
        """
        rewind, end = Step.parse(self.pruning.rewind), Step.parse(self.training.iterations)
        if rewind.epochs == end.epochs == 0:
            check_rewind_point(self.pruning, rewind.iterations, end.iterations)
            return
        # rewind - end = extra_epochs * P + extra_iterations for an epoch of P >= 1 iterations:
        # past the end for every P when it is at P = 1 and grows with P.
        extra_epochs = rewind.epochs - end.epochs
        extra_iterations = rewind.iterations - end.iterations
        flag, length = flag_of(self.pruning, "rewind"), flag_of(self.training, "iterations")
        if extra_epochs >= 0 and extra_epochs + extra_iterations > 0:
            raise LthError(
                f"{flag}={self.pruning.rewind} is past the end of round 0 "
                f"({length}={self.training.iterations}) whatever an epoch's length; choose a "
                f"rewind point within training, e.g. {flag}=0it"
            )
        if extra_epochs >= 0 and extra_epochs + extra_iterations == 0 and self.pruning.rounds > 0:
            where = "the end of round 0" + (" or past it" if extra_epochs else "")
            raise LthError(
                f"{flag}={self.pruning.rewind} is {where} ({length}="
                f"{self.training.iterations}): rounds rewound there would train nothing; "
                "choose a rewind point before the end"
            )

    def resolve(self, num_train_examples: int, auto_eval: AutoEval) -> Resolved:
        """Turns the step strings into iteration counts for a training set of this size;
        ``--eval_every=auto`` means ``auto_eval``, the model's (its registry entry's: callers
        use :func:`lth_tf.models.registry.resolve_steps`).

        >>> hparams = ExperimentHparams(
        ...     DatasetHparams("mnist"), ModelHparams("lenet300_100"), TrainingHparams(),
        ...     PruningHparams(),
        ... )
        >>> resolved = hparams.resolve(55_000, AutoEval(iterations=100))
        >>> resolved.iterations_per_epoch, resolved.eval_every  # batch 60
        (917, 100)
        """
        training, pruning = self.training, self.pruning
        if training.batch_size > num_train_examples:
            # A batch gathers that many examples at once: beyond the set it only costs memory.
            raise LthError(
                f"{flag_of(training, 'batch_size')}={training.batch_size} is larger than the "
                f"{num_train_examples:,} training examples; give at most that many"
            )
        per_epoch = iterations_per_epoch(num_train_examples, training.batch_size)
        iterations = Step.parse(training.iterations).to_iterations(per_epoch)
        if iterations > MAX_ITERATIONS:
            raise LthError(
                f"{flag_of(training, 'iterations')}={training.iterations} is {iterations:,} "
                f"iterations a round ({per_epoch:,} per epoch), more than the {MAX_ITERATIONS:,} "
                "lth_tf takes; give fewer"
            )
        if training.eval_every == "auto":
            eval_every = auto_eval.every(per_epoch)
        else:
            eval_every = Step.parse(training.eval_every).to_iterations(per_epoch)
        # The dataclasses checked every step string; these parse their normalised spelling.
        rewind = Step.parse(pruning.rewind).to_iterations(per_epoch)
        check_rewind_point(pruning, rewind, iterations)
        schedule = training.schedule_in_iterations(per_epoch)
        return Resolved(
            iterations=iterations,
            eval_every=min(eval_every, iterations),
            rewind_iteration=rewind,
            iterations_per_epoch=per_epoch,
            warmup_iterations=Step.parse(schedule.warmup).iterations,
            lr_drop_iterations=tuple(s.iterations for s in parse_steps(schedule.lr_drops)),
        )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclasses.dataclass(frozen=True)
class HparamFlag:
    """A hyperparameter flag: flag ``name`` sets field ``field`` of ``ExperimentHparams.group``."""

    name: str
    group: str
    field: str
    type: type
    help: str
    parse: Callable[[str, Any], Any] | None = None
    boolean: bool = False

    @property
    def flag_type(self) -> type:
        """What absl parses the flag's string as (a field with its own parser takes a string)."""
        return str if self.parse is not None else self.type


@functools.cache
def hparam_flags() -> tuple[HparamFlag, ...]:
    """Every hyperparameter flag, in the dataclasses' field order."""
    found = []
    groups = typing.get_type_hints(ExperimentHparams, globals())
    for group in dataclasses.fields(ExperimentHparams):
        cls = groups[group.name]
        types = typing.get_type_hints(cls, globals())
        for field in dataclasses.fields(cls):
            if "help" not in field.metadata:
                continue  # not a flag (e.g. the branch's fields: pipelines.imp's own flags)
            found.append(
                HparamFlag(
                    name=flag_of(cls, field.name).removeprefix("--"),
                    group=group.name,
                    field=field.name,
                    type=types[field.name],
                    help=field.metadata["help"],
                    parse=field.metadata.get("parse"),
                    boolean=field.metadata.get("boolean", False),
                )
            )
    names = [spec.name for spec in found]
    if len(set(names)) != len(names):
        raise TypeError(f"two hyperparameter fields have one flag name: {sorted(names)}")
    return tuple(found)


def hparam_flag_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in hparam_flags())


# Hyperparameter groups whose names read better under the pipeline flag's name.
_RENAMES = {"rates": "prune_rates"}


# What --recipe=compiled takes from the model's compile(): flags that would set it otherwise.
COMPILED_FIELDS = (
    "optimizer",
    "optimizer_args",
    "learning_rate",
    "momentum",
    "warmup",
    "lr_drops",
    "lr_drop_factor",
    "lr_schedule",
    "label_smoothing",
)


def flat_hparams(hparams: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Hyperparameters under their flag names, one level deep, as legends and HParams show them.

    >>> flat_hparams({"model": {"name": "conv2", "recipe": "lth"}, "training": {"seed": 0},
    ...               "pruning": {"rates": {"fc": 0.2}, "rewind": "0it"}})
    {'model': 'conv2', 'recipe': 'lth', 'seed': 0, 'prune_rates.fc': 0.2, 'rewind': '0it'}
    """
    flat: dict[str, bool | int | float | str] = {}

    def visit(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                visit(value, f"{prefix}{_RENAMES.get(key, key)}.")
            else:
                flat[prefix + key] = _scalar(value)

    # The top level is the concern (model, training, pruning), which the flags do not name.
    for group, values in hparams.items():
        if isinstance(values, dict) and "name" in values:
            flat[group] = _scalar(values["name"])  # model.name -> model
            visit({k: v for k, v in values.items() if k != "name"}, "")  # model.recipe -> recipe
        elif isinstance(values, dict):
            visit(values, "")
        else:
            flat[group] = _scalar(values)
    if flat.get("optimizer") == "compiled":
        # The recipe's values of these stay in hparams.json (its name hashes them), but the
        # model's compile set them: a legend or HParams showing the recipe's would mislead.
        for name in COMPILED_FIELDS:
            if name in flat:
                flat[name] = "compiled"
    return flat


def _scalar(value: Any) -> bool | int | float | str:
    return value if isinstance(value, bool | int | float) else str(value)
