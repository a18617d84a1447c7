"""Running a check: call the learner's function on each case, judge what it returns, and
never let the learner's bug crash the notebook.

:func:`check_function` compares with a reference, :func:`check_property` tests a behaviour;
both are :func:`run_check`, which catches the learner's exceptions, enforces the time limit,
picks the hint and honours strict mode (:func:`strict_mode`, :func:`lenient`).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from omni_edu.grading.compare import compare
from omni_edu.grading.hints import Hints, legacy_hints, with_hints
from omni_edu.grading.learner import exception_text, is_stub, learner_frame, where
from omni_edu.grading.result import (
    ERROR,
    FAILED,
    NOT_IMPLEMENTED,
    PASSED,
    Case,
    CaseOutcome,
    CheckResult,
    summarize,
)
from omni_edu.grading.time_limit import (
    TIME_LIMIT_ENV,
    CheckTimeout,
    default_time_limit,
    time_limited,
)

STRICT_ENV = "OMNI_STRICT_CHECKS"


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
    frame = learner_frame(exc, None if judging else _Recorder.__call__.__code__)
    if frame is not None:
        return ERROR, CaseOutcome(
            label, False, exception_text(exc), kind="error", where=where(frame)
        )
    if recorder.calls:
        returned = f"after your function returned {summarize(recorder.returned)}"
    else:
        returned = "before your function returned"
    message = f"the check stopped {returned}: {exception_text(exc)}"
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
        hints = legacy_hints(name, hint)
    limit = default_time_limit() if time_limit is None else time_limit
    call = call or _default_call
    outcomes: list[CaseOutcome] = []
    status = PASSED
    case = cases[0]
    try:
        with time_limited(limit or None):
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
    result = with_hints(
        CheckResult(name=name, status=status, outcomes=outcomes), hints, show_recipe
    )
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
