"""``lth_tf.config`` is plain data: importing it loads neither TensorFlow nor a registry."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_importing_the_config_loads_no_tensorflow_and_no_registry():
    code = (
        "import json, sys, lth_tf.config, lth_tf.execution; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lth_tf', 'tensorflow', 'tf_keras', 'keras'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(json.loads(result.stdout))
    assert "lth_tf.config" in loaded
    assert not {"tensorflow", "tf_keras", "keras"} & loaded
    # Neither registry: the models' nor the controls'.
    assert not {"lth_tf.models", "lth_tf.models.registry", "lth_tf.lottery.controls"} & loaded


def test_the_package_api_still_loads_on_first_use():
    code = "import lth_tf; print(lth_tf.find_tickets.__module__, lth_tf.RoundResult.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["lth_tf.api", "RoundResult"]
