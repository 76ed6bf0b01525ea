"""Planted files (issue 27, first items): nothing is written through a symbolic link, and a
``.keras`` file is data: nothing it names outside Keras is imported, on a first run, a resume or
an export. Each refusal is one line and exit 2, and the planted target is left as it was."""

from __future__ import annotations

import json
import zipfile

import pytest

from lth_tf import io
from tests.helpers import assert_one_line_error, run_main, run_pipeline
from tests.user_model import IMAGE_SHAPE, residual_net, write_shapes_npz


def imp(*args: str, tensorflow: bool = True):
    quiet = ["--noprogress", "--notensorboard"]
    return run_main("pipelines.imp", *args, *quiet, tensorflow=tensorflow)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, idx_dir):
    """A finished round 0 of 5 iterations (lenet300_100 on the tests' MNIST files)."""
    out = tmp_path_factory.mktemp("hostile") / "runs"
    flags = [
        "--model=lenet300_100",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        "--iterations=5",
        f"--output_dir={out}",
    ]
    result = imp(*flags, "--rounds=0", "--experiment_name=e")
    assert result.returncode == 0, result.stderr
    return out, flags


def test_a_planted_lock_link_leaves_its_target_unchanged(experiment, tmp_path):
    out, flags = experiment
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    lock = out / "e" / io.LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    try:
        assert_one_line_error(imp(*flags, "--rounds=1", "--experiment_name=e"), "symbolic link")
        assert target.read_text() == "precious\n"
        lock.unlink()
        lock.symlink_to(tmp_path / "dangling")  # a dangling link would create its target
        assert_one_line_error(imp(*flags, "--rounds=1", "--experiment_name=e"), "symbolic link")
        assert not (tmp_path / "dangling").exists()
    finally:
        lock.unlink()


def test_a_round_folder_or_experiment_folder_link_is_refused(experiment, tmp_path):
    out, flags = experiment
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("kept")
    round_folder = out / "e" / "round_00"
    moved = tmp_path / "round_00"
    round_folder.rename(moved)
    round_folder.symlink_to(outside)
    try:
        result = imp(*flags, "--rounds=1", "--experiment_name=e")
        assert_one_line_error(result, f"{round_folder} is a symbolic link")
    finally:
        round_folder.unlink()
        moved.rename(round_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    (out / "linked").symlink_to(empty)
    assert_one_line_error(imp(*flags, "--rounds=0", "--experiment_name=linked"), "symbolic link")
    assert sorted(p.name for p in outside.iterdir()) == ["kept"]
    assert not any(empty.iterdir())


def keras_file_naming(module: str, path, source):
    """A copy of the ``.keras`` file ``source`` whose first conv names ``module``."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    layer = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "Conv2D")
    layer["module"] = module
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    import tf_keras

    root = tmp_path_factory.mktemp("planted")
    tf_keras.utils.set_random_seed(0)
    model = root / "net.keras"
    residual_net(IMAGE_SHAPE, 5).save(model)
    return root, model, write_shapes_npz(root / "shapes.npz")


def test_a_keras_file_naming_another_module_imports_nothing(user_files, monkeypatch):
    root, model, npz = user_files
    this = keras_file_naming("this", root / "this.keras", model)
    result = imp(f"--model={this}", f"--dataset=npz:{npz}", tensorflow=False)
    assert_one_line_error(result, "names the module 'this' (class Conv2D)")
    assert "Beautiful is better" not in result.stdout + result.stderr  # `import this` printed it

    marker = root / "ran"
    (root / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    planted = keras_file_naming("planted_module", root / "planted.keras", model)
    result = imp(f"--model={planted}", f"--dataset=npz:{npz}", tensorflow=False)
    assert_one_line_error(result, "names the module 'planted_module'")
    assert not marker.exists()


def test_resume_and_export_of_an_experiment_whose_model_copy_was_replaced(user_files, tmp_path):
    root, model, npz = user_files
    flags = [f"--model={model}", f"--dataset=npz:{npz}", "--iterations=10", "--rewind=0"]
    flags += [f"--output_dir={tmp_path}", "--experiment_name=e"]
    assert imp(*flags, "--rounds=0").returncode == 0
    keras_file_naming("this", tmp_path / "e" / "model.keras", model)
    resumed = imp(*flags, "--rounds=1")
    assert_one_line_error(resumed, "model.keras")
    exported = run_pipeline(
        "pipelines.export", f"--experiment_dir={tmp_path / 'e'}", "--round=0",
        f"--output_dir={tmp_path / 'saved'}",
    )  # fmt: skip
    assert_one_line_error(exported, "model.keras")
    assert "Beautiful is better" not in resumed.stdout + exported.stdout + exported.stderr


def test_an_oversized_config_inside_a_small_keras_file_is_refused_unread(user_files):
    root, model, npz = user_files
    bomb = root / "bomb.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(bomb, "w") as archive:
        for name in source.namelist():
            if name != "config.json":
                archive.writestr(name, source.read(name))
        # 100 MB of spaces deflate to about 100 KB.
        archive.writestr("config.json", b" " * (100 << 20), compress_type=zipfile.ZIP_DEFLATED)
    result = imp(f"--model={bomb}", f"--dataset=npz:{npz}", tensorflow=False)
    assert_one_line_error(result, "config.json declares")


def test_a_keras_file_with_truncated_weights_is_named_damaged(user_files, tmp_path):
    root, model, npz = user_files
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(damaged, "w") as archive:
        for name in source.namelist():
            content = source.read(name)
            archive.writestr(
                name, content[: len(content) // 2] if name.endswith(".h5") else content
            )
    result = imp(f"--model={damaged}", f"--dataset=npz:{npz}", f"--output_dir={tmp_path / 'r'}")
    assert_one_line_error(result, "the file is damaged or its weights do not fit its layers")
    assert "custom layers" not in result.stdout + result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "model, reason",
    [
        ("net.h5", "--model=net.h5: lth_tf reads models saved as .keras files only"),
        ("tests.user_model.py:residual_net", "without .py: --model=tests.user_model:residual_net"),
    ],
)
def test_a_model_given_as_keras_users_often_have_it_says_what_to_change(model, reason, user_files):
    root, _, npz = user_files
    result = imp(f"--model={model}", f"--dataset=npz:{npz}", tensorflow=False)
    assert_one_line_error(result, reason)


@pytest.mark.parametrize("shape", [(784,), (28, 28)])
def test_a_registered_conv_net_on_examples_without_a_channel_axis_is_one_line(shape, tmp_path):
    import numpy as np

    from tests.user_model import shapes_arrays

    arrays = shapes_arrays(train=40, test=10)
    for split in ("x_train", "x_test"):
        arrays[split] = np.zeros((len(arrays[split]), *shape), np.uint8)
    np.savez(tmp_path / "rows.npz", **arrays)
    out = tmp_path / "runs"
    result = imp("--model=conv2", f"--dataset=npz:{tmp_path / 'rows.npz'}", f"--output_dir={out}")
    assert_one_line_error(
        result,
        f"takes images (height, width, channels), but the data's examples have shape {shape}",
    )
    assert not out.exists()  # refused before anything was written


def test_a_model_with_nothing_to_prune_is_one_line(tmp_path):
    import tf_keras

    import lth_tf
    from tests.user_model import shapes_arrays

    class Scale(tf_keras.layers.Dense):  # a Dense subclass: TF-MOT prunes none of it
        pass

    inputs = tf_keras.Input((20, 20, 3))
    x = tf_keras.layers.GlobalAveragePooling2D()(inputs)
    model = tf_keras.Model(inputs, Scale(5, name="head")(x))
    arrays = shapes_arrays(train=100, test=10)
    with pytest.raises(lth_tf.LthError, match="has no layer TF-MOT prunes"):
        lth_tf.find_tickets(
            model,
            (arrays["x_train"], arrays["y_train"]),
            (arrays["x_test"], arrays["y_test"]),
            output_dir=tmp_path,
            rounds=0,
            iterations="2it",
            tensorboard=False,
        )


CUSTOM_LAYERS = """
import numpy as np
import tf_keras as keras


class Weighted(keras.layers.Layer):  # takes an array and has no get_config of its own
    def __init__(self, factors, **kwargs):
        super().__init__(**kwargs)
        self.factors = np.asarray(factors, np.float32)

    def call(self, x):
        return x * self.factors


class Scaled(keras.layers.Layer):  # a get_config that from_config cannot read back
    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def get_config(self):
        return {**super().get_config(), "factor": self.scale}

    def call(self, x):
        return self.scale * x


def net(input_shape, num_classes, layer):
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(8, activation="relu", name="h")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="out")(layer(x)))


def weighted(input_shape, num_classes):
    return net(input_shape, num_classes, Weighted(np.ones(8), name="weighted"))


def scaled(input_shape, num_classes):
    return net(input_shape, num_classes, Scaled(2.0, name="scaled"))
"""


@pytest.mark.parametrize(
    ("builder", "granularity", "reason"),
    [
        ("weighted", "weight", "layer 'weighted' (Weighted) has no configuration: its __init__"),
        ("weighted", "channel", "layer 'weighted' (Weighted) has no configuration"),
        ("scaled", "channel", "layer 'scaled' (Scaled) does not rebuild from its configuration"),
    ],
)
def test_a_custom_layer_lth_tf_cannot_rebuild_is_one_line(
    builder, granularity, reason, tmp_path, monkeypatch
):
    (tmp_path / "custom_layers.py").write_text(CUSTOM_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_shapes_npz(tmp_path / "shapes.npz")
    out = tmp_path / "runs"
    result = imp(
        f"--model=custom_layers:{builder}",
        f"--dataset=npz:{tmp_path / 'shapes.npz'}",
        f"--granularity={granularity}",
        f"--output_dir={out}",
    )
    assert_one_line_error(result, reason)
    assert not out.exists()  # refused before anything was written
