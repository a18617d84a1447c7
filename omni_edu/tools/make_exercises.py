"""Write ``exercises/`` from ``solutions/``.

In a solution notebook, the code a learner must write sits between two marker lines
inside a function body::

    def quantize(z, codebook):
        # BEGIN SOLUTION
        distances = torch.cdist(z, codebook)
        return distances.argmin(-1)
        # END SOLUTION

The exercise version replaces each block with a stub that raises
``NotImplementedError(grading.STUB_MESSAGE)``: that exact stub - and no other
``NotImplementedError`` - is what the checks report as "not implemented yet". It drops any
``# BEGIN HIDDEN`` / ``# END HIDDEN`` block, strips outputs and adds a banner that says
where the solution lives.

Usage::

    python -m omni_edu.tools.make_exercises          # (re)write exercises/
    python -m omni_edu.tools.make_exercises --check  # exit 1 if exercises/ is stale
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

from omni_edu.grading import STUB_MESSAGE
from omni_edu.tools.notebook_io import (
    cell_source,
    dumps_notebook,
    read_notebook,
    set_cell_source,
    strip_notebook,
)

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "# BEGIN HIDDEN", "# END HIDDEN"
STUB = f'raise NotImplementedError("{STUB_MESSAGE}")'
BANNER_TAG = "omni-exercise-banner"


class MarkerError(ValueError):
    """A solution notebook's markers are unbalanced or misplaced."""


def _strip_blocks(text: str, where: str) -> str:
    """Replace solution blocks by stubs and drop hidden blocks in one cell's source."""
    out: list[str] = []
    mode = None  # None, "solution" or "hidden"
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if marker in (BEGIN, BEGIN_HIDDEN):
            if mode is not None:
                raise MarkerError(f"{where}, line {lineno}: {marker!r} inside another block")
            mode = "solution" if marker == BEGIN else "hidden"
            if mode == "solution":
                if not indent:
                    raise MarkerError(
                        f"{where}, line {lineno}: '{BEGIN}' must sit inside a function body "
                        "(indented); a top-level stub would stop the exercise notebook."
                    )
                out.append(f"{indent}{STUB}\n")
            continue
        if marker in (END, END_HIDDEN):
            expected = "solution" if marker == END else "hidden"
            if mode != expected:
                raise MarkerError(f"{where}, line {lineno}: {marker!r} without its BEGIN")
            mode = None
            continue
        if mode is None:
            out.append(line)
    if mode is not None:
        raise MarkerError(f"{where}: a BEGIN marker has no END")
    return "".join(out)


def banner_cell(solution_path: str) -> dict[str, Any]:
    text = (
        "> **Exercise notebook.** Generated from "
        f"[`{solution_path}`](../{solution_path}) by `python -m omni_edu.tools.make_exercises`; "
        "do not edit it by hand.\n"
        "> Fill in every cell that raises `NotImplementedError`, then run its check. "
        f"Stuck? The worked solution lives in `{solution_path}`."
    )
    cell = {"cell_type": "markdown", "metadata": {"tags": [BANNER_TAG]}, "source": []}
    set_cell_source(cell, text)
    return cell


def make_exercise(solution: dict[str, Any], solution_path: str) -> dict[str, Any]:
    """The exercise version of one solution notebook (a new dict)."""
    nb = copy.deepcopy(solution)
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "code":
            set_cell_source(cell, _strip_blocks(cell_source(cell), f"{solution_path}, cell {i}"))
    nb["cells"].insert(0, banner_cell(solution_path))
    return strip_notebook(nb)


def count_blocks(nb: dict[str, Any]) -> int:
    """How many solution blocks a notebook holds."""
    return sum(
        line.strip() == BEGIN
        for cell in nb["cells"]
        if cell.get("cell_type") == "code"
        for line in cell_source(cell).splitlines()
    )


def expected_exercises(solutions_dir: Path) -> dict[str, str]:
    """File name -> the exact text each exercise notebook should have."""
    out = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        if not re.match(r"^\d\d[a-z]?_", path.name):  # 04, or 04b: a lesson after 04
            continue
        rel = f"{solutions_dir.name}/{path.name}"
        out[path.name] = dumps_notebook(make_exercise(read_notebook(path), rel))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write exercises/ from solutions/.")
    parser.add_argument("--solutions", default="solutions", type=Path)
    parser.add_argument("--exercises", default="exercises", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if exercises/ is stale")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir():
        print(f"No solutions folder at {args.solutions} (run from the repository root).")
        return 2
    try:
        wanted = expected_exercises(args.solutions)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    existing = {p.name for p in args.exercises.glob("*.ipynb")}
    stale = [n for n, text in wanted.items() if not _same(args.exercises / n, text)]
    extra = sorted(existing - set(wanted))
    if args.check:
        for name in stale:
            print(f"out of date: {args.exercises / name}")
        for name in extra:
            print(f"no solution for: {args.exercises / name}")
        if stale or extra:
            print("Run `python -m omni_edu.tools.make_exercises` to regenerate.", file=sys.stderr)
            return 1
        print(f"exercises/ is up to date ({len(wanted)} notebooks).")
        return 0
    args.exercises.mkdir(exist_ok=True)
    for name in stale:
        (args.exercises / name).write_text(wanted[name], encoding="utf-8")
        print(f"wrote {args.exercises / name}")
    for name in extra:
        (args.exercises / name).unlink()
        print(f"removed {args.exercises / name} (its solution is gone)")
    return 0


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


if __name__ == "__main__":
    sys.exit(main())
