"""The package's layout follows one rule, checked on its imports (CONTRIBUTING.md, "Where
things live").

``model/`` is OmniLM, ``data/`` is OmniWorld and the documents made from it, ``parts/`` is
what one lesson trains and a later one loads, ``lessons/<topic>/`` is what that notebook
measures, draws and grades, and every other top-level name is a tool all lessons share.
Four nevers make the rule checkable: ``model/`` imports only ``modalities/`` and
``profiles``; ``data/`` never imports ``viz/``; ``viz/`` imports no lesson or part; no
lesson folder imports another. And no import cycles; no module over about 500 lines
without a stated reason.

Every import counts, a lazy one inside a function too (it still ties the two modules);
for cycles, imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "omni_edu"

# The rooms of the house, and the tools every lesson shares (the other top-level names).
ROOMS = {"model", "data", "parts", "lessons"}
SHARED_TOOLS = {
    "__init__",
    "__main__",
    "cost",
    "generation",
    "grading",
    "modalities",
    "profiles",
    "report",
    "stats",
    "tools",
    "train",
    "viz",
}

# Not yet moved: modules that sit where the final layout has no place for them, each with
# where it goes ("model", "data", "parts", "lessons" or "gone"). The rules below tolerate
# them, and only them (a test fails when an entry names a module that is gone). Phase 2 of
# issue 21 emptied it; a later move that needs more than one commit lists its modules here.
NOT_YET_MOVED: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of the imports under ``if TYPE_CHECKING:``."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        lines.add(sub.lineno)
    return lines


def _resolve(name: str) -> str | None:
    """The course module ``name`` means: itself, or the nearest package that holds it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, *, runtime_only: bool = False) -> set[str]:
    """The course modules ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree) if runtime_only else set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name.startswith("omni_edu"):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
    return found


def room(module: str) -> str:
    """``model``, ``data``, ``parts``, ``lessons`` or a shared tool's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def lesson(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "lessons" else None


def tolerated(module: str) -> str | None:
    """Where a not-yet-moved module goes, or None for a module in its final place."""
    for name, goes in NOT_YET_MOVED.items():
        if module == name or module.startswith(name + "."):
            return goes
    return None


def is_part(module: str) -> bool:
    return room(module) == "parts" or tolerated(module) == "parts"


def is_lesson(module: str) -> bool:
    return room(module) == "lessons" or tolerated(module) == "lessons"


def test_every_top_level_name_is_a_room_or_a_shared_tool():
    strays = sorted(
        m
        for m in MODULES
        if room(m) not in ROOMS | SHARED_TOOLS and not tolerated(m) and m != "omni_edu"
    )
    assert strays == [], "move them into a room, or name the shared tool in SHARED_TOOLS"


def test_the_lists_of_exceptions_name_only_what_still_needs_them():
    assert [name for name in NOT_YET_MOVED if name not in MODULES] == []
    done = [
        name
        for name in LONG_FOR_NOW
        if name not in MODULES
        or len(MODULES[name].read_text(encoding="utf-8").splitlines()) <= LONG
        or REASON.search(MODULES[name].read_text(encoding="utf-8"))
    ]
    assert done == [], "remove them from LONG_FOR_NOW"


def test_model_imports_only_modalities_and_profiles():
    allowed = {"model", "modalities", "profiles"}
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if room(m) == "model" and not tolerated(m)
        for t in imports(m)
        if room(t) not in allowed
    )
    assert wrong == []


def test_data_never_imports_viz():
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if room(m) == "data" and not tolerated(m)
        for t in imports(m)
        if room(t) == "viz"
    )
    assert wrong == []


def test_viz_imports_no_lesson_and_no_part():
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if room(m) == "viz"
        for t in imports(m)
        if is_lesson(t) or is_part(t)
    )
    assert wrong == []


def test_no_lesson_folder_imports_another():
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if lesson(m)
        for t in imports(m)
        if lesson(t) and lesson(t) != lesson(m)
    )
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    # A package's __init__ that hands on its modules' names is no cycle with them: the
    # modules import each other, never their package's face.
    graph = {m: imports(m, runtime_only=True) for m in MODULES}
    assert _cycles(graph) == []


LONG = 500
REASON = re.compile(r"(?i)\b(longer|more|over) than (about )?500 lines\b")
# Long modules whose owners are splitting them or will state why (issue 21; empty since
# phase 2 split model/heads/vq.py); each entry goes when its module is under 500 lines or
# says why at its top.
LONG_FOR_NOW: set[str] = set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_500_lines_without_a_stated_reason(module):
    if tolerated(module) or module in LONG_FOR_NOW:
        pytest.skip("not yet moved or not yet split (see NOT_YET_MOVED, LONG_FOR_NOW)")
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    if len(lines) > LONG:
        head = "\n".join(lines[:60])
        assert REASON.search(head), (
            f"{module} has {len(lines)} lines: split it, or say at its top why it is "
            f"longer than 500 lines"
        )


def test_the_rules_see_a_real_import():
    # A guard for the checker itself: it must find the imports the rules are about.
    assert "omni_edu.modalities" in imports("omni_edu.model.interleave")
    assert "omni_edu.viz.plots" in imports("omni_edu.viz.omniworld")
    assert "omni_edu.grading" in imports("omni_edu.lessons.welcome.checks")


def _map_rows() -> list[str]:
    """The module paths of CONTRIBUTING.md's module map, one per table row."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text[text.index("### Module map") :]
    section = section[: section.index("\n\n", section.index("| module |"))]
    return re.findall(r"^\| `(omni_edu/[\w/]+\.py)` \|", section, flags=re.M)


def test_the_module_map_lists_every_module_once_and_nothing_else():
    rows = _map_rows()
    modules = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py"))
    assert sorted(set(rows) - set(modules)) == [], "the map lists modules that are gone"
    assert sorted(set(modules) - set(rows)) == [], "add these to CONTRIBUTING.md's map"
    assert len(rows) == len(set(rows)), "a module is listed twice"
