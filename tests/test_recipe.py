"""The user's training recipe (issue 24 item 3): ``--recipe=compiled`` from a ``.keras`` file's
compile config (tf_keras or Keras 3) or a model object, any tf_keras optimizer with its
arguments, ``--lr_schedule=cosine``, ``--label_smoothing`` and ``--augment=module:function``.

One compiled run (AdamW, cosine decay with warmup, label smoothing, a seeded augmentation) is
shared: its hparams.json, the learning rate round 1 starts with, and a killed and resumed copy
of it, bit for bit."""

from __future__ import annotations

import inspect
import json
import logging
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.config import ExperimentHparams, TrainingHparams
from lth_tf.errors import LthError
from lth_tf.experiment import default_experiment_name, open_experiment
from lth_tf.models import experiment_hparams, paper_defaults
from lth_tf.recipe import (
    OPTIMIZER_ARGS,
    OPTIMIZER_CLASSES,
    SCHEDULE_ARGS,
    LossSpec,
    compiled_from_file,
    compiled_from_object,
    compiled_json,
    parse_optimizer_args,
)
from tests.helpers import assert_one_line_error, run_killed_after_a_checkpoint, run_main

# What Keras 3.15.1 writes into config.json for
# compile(AdamW(CosineDecay(0.0, 60, warmup_target=0.01, warmup_steps=10), weight_decay=0.05),
#         CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)).
KERAS3_COMPILED = {
    "optimizer": {
        "module": "keras.optimizers",
        "class_name": "AdamW",
        "config": {
            "name": "adam_w",
            "learning_rate": {
                "module": "keras.optimizers.schedules",
                "class_name": "CosineDecay",
                "config": {
                    "initial_learning_rate": 0.0,
                    "decay_steps": 60,
                    "alpha": 0.0,
                    "name": "CosineDecay",
                    "warmup_target": 0.01,
                    "warmup_steps": 10,
                },
                "registered_name": None,
            },
            "weight_decay": 0.05,
            "clipnorm": None,
            "global_clipnorm": None,
            "clipvalue": None,
            "use_ema": False,
            "ema_momentum": 0.99,
            "ema_overwrite_frequency": None,
            "loss_scale_factor": None,
            "gradient_accumulation_steps": None,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-07,
            "amsgrad": False,
        },
        "registered_name": None,
    },
    "loss": {
        "module": "keras.losses",
        "class_name": "CategoricalCrossentropy",
        "config": {
            "name": "categorical_crossentropy",
            "reduction": "sum_over_batch_size",
            "from_logits": True,
            "label_smoothing": 0.1,
            "axis": -1,
        },
        "registered_name": None,
    },
}
ITERATIONS, REWIND = 60, 20
SETTINGS = [
    "--recipe=compiled",
    "--rounds=1",
    f"--iterations={ITERATIONS}",
    "--eval_every=20",
    f"--rewind={REWIND}",
    "--batch_size=30",
    "--augment=tests.augmentations:jitter",
]


def _tiny_net():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="logits"),
        ]
    )


def _schedule():
    import tf_keras as keras

    return keras.optimizers.schedules.CosineDecay(0.0, 60, warmup_target=0.01, warmup_steps=10)


def _tiny_arrays() -> dict[str, np.ndarray]:
    """Class c lights rows 2c, 2c+1 of a 6x6 image of noise."""
    rng = np.random.default_rng(0)

    def split(count: int):
        labels = rng.integers(0, 3, count)
        images = rng.integers(0, 50, (count, 6, 6, 1)).astype(np.uint8)
        for image, label in zip(images, labels, strict=True):
            image[2 * label : 2 * label + 2] = 250
        return images, labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(300), split(90)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The user's tiny npz, and the tiny net saved compiled (AdamW + cosine + smoothing), with
    a regression loss, and uncompiled."""
    import tf_keras as keras

    root = tmp_path_factory.mktemp("recipe")
    np.savez(root / "tiny.npz", **_tiny_arrays())
    model = _tiny_net()
    model.compile(
        keras.optimizers.AdamW(_schedule(), weight_decay=0.05),
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=["accuracy"],
    )
    model.save(root / "compiled.keras")
    model.compile("adam", "mse")
    model.save(root / "mse.keras")
    _tiny_net().save(root / "plain.keras")
    return SimpleNamespace(
        root=root,
        npz=root / "tiny.npz",
        compiled=root / "compiled.keras",
        mse=root / "mse.keras",
        plain=root / "plain.keras",
        out=root / "runs",
    )


def imp(*args: str, tensorflow: bool = True):
    return run_main("pipelines.imp", *args, "--noprogress", tensorflow=tensorflow)


@pytest.fixture(scope="module")
def compiled_run(files):
    """``--recipe=compiled`` with a seeded augmentation, uninterrupted; records the learning
    rate each round's fresh optimizer starts with."""
    from lth_tf.training.trainer import Trainer

    starts = []
    reset = Trainer.reset_optimizer

    def recording(self, schedule_start=0):
        reset(self, schedule_start)
        # What the round's first apply_gradients evaluates: the optimizer's schedule at its own
        # step, fresh (0). (optimizer.learning_rate is the rate of the last step taken.)
        step = int(self.optimizer.iterations.numpy())
        starts.append((schedule_start, step, float(self.optimizer._learning_rate(step))))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "reset_optimizer", recording)
        result = imp(
            f"--model={files.compiled}",
            f"--dataset=npz:{files.npz}",
            *SETTINGS,
            f"--output_dir={files.out}",
            "--experiment_name=whole",
        )
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(path=files.out / "whole", starts=starts)


# -- the compiled recipe ---------------------------------------------------------------------


def test_hparams_json_holds_the_compiled_optimizer_schedule_and_loss(compiled_run):
    saved = io.read_json(compiled_run.path / "hparams.json")["hparams"]
    assert saved["model"]["recipe"] == "compiled"
    training = saved["training"]
    assert training["optimizer"] == "compiled"
    assert training["augment"] == "tests.augmentations:jitter"
    optimizer, loss = training["compiled"]["optimizer"], training["compiled"]["loss"]
    assert optimizer["class_name"] == "AdamW" and optimizer["config"]["weight_decay"] == 0.05
    assert optimizer["config"]["learning_rate"] == {
        "class_name": "CosineDecay",
        "config": {
            "alpha": 0.0,
            "decay_steps": 60,
            "initial_learning_rate": 0.0,
            "warmup_steps": 10,
            "warmup_target": 0.01,
        },
    }
    assert loss == {
        "class_name": "CategoricalCrossentropy",
        "config": {"from_logits": True, "label_smoothing": 0.1},
    }
    # It reads back as the experiment it is (a resume finds the same identity).
    assert lth_tf.Experiment(compiled_run.path).hparams.training.compiled


def test_round_1_rewound_to_k_starts_with_the_schedules_value_at_k(compiled_run):
    schedule = _schedule()
    assert [(start, step) for start, step, _ in compiled_run.starts] == [(0, 0), (REWIND, 0)]
    for start, _, rate in compiled_run.starts:
        assert rate == pytest.approx(float(schedule(start)), rel=1e-6)
    assert compiled_run.starts[1][2] > 0.009  # past the warmup, not its start (0)


def test_a_killed_run_with_a_seeded_augmentation_resumes_bit_for_bit(files, compiled_run):
    flags = [
        f"--model={files.compiled}",
        f"--dataset=npz:{files.npz}",
        *SETTINGS,
        f"--output_dir={files.out}",
        "--experiment_name=killed",
    ]
    run_killed_after_a_checkpoint(*flags, "--noprogress")
    killed = files.out / "killed"
    assert (killed / "round_01" / "checkpoint.npz").exists()
    assert imp(*flags).returncode == 0
    sessions = io.read_json(killed / "sessions.json")
    assert [(s["first_round"], s["resumes_mid_round"]) for s in sessions] == [(0, False), (1, True)]

    def rows(path):
        return [
            {k: v for k, v in row.items() if k != "train_seconds"}
            for row in io.read_csv(path / "results.csv")
        ]

    assert rows(killed) == rows(compiled_run.path)
    for pruning_round in (0, 1):
        for file in ("masks.npz", "weights.npz"):
            mine = io.read_npz(killed / f"round_{pruning_round:02d}" / file)
            theirs = io.read_npz(compiled_run.path / f"round_{pruning_round:02d}" / file)
            assert mine.keys() == theirs.keys()
            for name in mine:
                np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def test_a_keras3_compile_config_is_its_tf_keras_equivalent(files, tmp_path):
    from_tf_keras = compiled_from_file(files.compiled)
    assert compiled_json(KERAS3_COMPILED["optimizer"], KERAS3_COMPILED["loss"]) == from_tf_keras
    # Read from a file as data: nothing is imported.
    keras3_file = tmp_path / "k3.keras"
    with zipfile.ZipFile(keras3_file, "w") as archive:
        archive.writestr("config.json", json.dumps({"compile_config": KERAS3_COMPILED}))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    assert compiled_from_file(keras3_file) == from_tf_keras
    assert compiled_from_file(files.plain) is None
    # A Keras 3 model object compiled the same way (the API's), read from its objects.
    keras3 = pytest.importorskip("keras")
    assert keras3.__version__.startswith("3")
    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(3)])
    schedule = keras3.optimizers.schedules.CosineDecay(0.0, 60, warmup_target=0.01, warmup_steps=10)
    model.compile(
        keras3.optimizers.AdamW(schedule, weight_decay=0.05),
        keras3.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    )
    assert compiled_from_object(model) == from_tf_keras
    accumulating = json.loads(json.dumps(KERAS3_COMPILED["optimizer"]))
    accumulating["config"]["gradient_accumulation_steps"] = 4
    with pytest.raises(LthError, match="gradient_accumulation_steps=4, which has no tf_keras"):
        compiled_json(accumulating, "sparse_categorical_crossentropy")
    with pytest.raises(LthError, match="optimizer Muon has no tf_keras equivalent"):
        compiled_json({"class_name": "Muon", "config": {}}, "sparse_categorical_crossentropy")


def test_a_compiled_model_object_trains_as_compiled_through_the_api(files, tmp_path):
    import tf_keras as keras

    model = _tiny_net()
    steps = keras.optimizers.schedules.PiecewiseConstantDecay([10], [0.05, 0.005])
    model.compile(keras.optimizers.SGD(steps, momentum=0.9), "sparse_categorical_crossentropy")
    arrays = _tiny_arrays()
    experiment = lth_tf.find_tickets(
        model,
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        output_dir=tmp_path,
        rounds=0,
        iterations="20it",
        tensorboard=False,
    )
    assert experiment.hparams.model.recipe == "compiled"
    compiled = json.loads(experiment.hparams.training.compiled)
    assert compiled["optimizer"]["class_name"] == "SGD"
    assert compiled["optimizer"]["config"]["momentum"] == 0.9
    schedule = compiled["optimizer"]["config"]["learning_rate"]
    assert schedule["class_name"] == "PiecewiseConstantDecay"
    assert compiled["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    assert experiment.results[0].test_accuracy > 0.5
    # An optimizer setting given to find_tickets means the recipe's defaults, as it did before.
    from lth_tf.api import _compiled_recipe

    assert _compiled_recipe("python:x", model, None, {"learning_rate": 0.1}) == (None, None)
    assert _compiled_recipe("python:x", model, "stabilizing", {}) == ("stabilizing", None)


# -- refusals: one line, exit 2, no directory ------------------------------------------------


@pytest.mark.parametrize(
    ("model", "args", "reason"),
    [
        ("mse", ["--recipe=compiled"], "the model's loss mse is not a classification loss"),
        ("plain", ["--recipe=compiled"], "was saved uncompiled"),
        ("compiled", ["--recipe=compiled", "--label_smoothing=0.2"], "--label_smoothing would"),
        ("plain", ["--optimizer=adamw", "--optimizer_args=beta_3=1"], "adamw has no argument"),
        ("plain", ["--optimizer=adamw", "--optimizer_args=beta_2=2"], "beta_2=2 is outside [0, 1)"),
        ("plain", ["--optimizer_args=epsilon=small"], "epsilon=small is not a number"),
        ("plain", ["--optimizer=adamx"], "'adamx' is not a tf_keras optimizer"),
        ("plain", ["--label_smoothing=1"], "--label_smoothing must be a finite number in [0, 1)"),
        ("plain", ["--lr_schedule=cosine", "--lr_drops=10"], "drop one of the two"),
        ("plain", ["--augment=not a function"], "is not none, cifar or package.module:function"),
    ],
)
def test_bad_recipes_are_one_line_before_tensorflow_starts(files, model, args, reason):
    output = files.root / "refused"
    result = imp(
        f"--model={getattr(files, model)}",
        f"--dataset=npz:{files.npz}",
        *args,
        f"--output_dir={output}",
        tensorflow=False,
    )
    assert_one_line_error(result, reason)
    assert not output.exists()


@pytest.mark.parametrize(
    ("model", "args", "said"),
    [
        ("compiled", [], True),  # the recipe's default: the compile goes unused
        ("compiled", ["--recipe=stabilizing"], False),  # asked for
        ("compiled", ["--recipe=compiled"], False),
        ("plain", [], False),  # nothing compiled to miss
        ("compiled", ["--learning_rate=0.1"], False),  # an optimizer setting chosen
    ],
)
def test_a_compiled_file_trained_by_another_recipe_says_so(files, caplog, model, args, said):
    """The command line trains a compiled file with the recipe's optimizer unless told
    --recipe=compiled (find_tickets uses the compile): left out, one line says so."""
    output = files.root / "said"
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        result = imp(
            f"--model={getattr(files, model)}",
            f"--dataset=npz:{files.npz}",
            *args,
            "--strategy=no_such_strategy",  # stops the run before TensorFlow starts
            f"--output_dir={output}",
            tensorflow=False,
        )
    assert_one_line_error(result, "no_such_strategy")
    line = (
        f"--model={files.compiled} was saved compiled (AdamW), but trains with the stabilizing "
        "recipe's adam at learning rate 0.0003; --recipe=compiled trains it with its own "
        "optimizer, schedule and loss"
    )
    assert (line in caplog.text) == said
    assert said or "saved compiled" not in caplog.text


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("crops", "changed the batch's images from float32[30, 6, 6, 1] to float32[30, 5, 6, 1]"),
        ("raises", "raised ValueError: no such op"),
        ("absent", "tests.augmentations has no function 'absent'"),
        ("relabels", "for the first batch, which is no class of the data's"),
        ("divides_by_zero", "returned images with NaN or infinite values for the first batch"),
    ],
)
def test_a_broken_augmentation_is_one_line_before_the_directory_is_made(files, function, reason):
    output = files.root / "broken"
    result = imp(
        f"--model={files.plain}",
        f"--dataset=npz:{files.npz}",
        "--batch_size=30",
        f"--augment=tests.augmentations:{function}",
        f"--output_dir={output}",
    )
    assert_one_line_error(result, reason)
    assert not output.exists()


# -- the flags' optimizers, schedules and losses ---------------------------------------------


def test_the_optimizer_tables_are_tf_keras_own():
    import tf_keras

    classes = {
        name
        for name, value in vars(tf_keras.optimizers).items()
        if isinstance(value, type) and issubclass(value, tf_keras.optimizers.Optimizer)
    }
    assert set(OPTIMIZER_CLASSES.values()) == classes - {"Optimizer"} == set(OPTIMIZER_ARGS)
    for name, arguments in OPTIMIZER_ARGS.items():
        taken = inspect.signature(getattr(tf_keras.optimizers, name)).parameters
        assert set(arguments) | {"weight_decay", "clipnorm"} <= set(taken), name
    for name, arguments in SCHEDULE_ARGS.items():
        taken = inspect.signature(getattr(tf_keras.optimizers.schedules, name)).parameters
        assert set(arguments) <= set(taken), name


def test_optimizer_args_reach_the_optimizer_and_cosine_starts_at_k():
    import tensorflow as tf

    from lth_tf.training.optimizers import make_optimizer

    assert parse_optimizer_args(" beta_2=.98,weight_decay=5e-2 ", "AdamW") == (
        "beta_2=0.98,weight_decay=0.05"
    )
    training = TrainingHparams(
        optimizer="adamw",
        optimizer_args="weight_decay=0.05,beta_2=0.98",
        learning_rate=0.1,
        lr_schedule="cosine",
        warmup="10it",
        iterations="110it",
    )
    start = tf.Variable(60, dtype=tf.int64)
    optimizer = make_optimizer(training, start)
    assert type(optimizer).__name__ == "AdamW"
    assert (optimizer.weight_decay, optimizer.beta_2) == (0.05, 0.98)
    # Halfway through the cosine decay after 10 warmup iterations.
    assert float(optimizer.learning_rate) == pytest.approx(0.05, rel=1e-5)
    plain = make_optimizer(TrainingHparams(), start)
    assert type(plain).__name__ == "Adam" and float(plain.learning_rate) == pytest.approx(1.2e-3)


def test_label_smoothing_is_keras_categorical_cross_entropy_on_one_hot_labels():
    import tensorflow as tf
    import tf_keras

    from lth_tf.training.optimizers import example_losses, loss_spec

    labels = tf.constant([0, 2, 1], tf.int64)
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    smoothed = example_losses(loss_spec(TrainingHparams(label_smoothing=0.1)), labels, logits, True)
    keras_loss = tf_keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1, reduction="none"
    )
    np.testing.assert_allclose(smoothed, keras_loss(tf.one_hot(labels, 3), logits), rtol=1e-6)
    # Without smoothing: the sparse cross-entropy of before, exactly.
    assert loss_spec(TrainingHparams()) == LossSpec()
    plain = example_losses(LossSpec(), labels, logits, True)
    expected = tf_keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    np.testing.assert_array_equal(plain, expected)


# -- what existed before stays as it was -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "changes", "name"),
    [
        # Names lth_tf gave these experiments before --augment took a function.
        ("lenet300_100", {}, "lenet300_100-mnist-44136fa3"),
        ("lenet300_100", {"augment": "true"}, "lenet300_100-mnist-b8a71c4a"),
        ("resnet20", {"augment": "false"}, "resnet20-cifar10-244a1d1a"),
        ("resnet20", {"augment": True}, "resnet20-cifar10-44136fa3"),
        ("lenet300_100", {"optimizer": "sgd", "momentum": 0.9}, "lenet300_100-mnist-352b8e8b"),
    ],
)
def test_experiment_names_of_before_are_unchanged(model, changes, name):
    hparams = experiment_hparams(model, changes=changes)
    defaults = paper_defaults(model)
    assert default_experiment_name(hparams, defaults) == name


def test_an_hparams_json_with_a_boolean_augment_resumes(tmp_path):
    hparams = experiment_hparams("lenet300_100", changes={"augment": "cifar"})
    old = hparams.to_dict()
    old["training"]["augment"] = True  # as written before
    for key in ("optimizer_args", "lr_schedule", "label_smoothing"):
        del old["training"][key]
    assert ExperimentHparams.from_dict(old) == hparams
    io.write_json(tmp_path / "hparams.json", {"format_version": 1, "hparams": old})
    assert open_experiment(tmp_path, hparams, {}).root == tmp_path


def test_an_augmentation_is_checked_where_it_is_traced_and_named_for_the_api():
    import tensorflow as tf

    from lth_tf.api import _named_augmentation
    from lth_tf.data.pipeline import augmentation
    from tests import augmentations

    augment = augmentation("tests.augmentations:jitter")
    images, labels = tf.zeros((4, 6, 6, 1)), tf.range(4, dtype=tf.int64)
    seed = tf.constant([0, 7], tf.int64)
    first, again = augment(images, labels, seed)[0], augment(images, labels, seed)[0]
    np.testing.assert_array_equal(first, again)  # a function of the seed alone
    other = augment(images, labels, tf.constant([0, 8], tf.int64))[0]
    assert not np.array_equal(first, other)  # another iteration, another batch

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 1]), tf.TensorSpec([None], tf.int64)])
    def traced(images, labels):
        # Inside the compiled step the batch size may be unknown: compatible shapes pass.
        return augment(images, labels, seed)

    assert traced(images, labels)[0].shape == (4, 6, 6, 1)
    assert _named_augmentation({"augment": augmentations.jitter}) == {
        "augment": "tests.augmentations:jitter"
    }
    with pytest.raises(LthError, match="module-level function"):
        _named_augmentation({"augment": lambda images, labels, seed: (images, labels)})


def test_the_compiled_metrics_a_run_leaves_out_are_named(files, tmp_path, caplog):
    import tf_keras as keras

    model = _tiny_net()
    model.compile(
        "sgd",
        "sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3)],
        weighted_metrics=["sparse_categorical_accuracy"],
    )
    model.save(tmp_path / "metrics.keras")
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        result = imp(
            f"--model={tmp_path / 'metrics.keras'}",
            f"--dataset=npz:{files.npz}",
            "--recipe=compiled",
            "--strategy=no_such_strategy",  # stops the run before TensorFlow starts
            f"--output_dir={tmp_path / 'runs'}",
            tensorflow=False,
        )
    assert_one_line_error(result, "no_such_strategy")
    assert (
        "The compile's metrics SparseTopKCategoricalAccuracy are not computed: a run measures "
        "accuracy (--callback adds a metric of yours)."
    ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lth_tf"):
        imp(
            f"--model={files.compiled}",  # compiled with accuracy only
            f"--dataset=npz:{files.npz}",
            "--recipe=compiled",
            "--strategy=no_such_strategy",
            f"--output_dir={tmp_path / 'runs'}",
            tensorflow=False,
        )
    assert "not computed" not in caplog.text


def test_a_loss_given_by_name_on_logits_trains_on_logits_and_says_so(caplog):
    """compile(loss="sparse_categorical_crossentropy") serialises no from_logits: the head
    decides, where Keras would take logits as probabilities."""
    import tensorflow as tf

    from lth_tf.recipe import compiled_json
    from lth_tf.training.trainer import Trainer
    from tests.helpers import tiny_dataset
    from tests.tf_helpers import half_pruned_lenet

    for loss, said in (
        ("sparse_categorical_crossentropy", True),
        ({"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}}, False),
    ):
        training = TrainingHparams(optimizer="compiled", compiled=compiled_json("sgd", loss))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lth_tf"):
            trainer = Trainer(
                half_pruned_lenet(), tiny_dataset(), training, tf.distribute.get_strategy(), False
            )
        assert trainer.from_logits  # lenet ends in logits
        assert ("trains on them as logits" in caplog.text) == said, loss


def test_legends_and_hparams_show_the_compiles_settings_not_the_recipes(files):
    """hparams.json keeps the recipe's learning rate beside training.compiled (its name hashes
    it); what a report or TensorBoard shows is what trained."""
    from lth_tf.config import COMPILED_FIELDS, flat_hparams

    compiled = experiment_hparams(str(files.compiled), f"npz:{files.npz}", "compiled")
    flat = flat_hparams(compiled.to_dict())
    assert compiled.training.learning_rate == 3e-4  # the recipe's, kept in hparams.json
    assert "learning_rate" in flat and "label_smoothing" in flat
    assert all(flat[name] == "compiled" for name in COMPILED_FIELDS if name in flat)
    assert flat["compiled.optimizer.class_name"] == "AdamW"
    plain = flat_hparams(experiment_hparams(str(files.plain), f"npz:{files.npz}").to_dict())
    assert plain["learning_rate"] == 3e-4 and plain["optimizer"] == "adam"
