"""Reading and writing notebooks as plain JSON, in one stable format.

Every tool that rewrites a notebook (make_exercises, hygiene) writes through
:func:`write_notebook`, so the same content always gives the same bytes and
``--check`` modes can compare files exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECK_OUTPUT_MARKER = "# NBVAL_CHECK_OUTPUT"


def read_notebook(path: str | Path) -> dict[str, Any]:
    """Load a notebook file as a dict (nbformat 4 JSON)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if not isinstance(nb, dict) or "cells" not in nb:
        raise ValueError(f"{path} is not a Jupyter notebook (no 'cells' list found)")
    return nb


def dumps_notebook(nb: dict[str, Any]) -> str:
    """Serialise a notebook the way Jupyter does (indent 1, sorted keys, newline at end)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_notebook(nb: dict[str, Any], path: str | Path) -> None:
    """Write ``nb`` to ``path`` in the stable format."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(dumps_notebook(nb), encoding="utf-8")


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (notebooks store it as a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def set_cell_source(cell: dict[str, Any], text: str) -> None:
    """Store ``text`` as a list of lines, the way Jupyter writes it."""
    cell["source"] = text.splitlines(keepends=True)


def keeps_output(cell: dict[str, Any]) -> bool:
    """True for a code cell whose stored output nbval compares."""
    return cell.get("cell_type") == "code" and CHECK_OUTPUT_MARKER in cell_source(cell)


def strip_cell(cell: dict[str, Any]) -> None:
    """Remove outputs, execution counts and run-time metadata from one cell, in place.

    Cells marked ``# NBVAL_CHECK_OUTPUT`` keep their outputs (nbval compares them).
    """
    if cell.get("cell_type") == "code":
        if not keeps_output(cell):
            cell["outputs"] = []
        # nbval refuses stored outputs of a cell that looks unrun, so a checked cell keeps
        # a count; a fixed 1 keeps files identical from run to run.
        cell["execution_count"] = 1 if cell["outputs"] else None
        for output in cell["outputs"]:
            if "execution_count" in output:
                output["execution_count"] = 1
    for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
        cell.get("metadata", {}).pop(key, None)
    cell.pop("id", None)


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Strip every cell (see :func:`strip_cell`) and run-time notebook metadata, in place.

    A first code cell that is a Colab set-up cell is refreshed to the current text, so a
    change of repository address reaches every notebook through this one tool.
    """
    from omni_edu.tools.colab import SETUP_MARKER, setup_cell_source

    for cell in nb["cells"]:
        strip_cell(cell)
    first = next((c for c in nb["cells"] if c.get("cell_type") == "code"), None)
    if first is not None and cell_source(first).startswith(SETUP_MARKER):
        set_cell_source(first, setup_cell_source())
    nb.get("metadata", {}).pop("widgets", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    return nb


def iter_notebooks(paths: list[str | Path]) -> list[Path]:
    """All ``.ipynb`` files under the given files or folders, sorted, skipping checkpoints."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts]
        elif p.suffix == ".ipynb":
            found.append(p)
    return sorted(found)


def build_notebook(cells: list[tuple[str, str]]) -> dict[str, Any]:
    """A fresh notebook from ``("markdown" | "code", text)`` pairs.

    The Colab set-up cell is inserted as the first code cell, so authors never copy it.
    """
    from omni_edu.tools.colab import setup_cell_source

    nb_cells: list[dict[str, Any]] = []
    setup_done = False
    for kind, text in cells:
        if kind not in ("markdown", "code"):
            raise ValueError(f"cell kind should be 'markdown' or 'code'; got {kind!r}")
        if kind == "code" and not setup_done:
            nb_cells.append(_new_cell("code", setup_cell_source()))
            setup_done = True
        nb_cells.append(_new_cell(kind, text.strip("\n")))
    return {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def _new_cell(kind: str, text: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": []}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    set_cell_source(cell, text)
    return cell
