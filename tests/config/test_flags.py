"""The hyperparameter flags that pipelines/hparam_flags.py generates from lth_tf.config's fields,
parsed in this process: each on a fresh ``FlagValues`` except where ``pipelines.imp``'s own
flags (the branch's) are needed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from absl import flags

from lth_tf import io
from lth_tf.config import (
    XNNPACK_CONV_RATE,
    DatasetHparams,
    ExperimentHparams,
    ModelHparams,
    PruneRates,
    PruningHparams,
    TrainingHparams,
)
from lth_tf.errors import LthError
from lth_tf.execution import Execution
from lth_tf.experiment import RESULT_COLUMNS, open_experiment
from lth_tf.models import paper_defaults
from pipelines.common import EXECUTION_FLAGS, define_execution_flags, execution_from_flags
from pipelines.hparam_flags import (
    define_hparam_flags,
    hparam_flag_names,
    hparam_flags,
    hparams_from_flags,
)
from tests.helpers import ROOT, imp_hparams

# One value per training and pruning flag, other than the default of the model it is given
# with, and the field value it must give.
EXAMPLES = {
    "optimizer": ("lenet300_100", "sgd", "sgd"),
    "learning_rate": ("lenet300_100", "0.5", 0.5),
    "momentum": ("lenet300_100", "0.9", 0.9),
    "batch_size": ("lenet300_100", "32", 32),
    "iterations": ("lenet300_100", "100", "100it"),
    "eval_every": ("lenet300_100", "1ep", "1ep"),
    "seed": ("lenet300_100", "3", 3),
    "weight_decay": ("lenet300_100", "1e-4", 1e-4),
    "warmup": ("lenet300_100", "2ep", "2ep"),
    "lr_drops": ("lenet300_100", "20000, 25000it", "20000it,25000it"),
    "lr_drop_factor": ("lenet300_100", "0.5", 0.5),
    "augment": ("lenet300_100", "true", "cifar"),
    "optimizer_args": ("lenet300_100", "beta_2=0.98", "beta_2=0.98"),
    "lr_schedule": ("lenet300_100", "cosine", "cosine"),
    "label_smoothing": ("lenet300_100", "0.1", 0.1),
    "prune_rates": ("lenet300_100", "fc=0.3", PruneRates(fc=0.3, output=0.1)),
    "rounds": ("lenet300_100", "2", 2),
    "rewind": ("lenet300_100", "500", "500it"),
    "block_size": ("lenet300_100", "4X1", "4x1"),
    # Global pruning needs one rate for the pruned kinds: the deep nets' default.
    "pruning": ("resnet20", "layerwise", "layerwise"),
    "one_shot": ("lenet300_100", "true", True),
    "granularity": ("conv2", "channel", "channel"),
    "prune_for": ("lenet300_100", "xnnpack", "xnnpack"),
    "data_order": ("lenet300_100", "fixed", "fixed"),
    # The stabilizing recipe's deep nets start uniform; lenet has no batch norm.
    "batchnorm_init": ("resnet20", "fixed", "fixed"),
    # The stabilizing recipe holds out none (0); one spelling of a count.
    "holdout": ("resnet20", "01000", "1000"),
}

# --prune_for=xnnpack without --prune_rates raises the conv rate to XNNPACK_CONV_RATE.
ALSO_CHANGES = {"prune_for": {"pruning.rates"}}


def test_prune_for_xnnpack_raises_the_conv_rate_unless_prune_rates_are_given():
    assert parse("--model=conv2", "--prune_for=xnnpack").pruning.rates.conv == XNNPACK_CONV_RATE
    given = parse("--model=conv2", "--prune_for=xnnpack", "--prune_rates=conv=0.05")
    assert given.pruning.rates.conv == 0.05


def parse(*argv: str) -> ExperimentHparams:
    flag_values = flags.FlagValues()
    define_hparam_flags(flag_values)
    flag_values(["imp", *argv])
    return hparams_from_flags(flag_values)


def changed_fields(a: ExperimentHparams, b: ExperimentHparams) -> set[str]:
    return {
        f"{group.name}.{field.name}"
        for group in dataclasses.fields(ExperimentHparams)
        for field in dataclasses.fields(getattr(a, group.name))
        if getattr(getattr(a, group.name), field.name)
        != getattr(getattr(b, group.name), field.name)
    }


def test_every_training_and_pruning_field_is_a_flag_with_help():
    specs = {(spec.group, spec.field): spec for spec in hparam_flags()}
    for group, cls in [
        ("training", TrainingHparams),
        ("pruning", PruningHparams),
        ("model", ModelHparams),
        ("dataset", DatasetHparams),
    ]:
        for field in dataclasses.fields(cls):
            if (group, field.name) == ("training", "compiled"):
                continue  # --recipe=compiled sets it from the model, not a flag
            spec = specs[(group, field.name)]
            assert len(spec.help) > 10, spec
    assert {spec.group for spec in specs.values()} == {"dataset", "model", "training", "pruning"}
    assert {specs[("pruning", "scope")].name, specs[("pruning", "rates")].name} == {
        "pruning",
        "prune_rates",
    }
    assert (specs[("model", "name")].name, specs[("dataset", "name")].name) == ("model", "dataset")
    # Every flag users had before the flags came from the dataclasses.
    assert set(hparam_flag_names()) == {"model", "dataset", "recipe", *EXAMPLES}


def test_flags_are_typed_by_their_fields_and_default_to_the_recipe():
    flag_values = flags.FlagValues()
    define_hparam_flags(flag_values)
    absl_type = {str: "string", int: "int", float: "float", bool: "bool"}
    for spec in hparam_flags():
        flag = flag_values[spec.name]
        # An unset flag takes the recipe's value, which its help says (lenet300_100's).
        recipe = "(default: --model's recipe; lenet300_100's: "
        says = spec.name == "model" or "Default" in spec.help
        assert flag.help == spec.help if says else flag.help.startswith(f"{spec.help} {recipe}")
        assert flag.flag_type() == absl_type[str if spec.name == "prune_rates" else spec.type]
        assert flag.default == ("lenet300_100" if spec.name == "model" else None)
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["imp", "--batch_size=many"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_flag_changes_exactly_its_field(name):
    model, text, expected = EXAMPLES[name]
    spec = next(spec for spec in hparam_flags() if spec.name == name)
    base = parse(f"--model={model}")
    hparams = parse(f"--model={model}", f"--{name}={text}")
    assert changed_fields(hparams, base) == {f"{spec.group}.{spec.field}"} | ALSO_CHANGES.get(
        name, set()
    )
    assert getattr(getattr(hparams, spec.group), spec.field) == expected


def test_unset_flags_give_the_papers_defaults():
    assert parse() == paper_defaults("lenet300_100")
    assert parse("--dataset=fashion_mnist") == paper_defaults("lenet300_100", "fashion_mnist")
    assert parse("--model=resnet20") == paper_defaults("resnet20")
    for recipe in ("lth", "stabilizing"):
        assert parse("--model=resnet20", f"--recipe={recipe}") == paper_defaults(
            "resnet20", recipe=recipe
        )
    assert parse("--model=resnet20", "--recipe=lth") != parse("--model=resnet20")


def test_prune_rates_keep_the_models_other_kinds_and_steps_have_one_spelling():
    assert parse("--model=conv6", "--prune_rates=conv=0.1").pruning.rates == PruneRates(
        conv=0.1, fc=0.2, output=0.1
    )
    resnet = paper_defaults("resnet20").pruning.rates
    pooled = parse("--model=resnet20", "--prune_rates=conv=0.3,output=0.3").pruning.rates
    assert pooled == dataclasses.replace(resnet, conv=0.3, output=0.3)
    assert parse("--eval_every=500") == parse("--eval_every=500it")
    assert parse("--eval_every=500").short_hash(parse()) == parse("--eval_every=500it").short_hash(
        parse()
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model=nope"], "--model: unknown model 'nope'"),
        (["--dataset=imagenet"], "--dataset: unknown dataset 'imagenet'"),
        (["--pruning=sideways"], "--pruning: unknown scope 'sideways'"),
        (["--prune_rates=fc=1.5"], "--prune_rates: fc=1.5 is not in [0, 1)"),
        (["--model=resnet20", "--block_size=4x1"], "--block_size=4x1 needs --pruning=layerwise"),
        (["--learning_rate=0"], "--learning_rate must be a finite number > 0"),
        (["--eval_every=0"], "--eval_every must be more than 0"),
        (["--lr_drops=20000,soon"], "--lr_drops: 'soon' is not a step"),
        (["--prune_rates=fc=\u0660.2"], "--prune_rates: 'fc=\u0660.2': '\u0660.2' is not a number"),
        (["--prune_rates=fc=0.2_0"], "'0.2_0' is not a number"),
        (
            ["--optimizer=adamw", "--optimizer_args=weight_decay=0.0_5"],
            "--optimizer_args: weight_decay=0.0_5 is not a number",
        ),
        (
            ["--granularity=channel", "--prune_rates=fc=0.5,output=0.5"],
            "--prune_rates: output=0.5 has no effect under --granularity=channel",
        ),
    ],
)
def test_bad_values_are_named_by_their_flags(argv, message):
    with pytest.raises(LthError, match=re.escape(message)):
        parse(*argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounds=0x10"], "--rounds=0x10: '0x10': write a whole number in the digits 0-9"),
        (["--batch_size=1_0"], "--batch_size=1_0: '1_0': write a whole number"),
        (["--seed=\u0663"], "write a whole number in the digits 0-9"),
        (["--learning_rate=1_0"], "--learning_rate=1_0: '1_0': write a number in the digits 0-9"),
        (["--momentum=\u0660.\u0669"], "write a number in the digits 0-9"),
    ],
)
def test_numbers_are_read_only_as_written_in_ascii_digits(argv, message):
    # Python's int and float (absl's parsers) read "0x10" as 16, "1_0" as 10 and Arabic-Indic
    # digits as digits: a slip of the keyboard would run an experiment nobody asked for.
    with pytest.raises(flags.IllegalFlagValueError, match=re.escape(message)):
        parse(*argv)


def test_numbers_in_ascii_digits_keep_absl_spellings():
    assert parse("--rounds=3").pruning.rounds == 3
    assert parse("--seed= 7").training.seed == 7
    assert parse("--learning_rate=2e-3").training.learning_rate == 2e-3
    with pytest.raises(LthError, match=re.escape("--rounds must be an integer in [0, 1000]")):
        parse("--rounds=-1")


def test_every_flag_the_library_names_exists():
    # Messages and docs in lth_tf name options as users type them; a renamed flag would leave
    # them naming one that does not exist.
    defined = set(hparam_flag_names())
    # A boolean flag is also typed --noNAME.
    defined |= {f"no{spec.name}" for spec in hparam_flags() if spec.boolean or spec.type is bool}
    for pipeline in (ROOT / "pipelines").glob("*.py"):
        text = pipeline.read_text()
        defined |= set(re.findall(r'(?:DEFINE_\w+|define_integer|define_float)\(\s*"(\w+)"', text))
        # The flags pipelines/common.py defines by a function, for several pipelines.
        if "common.define_execution_flags(" in text:
            defined |= set(EXECUTION_FLAGS) | {"nojit_compile", "noprogress", "notensorboard"}
    # TensorBoard's, open_lth's and Ray's (`ray start --head`, its --address).
    others = {"logdir", "rewinding_steps", "head", "address"}
    # The emulated ARM's set-up runs pip, apt, dpkg and nm with their own options.
    tools = {Path(ROOT, "lth_tf", "export", "arm.py")}
    named = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in Path(ROOT, "lth_tf").rglob("*.py")
        if path not in tools
        for name in re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", path.read_text())
    }
    assert {(path, name) for path, name in named if name not in defined | others} == set()
    assert not any("absl" in line and "import" in line for line in _library_lines())


def _library_lines():
    for path in Path(ROOT, "lth_tf").rglob("*.py"):
        yield from path.read_text().splitlines()


# -- pipelines.imp: --help and branches ------------------------------------------------------


def test_the_imp_pipeline_lists_every_hyperparameter_flag_in_its_help():
    from pipelines import imp as pipeline

    key_flags = {flag.name for flag in pipeline.FLAGS.get_key_flags_for_module(pipeline)}
    assert set(hparam_flag_names()) <= key_flags
    assert {"branch_of", "strategy", "output_dir", "callback"} <= key_flags
    assert imp_hparams("--model=resnet20", "--pruning=layerwise") == parse(
        "--model=resnet20", "--pruning=layerwise"
    )


def test_a_branch_refuses_every_hyperparameter_flag_but_rounds(tmp_path):
    from pipelines.imp import PARENT_FLAGS

    assert set(PARENT_FLAGS) == (set(hparam_flag_names()) - {"rounds"}) | {"output_dir"}
    parent = tmp_path / "parent"
    open_experiment(parent, paper_defaults("lenet300_100"), {})
    io.write_npz(parent / "round_00" / "weights.npz", {})
    io.write_csv(parent / "results.csv", [dict.fromkeys(RESULT_COLUMNS, 0)], RESULT_COLUMNS)
    for pruning_round in (1, 2, 3):
        io.write_npz(parent / f"round_{pruning_round:02d}" / "masks.npz", {})
    branch = [f"--branch_of={parent}", "--control=random_reinit"]
    values = {"model": "conv2", "dataset": "mnist", "recipe": "lth"}
    values |= {name: text for name, (_, text, _) in EXAMPLES.items()}
    for name in hparam_flag_names():
        if name == "rounds":
            continue
        with pytest.raises(LthError, match=f"^--{name} cannot be set with --branch_of"):
            imp_hparams(*branch, f"--{name}={values[name]}")
    hparams = imp_hparams(*branch, "--rounds=3")
    assert hparams.pruning.rounds == 3 and hparams.branch.control == "random_reinit"


# -- how a run executes: one Execution from the flags of every pipeline -------------------------


def _execution(*argv: str, names: tuple[str, ...] = (), strategy: str = "default"):
    flag_values = flags.FlagValues()
    define_execution_flags(*names, flag_values=flag_values)
    flag_values(["pipeline", *argv])
    return execution_from_flags(strategy, flag_values)


def test_the_execution_flags_build_one_execution_with_its_defaults():
    assert _execution() == Execution()
    assert _execution(
        "--nojit_compile",
        "--steps_per_execution=7",
        "--mixed_precision=bfloat16",
        "--noprogress",
        "--notensorboard",
        "--test_every_evaluation",
        "--data_dir=/data",
    ) == Execution(
        jit_compile=False,
        steps_per_execution=7,
        mixed_precision="bfloat16",
        show_progress=False,
        tensorboard=False,
        test_every_evaluation=True,
        data_dir="/data",
    )
    # float32 is no mixed precision; a TPU compiles every step itself and computes in bfloat16.
    assert _execution("--mixed_precision=float32").mixed_precision is None
    assert Execution(mixed_precision="float32") == Execution()
    tpu = _execution(strategy="tpu")
    assert (tpu.jit_compile, tpu.mixed_precision) == (False, "bfloat16")
    # A pipeline without a flag keeps Execution's default for its field.
    assert _execution("--notensorboard", names=("tensorboard",)) == Execution(tensorboard=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mixed_precision=float8"], "--mixed_precision: unknown 'float8'"),
        (["--steps_per_execution=0"], "use auto or an integer >= 1"),
        (["--steps_per_execution=1_0"], "'1_0': use auto or an integer >= 1"),
        (["--jit_compile=maybe"], "use auto, true or false"),
    ],
)
def test_bad_execution_flags_are_one_line_naming_the_flag(argv, message):
    with pytest.raises((LthError, flags.IllegalFlagValueError), match=re.escape(message)):
        _execution(*argv)


def test_every_pipeline_lists_its_execution_flags_in_its_help():
    from pipelines import imp as pipeline

    key_flags = {flag.name for flag in pipeline.FLAGS.get_key_flags_for_module(pipeline)}
    assert set(EXECUTION_FLAGS) <= key_flags
