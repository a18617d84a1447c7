"""A pytest plugin: keep the notebooks nbval ran, with their outputs, for the rendered course.

With ``OMNI_EXECUTED_DIR`` set, ``python -m pytest`` saves every notebook nbval ran as
``$OMNI_EXECUTED_DIR/<folder>/<name>.ipynb`` with the outputs its cells gave, and the
kernels nbval starts draw matplotlib figures as PNGs (the inline backend) instead of the
suite's Agg, so the saved lessons show their figures. ``python -m omni_edu.tools.run_lessons
site --executed $OMNI_EXECUTED_DIR/notebooks`` then renders them without running every
lesson a second time: CI does this (``.ci/run``), which saves it a whole pass over the
lessons. Without the variable the plugin does nothing.

pyproject.toml loads it (``-p omni_edu.tools.nbval_executed``). It reads what nbval keeps on
its items (``cell``, ``test_outputs``, the file's ``nb``); should a new nbval change those,
it saves nothing and says so, and the site command runs the lessons itself.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

ENV = "OMNI_EXECUTED_DIR"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _is_nbval_cell(item: Any) -> bool:
    return type(item).__name__ == "IPyNbCell"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Start nbval's kernel (in its file's set-up) with the inline figure backend."""
    if not os.environ.get(ENV) or not _is_nbval_cell(item):
        return (yield)
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel copies the environment at start
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write each notebook nbval ran, its cells' outputs in place."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    import nbformat

    files: dict[Any, list[Any]] = {}
    for item in session.items:
        if _is_nbval_cell(item):
            files.setdefault(item.parent, []).append(item)
    for parent, items in files.items():
        if not hasattr(parent, "nb") or not all(
            hasattr(i, "cell") and hasattr(i, "test_outputs") for i in items
        ):
            print(f"{ENV}: this nbval keeps no outputs on its items; saved nothing.")
            return
        for number, item in enumerate(items, start=1):
            if item.test_outputs is not None:  # None: not run (a cell before it failed)
                item.cell.outputs = item.test_outputs
                item.cell.execution_count = number
        source = Path(str(parent.fspath))
        target = Path(folder) / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(parent.nb, target)
