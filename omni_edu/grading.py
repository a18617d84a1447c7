"""Exercise checks: run a learner's function on several cases and say what differed.

A check never crashes the notebook. It returns a :class:`CheckResult` that renders as a
coloured HTML box in Jupyter and as plain text elsewhere:

* ``passed``          every case matched;
* ``failed``          a case gave a different answer (shape, dtype, values, ...);
* ``not implemented`` the learner's function still raises ``NotImplementedError``;
* ``error``           the learner's function raised some other exception.

Strict mode (``OMNI_STRICT_CHECKS=1``, set by the test suite) turns ``failed`` and
``error`` into a :class:`CheckFailed` exception, so a wrong solution notebook fails its
test. ``not implemented`` never raises: the generated exercise notebooks, whose stubs
are unsolved on purpose, must still run from top to bottom.

The lesson-specific checks live in :mod:`omni_edu.checks`; they are thin wrappers over
:func:`check_function` (compare with a reference) and :func:`check_property` (test a
behaviour, such as "the gradient passes straight through").
"""

from __future__ import annotations

import contextlib
import copy
import html
import math
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

STRICT_ENV = "OMNI_STRICT_CHECKS"

PASSED = "passed"
FAILED = "failed"
NOT_IMPLEMENTED = "not implemented"
ERROR = "error"


class CheckFailed(AssertionError):
    """Raised in strict mode when a check fails or the learner's code errors."""


_lenient_depth = 0


def strict_mode() -> bool:
    """True when ``OMNI_STRICT_CHECKS`` asks checks to raise on failure (outside ``lenient``)."""
    if _lenient_depth:
        return False
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def lenient():
    """Inside this block failed checks report instead of raising, even in strict mode.

    Lessons use it to *show* what a failing check looks like.
    """
    global _lenient_depth
    _lenient_depth += 1
    try:
        yield
    finally:
        _lenient_depth -= 1


@dataclass
class Case:
    """One input for a check.

    ``args``/``kwargs`` are deep-copied before every call, so a function that changes
    its inputs in place cannot spoil the next comparison. ``seed`` is set before both
    the learner's and the reference call, so functions that draw random numbers can be
    compared.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    seed: int = 0

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [summarize(a) for a in self.args]
        parts += [f"{k}={summarize(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ")"


@dataclass
class CaseOutcome:
    """What happened on one case."""

    label: str
    ok: bool
    message: str = ""
    expected: str = ""
    got: str = ""


@dataclass
class CheckResult:
    """The outcome of one check, shown as HTML in notebooks and text elsewhere."""

    name: str
    status: str
    outcomes: list[CaseOutcome]
    hint: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def n_passed(self) -> int:
        return sum(o.ok for o in self.outcomes)

    def headline(self) -> str:
        n = len(self.outcomes)
        if self.status == PASSED:
            return f"PASSED  {self.name}: all {n} cases match."
        if self.status == NOT_IMPLEMENTED:
            return f"NOT IMPLEMENTED YET  {self.name}: replace the `raise NotImplementedError`."
        if self.status == ERROR:
            return f"ERROR  {self.name}: your code raised an exception."
        return f"FAILED  {self.name}: {self.n_passed} of {n} cases match."

    def first_failure(self) -> CaseOutcome | None:
        return next((o for o in self.outcomes if not o.ok), None)

    def __str__(self) -> str:
        lines = [self.headline()]
        bad = self.first_failure()
        if self.status in (FAILED, ERROR) and bad is not None:
            lines.append(f"  failing case: {bad.label}")
            if bad.message:
                lines.append(f"  what differed: {bad.message}")
            if bad.expected or bad.got:
                lines.append(f"  expected: {bad.expected}")
                lines.append(f"  yours:    {bad.got}")
        if self.detail:
            lines.append("  " + self.detail.replace("\n", "\n  "))
        if self.hint and not self.passed:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colours = {
            PASSED: ("#e6f4ea", "#1e7e34"),
            FAILED: ("#fdecea", "#b02a37"),
            ERROR: ("#fdecea", "#b02a37"),
            NOT_IMPLEMENTED: ("#f1f3f4", "#555555"),
        }
        bg, fg = colours[self.status]
        esc = html.escape
        body = [f"<b style='color:{fg}'>{esc(self.headline())}</b>"]
        bad = self.first_failure()
        if self.status in (FAILED, ERROR) and bad is not None:
            body.append(f"<div>Failing case: <code>{esc(bad.label)}</code></div>")
            if bad.message:
                body.append(f"<div>What differed: {esc(bad.message)}</div>")
            if bad.expected or bad.got:
                body.append(
                    "<table style='margin-top:4px'><tr><th style='text-align:left'>expected</th>"
                    "<th style='text-align:left'>yours</th></tr>"
                    f"<tr><td><pre>{esc(bad.expected)}</pre></td>"
                    f"<td><pre>{esc(bad.got)}</pre></td></tr></table>"
                )
        if self.detail:
            body.append(f"<pre>{esc(self.detail)}</pre>")
        if self.hint and not self.passed:
            body.append(f"<div><i>Hint:</i> {esc(self.hint)}</div>")
        return (
            f"<div style='background:{bg};border-left:4px solid {fg};padding:8px 12px;"
            f"margin:4px 0;font-family:sans-serif'>" + "".join(body) + "</div>"
        )


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


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """Describe how ``got`` differs from ``expected``; ``None`` when they match.

    Tensors and arrays must agree in shape and dtype and be close within
    ``atol + rtol * |expected|``; sequences and dicts are compared element by element.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"shape should be {tuple(expected.shape)}; got {tuple(got.shape)}"
        if got.dtype != expected.dtype:
            return f"dtype should be {expected.dtype}; got {got.dtype}"
        e, g = expected.detach().cpu(), got.detach().cpu()
        if e.dtype == torch.bool or not e.is_floating_point():
            wrong = (e != g).sum().item()
            if wrong:
                idx = tuple(torch.nonzero(e != g)[0].tolist())
                return f"{wrong} of {e.numel()} entries differ (first at index {idx})"
            return None
        if torch.isnan(g).any() and not torch.isnan(e).any():
            return "your result contains NaN"
        if e.numel() == 0:
            return None
        diff = (e.double() - g.double()).abs()
        tol = atol + rtol * e.double().abs()
        if bool((diff > tol).any()):
            idx = tuple(torch.nonzero(diff > tol)[0].tolist())
            return (
                f"values differ: max abs difference {diff.max().item():.3g} "
                f"(tolerance {atol:g} + {rtol:g}·|expected|), first at index {idx}"
            )
        return None
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            return f"expected a numpy array, got {type(got).__name__}"
        return compare(torch.from_numpy(expected), torch.from_numpy(got), atol, rtol)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {type(got).__name__}"
        if set(expected) != set(got):
            return f"keys should be {sorted(map(str, expected))}; got {sorted(map(str, got))}"
        for key in expected:
            why = compare(expected[key], got[key], atol, rtol)
            if why:
                return f"[{key!r}]: {why}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"expected a {type(expected).__name__}, got {type(got).__name__}"
        if len(expected) != len(got):
            return f"length should be {len(expected)}; got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            why = compare(e, g, atol, rtol)
            if why:
                return f"item {i}: {why}"
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if got == expected else f"expected {expected!r}, got {got!r}"
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)):
            return f"expected a number, got {type(got).__name__}"
        if math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            return None
        return f"expected {expected!r}, got {got!r} (difference {abs(got - expected):.3g})"
    return None if got == expected else f"expected {expected!r}, got {got!r}"


# ---------------------------------------------------------------------------------------
# Running checks
# ---------------------------------------------------------------------------------------


def _call(fn: Callable, case: Case) -> Any:
    torch.manual_seed(case.seed)
    np.random.seed(case.seed)
    return fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))


def _short_traceback(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_check(
    name: str,
    learner_fn: Callable,
    cases: Sequence[Case],
    judge: Callable[[Case, Any], CaseOutcome],
    hint: str = "",
) -> CheckResult:
    """Call ``learner_fn`` on every case and let ``judge`` decide each outcome.

    The general form behind :func:`check_function` and :func:`check_property`. It
    catches the learner's exceptions and honours strict mode.
    """
    if not callable(learner_fn):
        raise TypeError(f"{name}: expected a function or class to check; got {learner_fn!r}")
    if not cases:
        raise ValueError(f"{name}: a check needs at least one case")
    outcomes: list[CaseOutcome] = []
    status = PASSED
    for case in cases:
        try:
            got = _call(learner_fn, case)
        except NotImplementedError:
            outcomes.append(CaseOutcome(case.describe(), False, "not implemented yet"))
            status = NOT_IMPLEMENTED
            break
        except Exception as exc:  # the learner's bug must not crash the notebook
            outcomes.append(CaseOutcome(case.describe(), False, _short_traceback(exc)))
            status = ERROR
            break
        outcome = judge(case, got)
        outcomes.append(outcome)
        if not outcome.ok:
            status = FAILED
    result = CheckResult(name=name, status=status, outcomes=outcomes, hint=hint)
    if strict_mode() and status in (FAILED, ERROR):
        raise CheckFailed(str(result))
    return result


def check_function(
    name: str,
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Case],
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    transform: Callable[[Any], Any] | None = None,
) -> CheckResult:
    """Compare ``learner_fn`` with ``reference_fn`` on every case.

    ``transform`` (optional) maps both outputs before comparing, for example to
    compare only the first item of a returned tuple.
    """

    def judge(case: Case, got: Any) -> CaseOutcome:
        expected = _call(reference_fn, case)
        if transform is not None:
            expected, got = transform(expected), transform(got)
        why = compare(expected, got, atol=atol, rtol=rtol)
        if why is None:
            return CaseOutcome(case.describe(), True)
        return CaseOutcome(case.describe(), False, why, summarize(expected), summarize(got))

    return run_check(name, learner_fn, cases, judge, hint)


def check_property(
    name: str,
    learner_fn: Callable,
    cases: Sequence[Case],
    prop: Callable[[Case, Any], str | None],
    hint: str = "",
) -> CheckResult:
    """Check a behaviour of ``learner_fn``'s output: ``prop`` returns why it is wrong, or None."""

    def judge(case: Case, got: Any) -> CaseOutcome:
        try:
            why = prop(case, got)
        except Exception as exc:  # a malformed answer (wrong type, ...) is a failure
            why = f"your result could not be checked: {_short_traceback(exc)}"
        return CaseOutcome(case.describe(), why is None, why or "")

    return run_check(name, learner_fn, cases, judge, hint)


def learner_or_reference(result: CheckResult, learner_fn: Callable, reference_fn: Callable):
    """The learner's function if its check passed, else the reference (with a note).

    Later cells of an exercise notebook use this so they still run while an exercise
    is unsolved.
    """
    if result.passed:
        return learner_fn
    print(f"Note: using the course's reference for {result.name} until your version passes.")
    return reference_fn
