"""A pytest plugin: keep the notebooks nbval ran, with their outputs, for the rendered course.

With ``OMNI_EXECUTED_DIR`` set, ``python -m pytest`` saves every notebook nbval ran as
``$OMNI_EXECUTED_DIR/<folder>/<name>.ipynb`` with the outputs its cells gave, and beside
it ``<name>.run.json`` (:mod:`omni_edu.tools.run_record`): the profile, the machine, when
it ran and the sum of its cells' run times, and ``<name>.figures.jsonl``, the sentences and
claim checks it recorded (``python -m omni_edu.tools.run_lessons readme --executed`` writes
the README's table from them, the site its page on how it was made). The kernels nbval
starts draw matplotlib figures as PNGs (the inline backend) instead of the suite's Agg,
so the saved lessons show their figures. ``python -m omni_edu.tools.site --executed
$OMNI_EXECUTED_DIR/notebooks`` then renders them without running every lesson a second
time: CI does this (``.ci/run``), which saves it a whole pass over the lessons. Without the
variable the plugin does nothing.

Under pytest-xdist every worker collects every notebook but runs only some (each notebook
whole on one worker, ``--dist loadfile``). Only the worker that ran a notebook writes it:
one whose cells never ran here would be written without outputs, over the real ones. Files
are written atomically, so a reader never sees half of one.

pyproject.toml loads it (``-p omni_edu.tools.nbval_executed``). It reads what nbval keeps on
its items (``cell``, ``test_outputs``, the file's ``nb``); should a new nbval change those,
it saves nothing and says so, and the site command runs the lessons itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV = "OMNI_EXECUTED_DIR"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@dataclass
class _Timing:
    """The cells of one notebook that ran in this process, and how long they took."""

    started: float  # time.time() when its first cell started
    finished: float = 0.0
    seconds: float = 0.0  # the sum of the cells' run times (kernel start-up excluded)
    cells_run: int = 0
    failed: bool = False


# Per notebook file (its pytest node id), in this process only.
_timings: dict[str, _Timing] = {}


def _is_nbval_cell(item: Any) -> bool:
    return type(item).__name__ == "IPyNbCell"


def _active(item: Any) -> bool:
    return bool(os.environ.get(ENV)) and _is_nbval_cell(item)


def _target(item: Any) -> Path:
    """Where the notebook ``item`` belongs to is saved: ``$OMNI_EXECUTED_DIR/folder/name``."""
    source = Path(str(item.parent.fspath))
    return Path(os.environ[ENV]) / source.parent.name / source.name


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Start nbval's kernel (in its file's set-up) with the inline figure backend, and with
    the figures it records (:func:`omni_edu.report.headline`, the claim checks) going to a
    file beside the saved notebook, for the README's table of this run."""
    if not _active(item):
        return (yield)
    from omni_edu.report import FIGURES_ENV  # here: the plugin loads before torch is set up
    from omni_edu.tools.readme_figures import figures_path

    figures = figures_path(_target(item))
    if item.parent.nodeid not in _timings:  # its first cell: this run's figures only
        figures.parent.mkdir(parents=True, exist_ok=True)
        figures.write_text("", encoding="utf-8")
    # The kernel copies the environment when it starts.
    changed = {"MPLBACKEND": INLINE_BACKEND, FIGURES_ENV: str(figures.resolve())}
    before = {name: os.environ.get(name) for name in changed}
    os.environ.update(changed)
    try:
        return (yield)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Time each cell, and note a failing one, for the notebook's run record."""
    if not _active(item):
        return (yield)
    timing = _timings.setdefault(item.parent.nodeid, _Timing(started=time.time()))
    start = time.perf_counter()
    try:
        return (yield)
    except Exception:  # a cell error; pytest's skip and xfail outcomes are BaseExceptions
        timing.failed = True
        raise
    finally:
        timing.seconds += time.perf_counter() - start
        timing.cells_run += 1
        timing.finished = time.time()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write each notebook this process ran, its cells' outputs in place, and its record."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    import nbformat

    from omni_edu.profiles import get_profile
    from omni_edu.tools.run_record import make_record, write_atomically, write_record

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
        if all(item.test_outputs is None for item in items):
            continue  # another worker ran this notebook (or none did): not ours to write
        for number, item in enumerate(items, start=1):
            if item.test_outputs is not None:  # None: not run (a cell before it failed)
                item.cell.outputs = item.test_outputs
                item.cell.execution_count = number
        source = Path(str(parent.fspath))
        target = _target(items[0])
        write_atomically(target, nbformat.writes(parent.nb))
        timing = _timings.get(parent.nodeid)
        if timing is None:  # outputs without timed cells: a plugin order we did not expect
            continue
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        record = make_record(
            f"{source.parent.name}/{source.name}",
            profile=get_profile().key,
            runner="nbval",
            started=timing.started,
            finished=timing.finished,
            wall_s=timing.seconds,
            cells=len(items),
            cells_run=timing.cells_run,
            ok=not timing.failed,
            sharing=workers,
        )
        write_record(target, record)
