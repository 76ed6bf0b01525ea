"""Step strings, prune rates, block sizes, the hyperparameter dataclasses' checks, resolution
and hashing."""

import pytest

from lth_tf.config import (
    BranchHparams,
    PruneRates,
    PruningHparams,
    TrainingHparams,
    parse_block_size,
)
from lth_tf.errors import LthError
from lth_tf.models import paper_defaults, resolve_steps
from lth_tf.steps import Step, iterations_per_epoch, parse_step
from tests.helpers import with_changes


@pytest.mark.parametrize(
    "text, expected",
    [("0", 0), ("500", 500), ("500it", 500), ("2ep", 1834), ("1ep50it", 967), (" 3EP ", 2751)],
)
def test_step_strings_convert_to_iterations(text, expected):
    assert parse_step(text, iterations_per_epoch=917) == expected


# "²" passes str.isdigit but not int(); "٣" is another script's 3, which int() would take.
@pytest.mark.parametrize(
    "text", ["soon", "", "-5", "1.5ep", "it", "5it2ep", "2 ep", "²", "٣ep", "1ep٣it", "５"]
)
def test_bad_step_strings_are_user_errors(text):
    with pytest.raises(LthError, match="--rewind"):
        Step.parse(text, "--rewind")


def test_step_prints_back_in_canonical_form():
    assert str(Step.parse("1ep50it")) == "1ep50it"
    assert str(Step.parse("0")) == "0it"
    assert iterations_per_epoch(55_000, 60) == 917


def test_prune_rates_parse_and_keep_unnamed_kinds():
    rates = PruneRates.parse("conv=0.15, output=0.05", base=PruneRates(fc=0.2, output=0.1))
    assert rates == PruneRates(conv=0.15, fc=0.2, output=0.05)


# "dense=0.2" is no longer an error: a name that is not a kind is a layer's (checked against
# the model when it is wrapped).
@pytest.mark.parametrize(
    "text", ["fc=1.5", "fc=1", "fc=-0.1", "=0.2", "fc", "fc=lots", "", " , ", "fc=0.1,fc=0.2"]
)
def test_bad_prune_rates_are_user_errors(text):
    with pytest.raises(LthError, match="--prune_rates"):
        PruneRates.parse(text)


def test_resolve_turns_steps_into_iterations_and_refuses_late_rewind():
    import dataclasses

    hparams = paper_defaults("lenet300_100", "fashion_mnist")
    hparams = dataclasses.replace(
        hparams,
        training=dataclasses.replace(hparams.training, iterations="2ep"),
        pruning=dataclasses.replace(hparams.pruning, rewind="1ep"),
    )
    resolved = resolve_steps(hparams, 55_000)
    assert (resolved.iterations, resolved.rewind_iteration) == (1834, 917)
    assert resolved.eval_every == 100  # auto for lenet: every 100 iterations, the LTH paper's
    # The deep nets' auto is half an epoch, rounded to 100 iterations.
    deep = dataclasses.replace(
        hparams,
        model=paper_defaults("resnet20").model,
        training=dataclasses.replace(hparams.training, iterations="2ep"),
    )
    assert resolve_steps(deep, 55_000).eval_every == 500  # half of a 917-iteration epoch (batch 60)
    assert resolve_steps(deep, 45_000).eval_every == 400  # 750 iterations per epoch
    small = dataclasses.replace(
        deep, training=dataclasses.replace(deep.training, batch_size=1000, iterations="1000")
    )
    assert resolve_steps(small, 45_000).eval_every == 100  # 45 iterations per epoch: the floor
    late = dataclasses.replace(hparams, pruning=dataclasses.replace(hparams.pruning, rewind="3ep"))
    with pytest.raises(LthError, match="past the end of round 0"):
        resolve_steps(late, 55_000)


def test_training_hparams_validate():
    with pytest.raises(LthError, match="--iterations"):
        TrainingHparams(iterations="0")
    with pytest.raises(LthError, match="--batch_size"):
        TrainingHparams(batch_size=0)


NAN = float("nan")


@pytest.mark.parametrize(
    "make, message",
    [
        # What the Python API (lth_tf.find_tickets) builds, checked as the flags are.
        (lambda: TrainingHparams(learning_rate=NAN), "--learning_rate must be a finite number > 0"),
        (lambda: TrainingHparams(weight_decay=NAN), "--weight_decay must be a finite number >= 0"),
        (lambda: TrainingHparams(momentum=1.0), "--momentum must be a finite number in [0, 1)"),
        (lambda: TrainingHparams(seed=-1), "--seed must be an integer in [0, 2147483647]"),
        (lambda: TrainingHparams(seed=1.5), "--seed must be an integer in [0, 2147483647]"),
        (lambda: TrainingHparams(batch_size=True), "--batch_size must be an integer >= 1"),
        (lambda: TrainingHparams(learning_rate="0.1"), "--learning_rate must be a finite number"),
        (lambda: PruningHparams(rounds=-2), "--rounds must be an integer in [0, 1000]"),
        (lambda: PruneRates(fc=NAN), "fc=nan is not in [0, 1)"),
        (
            lambda: BranchHparams("random_prune", "parent", control_seed=2**31),
            "--control_seed must be an integer in [0, 2147483647], got 2147483648",
        ),
    ],
)
def test_numbers_are_finite_and_in_range(make, message):
    with pytest.raises(LthError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_edges_of_each_range_are_accepted():
    TrainingHparams(seed=2**31 - 1, momentum=0.0, weight_decay=0.0, lr_drop_factor=1.0)
    BranchHparams("random_prune", "parent", control_seed=0)


def test_experiment_hash_depends_only_on_differences_from_defaults():
    import dataclasses

    defaults = paper_defaults("conv6")
    assert defaults.short_hash(defaults) == paper_defaults("conv6").short_hash(defaults)
    changed = dataclasses.replace(defaults, training=dataclasses.replace(defaults.training, seed=1))
    assert changed.short_hash(defaults) != defaults.short_hash(defaults)
    assert defaults.to_dict()["pruning"]["rates"] == {"conv": 0.15, "fc": 0.2, "output": 0.1}
    assert type(defaults).from_dict(changed.to_dict()) == changed


def test_the_pruning_scope_reads_old_files_and_keeps_old_experiment_names(tmp_path):
    # PruningHparams.scope was PruningHparams.strategy (a name it shared with --strategy, the
    # distribution strategy): old hparams.json files load, and an experiment that set it keeps
    # the name it was given, hashed over the old key.
    import dataclasses
    import hashlib
    import json

    from lth_tf import io
    from lth_tf.config import ExperimentHparams
    from lth_tf.experiment import FORMAT_VERSION, default_experiment_name, open_experiment

    lenet = paper_defaults("lenet300_100", "mnist")
    pooled = dataclasses.replace(
        lenet, pruning=dataclasses.replace(lenet.pruning, rates=PruneRates(fc=0.2), scope="global")
    )
    old = pooled.to_dict()
    old["pruning"]["strategy"] = old["pruning"].pop("scope")
    assert ExperimentHparams.from_dict(old) == pooled
    before = {"pruning.rates.output": 0.0, "pruning.strategy": "global"}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:8]
    assert default_experiment_name(pooled, lenet) == f"lenet300_100-mnist-{digest}"
    io.write_json(tmp_path / "hparams.json", {"format_version": FORMAT_VERSION, "hparams": old})
    assert open_experiment(tmp_path, pooled, {}).root == tmp_path
    # The deep nets prune globally by default: nothing to hash there, as before.
    resnet = paper_defaults("resnet20")
    assert resnet.pruning.scope == "global"
    assert resnet.short_hash(resnet) == hashlib.sha256(b"{}").hexdigest()[:8]


def test_global_pruning_needs_one_rate_for_the_kinds_it_prunes():
    with pytest.raises(LthError, match="different rates"):
        PruningHparams(PruneRates(fc=0.2, output=0.1), scope="global")
    with pytest.raises(LthError, match="needs --pruning=layerwise"):
        PruningHparams(PruneRates(fc=0.2), scope="global", block_size="4x1")
    with pytest.raises(LthError, match="unknown scope 'sideways'"):
        PruningHparams(scope="sideways")
    assert PruningHparams(PruneRates(fc=0.2, output=0.2), scope="global").global_rate == 0.2


def test_a_rewind_point_past_the_end_of_a_round_is_refused():
    hparams = with_changes(
        paper_defaults("resnet20", "fashion_mnist"), training={"iterations": "150it"}
    )
    with pytest.raises(LthError, match="--rewind=500it is iteration 500, past the end") as refusal:
        resolve_steps(hparams, 55_000)
    # The fix a newcomer can type: the issue's own `--rounds=0 --iterations=20it` needs it.
    assert str(refusal.value).endswith("e.g. --rewind=0it")


def test_block_size_is_parsed_checked_and_spelled_one_way():
    assert parse_block_size("4x1") == (4, 1)
    assert PruningHparams(block_size="4X1").block_size == "4x1"
    assert PruningHparams().block_shape == (1, 1)
    for bad in ("4by1", "0x1", "4x", "-4x1", "²x1", "４x1"):
        with pytest.raises(LthError, match="--block_size"):
            PruningHparams(block_size=bad)


def test_experiment_names_without_per_layer_rates_keep_their_hashes():
    conv2 = paper_defaults("conv2")
    # Computed on main before per-layer rates existed (commit d06311e): the experiment
    # directories written then must keep their names.
    rounds = with_changes(conv2, pruning={"rounds": 3})
    assert rounds.short_hash(conv2) == "f6d7df9f"
    rates = with_changes(conv2, pruning={"rates": PruneRates(conv=0.2, fc=0.2, output=0.1)})
    assert rates.short_hash(conv2) == "6aa3b51a"
    assert "layers" not in rates.to_dict()["pruning"]["rates"]


def test_per_layer_rates_parse_print_and_save_back():
    from lth_tf.config import ExperimentHparams

    rates = PruneRates.parse("conv=0.1,fc=0.2,head=0,block1=0.5")
    assert rates.layers == (("block1", 0.5), ("head", 0.0))
    assert str(rates) == "conv=0.1,fc=0.2,output=0.0,block1=0.5,head=0.0"
    assert PruneRates.parse(str(rates)) == rates
    assert PruneRates.parse("head=0.3", base=rates).for_layer("head", "output") == 0.3
    assert (rates.for_layer("head", "fc"), rates.for_layer("fc1", "fc")) == (0.0, 0.2)
    with pytest.raises(LthError, match="--prune_rates: head=1.0 is not in"):
        PruneRates.parse("head=1")
    conv2 = paper_defaults("conv2")
    hparams = with_changes(conv2, pruning={"rates": rates})
    assert ExperimentHparams.from_dict(hparams.to_dict()) == hparams
    assert hparams.short_hash(conv2) != with_changes(conv2, pruning={"rates": PruneRates(
        conv=0.1, fc=0.2)}).short_hash(conv2)  # fmt: skip


def test_a_batch_larger_than_the_training_set_is_refused():
    from lth_tf.models import paper_defaults

    hparams = paper_defaults("lenet300_100", "mnist")
    with pytest.raises(LthError, match="--batch_size=60 is larger than the 59 training examples"):
        resolve_steps(hparams, 59)
    assert resolve_steps(hparams, 60).iterations > 0


def test_a_round_of_more_than_a_billion_iterations_is_refused():
    from lth_tf.models import paper_defaults

    lenet = paper_defaults("lenet300_100", "mnist")
    hparams = with_changes(lenet, training={"iterations": "99999999999ep"})
    with pytest.raises(LthError, match=r"--iterations=99999999999ep is [\d,]+ iterations a round"):
        resolve_steps(hparams, 55000)
    exact = with_changes(hparams, training={"iterations": "1000000000it", "eval_every": "1000it"})
    assert resolve_steps(exact, 55000).iterations == 10**9


def test_a_count_too_large_for_64_bits_is_refused_in_one_short_line():
    from lth_tf.config import check_number

    huge = 10**400  # math.isfinite(huge) would raise OverflowError
    with pytest.raises(
        LthError, match=r"^--seed must be an integer >= 0, got 1000.*\(too large\)$"
    ):
        check_number("--seed", huge, low=0, integer=True)
    check_number("--seed", 2**63 - 1, low=0, integer=True)
    with pytest.raises(LthError, match="^--warmup: 1000.* is too large a step$"):
        Step.parse(f"{huge}it", "--warmup")
    with pytest.raises(LthError, match="is too large a step"):
        Step.parse(str(2**63), "--warmup")
