import functools
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch

from omni_edu import grading
from omni_edu.grading import Case, CheckFailed, check_function, check_property, compare


def reference_double(x):
    return 2 * x


CASES = [Case((torch.arange(4.0),)), Case((torch.ones(2, 3),), label="ones")]


@pytest.fixture
def lenient(monkeypatch):
    """Checks report instead of raising (the notebook behaviour)."""
    monkeypatch.setenv(grading.STRICT_ENV, "0")


def test_compare_reports_shape_dtype_and_values():
    a = torch.zeros(2, 3)
    assert compare(a, a.clone()) is None
    assert "shape should be (2, 3); got (3, 2)" in compare(a, torch.zeros(3, 2))
    assert "dtype" in compare(a, torch.zeros(2, 3, dtype=torch.float64))
    why = compare(a, a + torch.tensor([[0, 0, 0], [0, 0.5, 0]]))
    assert "max abs difference 0.5" in why and "(1, 1)" in why
    assert "1 of 2 entries differ" in compare(torch.tensor([1, 2]), torch.tensor([1, 3]))
    assert "NaN" in compare(a, a + float("nan"))
    assert compare(1.0, 1.0 + 1e-9) is None and "expected 1.0" in compare(1.0, 1.5)
    assert "length should be 2" in compare([1, 2], [1])
    assert "['b']" in compare({"a": 1, "b": 2}, {"a": 1, "b": 3})
    assert compare(np.ones(3), np.ones(3)) is None
    assert "expected a torch.Tensor" in compare(a, a.numpy())


def test_passing_check(lenient):
    result = check_function("double", lambda x: x + x, reference_double, CASES)
    assert result.passed and result.n_passed == 2
    assert "PASSED" in str(result) and "PASSED" in result._repr_html_()


def test_failing_check_says_what_differed(lenient):
    result = check_function("double", lambda x: x * 3, reference_double, CASES, hint="2 not 3")
    assert result.status == grading.FAILED
    text = str(result)
    assert "max abs difference" in text and "hint: 2 not 3" in text
    assert "expected" in text and "yours" in text
    html = result._repr_html_()
    assert "FAILED" in html and "expected" in html and "2 not 3" in html


def test_stub_is_not_implemented_and_never_raises(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")  # even in strict mode

    def stub(x):
        raise NotImplementedError("Exercise: write your code here")

    result = check_function("double", stub, reference_double, CASES)
    assert result.status == grading.NOT_IMPLEMENTED and not result.passed
    assert "NOT IMPLEMENTED" in str(result)


def test_learner_exception_is_reported(lenient):
    result = check_function("double", lambda x: x.nonexistent(), reference_double, CASES)
    assert result.status == grading.ERROR
    assert "AttributeError" in str(result)


def test_strict_mode_raises_on_failure_and_error(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    with pytest.raises(CheckFailed, match="FAILED"):
        check_function("double", lambda x: x, reference_double, CASES)
    with pytest.raises(CheckFailed, match="ERROR"):
        check_function("double", lambda x: 1 / 0, reference_double, CASES)
    assert check_function("double", lambda x: 2 * x, reference_double, CASES).passed


def test_inputs_are_copied_and_seeded(lenient):
    def mutating(x):
        x.mul_(2)
        return x + torch.rand(())

    def reference(x):
        return 2 * x + torch.rand(())

    # Same seed for both calls, and the in-place change does not leak between calls.
    assert check_function("mutating", mutating, reference, CASES).passed


def test_check_property(lenient):
    def is_sorted(case, got):
        return None if list(got) == sorted(got) else f"{list(got)} is not sorted"

    cases = [Case(([3, 1, 2],)), Case(([5, 4],))]
    assert check_property("sort", sorted, cases, is_sorted).passed
    bad = check_property("sort", lambda xs: xs, cases, is_sorted)
    assert not bad.passed and "not sorted" in str(bad)
    # A malformed answer is a failure, not a crash.
    assert not check_property("sort", lambda xs: None, cases, is_sorted).passed


def test_learner_or_reference(lenient, capsys):
    ok = check_function("double", reference_double, reference_double, CASES)
    assert grading.learner_or_reference(ok, "mine", "ref") == "mine"
    bad = check_function("double", lambda x: x, reference_double, CASES)
    assert grading.learner_or_reference(bad, "mine", "ref") == "ref"
    assert "reference" in capsys.readouterr().out


def test_bad_check_definitions_are_errors():
    with pytest.raises(TypeError):
        check_function("x", "not a function", reference_double, CASES)
    with pytest.raises(ValueError):
        check_function("x", reference_double, reference_double, [])


def test_lenient_block_reports_instead_of_raising(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    with grading.lenient():
        result = check_function("double", lambda x: x, reference_double, CASES)
    assert result.status == grading.FAILED
    with pytest.raises(CheckFailed):
        check_function("double", lambda x: x, reference_double, CASES)


# --- item 9: only the stub means "not implemented" ------------------------------------------


def float_bitwise_and(x):
    keep = x > 0
    return x & keep  # torch: "bitwise_and_cpu" not implemented for 'Float'


def test_a_torch_not_implemented_inside_the_learners_code_is_an_error(lenient):
    result = check_function("double", float_bitwise_and, reference_double, CASES)
    assert result.status == grading.ERROR
    text = str(result)
    assert "bitwise_and" in text and "not implemented for 'Float'" in text
    # The learner's own line, with its file and line number.
    assert "return x & keep" in text and "test_grading.py" in text
    assert "bitwise_and" in result._repr_html_()


def test_strict_mode_does_not_let_a_torch_not_implemented_pass(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    with pytest.raises(CheckFailed, match="bitwise_and"):
        check_function("double", float_bitwise_and, reference_double, CASES)


def test_a_not_implemented_error_with_another_message_is_an_error(lenient):
    def unsupported(x):
        raise NotImplementedError("complex inputs are not supported")

    def calls_a_bare_helper(x):
        return helper(x)

    def helper(x):
        raise NotImplementedError

    result = check_function("double", unsupported, reference_double, CASES)
    assert result.status == grading.ERROR and "complex inputs" in str(result)
    # A bare raise deep inside the learner's helpers is the learner's bug, not the stub.
    assert check_function("double", calls_a_bare_helper, reference_double, CASES).status == (
        grading.ERROR
    )


def test_the_exercise_stub_and_a_bare_raise_in_the_function_itself_are_not_implemented(
    monkeypatch,
):
    monkeypatch.setenv(grading.STRICT_ENV, "1")

    def bare(x):
        raise NotImplementedError

    for stub in (exercise_stub, bare):
        result = check_function("double", stub, reference_double, CASES)
        assert result.status == grading.NOT_IMPLEMENTED, stub.__name__


def exercise_stub(x):
    raise NotImplementedError("Exercise: write your code here")


# --- item 10: a time limit per check --------------------------------------------------------


def endless(x):
    while True:
        pass


def slow_but_finite(x, seconds=0.6):
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        pass
    return 2 * x


def test_an_endless_loop_fails_with_the_time_limit_instead_of_hanging(lenient):
    before = signal.getsignal(signal.SIGALRM)
    result = check_function("double", endless, reference_double, CASES, time_limit=0.3)
    assert result.status == grading.FAILED
    assert "took longer than 0.3 s" in str(result) and "took longer" in result._repr_html_()
    # The alarm is switched off and the previous handler is back.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == before


def test_strict_mode_raises_on_a_time_out(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    with pytest.raises(CheckFailed, match="took longer than"):
        check_function("double", endless, reference_double, CASES, time_limit=0.2)


def test_slow_but_finite_functions_pass_within_the_limit_and_fail_beyond_it(lenient):
    slow = functools.partial(slow_but_finite, seconds=0.05)
    assert check_function("double", slow, reference_double, CASES, time_limit=30).passed
    result = check_function("double", slow_but_finite, reference_double, CASES, time_limit=0.2)
    assert result.status == grading.FAILED and "took longer than 0.2 s" in str(result)


def test_the_time_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "0")
    monkeypatch.setenv(grading.TIME_LIMIT_ENV, "0.25")
    result = check_function("double", endless, reference_double, CASES)
    assert "took longer than 0.25 s" in str(result)


def test_the_time_limit_works_outside_the_main_thread(lenient):
    """Away from the main thread (no SIGALRM there) a trace function enforces the limit."""
    results = []

    def run():
        results.append(check_function("double", endless, reference_double, CASES, time_limit=0.3))
        results.append(sys.gettrace())  # the trace function is gone afterwards

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the check hung in a thread"
    assert "took longer than 0.3 s" in str(results[0])
    assert results[1] is None


def test_the_time_limit_and_the_learners_cell_line_work_in_a_jupyter_kernel():
    """ipykernel runs cells in the main thread, so the alarm works there too; an error
    names the learner's cell and line."""
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(kernel_name="python3")
    code = (
        "import os\n"
        "import torch\n"
        "from omni_edu import grading\n"
        "os.environ['OMNI_STRICT_CHECKS'] = '0'  # report, as in a learner's notebook\n"
        "def endless(x):\n"
        "    while True:\n"
        "        pass\n"
        "def float_and(x):\n"
        "    return x & x\n"
        "cases = [grading.Case((torch.ones(2),))]\n"
        "print(grading.check_function('double', endless, lambda x: 2 * x, cases,\n"
        "      time_limit=0.5))\n"
        "print(grading.check_function('double', float_and, lambda x: 2 * x, cases))\n"
        "print('the notebook goes on')\n"
    )
    out = []
    try:
        reply = kc.execute_interactive(code, timeout=120, output_hook=out.append)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
    assert reply["content"]["status"] == "ok", text
    assert "took longer than 0.5 s" in text and "the notebook goes on" in text
    assert "your line: cell In[1], line 9: return x & x" in text


# --- item 11: NumPy scalars and 0-d tensors are numbers --------------------------------------


def test_numpy_scalars_and_zero_d_tensors_are_numbers(lenient):
    assert compare(3, np.int64(3)) is None
    assert compare(2.5, np.float32(2.5)) is None
    assert compare(3, torch.tensor(3)) is None and compare(3, np.array(3)) is None
    assert compare(np.int64(3), 3) is None and compare(np.int64(3), np.int32(3)) is None
    assert "expected 3, got 4" in compare(3, np.int64(4))
    assert "expected a number" in compare(3, "3") and "expected a number" in compare(3, True)
    result = check_function("count", lambda n: np.int64(n + 1), lambda n: n + 1, [Case((2,))])
    assert result.passed


# --- item 12: errors in the course's wrapper code point at the learner's mistake ------------


def test_a_bad_return_value_names_what_was_returned_not_the_wrapper(lenient):
    def add_one(fn, x):
        return fn(x) + 1  # the course's wrapper: breaks when the learner returns a string

    result = check_function(
        "double", lambda x: "twice", reference_double, [Case((3,))], call=add_one
    )
    assert result.status == grading.FAILED
    text = str(result)
    assert "'twice'" in text and "return fn(x) + 1" not in text and "line" not in text


# --- item 14: graduated hints ----------------------------------------------------------------


@pytest.fixture
def fresh_attempts(monkeypatch):
    """No failed runs counted yet, and checks report instead of raising."""
    monkeypatch.setenv(grading.STRICT_ENV, "0")
    grading.reset_attempts()
    yield
    grading.reset_attempts()


DEMO_HINTS = grading.Hints(
    "demo_double",
    nudge="NUDGE: twice the input.",
    failed="FAILED-HINT: multiply by two.",
    on={"shape": "SHAPE-HINT: keep the input's shape."},
    recipe="RECIPE: return 2 * x",
)
DEMO_CASES = [
    Case((torch.arange(3.0),), label="three numbers"),
    Case((torch.tensor(-1.0),), label="the boundary", hint="BOUNDARY-HINT: negatives too."),
]


def demo_check(fn, **options):
    return check_function(
        "demo_double", fn, reference_double, DEMO_CASES, hints=DEMO_HINTS, **options
    )


def test_a_stub_gets_the_nudge_not_the_recipe(fresh_attempts):
    result = demo_check(exercise_stub)
    assert result.status == grading.NOT_IMPLEMENTED
    assert result.hint == DEMO_HINTS.nudge and "NUDGE" in str(result)
    assert "RECIPE" not in str(result) and "RECIPE" not in result._repr_html_()
    assert "grading.recipe('demo_double')" in str(result)  # how to ask for it
    assert grading.failed_runs("demo_double") == 0  # an untouched stub is no failed attempt


def test_a_failure_gets_the_hint_aimed_at_it(fresh_attempts):
    def flattened(x):
        return (2 * x).reshape(1, -1)

    def wrong_on_negatives(x):
        return 2 * x.abs()

    def off_everywhere(x):
        return 3 * x

    assert "SHAPE-HINT" in demo_check(flattened).hint  # the kind of difference
    assert "BOUNDARY-HINT" in demo_check(wrong_on_negatives).hint  # the case that failed
    assert "FAILED-HINT" in demo_check(off_everywhere).hint  # nothing more specific


def test_the_recipe_comes_after_repeated_failures_or_on_request(fresh_attempts):
    first, second, third = (demo_check(lambda x: 3 * x) for _ in range(3))
    assert "RECIPE" not in str(first) and "RECIPE" not in str(second)
    assert "failed runs so far: 2" in str(second)
    assert third.recipe == DEMO_HINTS.recipe and "recipe: RECIPE" in str(third)
    assert "RECIPE" in third._repr_html_()
    grading.reset_attempts()
    assert "RECIPE" in str(demo_check(lambda x: 3 * x, show_recipe=True))
    assert "RECIPE" in str(demo_check(exercise_stub, show_recipe=True))
    shown = grading.recipe("demo_double")
    assert "RECIPE: return 2 * x" in str(shown) and "RECIPE" in shown._repr_html_()
    with pytest.raises(ValueError, match="no check named"):
        grading.recipe("no_such_check")


def test_an_error_gets_the_nudge_and_a_time_out_its_own_hint(fresh_attempts):
    assert demo_check(lambda x: x.nonexistent()).hint == DEMO_HINTS.nudge
    assert "loop" in demo_check(endless, time_limit=0.2).hint


def test_a_single_hint_string_still_works(fresh_attempts):
    """Checks written before graduated hints (hint="...") show that text at every stage."""
    stub = check_function("legacy", exercise_stub, reference_double, CASES, hint="OLD")
    wrong = check_function("legacy", lambda x: x, reference_double, CASES, hint="OLD")
    assert stub.hint == wrong.hint == "OLD" and "more help" not in str(wrong)
    assert str(grading.recipe("legacy")).endswith("OLD")


def course_checks() -> list:
    """Every lesson's check_* with graduated hints (lesson 05's still has one string)."""
    found = []
    for module in grading.check_modules():
        topic = module.__name__.split(".")[-2]
        if topic == "fusion_strategies":
            continue
        for name in sorted(dir(module)):
            fn = getattr(module, name)
            if name.startswith("check_") and getattr(fn, "__module__", "") == module.__name__:
                found.append(pytest.param(fn, id=f"{topic}.{name}"))
    return found


@pytest.mark.parametrize("check", course_checks())
def test_every_course_check_nudges_a_stub_and_keeps_its_recipe_for_later(check, fresh_attempts):
    def stub(*args, **kwargs):
        raise NotImplementedError(grading.STUB_MESSAGE)

    result = check(stub)
    hints = grading.hints._HINTS[result.name]
    assert result.status == grading.NOT_IMPLEMENTED
    assert result.hint == hints.nudge != hints.recipe
    assert hints.nudge and hints.failed and hints.recipe
    assert hints.recipe not in str(result)
    assert hints.recipe in str(check(stub, show_recipe=True))
    assert str(grading.recipe(result.name)).endswith(hints.recipe)
