"""The rendered course: the executed lessons staged for Sphinx, rendered, and checked.

``python -m omni_edu.tools.site`` (see the README, "Read the course online or offline")
runs :func:`build_site`; ``python -m omni_edu.tools.site --check docs/_build/html`` checks a
built site:

1. **Execute** every lesson in a profile with the lesson runner, or take the notebooks the
   test suite already executed (``--executed DIR``, with their run records).
2. **Stage** Sphinx's source folder (:func:`stage_site`): the pages of ``docs/``, the
   executed lessons, the exercises and solutions as committed, and a page saying when,
   where and how long each lesson ran. A static page cannot run a kernel, so staging keeps
   what a page can show (:func:`prepare_notebook`): no widget state (it would make every
   page fetch a widget manager from a CDN), no bare widget views (a progress bar's stored
   text is its first state, "0%"; a box of controls is a ``VBox(children=...`` repr); the
   static figure a course widget carries stays. The Colab set-up cell's code is hidden.
3. **Render** with Sphinx and myst-nb (``docs/conf.py``): nothing runs, and formulas become
   MathML at build time (:mod:`omni_edu.tools.sphinx_mathml`), so no page loads a script.
4. **Check** (:func:`notebook_problems`, :func:`check_site`): every lesson executed, with
   outputs, and no cell showing the same figure or text twice; every lesson has its page
   with at least the figures its notebook holds; no broken internal link or anchor; no
   request that leaves the site; no frozen progress bar or bare widget repr.
"""

from __future__ import annotations

import argparse
import datetime
import html.parser
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from omni_edu.tools.machine import describe_machine, machine_info
from omni_edu.tools.notebook_io import cell_source, iter_notebooks, read_notebook, write_notebook
from omni_edu.tools.readme_figures import measured_section
from omni_edu.tools.run_lessons import lesson_notebooks, run_lessons
from omni_edu.tools.run_record import read_records

ROOT = Path(__file__).resolve().parents[2]
SITE_SOURCE = ROOT / "docs"
SITE_BUILD = ROOT / "docs" / "_build"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
# myst-nb's cell tag for "render the output, not the code": the Colab set-up cell installs
# the package on Colab and prints nothing elsewhere; its 36 lines would open every page.
SETUP_TAG = "remove-input"
# The exercise notebooks are generated from the solutions, titles included; the site
# lists both, so the solutions' titles say what they are.
SOLUTION_SUFFIX = " (worked solutions)"
# An output shorter than this may well repeat (an empty line, "ok"); a longer one is shown
# twice by mistake.
LONG_TEXT = 80

# What a stored widget looks like in text: a progress bar at its first state, or the repr
# of a box of controls (tqdm's bar is an HBox too).
FROZEN_BAR = re.compile(r"\b0%\|[^|\n]*\|\s*0/\d+")
WIDGET_REPR = re.compile(r"\b(?:[HV]Box|GridBox|Tab|Accordion)\(children=")


# ------------------------------------------------------------------------ executed notebooks
def _code_cells(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c.get("cell_type") == "code"]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _without_widget_view(output: dict[str, Any]) -> dict[str, Any] | None:
    """``output`` less its widget view; ``None`` when nothing but the view's repr is left."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return output
    rest = {k: v for k, v in data.items() if k not in (WIDGET_VIEW, "text/plain")}
    if not rest:  # a bare widget: its text is its first state (a bar at 0%) or a repr
        return None
    return {**output, "data": rest}


def prepare_notebook(nb: dict[str, Any], title_suffix: str = "") -> dict[str, Any]:
    """Make an executed (or committed) notebook a static page, in place; return it.

    Drops the widget state and every bare widget view (keeping the picture a course widget
    carries, :class:`~omni_edu.viz.fallback.WithFallback`), hides the code of the Colab
    set-up cell, and appends ``title_suffix`` to the notebook's first ``# `` heading.
    """
    from omni_edu.tools.colab import SETUP_MARKER

    nb.get("metadata", {}).pop("widgets", None)
    code = _code_cells(nb)
    for cell in code:
        kept = (_without_widget_view(o) for o in cell.get("outputs", []))
        cell["outputs"] = [o for o in kept if o is not None]
    if code and cell_source(code[0]).startswith(SETUP_MARKER):
        tags = code[0].setdefault("metadata", {}).setdefault("tags", [])
        if SETUP_TAG not in tags:
            tags.append(SETUP_TAG)
    if title_suffix:
        _add_to_title(nb, title_suffix)
    return nb


def _add_to_title(nb: dict[str, Any], suffix: str) -> None:
    for cell in nb["cells"]:
        if cell.get("cell_type") != "markdown":
            continue
        lines = cell_source(cell).splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith("# "):
                lines[i] = line.rstrip("\n") + suffix + ("\n" if line.endswith("\n") else "")
                cell["source"] = lines
                return


def output_images(nb: Mapping[str, Any]) -> int:
    """The figures (image outputs) a notebook's code cells hold."""
    return sum(
        any(t in output.get("data", {}) for t in IMAGE_TYPES)
        for cell in _code_cells(nb)
        for output in cell.get("outputs", [])
    )


def _shown(output: Mapping[str, Any]) -> tuple[str, str] | None:
    """What one output shows, as (kind, content): its image, else its longest text form."""
    data = output.get("data", {})
    for mime in IMAGE_TYPES:
        if mime in data:
            return "image", _text(data[mime])
    if output.get("output_type") == "stream":
        text = _text(output.get("text", "")).strip()
    else:
        forms = ("text/html", "text/markdown", "text/plain")
        text = max((_text(data[m]).strip() for m in forms if m in data), key=len, default="")
    return ("text", text) if len(text) >= LONG_TEXT else None


def notebook_problems(nb: Mapping[str, Any], name: str) -> list[str]:
    """What a page made from executed notebook ``nb`` would lack, or show twice.

    A notebook with no output in any code cell (it was saved without its run), and a cell
    whose outputs repeat the same image or the same long text (a helper that displayed and
    also returned).
    """
    code = _code_cells(nb)
    if code and not any(cell.get("outputs") for cell in code):
        return [f"{name}: no cell has an output (the notebook was saved without its run)"]
    problems = []
    for number, cell in enumerate(code, start=1):
        seen: set[tuple[str, str]] = set()
        for output in cell.get("outputs", []):
            shown = _shown(output)
            if shown is None:
                continue
            if shown in seen:
                last_line = cell_source(cell).strip().splitlines()[-1:] or [""]
                problems.append(
                    f"{name}, code cell {number} ({last_line[0][:60]!r}): the same {shown[0]} twice"
                )
                break
            seen.add(shown)
    return problems


# ----------------------------------------------------------------------------------- staging
@dataclass
class Staged:
    """What :func:`stage_site` laid out."""

    lessons: list[str]  # page names, e.g. "notebooks/00_welcome"
    figures: dict[str, int] = field(default_factory=dict)  # page -> figures its notebook holds
    problems: list[str] = field(default_factory=list)  # from the executed notebooks


def stage_site(executed: Path, stage: Path, built: Mapping[str, Any]) -> Staged:
    """Lay out Sphinx's source folder in ``stage``: the pages of ``docs/``, the executed
    lessons of ``executed`` (with the run records beside them), the exercise and solution
    notebooks as committed, and the page on how the lessons ran. ``built`` says how the
    site itself is built (``profile``, ``date``, ``machine``)."""
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(SITE_SOURCE, stage, ignore=shutil.ignore_patterns("_build", "conf.py"))
    lessons = sorted(executed.glob("*.ipynb"))
    if not lessons:
        raise ValueError(f"no executed lessons in {executed}; run the lessons first.")
    staged = Staged(lessons=[f"notebooks/{p.stem}" for p in lessons])
    for path in lessons:
        nb = prepare_notebook(read_notebook(path))
        staged.problems += notebook_problems(nb, path.stem)
        staged.figures[f"notebooks/{path.stem}"] = output_images(nb)
        write_notebook(nb, stage / "notebooks" / path.name)
    for folder, suffix in (("exercises", ""), ("solutions", SOLUTION_SUFFIX)):
        for path in iter_notebooks([ROOT / folder]):  # as committed: pages to read, not run
            nb = prepare_notebook(read_notebook(path), suffix)
            write_notebook(nb, stage / folder / path.name)
    about = about_page([p.stem for p in lessons], read_records(executed), built)
    (stage / "about_this_build.md").write_text(about + measured_section(executed), encoding="utf-8")
    return staged


def _when(record: Mapping[str, Any]) -> str:
    return record["started"].replace("T", " ")[:16] + " UTC"


def about_page(
    lessons: list[str], records: Mapping[str, Mapping[str, Any]], built: Mapping[str, Any]
) -> str:
    """The page "How these pages were made": when, where and how long each lesson ran
    (from its run record), then when the site was rendered from them."""
    lines = ["# How these pages were made", ""]
    ran = [records[name] for name in lessons if name in records]
    where = {(r["profile"], r["runner"], describe_machine(r["machine"]), r["sharing"]) for r in ran}
    if len(where) == 1:
        ((profile, runner, machine, sharing),) = where
        shared = f", {sharing} lessons at a time" if sharing > 1 else ", one at a time"
        lines += [
            f"The lessons ran top to bottom in the `{profile}` profile ({runner}{shared}) on "
            f"{machine}, from {min(_when(r) for r in ran)} to "
            f"{max(r['finished'] for r in ran).replace('T', ' ')[:16]} UTC. A lesson's time is "
            "the sum of its cells' run times"
            + (
                "; lessons that shared the cores ran slower than each would alone."
                if sharing > 1
                else "."
            ),
            "",
        ]
    lines += ["| lesson | started | wall time | cells run | result |", "|---|---|---|---|---|"]
    detail = len(where) > 1  # records from different runs: say each one's profile and machine
    for name in lessons:
        record = records.get(name)
        if record is None:
            lines.append(f"| {name} | not recorded | | | |")
            continue
        result = "passed" if record["ok"] else "**failed**"
        if detail:
            result += (
                f" (`{record['profile']}`, {record['runner']}, "
                f"{describe_machine(record['machine'])})"
            )
        lines.append(
            f"| {name} | {_when(record)} | {record['wall_s']:.0f} s | "
            f"{record['cells_run']} of {record['cells']} | {result} |"
        )
    lines += [
        "",
        f"This site was rendered from those runs on {built['date']} by `python -m "
        f"omni_edu.tools.site --profile {built['profile']}` (Sphinx and myst-nb; "
        "nothing ran again). Run the lessons yourself to get your own numbers.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- the check
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr", "param"}
# Attributes by which a page makes the browser fetch something by itself (an <a href> is
# only followed when clicked).
_FETCHED = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "audio": "src",
    "video": "src",
    "source": "src",
    "embed": "src",
    "object": "data",
}


class _Page(html.parser.HTMLParser):
    """Links, ids, fetched resources, images and output text of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.fetched: list[str] = []
        self.images = 0
        self.output_text: list[str] = []
        self._stack: list[bool] = []  # per open element: is it (inside) a cell's output?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        for name, value in values.items():
            if name in ("href", "src"):
                self.links.append(value)
            elif name in ("id", "name"):
                self.ids.add(value)
        if tag in _FETCHED and _FETCHED[tag] in values:
            self.fetched.append(values[_FETCHED[tag]])
        if tag == "img":
            self.images += 1
        if tag not in _VOID:
            inside = bool(self._stack and self._stack[-1])
            self._stack.append(inside or "cell_output" in values.get("class", "").split())

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1]:
            self.output_text.append(data)


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser


def _leaves_the_site(url: str) -> bool:
    parts = urlsplit(url)
    return url.startswith("//") or (bool(parts.scheme) and parts.scheme != "data")


def page_figures(html_dir: str | Path, lessons: list[str]) -> dict[str, int]:
    """The images on each lesson's page (0 for a lesson without a page)."""
    html_dir = Path(html_dir)
    return {
        name: _parse(html_dir / f"{name}.html").images
        if (html_dir / f"{name}.html").exists()
        else 0
        for name in lessons
    }


def check_site(
    html_dir: str | Path, lessons: list[str], figures: Mapping[str, int] | None = None
) -> list[str]:
    """Problems of a built site; empty when all is well.

    A lesson without its page, or (with ``figures``: page -> the figures its executed
    notebook holds) with fewer images on it; a relative link to a file that is not there
    or to an anchor its page lacks; a script, stylesheet, image or frame fetched from
    outside the site; a progress bar frozen at 0% or a bare widget repr in an output.
    """
    html_dir = Path(html_dir)
    problems = [
        f"lesson {name} has no page" for name in lessons if not (html_dir / f"{name}.html").exists()
    ]
    shown = page_figures(html_dir, lessons)
    for name, expected in (figures or {}).items():
        if (html_dir / f"{name}.html").exists() and shown[name] < expected:
            problems.append(
                f"lesson {name}: its page shows {shown[name]} figures, its executed notebook "
                f"holds {expected}"
            )
    parsed: dict[Path, _Page] = {}
    for page in sorted(html_dir.rglob("*.html")):
        parsed.setdefault(page, _parse(page))
        where = page.relative_to(html_dir)
        for url in parsed[page].fetched:
            if _leaves_the_site(url):
                problems.append(f"{where}: fetches {url!r} from outside the site")
        text = "".join(parsed[page].output_text)
        for pattern, what in (
            (FROZEN_BAR, "a progress bar frozen at 0%"),
            (WIDGET_REPR, "a bare widget repr"),
        ):
            found = pattern.search(text)
            if found:
                problems.append(f"{where}: an output shows {what}: {found.group(0)!r}")
        for link in parsed[page].links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "data:", "javascript:")):
                continue  # external: not this site's to check (and the build is offline)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{where}: broken link {link!r}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed.setdefault(target, _parse(target)).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{where}: link {link!r} names a missing anchor")
    return problems


# --------------------------------------------------------------------------------- the build
def _lessons_not_executed(executed: Path) -> list[str]:
    have = {p.stem for p in executed.glob("*.ipynb")}
    return [
        f"lesson {p.stem} was not executed: {executed} has no {p.name} (run it too, or build "
        "from a folder that holds every lesson)"
        for p in lesson_notebooks()
        if p.stem not in have
    ]


def build_site(
    profile: str,
    *,
    executed: str | Path | None = None,
    out: str | Path = SITE_BUILD / "html",
    timeout: int = 900,
) -> dict[str, Any]:
    """Execute the lessons in ``profile`` (or take them executed from ``executed``), render
    them with Sphinx, and check the result. Returns a summary (build times, size, figures
    per lesson page); raises ``RuntimeError`` with the summary and every problem when a
    lesson failed or is missing, the build fails, or the check finds problems."""
    start = time.perf_counter()
    if executed is None:
        folder = SITE_BUILD / "executed"
        if folder.exists():
            shutil.rmtree(folder)
        run_lessons(None, profile, out_dir=folder, inline_figures=True, timeout=timeout)
        executed = folder / "notebooks"
    executed = Path(executed)
    run_s = time.perf_counter() - start
    built = {
        "profile": profile,
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
    }
    stage = SITE_BUILD / "source"
    staged = stage_site(executed, stage, built)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going"]
    command += ["-c", str(SITE_SOURCE), "-d", str(SITE_BUILD / "doctrees"), str(stage), str(out)]
    rendering = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    sphinx_s = time.perf_counter() - rendering
    if done.returncode != 0:
        raise RuntimeError(f"sphinx-build failed:\n{done.stdout}\n{done.stderr}")
    # A lesson that failed is still rendered up to its failing cell (its error shows on
    # its page); the build then fails, after saying how long it took and how big it is.
    records = read_records(executed)
    problems = _lessons_not_executed(executed) + staged.problems
    problems += [
        f"lesson {name} failed when it ran ({records[name]['runner']}); its page shows the error"
        for name in (Path(page).name for page in staged.lessons)
        if name in records and not records[name]["ok"]
    ]
    problems += check_site(out, staged.lessons, staged.figures)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary = {
        "html": str(out),
        "lessons": len(staged.lessons),
        "execute_s": round(run_s, 1),
        "sphinx_s": round(sphinx_s, 1),
        "size_mib": round(size / 2**20, 1),
        "figures": {Path(k).name: v for k, v in page_figures(out, staged.lessons).items()},
    }
    if problems:
        raise RuntimeError(f"{json.dumps(summary)}\nthe site has problems:\n" + "\n".join(problems))
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m omni_edu.tools.site [--profile ci] [--executed DIR] [--out DIR]`` builds
    the site; ``--check DIR`` checks one already built."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--executed", help="take executed lessons from here instead of running")
    parser.add_argument("--out", default=str(SITE_BUILD / "html"))
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--check", metavar="HTML", help="only check the site built in HTML")
    args = parser.parse_args(argv)
    if args.check:
        lessons = [f"notebooks/{p.stem}" for p in lesson_notebooks()]
        problems = check_site(args.check, lessons)
        print("\n".join(problems) or f"{args.check}: {len(lessons)} lessons, no problem found")
        return 1 if problems else 0
    try:
        summary = build_site(
            args.profile, executed=args.executed, out=args.out, timeout=args.timeout
        )
    except (RuntimeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(summary))
    print(f"open {Path(summary['html']) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
