"""The time limit of a check, so that a learner's endless loop fails the check instead of
hanging the notebook.

In the main thread on Linux and macOS a ``SIGALRM`` timer interrupts the learner's code;
elsewhere (another thread, Windows, a timer already running) a trace function checks the
clock between Python operations. Neither can stop a single long C-level operation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

TIME_LIMIT_ENV = "OMNI_CHECK_TIME_LIMIT"
# Long enough for a slow but correct answer on a slow machine (every reference check runs
# in well under a second on a laptop CPU), short enough that a hang is noticed.
DEFAULT_TIME_LIMIT = 10.0


class CheckTimeout(BaseException):
    """The check's time limit ran out. A ``BaseException``, like ``KeyboardInterrupt``, so
    that a learner's ``except Exception`` cannot swallow it."""


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
def time_limited(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
    elif _alarm_usable():
        with _alarm(seconds):
            yield
    else:
        with _traced_deadline(seconds):
            yield
