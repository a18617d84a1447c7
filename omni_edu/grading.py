"""Exercise checks: run a learner's function on several cases and say what differed.

A check never crashes the notebook. It returns a :class:`CheckResult` that renders as a
coloured HTML box in Jupyter and as plain text elsewhere:

* ``passed``          every case matched;
* ``failed``          a case gave a different answer (shape, dtype, values, ...), the
                      function returned something the check cannot use, or it took
                      longer than the check's time limit;
* ``not implemented`` the learner's function is still the exercise stub;
* ``error``           the learner's code raised an exception (shown with its message and
                      the learner's line).

**What counts as "not implemented".** Only the stub itself: the
``raise NotImplementedError("Exercise: write your code here")`` that
``make_exercises`` writes (:data:`STUB_MESSAGE`), or a bare ``raise NotImplementedError``
in the checked function's own body. Any other ``NotImplementedError`` - torch raises one
for an operation a dtype lacks, ``"bitwise_and_cpu" not implemented for 'Float'`` - is an
error in the learner's code.

**Time limit.** Each check stops after :data:`DEFAULT_TIME_LIMIT` seconds (or
``OMNI_CHECK_TIME_LIMIT``, or the ``time_limit=`` argument; 0 switches it off) and reports
"took longer than N s", so an endless loop fails the check instead of hanging the
notebook. In the main thread on Linux and macOS - a plain script, JupyterLab and Colab,
whose kernels run cells in the main thread - a ``SIGALRM`` timer interrupts the learner's
code. Elsewhere (another thread, Windows, or when a timer is already running) a trace
function checks the clock between Python operations; it slows pure-Python code down while
the check runs. Neither can stop a single long C-level operation (one huge matrix
product): the check stops as soon as that operation returns.

**Graduated hints.** Each check has :class:`Hints`: a short *nudge* for an untouched
stub (what to compute, where to start), hints aimed at a failure (per case, such as the
boundary case, or per kind of difference, such as a shape mismatch), and the full
code-level *recipe*, shown only after :data:`RECIPE_AFTER` failed runs of the same check
in a session, or on request: ``check_x(fn, show_recipe=True)`` or
``grading.recipe("x")``.

Strict mode (``OMNI_STRICT_CHECKS=1``, set by the test suite) turns ``failed`` and
``error`` into a :class:`CheckFailed` exception, so a wrong solution notebook fails its
test. ``not implemented`` never raises: the generated exercise notebooks, whose stubs
are unsolved on purpose, must still run from top to bottom.

The lesson-specific checks live in :mod:`omni_edu.checks`; they are thin wrappers over
:func:`check_function` (compare with a reference) and :func:`check_property` (test a
behaviour, such as "the gradient passes straight through").
"""

from __future__ import annotations

import collections
import contextlib
import copy
import html
import importlib
import math
import numbers
import os
import pkgutil
import re
import signal
import site
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

STRICT_ENV = "OMNI_STRICT_CHECKS"
TIME_LIMIT_ENV = "OMNI_CHECK_TIME_LIMIT"
# Long enough for a slow but correct answer on a slow machine (every reference check runs
# in well under a second on a laptop CPU), short enough that a hang is noticed.
DEFAULT_TIME_LIMIT = 10.0
# The full recipe appears by itself on this failed run of one check in a session.
RECIPE_AFTER = 3
# The message of the stub that make_exercises writes: the one "not implemented yet".
STUB_MESSAGE = "Exercise: write your code here"

PASSED = "passed"
FAILED = "failed"
NOT_IMPLEMENTED = "not implemented"
ERROR = "error"


class CheckFailed(AssertionError):
    """Raised in strict mode when a check fails or the learner's code errors."""


class LearnerMistake(ValueError):
    """Raised by a check's own code when the learner's function returned something it cannot
    use. The message says what the function returned and what was expected; the check
    reports it as a failure without a line (no line of the learner's raised). ``kind``
    picks the hint (see :class:`Hints`)."""

    def __init__(self, message: str, kind: str = "return") -> None:
        super().__init__(message)
        self.kind = kind


class CheckTimeout(BaseException):
    """The check's time limit ran out. A ``BaseException``, like ``KeyboardInterrupt``, so
    that a learner's ``except Exception`` cannot swallow it."""


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

    def __post_init__(self) -> None:
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


def _legacy_hints(check: str, hint: str) -> Hints:
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
        import omni_edu.checks

        for info in pkgutil.iter_modules(omni_edu.checks.__path__):
            importlib.import_module(f"omni_edu.checks.{info.name}")
    if check not in _HINTS:
        raise ValueError(f"no check named {check!r}; known checks: {sorted(_HINTS)}")
    return Recipe(check, _HINTS[check].recipe)


def failed_runs(check: str) -> int:
    """How many runs of ``check`` failed (or raised) in this session."""
    return _failed_runs[check]


def reset_attempts() -> None:
    """Forget the failed runs counted so far (the recipe hides again)."""
    _failed_runs.clear()


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

    def _shows_hints(self) -> bool:
        return not self.passed

    def __str__(self) -> str:
        lines = [self.headline()]
        bad = self.first_failure()
        if self.status in (FAILED, ERROR) and bad is not None:
            lines.append(f"  failing case: {bad.label}")
            if bad.message:
                lines.append(f"  what differed: {bad.message}")
            if bad.where:
                lines.append(f"  your line: {bad.where}")
            if bad.expected or bad.got:
                lines.append(f"  expected: {bad.expected}")
                lines.append(f"  yours:    {bad.got}")
        if self.detail:
            lines.append("  " + self.detail.replace("\n", "\n  "))
        if self._shows_hints():
            if self.hint:
                lines.append(f"  hint: {self.hint}")
            if self.recipe:
                lines.append(f"  recipe: {self.recipe}")
            elif self.more_help:
                lines.append(f"  more help: {self.more_help}")
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
            if bad.where:
                body.append(f"<div>Your line: <code>{esc(bad.where)}</code></div>")
            if bad.expected or bad.got:
                body.append(
                    "<table style='margin-top:4px'><tr><th style='text-align:left'>expected</th>"
                    "<th style='text-align:left'>yours</th></tr>"
                    f"<tr><td><pre>{esc(bad.expected)}</pre></td>"
                    f"<td><pre>{esc(bad.got)}</pre></td></tr></table>"
                )
        if self.detail:
            body.append(f"<pre>{esc(self.detail)}</pre>")
        if self._shows_hints():
            if self.hint:
                body.append(f"<div><i>Hint:</i> {esc(self.hint)}</div>")
            if self.recipe:
                body.append(f"<div><i>Recipe:</i> {esc(self.recipe)}</div>")
            elif self.more_help:
                body.append(
                    f"<div style='color:#555'><i>More help:</i> {esc(self.more_help)}</div>"
                )
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


class Difference(str):
    """What :func:`compare` found, as text, with the ``kind`` of difference for the hints:
    ``"type"``, ``"shape"``, ``"dtype"``, ``"values"``, ``"nan"``, ``"length"`` or ``"keys"``."""

    kind: str

    def __new__(cls, text: str, kind: str) -> Difference:
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


def _nested(prefix: str, why: Difference) -> Difference:
    return Difference(f"{prefix}: {why}", why.kind)


def as_number(value: Any) -> int | float | None:
    """``value`` as a Python number when it is one: an int or float, a NumPy scalar, or a
    tensor or array holding one element. ``None`` otherwise (booleans are not numbers)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        n = value.size if isinstance(value, np.ndarray) else value.numel()
        if n != 1:
            return None
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4) -> Difference | None:
    """Describe how ``got`` differs from ``expected``; ``None`` when they match.

    Tensors and arrays must agree in shape and dtype and be close within
    ``atol + rtol * |expected|``; sequences and dicts are compared element by element;
    a number may arrive as a Python, NumPy or one-element tensor number.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return Difference(f"expected a torch.Tensor, got {type(got).__name__}", "type")
        if tuple(got.shape) != tuple(expected.shape):
            return Difference(
                f"shape should be {tuple(expected.shape)}; got {tuple(got.shape)}", "shape"
            )
        if got.dtype != expected.dtype:
            return Difference(f"dtype should be {expected.dtype}; got {got.dtype}", "dtype")
        e, g = expected.detach().cpu(), got.detach().cpu()
        if e.dtype == torch.bool or not e.is_floating_point():
            wrong = (e != g).sum().item()
            if wrong:
                idx = tuple(torch.nonzero(e != g)[0].tolist())
                return Difference(
                    f"{wrong} of {e.numel()} entries differ (first at index {idx})", "values"
                )
            return None
        if torch.isnan(g).any() and not torch.isnan(e).any():
            return Difference("your result contains NaN", "nan")
        if e.numel() == 0:
            return None
        diff = (e.double() - g.double()).abs()
        tol = atol + rtol * e.double().abs()
        if bool((diff > tol).any()):
            idx = tuple(torch.nonzero(diff > tol)[0].tolist())
            return Difference(
                f"values differ: max abs difference {diff.max().item():.3g} "
                f"(tolerance {atol:g} + {rtol:g}·|expected|), first at index {idx}",
                "values",
            )
        return None
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            return Difference(f"expected a numpy array, got {type(got).__name__}", "type")
        return compare(torch.from_numpy(expected), torch.from_numpy(got), atol, rtol)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return Difference(f"expected a dict, got {type(got).__name__}", "type")
        if set(expected) != set(got):
            return Difference(
                f"keys should be {sorted(map(str, expected))}; got {sorted(map(str, got))}",
                "keys",
            )
        for key in expected:
            why = compare(expected[key], got[key], atol, rtol)
            if why:
                return _nested(f"[{key!r}]", why)
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return Difference(
                f"expected a {type(expected).__name__}, got {type(got).__name__}", "type"
            )
        if len(expected) != len(got):
            return Difference(f"length should be {len(expected)}; got {len(got)}", "length")
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            why = compare(e, g, atol, rtol)
            if why:
                return _nested(f"item {i}", why)
        return None
    if isinstance(expected, (bool, np.bool_)) or expected is None or isinstance(expected, str):
        return None if _equal(got, expected) else _mismatch(expected, got)
    want = as_number(expected)
    if want is not None:
        have = as_number(got)
        if have is None:
            return Difference(f"expected a number, got {type(got).__name__}", "type")
        if math.isclose(float(have), float(want), rel_tol=rtol, abs_tol=atol):
            return None
        return Difference(
            f"expected {want!r}, got {have!r} (difference {abs(have - want):.3g})", "values"
        )
    return None if _equal(got, expected) else _mismatch(expected, got)


def _equal(got: Any, expected: Any) -> bool:
    """``got == expected`` as one bool (an array's elementwise answer counts as unequal)."""
    try:
        return bool(got == expected)
    except (TypeError, ValueError, RuntimeError):
        return False


def _mismatch(expected: Any, got: Any) -> Difference:
    kind = "values" if type(got) is type(expected) else "type"
    return Difference(f"expected {expected!r}, got {summarize(got)}", kind)


# ---------------------------------------------------------------------------------------
# Whose code raised: the learner's, the course's or a library's
# ---------------------------------------------------------------------------------------

_COURSE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dirs() -> tuple[str, ...]:
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # site.getsitepackages is missing in old venvs
        paths.update(site.getsitepackages())
    paths.add(site.getusersitepackages())
    return tuple(os.path.abspath(p) + os.sep for p in paths if p)


_LIBRARY_DIRS = _library_dirs()


def _is_learner_file(filename: str) -> bool:
    """Learner code is everything that is neither the course package nor an installed
    library: notebook cells, the learner's own files, code run with exec()."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    path = os.path.abspath(filename)
    return not path.startswith(_COURSE_DIR) and not path.startswith(_LIBRARY_DIRS)


def _learner_frame(exc: BaseException, entry: Any = None) -> traceback.FrameSummary | None:
    """The innermost frame of the learner's code in ``exc``'s traceback, if any.

    ``entry`` (a code object) is where the learner's function is entered: when given, only
    frames below its innermost call can be the learner's, so a wrapper that calls the
    learner's function and then fails on its result is never taken for the learner's code.
    """
    tb, frames, inside = exc.__traceback__, [], entry is None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code is entry:
            inside, frames = True, []
        elif inside and _is_learner_file(code.co_filename):
            frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return None
    last = frames[-1]
    return traceback.FrameSummary(
        last.tb_frame.f_code.co_filename, last.tb_lineno, last.tb_frame.f_code.co_name
    )


def _notebook_cell(filename: str) -> str:
    """``In[7]`` when ``filename`` is a Jupyter cell (JupyterLab or Colab), else ''."""
    match = re.match(r"<ipython-input-(\d+)-", filename)
    if match:
        return f"In[{match.group(1)}]"
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    count = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"In[{count}]" if count is not None else ""


def _where(frame: traceback.FrameSummary) -> str:
    cell = _notebook_cell(frame.filename)
    place = f"cell {cell}" if cell else os.path.basename(frame.filename)
    text = f"{place}, line {frame.lineno}"
    return f"{text}: {frame.line.strip()}" if frame.line else text


def _exception_text(exc: BaseException, max_lines: int = 4) -> str:
    lines = str(exc).strip().splitlines()
    text = "\n".join(lines[:max_lines]) + (" ..." if len(lines) > max_lines else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_stub(exc: BaseException, learner_fn: Callable) -> bool:
    """Is ``exc`` the exercise stub's own ``NotImplementedError``?

    True for the message :data:`STUB_MESSAGE` that ``make_exercises`` writes, and for a
    bare ``raise NotImplementedError`` in the checked function's own body (a hand-written
    stub). Any other ``NotImplementedError`` - with another message, or from deeper in the
    learner's code or a library - is an error.
    """
    if not isinstance(exc, NotImplementedError):
        return False
    if exc.args == (STUB_MESSAGE,):
        return True
    if exc.args:
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    fn = getattr(learner_fn, "__func__", learner_fn)  # a bound method's function
    return tb is not None and tb.tb_frame.f_code is getattr(fn, "__code__", None)


# ---------------------------------------------------------------------------------------
# The time limit
# ---------------------------------------------------------------------------------------


def default_time_limit() -> float | None:
    """Seconds a check may run: ``OMNI_CHECK_TIME_LIMIT`` or :data:`DEFAULT_TIME_LIMIT`;
    ``None`` (no limit) when the variable is ``0``, ``off`` or ``none``."""
    raw = os.environ.get(TIME_LIMIT_ENV, "").strip().lower()
    if not raw:
        return DEFAULT_TIME_LIMIT
    if raw in {"0", "off", "none"}:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{TIME_LIMIT_ENV} should be a number of seconds; got {raw!r}") from None
    if not seconds > 0:
        raise ValueError(f"{TIME_LIMIT_ENV} should be > 0 seconds (or 'off'); got {raw!r}")
    return seconds


def _alarm_usable() -> bool:
    """A SIGALRM timer works in the main thread of a POSIX process, if no other is running."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    armed = True

    def on_alarm(signum, frame):
        if armed:
            raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        while True:  # the alarm may go off just as the body ends: clean up all the same
            try:
                armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
                break
            except CheckTimeout:
                continue


@contextlib.contextmanager
def _traced_deadline(seconds: float) -> Iterator[None]:
    """The fallback: a trace function that raises once the deadline has passed.

    Opcode events are switched on so that even ``while True: pass`` (which has no new
    line to report) is interrupted. A debugger's or coverage tool's own tracer is left
    alone: then the check runs without a limit.
    """
    if sys.gettrace() is not None:
        yield
        return
    deadline = time.monotonic() + seconds
    events = 0

    def tracer(frame, event, arg):
        nonlocal events
        frame.f_trace_opcodes = True
        events += 1
        if events % 64 == 0 and time.monotonic() > deadline:
            raise CheckTimeout
        return tracer

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(None)


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
    elif _alarm_usable():
        with _alarm(seconds):
            yield
    else:
        with _traced_deadline(seconds):
            yield


# ---------------------------------------------------------------------------------------
# Running checks
# ---------------------------------------------------------------------------------------


def _default_call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class _Recorder:
    """Wraps the learner's function to remember what it last returned (for messages about
    a value the course's wrapper code could not use)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.returned: Any = None
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.fn(*args, **kwargs)
        self.calls += 1
        self.returned = out
        return out


def _call(fn: Callable, case: Case, call: Callable = _default_call) -> Any:
    torch.manual_seed(case.seed)
    np.random.seed(case.seed)
    return call(fn, *copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))


def _outcome_of_exception(
    exc: Exception, case: Case, recorder: _Recorder, judging: bool
) -> tuple[str, CaseOutcome]:
    """Status and outcome when running (``judging=False``) or judging a case raised ``exc``.

    The learner's code raised (a frame of theirs is in the traceback): an error, shown at
    their innermost line. The course's code raised on a value the learner's function
    returned: a failure that says what was returned, with no line. While running a case
    the learner's code runs only inside the recorder; a judge may call the learner's
    function itself (e.g. again, to test its gradient), so there any learner frame counts.
    """
    label = case.describe()
    if isinstance(exc, LearnerMistake):
        return FAILED, CaseOutcome(label, False, str(exc), kind=exc.kind, hint=case.hint)
    frame = _learner_frame(exc, None if judging else _Recorder.__call__.__code__)
    if frame is not None:
        return ERROR, CaseOutcome(
            label, False, _exception_text(exc), kind="error", where=_where(frame)
        )
    if recorder.calls:
        returned = f"after your function returned {summarize(recorder.returned)}"
    else:
        returned = "before your function returned"
    message = f"the check stopped {returned}: {_exception_text(exc)}"
    return FAILED, CaseOutcome(label, False, message, kind="return", hint=case.hint)


def run_check(
    name: str,
    learner_fn: Callable,
    cases: Sequence[Case],
    judge: Callable[[Case, Any], CaseOutcome],
    hint: str = "",
    *,
    hints: Hints | None = None,
    call: Callable | None = None,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Call ``learner_fn`` on every case and let ``judge`` decide each outcome.

    The general form behind :func:`check_function` and :func:`check_property`. It
    catches the learner's exceptions, enforces the time limit, picks the hint and honours
    strict mode.

    Args:
        hints: the check's graduated :class:`Hints` (``hint``, one string, is the older
            form: shown at every stage).
        call: ``call(learner_fn, *case.args, **case.kwargs)`` runs one case, for checks
            that wrap the learner's function in the course's code (e.g. a simulation that
            calls it once per event). Default: call the function directly.
        show_recipe: show the full recipe now.
        time_limit: seconds for the whole check; default :func:`default_time_limit`.
    """
    if not callable(learner_fn):
        raise TypeError(f"{name}: expected a function or class to check; got {learner_fn!r}")
    if not cases:
        raise ValueError(f"{name}: a check needs at least one case")
    if hints is None:
        hints = _legacy_hints(name, hint)
    limit = default_time_limit() if time_limit is None else time_limit
    call = call or _default_call
    outcomes: list[CaseOutcome] = []
    status = PASSED
    case = cases[0]
    try:
        with _time_limit(limit or None):
            for case in cases:
                recorder = _Recorder(learner_fn)
                try:
                    got = _call(recorder, case, call)
                except Exception as exc:  # the learner's bug must not crash the notebook
                    if is_stub(exc, learner_fn):
                        outcomes.append(CaseOutcome(case.describe(), False, "not implemented yet"))
                        status = NOT_IMPLEMENTED
                        break
                    status, outcome = _outcome_of_exception(exc, case, recorder, False)
                    outcomes.append(outcome)
                    break
                try:
                    outcome = judge(case, got)
                except Exception as exc:  # a malformed answer is a failure, not a crash
                    status, outcome = _outcome_of_exception(exc, case, recorder, True)
                    outcomes.append(outcome)
                    break
                if not outcome.ok:
                    outcome.hint = outcome.hint or case.hint
                    status = FAILED
                outcomes.append(outcome)
    except CheckTimeout:
        message = (
            f"took longer than {limit:g} s (the check's time limit); if your answer is right "
            f"but slow, give it more time: time_limit=60 in the check's call, or the "
            f"{TIME_LIMIT_ENV} environment variable"
        )
        outcomes.append(CaseOutcome(case.describe(), False, message, kind="timeout"))
        status = FAILED
    result = _with_hints(
        CheckResult(name=name, status=status, outcomes=outcomes), hints, show_recipe
    )
    if strict_mode() and status in (FAILED, ERROR):
        raise CheckFailed(str(result))
    return result


def _with_hints(result: CheckResult, hints: Hints, show_recipe: bool) -> CheckResult:
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


def check_function(
    name: str,
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Case],
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    transform: Callable[[Any], Any] | None = None,
    **options: Any,
) -> CheckResult:
    """Compare ``learner_fn`` with ``reference_fn`` on every case.

    ``transform`` (optional) maps both outputs before comparing, for example to
    compare only the first item of a returned tuple. ``options`` go to :func:`run_check`
    (``hints``, ``call`` - used for the reference too -, ``show_recipe``, ``time_limit``).
    """
    call = options.get("call") or _default_call

    def judge(case: Case, got: Any) -> CaseOutcome:
        expected = _call(reference_fn, case, call)
        if transform is not None:
            expected, got = transform(expected), transform(got)
        why = compare(expected, got, atol=atol, rtol=rtol)
        if why is None:
            return CaseOutcome(case.describe(), True)
        return CaseOutcome(
            case.describe(), False, why, summarize(expected), summarize(got), kind=why.kind
        )

    return run_check(name, learner_fn, cases, judge, hint, **options)


def check_property(
    name: str,
    learner_fn: Callable,
    cases: Sequence[Case],
    prop: Callable[[Case, Any], str | None],
    hint: str = "",
    **options: Any,
) -> CheckResult:
    """Check a behaviour of ``learner_fn``'s output: ``prop`` returns why it is wrong, or None.

    A :class:`Difference` from ``prop`` keeps its kind for the hints. ``options`` go to
    :func:`run_check`.
    """

    def judge(case: Case, got: Any) -> CaseOutcome:
        why = prop(case, got)
        return CaseOutcome(case.describe(), why is None, why or "", kind=getattr(why, "kind", ""))

    return run_check(name, learner_fn, cases, judge, hint, **options)


def learner_or_reference(result: CheckResult, learner_fn: Callable, reference_fn: Callable):
    """The learner's function if its check passed, else the reference (with a note).

    Later cells of an exercise notebook use this so they still run while an exercise
    is unsolved.
    """
    if result.passed:
        return learner_fn
    print(f"Note: using the course's reference for {result.name} until your version passes.")
    return reference_fn
