"""Where an experiment's model came from (lth_tf/provenance.py): recorded when it starts, and
a model that changed since is refused in one line before anything trains."""

from __future__ import annotations

import re

import pytest
import tf_keras

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.experiment import open_experiment
from lth_tf.provenance import check_same_model, model_record
from tests.helpers import lenet_hparams, tiny_dataset, with_changes


def _save(path, units: int) -> None:
    model = tf_keras.Sequential(
        [
            tf_keras.Input((28, 28, 1)),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(units, activation="relu", name="hidden"),
            tf_keras.layers.Dense(10, name="output"),
        ]
    )
    model.save(path)


def test_a_registry_model_is_recorded_by_its_name():
    record = model_record(lenet_hparams(), tiny_dataset(train=20, val=10, test=10))
    assert record == {"kind": "registry", "name": "lenet300_100"}


def test_a_keras_file_changed_since_the_experiment_started_is_refused(tmp_path):
    data = tiny_dataset(train=20, val=10, test=10)
    path = tmp_path / "mine.keras"
    _save(path, units=8)
    hparams = with_changes(lenet_hparams(), model={"name": str(path)})
    record = model_record(hparams, data)
    assert record["kind"] == "keras_file" and record["sha256"] == io.file_sha256(path)
    experiment = open_experiment(tmp_path / "e", hparams, {"model": record})
    assert model_record(hparams, data, experiment=experiment) == record  # unchanged: resumes
    _save(path, units=9)
    with pytest.raises(LthError, match=re.escape(f"{path} changed since {experiment.root}")):
        model_record(hparams, data, experiment=experiment)


def test_a_builder_that_now_builds_another_architecture_is_refused(tmp_path):
    saved = {"kind": "builder", "name": "my_models:small", "architecture": "a" * 64}
    experiment = open_experiment(tmp_path / "e", lenet_hparams(), {"model": saved})
    check_same_model(experiment, dict(saved))  # the same: nothing to say
    with pytest.raises(LthError, match="--model=my_models:small now builds another architecture"):
        check_same_model(experiment, {**saved, "architecture": "b" * 64})
