"""Notebook hygiene: committed notebooks carry no outputs.

The one exception is a cell marked ``# NBVAL_CHECK_OUTPUT``: nbval compares its stored
output with a fresh run, so that output must stay.

Usage::

    python -m omni_edu.tools.hygiene notebooks solutions exercises   # strip in place
    python -m omni_edu.tools.hygiene --check notebooks               # exit 1 if dirty
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from omni_edu.tools.notebook_io import (
    dumps_notebook,
    iter_notebooks,
    read_notebook,
    strip_notebook,
)

DEFAULT_FOLDERS = ["notebooks", "solutions", "exercises"]


def problems(path: str | Path) -> list[str]:
    """What is wrong with one notebook file (empty when it is clean)."""
    nb = read_notebook(path)
    clean = dumps_notebook(strip_notebook(copy.deepcopy(nb)))
    if Path(path).read_text(encoding="utf-8") == clean:
        return []
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        stripped = strip_notebook({"cells": [copy.deepcopy(cell)]})["cells"][0]
        if cell.get("outputs") != stripped.get("outputs"):
            found.append(f"cell {i} has stored outputs but no '# NBVAL_CHECK_OUTPUT' marker")
        elif cell.get("execution_count") != stripped.get("execution_count"):
            found.append(f"cell {i} has an execution count")
    return found or ["metadata or formatting differs from the stripped form"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=DEFAULT_FOLDERS)
    parser.add_argument("--check", action="store_true", help="report, don't rewrite")
    args = parser.parse_args(argv)
    dirty = 0
    for path in iter_notebooks(args.paths):
        found = problems(path)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: " + "; ".join(found))
        else:
            path.write_text(dumps_notebook(strip_notebook(read_notebook(path))), encoding="utf-8")
            print(f"stripped {path}")
    if args.check and dirty:
        print(f"{dirty} notebook(s) need `python -m omni_edu.tools.hygiene`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
