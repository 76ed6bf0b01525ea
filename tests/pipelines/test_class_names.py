"""Labels with names, end to end: an npz whose labels are strings through ``pipelines.imp``
(``classes.json``) and the export (``export.json``'s ``classes``, what a device prints), the same
through the Python API (``Experiment.classes``, ``data.npz``), and a ``classes.json`` that does
not match its data refused in one line. A tiny Dense net, a few iterations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import lth_tf
from lth_tf import io
from lth_tf.errors import LthError
from tests.helpers import assert_one_line_error, run_main

# Sorted, the classes are: bird, cat, dog.
NAMES = np.array(["dog", "cat", "bird"])
SETTINGS = {"rounds": 1, "iterations": "30it", "eval_every": "15it", "rewind": "0it"}
FLAGS = [f"--{name}={value}" for name, value in SETTINGS.items()]


def tiny_net(input_shape: tuple[int, ...], num_classes: int):
    """Two Dense layers: what ``--model=tests.pipelines.test_class_names:tiny_net`` builds."""
    import tf_keras as keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="tiny")


def named_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Feature rows whose class shows in their mean; labels are the class names."""
    rng = np.random.default_rng(seed)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 3, count)
        rows = rng.normal(size=(count, 6)).astype(np.float32) + 2 * labels[:, None]
        return rows, NAMES[labels]

    (x_train, y_train), (x_test, y_test) = split(240), split(60)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> SimpleNamespace:
    """``pipelines.imp --dataset=npz:names.npz`` (str labels) run once; its folders."""
    root = tmp_path_factory.mktemp("names")
    np.savez(root / "names.npz", **named_arrays())
    result = run_main(
        "pipelines.imp",
        "--model=tests.pipelines.test_class_names:tiny_net",
        f"--dataset=npz:{root / 'names.npz'}",
        *FLAGS,
        f"--output_dir={root / 'runs'}",
        "--experiment_name=names",
        "--notensorboard",
        "--nojit_compile",
        "--noprogress",
        tensorflow=True,
    )
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(root=root, experiment=root / "runs" / "names")


def test_the_pipeline_keeps_the_class_names_in_the_experiment(cli) -> None:
    assert io.read_json(cli.experiment / "classes.json") == ["bird", "cat", "dog"]
    experiment = lth_tf.Experiment(cli.experiment)
    assert experiment.classes == ["bird", "cat", "dog"]
    assert experiment.rounds == [0, 1]
    assert io.read_json(cli.experiment / "hparams.json")["data"]["num_classes"] == 3


def test_a_branch_keeps_its_parents_class_names(cli) -> None:
    result = run_main(
        "pipelines.imp",
        f"--branch_of={cli.experiment}",
        "--control=random_reinit",
        "--notensorboard",
        "--nojit_compile",
        "--noprogress",
        tensorflow=True,
    )
    assert result.returncode == 0, result.stderr
    branch = lth_tf.Experiment(cli.experiment.parent / "names-random_reinit")
    assert branch.classes == ["bird", "cat", "dog"] and branch.rounds == [0, 1]


def test_the_export_names_the_classes_and_a_device_prints_one(cli) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from lth_tf.export.deploy import export_ticket
    from lth_tf.export.options import ExportOptions
    from lth_tf.export.ticket import open_ticket
    from lth_tf.provenance import experiment_data

    ticket, dense = open_ticket(cli.experiment, 1), open_ticket(cli.experiment, 0)
    data = experiment_data(ticket.experiment, ticket.hparams)
    options = ExportOptions(
        representative_examples=50,
        latency_invocations=5,
        latency_warmup=1,
        latency_examples=5,
        storage_check_examples=20,
    )
    report = export_ticket(ticket, dense, data, cli.root / "saved", options)
    folder = cli.root / "saved" / "names" / "round_01"
    assert report["classes"] == ["bird", "cat", "dog"]
    # The device snippet of docs/export.md: the class name of the first test example.
    classes = json.loads((folder / "export.json").read_text())["classes"]
    interpreter = Interpreter(model_path=str(folder / "ticket.tflite"), num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    interpreter.set_tensor(source["index"], data.test_images[:1].astype(np.float32))
    interpreter.invoke()
    label = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax()
    assert classes[label] in NAMES


def test_a_classes_json_other_than_the_datas_is_refused_in_one_line(cli, tmp_path) -> None:
    from lth_tf.export.ticket import open_ticket
    from lth_tf.provenance import experiment_data

    ticket = open_ticket(cli.experiment, 1)
    original = ticket.experiment.classes.read_bytes()
    try:
        io.write_json(ticket.experiment.classes, ["cat", "bird", "dog"])
        with pytest.raises(LthError, match="names the classes 'cat', 'bird', 'dog', but") as caught:
            experiment_data(ticket.experiment, ticket.hparams)
        assert "\n" not in str(caught.value)
        io.write_json(ticket.experiment.classes, {"not": "a list"})
        with pytest.raises(LthError, match="classes.json is damaged"):
            lth_tf.Experiment(cli.experiment).classes  # noqa: B018  (the property reads it)
        ticket.experiment.classes.unlink()
        with pytest.raises(LthError, match="has no classes.json, but .* rerun the IMP command"):
            experiment_data(ticket.experiment, ticket.hparams)
        # Rerunning the IMP command (every round done) writes it again.
        result = run_main(
            "pipelines.imp",
            "--model=tests.pipelines.test_class_names:tiny_net",
            f"--dataset=npz:{cli.root / 'names.npz'}",
            *FLAGS,
            f"--output_dir={cli.root / 'runs'}",
            "--experiment_name=names",
            "--notensorboard",
            "--nojit_compile",
            "--noprogress",
            tensorflow=True,
        )
        assert result.returncode == 0, result.stderr
        assert ticket.experiment.classes.read_bytes() == original
    finally:
        ticket.experiment.classes.write_bytes(original)


def test_the_api_on_arrays_with_names(tmp_path: Path) -> None:
    arrays = named_arrays(seed=1)

    def find_tickets(test_labels: np.ndarray) -> lth_tf.Experiment:
        return lth_tf.find_tickets(
            tiny_net,
            (arrays["x_train"], list(arrays["y_train"])),  # a list of str works as well
            (arrays["x_test"], test_labels),
            output_dir=tmp_path,
            experiment_name="api",
            tensorboard=False,
            jit_compile=False,
            **SETTINGS,
        )

    experiment = find_tickets(arrays["y_test"])
    assert experiment.classes == ["bird", "cat", "dog"]
    # data.npz keeps the names, so the experiment loads as the same dataset on its own.
    saved = io.read_npz(experiment.path / "data.npz")
    assert saved["y_test"].dtype.kind == "U" and set(saved["y_test"]) == set(NAMES)
    from lth_tf.provenance import experiment_data

    data = experiment_data(experiment.directory, experiment.hparams)
    assert data.classes == ("bird", "cat", "dog")
    # The same call again: every round is done, nothing retrains.
    again = find_tickets(arrays["y_test"])
    assert [r.train_seconds for r in again.results] == [r.train_seconds for r in experiment.results]
    # Integer labels for test while train has names: one line, before anything is written.
    with pytest.raises(LthError, match="y_train holds class names"):
        find_tickets(np.zeros(60, np.int64))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(y_test=np.full(60, "fish")), "y_test holds the class 'fish', which"),
        (lambda a: a.update(y_test=np.zeros(60, np.int64)), "y_train holds class names (str) but"),
        (lambda a: a.update(y_train=a["y_train"].astype(object)), "np.array(labels, dtype=str)"),
    ],
)
def test_bad_names_in_an_npz_are_one_line_and_leave_no_directory(tmp_path, change, message):
    arrays = named_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    result = run_main(
        "pipelines.imp",
        "--model=tests.pipelines.test_class_names:tiny_net",
        f"--dataset=npz:{tmp_path / 'bad.npz'}",
        *FLAGS,
        f"--output_dir={tmp_path / 'runs'}",
        "--notensorboard",
        "--noprogress",
        tensorflow=True,
    )
    assert_one_line_error(result, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_experiment_whose_data_file_is_gone_or_changed_says_to_restore_it(cli) -> None:
    # An export or a report only reads the experiment: no new --experiment_name to start.
    from lth_tf.export.ticket import open_ticket
    from lth_tf.provenance import experiment_data

    ticket = open_ticket(cli.experiment, 1)
    npz = cli.root / "names.npz"
    kept = npz.read_bytes()
    try:
        npz.unlink()
        with pytest.raises(LthError, match=f"trained on {re.escape(str(npz))}, which is gone: "):
            experiment_data(ticket.experiment, ticket.hparams)
        np.savez(npz, **named_arrays(seed=1))
        with pytest.raises(LthError, match=r"changed since .*: restore the file$"):
            experiment_data(ticket.experiment, ticket.hparams)
    finally:
        npz.write_bytes(kept)
    assert experiment_data(ticket.experiment, ticket.hparams).num_classes == 3
