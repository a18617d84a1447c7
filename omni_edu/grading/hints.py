"""Graduated hints: a nudge for an untouched stub, a hint aimed at the failure, and the full
recipe after :data:`RECIPE_AFTER` failed runs of one check, or on request
(``grading.recipe("x")``).
"""

from __future__ import annotations

import collections
import html
import importlib
import importlib.util
import pkgutil
from dataclasses import InitVar, dataclass, field
from types import ModuleType

from omni_edu.grading.result import (
    ERROR,
    FAILED,
    NOT_IMPLEMENTED,
    CaseOutcome,
    CheckResult,
)

# The full recipe appears by itself on this failed run of one check in a session.
RECIPE_AFTER = 3


# ---------------------------------------------------------------------------------------
# Graduated hints
# ---------------------------------------------------------------------------------------

_HINTS: dict[str, Hints] = {}
_failed_runs: collections.Counter[str] = collections.Counter()

_TIMEOUT_HINT = (
    "Look for a loop whose condition never changes (a while loop that never reaches its "
    "end), or work done once per element in Python where one tensor operation would do."
)


@dataclass
class Hints:
    """The graduated help of one check; creating it registers it under ``check``.

    * ``nudge``: for an untouched stub - what to compute and where to start, not the code;
    * ``failed``: for a wrong answer when nothing more specific applies;
    * ``on``: hints by kind of failure: ``"shape"``, ``"dtype"``, ``"values"``, ``"nan"``,
      ``"type"``, ``"length"``, ``"keys"`` (the kinds :func:`compare` reports), ``"return"``
      (the check could not use what the function returned), ``"error"`` (the learner's
      code raised), ``"timeout"``, and any kind a check's own property reports with
      :class:`Difference` or :class:`LearnerMistake`;
    * ``recipe``: the full code-level recipe, shown after :data:`RECIPE_AFTER` failed runs
      or on request.

    A :class:`Case` may carry its own ``hint``, which wins when that case is the one that
    failed (e.g. an off-by-one hint on the boundary case).
    """

    check: str
    nudge: str
    recipe: str
    failed: str = ""
    on: dict[str, str] = field(default_factory=dict)
    # False for the generic hints a check without its own gets: they must never replace the
    # hints a lesson registered under the same name (the reference's class name, "Block").
    register: InitVar[bool] = True

    def __post_init__(self, register: bool) -> None:
        if register:
            _HINTS[self.check] = self

    def for_failure(self, status: str, outcome: CaseOutcome | None) -> str:
        """The hint for a run that ended with ``status`` at ``outcome`` (its first bad case)."""
        if status == NOT_IMPLEMENTED or outcome is None:
            return self.nudge
        if outcome.kind == "timeout":
            return self.on.get("timeout", _TIMEOUT_HINT)
        if status == ERROR:  # the learner's line and message say what broke; recall the goal
            return self.on.get("error") or self.nudge
        return outcome.hint or self.on.get(outcome.kind, "") or self.failed or self.nudge


def legacy_hints(check: str, hint: str) -> Hints:
    """A check written before graduated hints passes one string: it serves every stage."""
    return Hints(check, nudge=hint, recipe=hint, failed=hint)


@dataclass
class Recipe:
    """The full recipe of one check; displays as HTML in a notebook and text elsewhere."""

    check: str
    text: str

    def __str__(self) -> str:
        return f"Recipe for {self.check}: {self.text}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (
            "<div style='background:#fff8e1;border-left:4px solid #b7791f;padding:8px 12px;"
            f"font-family:sans-serif'><b>Recipe for {html.escape(self.check)}</b>"
            f"<div>{html.escape(self.text)}</div></div>"
        )


def recipe(check: str) -> Recipe:
    """The full recipe of the check named ``check`` (as its result box names it)."""
    if check not in _HINTS:
        check_modules()
    if check not in _HINTS:
        raise ValueError(f"no check named {check!r}; known checks: {sorted(_HINTS)}")
    return Recipe(check, _HINTS[check].recipe)


def check_modules() -> list[ModuleType]:
    """Every lesson's checks, ``omni_edu/lessons/<topic>/checks.py``, imported (so their
    :class:`Hints` register), in the lessons' alphabetical order.

    Found by the naming rule and imported by name: the grading tool depends on no lesson
    (each lesson's checks depend on it).
    """
    lessons = importlib.util.find_spec("omni_edu.lessons")
    names = [
        f"omni_edu.lessons.{info.name}.checks"
        for info in pkgutil.iter_modules(lessons.submodule_search_locations)
    ]
    return [importlib.import_module(n) for n in names if importlib.util.find_spec(n) is not None]


def failed_runs(check: str) -> int:
    """How many runs of ``check`` failed (or raised) in this session."""
    return _failed_runs[check]


def reset_attempts() -> None:
    """Forget the failed runs counted so far (the recipe hides again)."""
    _failed_runs.clear()


def with_hints(result: CheckResult, hints: Hints, show_recipe: bool) -> CheckResult:
    """Pick the hint for ``result`` and decide whether the full recipe shows."""
    if result.passed:
        return result
    if result.status in (FAILED, ERROR):
        _failed_runs[result.name] += 1
    result.hint = hints.for_failure(result.status, result.first_failure())
    runs = _failed_runs[result.name]
    if not hints.recipe or hints.recipe == result.hint:
        return result
    if show_recipe or runs >= RECIPE_AFTER:
        result.recipe = hints.recipe
    elif result.status == NOT_IMPLEMENTED:
        result.more_help = f"stuck? grading.recipe({result.name!r}) shows the full recipe."
    else:
        result.more_help = (
            f"grading.recipe({result.name!r}) shows the full recipe; it also appears here "
            f"after {RECIPE_AFTER} failed runs of this check (failed runs so far: {runs})."
        )
    return result
