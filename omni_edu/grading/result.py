"""What a check found: its cases, their outcomes, and the result box a learner reads.

A :class:`CheckResult` decides once what its box says (:meth:`CheckResult.parts`) and then
renders that as plain text (``str``) or as a coloured HTML box in Jupyter, so the two can
never say different things.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PASSED = "passed"
FAILED = "failed"
NOT_IMPLEMENTED = "not implemented"
ERROR = "error"


# ---------------------------------------------------------------------------------------
# Cases and results
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    """One input for a check.

    ``args``/``kwargs`` are deep-copied before every call, so a function that changes
    its inputs in place cannot spoil the next comparison. ``seed`` is set before both
    the learner's and the reference call, so functions that draw random numbers can be
    compared. ``hint`` is shown when this case is the one that failed.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    seed: int = 0
    hint: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [summarize(a) for a in self.args]
        parts += [f"{k}={summarize(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ")"


@dataclass
class CaseOutcome:
    """What happened on one case.

    ``kind`` names the kind of difference (see :class:`Hints`); ``where`` is the learner's
    line that raised (empty when the learner's code did not raise); ``hint`` is the case's
    own hint.
    """

    label: str
    ok: bool
    message: str = ""
    expected: str = ""
    got: str = ""
    kind: str = ""
    where: str = ""
    hint: str = ""


@dataclass
class CheckResult:
    """The outcome of one check, shown as HTML in notebooks and text elsewhere.

    ``hint`` is the hint picked for this outcome; ``recipe`` is the full recipe when it is
    shown (after repeated failures or on request), else empty; ``more_help`` says how to
    get it.
    """

    name: str
    status: str
    outcomes: list[CaseOutcome]
    hint: str = ""
    detail: str = ""
    recipe: str = ""
    more_help: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def n_passed(self) -> int:
        return sum(o.ok for o in self.outcomes)

    def headline(self) -> str:
        n = len(self.outcomes)
        bad = self.first_failure()
        if self.status == PASSED:
            return f"PASSED  {self.name}: all {n} cases match."
        if self.status == NOT_IMPLEMENTED:
            return f"NOT IMPLEMENTED YET  {self.name}: replace the `raise NotImplementedError`."
        if self.status == ERROR:
            return f"ERROR  {self.name}: your code raised an exception."
        if bad is not None and bad.kind == "timeout":
            return f"FAILED  {self.name}: {bad.message.split(';')[0]}."
        return f"FAILED  {self.name}: {self.n_passed} of {n} cases match."

    def first_failure(self) -> CaseOutcome | None:
        return next((o for o in self.outcomes if not o.ok), None)

    def parts(self) -> list[tuple[str, Any]]:
        """What the result box says, in order: ``(part, value)`` pairs.

        The one place that decides the content; :meth:`__str__` (text) and
        :meth:`_repr_html_` (the notebook's box) only format it. Parts: ``"headline"``,
        ``"failing case"``, ``"what differed"``, ``"your line"``, ``"expected"`` (the pair
        ``(expected, yours)``), ``"detail"``, ``"hint"``, ``"recipe"``, ``"more help"``.
        """
        parts: list[tuple[str, Any]] = [("headline", self.headline())]
        bad = self.first_failure()
        if self.status in (FAILED, ERROR) and bad is not None:
            parts.append(("failing case", bad.label))
            if bad.message:
                parts.append(("what differed", bad.message))
            if bad.where:
                parts.append(("your line", bad.where))
            if bad.expected or bad.got:
                parts.append(("expected", (bad.expected, bad.got)))
        if self.detail:
            parts.append(("detail", self.detail))
        if not self.passed:  # a passing check needs no help
            if self.hint:
                parts.append(("hint", self.hint))
            if self.recipe:
                parts.append(("recipe", self.recipe))
            elif self.more_help:
                parts.append(("more help", self.more_help))
        return parts

    def __str__(self) -> str:
        lines = []
        for part, value in self.parts():
            if part == "headline":
                lines.append(value)
            elif part == "expected":
                lines += [f"  expected: {value[0]}", f"  yours:    {value[1]}"]
            elif part == "detail":
                lines.append("  " + value.replace("\n", "\n  "))
            else:
                lines.append(f"  {part}: {value}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        bg, fg = _COLOURS[self.status]
        esc = html.escape
        body = []
        for part, value in self.parts():
            name = part.capitalize()
            if part == "headline":
                body.append(f"<b style='color:{fg}'>{esc(value)}</b>")
            elif part == "expected":
                body.append(
                    "<table style='margin-top:4px'><tr><th style='text-align:left'>expected</th>"
                    "<th style='text-align:left'>yours</th></tr>"
                    f"<tr><td><pre>{esc(value[0])}</pre></td>"
                    f"<td><pre>{esc(value[1])}</pre></td></tr></table>"
                )
            elif part == "detail":
                body.append(f"<pre>{esc(value)}</pre>")
            elif part in ("failing case", "your line"):
                body.append(f"<div>{name}: <code>{esc(value)}</code></div>")
            elif part in ("hint", "recipe"):
                body.append(f"<div><i>{name}:</i> {esc(value)}</div>")
            elif part == "more help":
                body.append(f"<div style='color:#555'><i>{name}:</i> {esc(value)}</div>")
            else:
                body.append(f"<div>{name}: {esc(value)}</div>")
        return (
            f"<div style='background:{bg};border-left:4px solid {fg};padding:8px 12px;"
            f"margin:4px 0;font-family:sans-serif'>" + "".join(body) + "</div>"
        )


# The result box's background and text colours by status.
_COLOURS = {
    PASSED: ("#e6f4ea", "#1e7e34"),
    FAILED: ("#fdecea", "#b02a37"),
    ERROR: ("#fdecea", "#b02a37"),
    NOT_IMPLEMENTED: ("#f1f3f4", "#555555"),
}


# ---------------------------------------------------------------------------------------
# Comparing values
# ---------------------------------------------------------------------------------------


def summarize(value: Any, max_items: int = 16) -> str:
    """A short description of a value: small tensors in full, large ones by shape."""
    if isinstance(value, torch.Tensor):
        head = f"tensor shape={tuple(value.shape)} dtype={str(value.dtype).replace('torch.', '')}"
        if value.numel() <= max_items:
            return f"{head}\n{value.detach().cpu().tolist()}"
        return head
    if isinstance(value, np.ndarray):
        head = f"array shape={value.shape} dtype={value.dtype}"
        return f"{head}\n{value.tolist()}" if value.size <= max_items else head
    if isinstance(value, (list, tuple)) and len(value) > max_items:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
