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

**Whole modules.** :func:`check_module` checks a module the learner built (a decoder
block, the projector): it loads the package's reference weights into the learner's module
and compares outputs and gradients on several input shapes;
:func:`learner_module_or_reference` then picks the module a lesson trains.

The lesson-specific checks live in ``omni_edu/lessons/<topic>/checks.py``; they are thin
wrappers over :func:`check_function` (compare with a reference) and :func:`check_property`
(test a behaviour, such as "the gradient passes straight through").

The tool in pieces: :mod:`.run` (running a check), :mod:`.result` (cases, outcomes, the
result box), :mod:`.compare` (what differs), :mod:`.hints` (graduated hints),
:mod:`.learner` (whose code raised, the stub), :mod:`.module` (whole modules) and
:mod:`.time_limit`. Lessons and checks
import from ``omni_edu.grading`` itself: ``from omni_edu import grading``.
"""

from omni_edu.grading.compare import Difference, as_number, compare
from omni_edu.grading.hints import (
    RECIPE_AFTER,
    Hints,
    Recipe,
    check_modules,
    failed_runs,
    recipe,
    reset_attempts,
)
from omni_edu.grading.learner import STUB_MESSAGE, is_stub
from omni_edu.grading.module import check_module, learner_module_or_reference
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
from omni_edu.grading.run import (
    STRICT_ENV,
    CheckFailed,
    LearnerMistake,
    check_function,
    check_property,
    learner_or_reference,
    lenient,
    run_check,
    strict_mode,
)
from omni_edu.grading.time_limit import (
    DEFAULT_TIME_LIMIT,
    TIME_LIMIT_ENV,
    CheckTimeout,
    default_time_limit,
)

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "ERROR",
    "FAILED",
    "NOT_IMPLEMENTED",
    "PASSED",
    "RECIPE_AFTER",
    "STRICT_ENV",
    "STUB_MESSAGE",
    "TIME_LIMIT_ENV",
    "Case",
    "CaseOutcome",
    "CheckFailed",
    "CheckResult",
    "CheckTimeout",
    "Difference",
    "Hints",
    "LearnerMistake",
    "Recipe",
    "as_number",
    "check_function",
    "check_module",
    "check_modules",
    "check_property",
    "compare",
    "default_time_limit",
    "failed_runs",
    "is_stub",
    "learner_module_or_reference",
    "learner_or_reference",
    "lenient",
    "recipe",
    "reset_attempts",
    "run_check",
    "strict_mode",
    "summarize",
]
