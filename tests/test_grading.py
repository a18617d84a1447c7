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
