"""What loads no TensorFlow: ``lth_tf.config`` (plain data, no registry either), a registered
model's name and defaults, and the test helpers' core with the tests of plain data."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

TENSORFLOW = {"tensorflow", "tf_keras", "keras"}


def ours(loaded: set[str]) -> list[str]:
    """The project's modules among ``loaded``: where to look for what started TensorFlow."""
    return sorted(m for m in loaded if m.split(".")[0] not in TENSORFLOW)


def loaded_after(code: str) -> set[str]:
    """The modules of ``lth_tf``, ``tests`` and TensorFlow that a fresh process running
    ``code`` (from the repository root) has loaded."""
    listing = (
        "; import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] "
        "in ('lth_tf', 'tests', 'conftest', 'tensorflow', 'tf_keras', 'keras'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + listing],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_config_loads_no_tensorflow_and_no_registry():
    loaded = loaded_after("import lth_tf.config, lth_tf.execution")
    assert "lth_tf.config" in loaded
    assert not TENSORFLOW & loaded, ours(loaded)
    # Neither registry: the models' nor the controls'.
    assert not {"lth_tf.models", "lth_tf.models.registry", "lth_tf.lottery.controls"} & loaded


def test_a_models_name_and_defaults_load_no_tensorflow_and_no_builder():
    loaded = loaded_after(
        "from lth_tf.models import MODELS, get_model, paper_defaults, resolve_steps\n"
        "for name, spec in MODELS.items():\n"
        "    for recipe in spec.recipes:\n"
        "        resolve_steps(paper_defaults(name, recipe=recipe), 50_000)\n"
        "    get_model(name).recipe()"
    )
    assert "lth_tf.models.registry" in loaded
    assert not TENSORFLOW & loaded, ours(loaded)
    assert not {"lth_tf.models.lenet", "lth_tf.models.layers"} & loaded


def test_the_helpers_core_and_the_config_tests_load_no_tensorflow():
    config_tests = sorted(path.stem for path in (ROOT / "tests" / "config").glob("test_*.py"))
    modules = ["conftest", "tests.conftest", "tests.helpers"]
    modules += [f"tests.config.{name}" for name in config_tests]
    loaded = loaded_after(f"import importlib\nfor m in {modules!r}: importlib.import_module(m)")
    assert set(modules) <= loaded and "tests.config.test_recipes" in loaded
    assert not TENSORFLOW & loaded, ours(loaded)
    assert "tests.tf_helpers" not in loaded


def test_the_package_api_still_loads_on_first_use():
    code = "import lth_tf; print(lth_tf.find_tickets.__module__, lth_tf.RoundResult.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["lth_tf.api", "RoundResult"]
