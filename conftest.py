"""Collection for the whole suite: tests/ and the docstring examples of lth_tf/."""

from __future__ import annotations

import doctest
import os

# `make test` runs `pytest -n auto`: one worker per core, but each worker holds TensorFlow (and
# sometimes Ray) in memory, and each TensorFlow already uses every core for its ops, so more
# workers than this only compete.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int | None:
    """Workers for ``-n auto``: the cores this process may use, at most :data:`MAX_WORKERS`.
    With ``PYTEST_XDIST_AUTO_NUM_WORKERS`` set, pytest-xdist reads it as it always does."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_WORKERS))


def pytest_collection_modifyitems(items: list) -> None:
    # A docstring whose every example is marked +SKIP shows a call that needs a dataset or a
    # trained run: it documents, it tests nothing, so it is not collected as a skipped test.
    def documents_only(item) -> bool:
        examples = getattr(getattr(item, "dtest", None), "examples", None)
        return bool(examples) and all(e.options.get(doctest.SKIP) for e in examples)

    items[:] = [item for item in items if not documents_only(item)]
