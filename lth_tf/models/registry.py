"""Names -> (builder, recipes of paper defaults). Adding a model is one builder plus one entry here.

Importing this module does not import TensorFlow, so flags can be checked instantly: an entry
names its builder as ``"module:function"`` (:class:`LazyBuilder`), imported when it first builds.
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_tf.config import (
    COMPILED_FIELDS,
    HOLDOUT_AUTO,
    RECIPES,
    XNNPACK_CONV_RATE,
    AutoEval,
    DatasetHparams,
    ExperimentHparams,
    HparamFlag,
    ModelHparams,
    PruneRates,
    PruningHparams,
    Resolved,
    TrainingHparams,
    hparam_flags,
)
from lth_tf.errors import LthError

if TYPE_CHECKING:
    import tf_keras


@dataclasses.dataclass(frozen=True)
class LazyBuilder:
    """A registered net's builder, ``"module:function"``, imported on its first call: the builder
    modules import TensorFlow, and a model's name and defaults are needed before it starts.

    >>> LazyBuilder("lth_tf.models.lenet:lenet300_100")((28, 28, 1), 10).name
    'lenet300_100'
    """

    target: str

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)(input_shape, num_classes)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one paper trained and pruned a model: the defaults ``--recipe=NAME`` starts from,
    its batch-norm initialiser (:data:`lth_tf.config.BATCHNORM_INITS`) and the training examples
    held out for early stopping (``holdout``, :class:`DatasetHparams`) included."""

    training: TrainingHparams
    pruning: PruningHparams
    batchnorm_init: str = "fixed"
    holdout: str = HOLDOUT_AUTO


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model family member: how to build it, and how the papers trained and pruned it.

    ``recipes`` maps recipe names (:data:`lth_tf.config.RECIPES`) to their defaults;
    ``training`` and ``pruning`` are those of ``default_recipe``. ``auto_eval`` is what
    ``--eval_every=auto`` means for this model. ``dataset`` is its default dataset (a user's
    model has none). ``fresh`` builds it with new random initial values (random_reinit's
    start) where ``build`` does not (a saved model's ``build`` loads its saved weights).

    >>> get_model("conv6").training.learning_rate
    0.0003
    >>> get_model("resnet20").recipe("lth").pruning.rewind
    '0it'
    """

    name: str
    # A registered net's is a LazyBuilder; a user's model's, a function.
    build: Callable[[tuple[int, ...], int], tf_keras.Model]
    dataset: str | None
    recipes: dict[str, Recipe]
    default_recipe: str
    auto_eval: AutoEval
    fresh: Callable[[tuple[int, ...], int], tf_keras.Model] | None = None
    # Whether it has batch-norm layers (--batchnorm_init); None: a user's model, unknown
    # before it is built.
    batch_norm: bool | None = False

    def build_fresh(self, input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        """The model with new random initial values (under the global seed)."""
        return (self.fresh or self.build)(input_shape, num_classes)

    def recipe(self, name: str | None = None) -> Recipe:
        """The recipe called ``name`` (default: the model's own); a missing one is a user error."""
        name = self.default_recipe if name is None else name
        if name not in RECIPES:
            raise LthError(f"--recipe: unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
        if name not in self.recipes:
            raise LthError(
                f"--recipe={name}: {self.name} has only the {', '.join(self.recipes)} recipe "
                f"(the {name} recipe exists for {', '.join(_models_with(name))})"
            )
        return self.recipes[name]

    @property
    def training(self) -> TrainingHparams:
        return self.recipe().training

    @property
    def pruning(self) -> PruningHparams:
        return self.recipe().pruning


# --eval_every=auto. The small nets: every 100 iterations, the LTH paper's early-stopping
# resolution (as issue 13 quotes the paper; not in papers.md). Each evaluation runs the 5,000
# validation examples and writes a checkpoint: a 50,000-iteration lenet300_100 round on 2 CPU
# cores took 1.21-1.23x its pure training time at this spacing, 1.05-1.06x at every 500
# (docs/performance.md). The deep nets keep half an epoch, rounded to 100 iterations (200 for
# batch 128 on Fashion-MNIST or CIFAR-10): their rounds are long (tens of thousands of
# iterations) and each evaluation is a forward pass of a deep net over 5,000 images.
_EVERY_100 = AutoEval(iterations=100)
_HALF_EPOCH = AutoEval(epochs=0.5)


def _paper_net(name, builder: str, dataset, lr, iterations, rates, rounds=20) -> ModelSpec:
    """A small net of Frankle & Carbin (2019), Figure 2 (papers.md section 1): Adam, batch 60,
    layerwise pruning at the per-kind rates, reset to iteration 0. One recipe: ``lth``."""
    lth = Recipe(
        training=TrainingHparams(
            optimizer="adam", learning_rate=lr, batch_size=60, iterations=iterations
        ),
        pruning=PruningHparams(rates=rates, rounds=rounds, rewind="0it"),
    )
    return ModelSpec(name, LazyBuilder(builder), dataset, {"lth": lth}, "lth", _EVERY_100)


def _sgd(batch_size, iterations, warmup, lr_drops) -> TrainingHparams:
    """SGD 0.1 with momentum 0.9, x0.1 drops, weight decay 1e-4, CIFAR augmentation: what the
    two deep-net recipes share (their sources are given at each call)."""
    return TrainingHparams(
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        batch_size=batch_size,
        iterations=iterations,
        weight_decay=1e-4,
        warmup=warmup,
        lr_drops=lr_drops,
        lr_drop_factor=0.1,
        augment="cifar",
    )


def _global(rates: PruneRates, rewind: str) -> PruningHparams:
    """Global pruning of 20% per round, 20 rounds (papers.md: "conv 20% global")."""
    return PruningHparams(rates=rates, rounds=20, rewind=rewind, scope="global")


# The deep nets' two recipes. Where a number's source is marked "unconfirmed", it is the value
# this registry held before recipes existed and could not be checked against papers.md or
# open_lth; docs/running-imp.md, "Deep networks", lists them.
#
# lth: Frankle & Carbin (2019). papers.md (Figure 2 row): Resnet-18 30K iterations, VGG-19 112K,
# SGD 0.1 momentum 0.9, step decay, warmup, conv 20% global (the output layer stays dense).
# Unconfirmed: batch sizes (128 / 64), drop iterations, warmup lengths (20K / 10K), weight decay
# 1e-4, augmentation. Reset to iteration 0 (papers.md: LTH resets to theta_0).
#
# stabilizing: Frankle et al. (2019/2020), Stabilizing LTH / Linear Mode Connectivity, through
# the authors' framework open_lth (facebookresearch/open_lth at 2ce732f):
# models/cifar_resnet.py and models/cifar_vgg.py default_hparams: batch_size=128,
# optimizer_name='sgd', lr=0.1, momentum=0.9, weight_decay=1e-4, training_steps='160ep',
# milestone_steps='80ep,120ep', gamma=0.1, no warmup_steps, sparse_global pruning_fraction=0.2;
# cifar_vgg.py sets pruning_layers_to_ignore='fc.weight' (output dense), cifar_resnet.py ignores
# nothing (its output layer is pruned with the convs). Augmentation: foundations/hparams.py
# DatasetHparams do_not_augment=False, datasets/cifar10.py random flip and 4-pixel crop.
# No validation split (holdout 0): open_lth trains on all 50,000 CIFAR-10 training images
# (datasets/cifar10.py) and reports the end of training, so 160ep is 62,560 iterations at batch
# 128, as there.
#
# Batch norm at initialisation. stabilizing: open_lth's cifar_resnet.py and cifar_vgg.py
# default_hparams set batchnorm_init='uniform' (models/bn_initializers.py: gamma ~ U[0, 1), beta
# 0). lth: "fixed" (gamma 1, beta 0, Keras' and today's PyTorch's default) [?]: neither the LTH
# paper nor papers.md says how its ResNet and VGG batch norm started (PyTorch before 1.2 drew
# gamma from U[0, 1), the likely origin of open_lth's 'uniform' [?]).
_LTH_RESNET = Recipe(
    training=_sgd(128, "30000it", warmup="20000it", lr_drops="20000it,25000it"),
    pruning=_global(PruneRates(conv=0.2), rewind="0it"),
)
_STABILIZING_RESNET = Recipe(
    training=_sgd(128, "160ep", warmup="0it", lr_drops="80ep,120ep"),
    # Rewind 500it: open_lth README.md section 2.6 (`--rewinding_steps=500it` for
    # cifar_resnet_20); papers.md: "a few hundred iterations for CIFAR ResNet-20".
    pruning=_global(PruneRates(conv=0.2, output=0.2), rewind="500it"),
    batchnorm_init="uniform",
    holdout="0",
)
# VGG-19's LTH run: 112K iterations (papers.md); at batch 64 (unconfirmed) over 45,000 images
# that is 160 epochs, and the drops at 56K and 84K (unconfirmed) are epochs 80 and 120.
_LTH_VGG = Recipe(
    training=_sgd(64, "112000it", warmup="10000it", lr_drops="56000it,84000it"),
    pruning=_global(PruneRates(conv=0.2), rewind="0it"),
)
_STABILIZING_VGG = Recipe(
    training=_sgd(128, "160ep", warmup="0it", lr_drops="80ep,120ep"),
    # Rewind 1000it: papers.md "about a thousand for VGG-16"; open_lth gives no default.
    pruning=_global(PruneRates(conv=0.2), rewind="1000it"),
    batchnorm_init="uniform",
    holdout="0",
)


def _deep_net(name, builder: str, lth: Recipe, stabilizing: Recipe) -> ModelSpec:
    """A CIFAR ResNet/VGG: both recipes, ``stabilizing`` by default (the one that finds
    tickets by rewinding; ``--recipe=lth`` is the LTH paper's warmup and reset)."""
    recipes = {"lth": lth, "stabilizing": stabilizing}
    return ModelSpec(
        name, LazyBuilder(builder), "cifar10", recipes, "stabilizing", _HALF_EPOCH, batch_norm=True
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # Frankle & Carbin (2019), Figure 2 (papers.md section 1): learning rate, iterations,
        # per-kind prune rates.
        _paper_net(
            "lenet300_100",
            "lth_tf.models.lenet:lenet300_100",
            "mnist",
            1.2e-3,
            "50000it",
            PruneRates(fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv2",
            "lth_tf.models.conv:conv2",
            "cifar10",
            2e-4,
            "20000it",
            PruneRates(conv=0.1, fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv4",
            "lth_tf.models.conv:conv4",
            "cifar10",
            3e-4,
            "25000it",
            PruneRates(conv=0.1, fc=0.2, output=0.1),
        ),
        _paper_net(
            "conv6",
            "lth_tf.models.conv:conv6",
            "cifar10",
            3e-4,
            "30000it",
            PruneRates(conv=0.15, fc=0.2, output=0.1),
        ),
        # The LTH paper's "Resnet-18" (CIFAR ResNet, 16/32/64 filters) is open_lth's
        # cifar_resnet_20.
        _deep_net("resnet20", "lth_tf.models.resnet:resnet20", _LTH_RESNET, _STABILIZING_RESNET),
        # open_lth's default_hparams in cifar_vgg.py are for cifar_vgg_16 and apply to every
        # cifar_vgg depth; VGG-16 is not in the LTH paper and takes VGG-19's LTH recipe.
        _deep_net("vgg19", "lth_tf.models.vgg:vgg19", _LTH_VGG, _STABILIZING_VGG),
        _deep_net("vgg16", "lth_tf.models.vgg:vgg16", _LTH_VGG, _STABILIZING_VGG),
    )
}


# A user's model (lth_tf.models.custom): no paper trained it, so its recipes are those of the
# LTH paper's conv nets, the closest to an arbitrary image classifier. Frankle & Carbin (2019),
# Figure 2 (papers.md section 1), Conv-2/Conv-4: Adam 3e-4 (Conv-4/6), batch 60, per round
# conv 10%, fc 20%, output 10%. Length in epochs, so it scales with the user's data: Conv-4's
# 25,000 iterations at batch 60 over 45,000 training images are 33 epochs.
# "stabilizing" (the default: a user's model is often deep, with batch norm, where rewinding
# to iteration 0 fails; Frankle et al. 2020) rewinds to 1 epoch, 3% of training: papers.md
# gives rewind points of a few hundred to a thousand iterations, 0.1-7% into training.
_CUSTOM_TRAINING = TrainingHparams(
    optimizer="adam", learning_rate=3e-4, batch_size=60, iterations="33ep"
)
_CUSTOM_RATES = PruneRates(conv=0.1, fc=0.2, output=0.1)
CUSTOM_RECIPES = {
    "lth": Recipe(_CUSTOM_TRAINING, PruningHparams(rates=_CUSTOM_RATES, rewind="0it")),
    "stabilizing": Recipe(_CUSTOM_TRAINING, PruningHparams(rates=_CUSTOM_RATES, rewind="1ep")),
}
# Every half epoch, to 10 iterations: a user's dataset may be small (a few hundred images), and
# each evaluation also writes a checkpoint, so never more often than every 10 iterations.
CUSTOM_AUTO_EVAL = AutoEval(epochs=0.5, rounding=10)


def custom_spec(
    name: str,
    build: Callable[[tuple[int, ...], int], tf_keras.Model],
    fresh: Callable[[tuple[int, ...], int], tf_keras.Model] | None = None,
) -> ModelSpec:
    """A user's model with the recipes every user's model gets (:data:`CUSTOM_RECIPES`)."""
    return ModelSpec(
        name, build, None, CUSTOM_RECIPES, "stabilizing", CUSTOM_AUTO_EVAL, fresh, batch_norm=None
    )


def _models_with(recipe: str) -> list[str]:
    return [name for name, spec in MODELS.items() if recipe in spec.recipes]


def check_input_shape(name: str, input_shape: tuple[int, ...]) -> None:
    """Refuses examples a registered net cannot take, before anything is built or written:
    every net but lenet300_100 (which flattens) convolves images (height, width, channels).

    >>> check_input_shape("conv2", (784,))
    Traceback (most recent call last):
    lth_tf.errors.LthError: --model=conv2 takes images (height, width, channels), but the \
data's examples have shape (784,); give images with a channel axis (e.g. [N, 28, 28, 1]), or use \
lenet300_100 or a model of your own for feature rows
    """
    if name in MODELS and name != "lenet300_100" and len(input_shape) != 3:
        raise LthError(
            f"--model={name} takes images (height, width, channels), but the data's "
            f"examples have shape {tuple(input_shape)}; give images with a channel axis (e.g. "
            "[N, 28, 28, 1]), or use lenet300_100 or a model of your own for feature rows"
        )


def get_model(name: str) -> ModelSpec:
    """The registered model called ``name``, or a user's model (:mod:`lth_tf.models.custom`)
    built from where ``name`` says; an unknown name is a user error.

    A user's model found this way builds from the file or function itself; an experiment's
    own copy is :func:`lth_tf.provenance.experiment_model`.
    """
    if name in MODELS:
        return MODELS[name]
    from lth_tf.models import custom

    kind = custom.model_kind(name)
    if kind == "keras_file":

        def load(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
            model = custom.load_keras_file(name)
            custom.check_fits(model, f"--model={name}", input_shape, num_classes)
            return model

        return custom_spec(name, load, fresh=fresh_copy(load))
    if kind == "builder":
        custom.check_model_name(name)
        custom.check_findable(name, "--model")

        def build(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
            function = custom.import_builder(name)
            model = custom.call_builder(function, f"--model={name}", input_shape, num_classes)
            custom.check_fits(model, f"--model={name}", input_shape, num_classes)
            return model

        return custom_spec(name, build)
    if kind == "python":

        def absent(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
            raise LthError(
                f"{name} was a model object handed to lth_tf.find_tickets; it builds only from "
                "its experiment's copy (<experiment>/model.keras)"
            )

        return custom_spec(name, absent)
    if name.lower().endswith((".h5", ".hdf5")) or Path(name, "saved_model.pb").is_file():
        raise LthError(
            f"--model={name}: lth_tf reads models saved as .keras files only; load it in Keras "
            "and save it again with model.save('model.keras')"
        )
    if Path(name).is_dir():
        raise LthError(
            f"--model={name} is a directory; pass a model saved as one file, "
            "path/to/model.keras (model.save('model.keras')), a registered model or a builder"
        )
    raise LthError(
        f"--model: unknown model {name!r}; choose one of {', '.join(MODELS)}, a saved model "
        "(path/to/model.keras) or a builder (package.module:function)"
    )


def fresh_copy(
    load: Callable[[tuple[int, ...], int], tf_keras.Model],
) -> Callable[[tuple[int, ...], int], tf_keras.Model]:
    """Builds a loaded model's architecture again, every layer with new values from its own
    initialisers (Keras' ``clone_model`` keeps the layers' names, so the variables' keys)."""

    def fresh(input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        import tf_keras

        return tf_keras.models.clone_model(load(input_shape, num_classes))

    return fresh


def paper_defaults(
    model: str,
    dataset: str | None = None,
    recipe: str | None = None,
    compiled: str | None = None,
) -> ExperimentHparams:
    """The hyperparameters of ``recipe`` (default: the model's own) for ``model``, on its
    default dataset unless one is given. An unknown recipe, or one the model lacks, is a user
    error. ``recipe="compiled"`` (:func:`compiled_defaults`) takes the compiled recipe from
    ``compiled`` (the API's model object) or the ``.keras`` file.

    >>> paper_defaults("lenet300_100", "fashion_mnist").pruning.rates.fc
    0.2
    >>> paper_defaults("resnet20").model
    ModelHparams(name='resnet20', recipe='stabilizing', batchnorm_init='uniform')
    """
    if recipe == "compiled":
        return compiled_defaults(model, dataset, compiled)
    spec = get_model(model)
    name = spec.default_recipe if recipe is None else recipe
    chosen = spec.recipe(name)
    dataset = dataset or spec.dataset
    if dataset is None:
        raise LthError(
            f"--model={model} needs --dataset: npz:PATH (arrays x_train, y_train, x_test, "
            "y_test) or tfds:NAME"
        )
    return ExperimentHparams(
        dataset=DatasetHparams(dataset, holdout=chosen.holdout),
        model=ModelHparams(model, name, chosen.batchnorm_init),
        training=chosen.training,
        pruning=chosen.pruning,
    )


def compiled_defaults(
    model: str, dataset: str | None = None, compiled: str | None = None
) -> ExperimentHparams:
    """``--recipe=compiled``: the model's own recipe (a user's model: ``stabilizing``'s length,
    batch and pruning), trained with the optimizer, schedule and loss it was compiled with.

    ``compiled`` is the recipe of a model object (:func:`lth_tf.recipe.compiled_from_object`);
    a ``.keras`` file's is read from the file. A model that was not compiled is one line.

    >>> compiled_defaults("models/tiny.keras", "npz:data/shapes.npz").training.optimizer
    ...  # doctest: +SKIP
    'compiled'
    """
    from lth_tf.models.custom import model_kind
    from lth_tf.recipe import compiled_from_file

    kind = model_kind(model)
    if compiled is None and kind == "keras_file":
        compiled = compiled_from_file(model)
    if compiled is None:
        what = {
            "keras_file": f"{model} was saved uncompiled",
            "python": "the model object is not compiled",
            "builder": "a builder's model is built after the flags are read",
        }.get(kind, f"{model} is not a model of your own")
        raise LthError(
            f"--recipe=compiled trains with the optimizer, schedule and loss a model was "
            f"compiled with, but {what}: compile it, save it (model.save('model.keras')) and "
            "pass --model=model.keras, or set --optimizer, --lr_schedule and --label_smoothing"
        )
    base = paper_defaults(model, dataset)
    return dataclasses.replace(
        base,
        model=ModelHparams(model, "compiled"),
        training=dataclasses.replace(base.training, optimizer="compiled", compiled=compiled),
    )


def resolve_steps(hparams: ExperimentHparams, num_train_examples: int) -> Resolved:
    """``hparams``' step strings as iteration counts for a training set of this size, with
    ``--eval_every=auto`` as its model says (:attr:`ModelSpec.auto_eval`).

    >>> resolve_steps(paper_defaults("lenet300_100"), 55_000).eval_every
    100
    """
    return hparams.resolve(num_train_examples, get_model(hparams.model.name).auto_eval)


def experiment_hparams(
    model: str,
    dataset: str | None = None,
    recipe: str | None = None,
    changes: Mapping[str, Any] | None = None,
    compiled: str | None = None,
) -> ExperimentHparams:
    """The recipe's hyperparameters for ``model`` on ``dataset``, with ``changes`` applied.

    ``changes`` are keyed by flag name (``iterations``, ``prune_rates``, ``pruning``, ...: see
    :func:`lth_tf.config.hparam_flags`); a string value is parsed as its flag would be, other
    values are taken as they are. The pipelines' flags and :func:`lth_tf.find_tickets` both
    come here, so the same settings give the same experiment. ``compiled``: the compiled recipe
    of the API's model object, for ``recipe="compiled"``.

    >>> hparams = experiment_hparams("conv6", changes={"iterations": 500, "prune_rates": "fc=0.3"})
    >>> hparams.training.iterations, hparams.pruning.rates.fc, hparams.pruning.rates.conv
    ('500it', 0.3, 0.15)
    """
    from lth_tf.data.sources import check_dataset_name
    from lth_tf.models.custom import check_keras_file, check_model_name, model_kind

    model = check_model_name(model)
    # A file that is gone may still resume the experiment it started, from that experiment's
    # copy (lth_tf.provenance.model_record); --recipe=compiled reads the file itself.
    if model_kind(model) == "keras_file" and recipe == "compiled" and not Path(model).exists():
        raise LthError(
            f"--model={model}: does not exist; --recipe=compiled reads the model's compiled "
            "optimizer, schedule and loss from the file, also to resume: put the file back"
        )
    if model_kind(model) == "keras_file" and Path(model).exists():
        check_keras_file(model)  # before TensorFlow starts: the file is there, and Keras 2's
    dataset = check_dataset_name(dataset) if dataset is not None else None
    base = paper_defaults(model, dataset, recipe, compiled)
    if recipe == "compiled":
        overridden = [f"--{name}" for name in COMPILED_FIELDS if name in (changes or {})]
        if overridden:
            raise LthError(
                f"--recipe=compiled trains with the model's compiled optimizer, schedule and "
                f"loss; {', '.join(overridden)} would change them: drop "
                f"{'it' if len(overridden) == 1 else 'them'}, or compile the model with it"
            )
    by_name = {flag.name: flag for flag in hparam_flags()}
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in (changes or {}).items():
        flag = by_name.get(name)
        if flag is None or flag.field in ("name", "recipe"):
            settable = sorted(set(by_name) - {"model", "dataset", "recipe"})
            raise LthError(
                f"unknown hyperparameter {name!r} (model, dataset and recipe are set apart); "
                f"choose from {', '.join(settable)}"
            )
        recipe_value = getattr(getattr(base, flag.group), flag.field)
        grouped.setdefault(flag.group, {})[flag.field] = _hparam_value(flag, value, recipe_value)
    batchnorm_init = grouped.get("model", {}).get("batchnorm_init", "fixed")
    if batchnorm_init != "fixed" and get_model(model).batch_norm is False:
        raise LthError(
            f"--batchnorm_init={batchnorm_init}: {model} has no batch-norm layers; leave the "
            "flag out (it sets the batch-norm weights of resnet20, vgg16, vgg19 or your model)"
        )
    pruning = grouped.get("pruning", {})
    given_rates = (changes or {}).get("prune_rates")
    if (
        pruning.get("granularity", base.pruning.granularity) == "channel"
        and isinstance(given_rates, str)
        and "output" in {pair.split("=")[0].strip() for pair in given_rates.split(",")}
        and pruning["rates"].output != 0
    ):
        raise LthError(
            f"--prune_rates: output={pruning['rates'].output:g} has no effect under "
            "--granularity=channel: the layer that makes the class scores keeps its units (one "
            "per class); drop output= from --prune_rates"
        )
    if pruning.get("prune_for", base.pruning.prune_for) == "xnnpack" and "rates" not in pruning:
        # The recipe's conv rate, raised so the 1x1 convolutions pass XNNPack's 2/3 zeros in
        # the rounds a run has (the user's --prune_rates, when given, stay as they are).
        rates = base.pruning.rates
        conv = max(rates.conv, XNNPACK_CONV_RATE)
        grouped.setdefault("pruning", {})["rates"] = dataclasses.replace(rates, conv=conv)
    return dataclasses.replace(
        base,
        **{
            group: dataclasses.replace(getattr(base, group), **fields)
            for group, fields in grouped.items()
        },
    )


def _hparam_value(flag: HparamFlag, value: Any, recipe_value: Any) -> Any:
    """``value`` for ``flag``'s field: a string parsed as the flag parses it; a number where a
    step string is expected is iterations; a wrong type is a user error naming the flag."""
    if flag.parse is not None and isinstance(value, str):
        return flag.parse(value, recipe_value)
    if flag.boolean and isinstance(value, bool):
        return flag.parse(value, recipe_value)  # e.g. augment=True, as the flag was once
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)  # numpy's integers too (a loop over np.arange)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
    if flag.parse is None and flag.type is str and isinstance(value, int | str):
        return str(value)
    if flag.type is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if flag.type is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if flag.type is bool and isinstance(value, bool):
        return value
    if flag.parse is not None and isinstance(value, type(recipe_value)):
        return value
    raise LthError(
        f"{flag.name} (--{flag.name}): {value!r} is {_with_article(type(value).__name__)}; it "
        f"takes {'a string' if flag.parse else _with_article(flag.type.__name__)} (e.g. "
        f"{recipe_value})"
    )


def _with_article(noun: str) -> str:
    """A type's name as a message says it.

    >>> _with_article("int"), _with_article("float")
    ('an int', 'a float')
    """
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
