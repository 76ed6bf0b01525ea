"""Collection for the whole suite: tests/ and the docstring examples of lth_tf/."""

from __future__ import annotations

import doctest


def pytest_collection_modifyitems(items: list) -> None:
    # A docstring whose every example is marked +SKIP shows a call that needs a dataset or a
    # trained run: it documents, it tests nothing, so it is not collected as a skipped test.
    def documents_only(item) -> bool:
        examples = getattr(getattr(item, "dtest", None), "examples", None)
        return bool(examples) and all(e.options.get(doctest.SKIP) for e in examples)

    items[:] = [item for item in items if not documents_only(item)]
