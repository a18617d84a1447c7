import pytest

from omni_edu import grading
from omni_edu.tools import make_exercises
from omni_edu.tools.make_exercises import STUB, MarkerError, make_exercise
from omni_edu.tools.notebook_io import build_notebook, cell_source, read_notebook, write_notebook

SOLVED = '''def double(x):
    """Twice x."""
    # BEGIN SOLUTION
    y = x + x
    return y
    # END SOLUTION


# BEGIN HIDDEN
assert double(2) == 4
# END HIDDEN
print(double(3))'''


def solution_notebook():
    nb = build_notebook([("markdown", "# Warm-up"), ("code", SOLVED), ("code", "double(1)")])
    nb["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["6\n"]}]
    nb["cells"][2]["execution_count"] = 7
    return nb


def test_solution_blocks_become_stubs():
    ex = make_exercise(solution_notebook(), "solutions/00_x.ipynb")
    sources = [cell_source(c) for c in ex["cells"]]
    assert "solutions/00_x.ipynb" in sources[0]  # the banner says where the solution lives
    code = sources[3]
    assert f"    {STUB}" in code  # at the indentation of the block
    assert "y = x + x" not in code and "BEGIN" not in code
    assert '"""Twice x."""' in code and "print(double(3))" in code
    assert "assert double(2)" not in code  # hidden tests are removed
    compile(code, "exercise", "exec")  # still valid Python
    assert all(c.get("outputs", []) == [] for c in ex["cells"])
    assert all(c.get("execution_count") is None for c in ex["cells"] if c["cell_type"] == "code")


def test_stub_raises_not_implemented():
    ex = make_exercise(solution_notebook(), "solutions/00_x.ipynb")
    namespace = {}
    exec(cell_source(ex["cells"][3]).replace("print(double(3))", ""), namespace)
    with pytest.raises(NotImplementedError):
        namespace["double"](1)


def test_the_generated_stub_is_what_the_checks_call_not_implemented(monkeypatch):
    """make_exercises and grading agree on the stub: a check reports the generated stub as
    "not implemented yet", even in strict mode, with the check's nudge."""
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    ex = make_exercise(solution_notebook(), "solutions/00_x.ipynb")
    namespace = {}
    exec(cell_source(ex["cells"][3]).replace("print(double(3))", ""), namespace)
    result = grading.check_function(
        "double", namespace["double"], lambda x: 2 * x, [grading.Case((1,))], hint="x + x"
    )
    assert result.status == grading.NOT_IMPLEMENTED and "x + x" in str(result)
    assert grading.STUB_MESSAGE in STUB


@pytest.mark.parametrize(
    "source, problem",
    [
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "inside a function body"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1", "no END"),
        ("def f():\n    return 1\n    # END SOLUTION", "without its BEGIN"),
    ],
)
def test_bad_markers_are_reported(source, problem):
    nb = build_notebook([("code", source)])
    with pytest.raises(MarkerError, match=problem):
        make_exercise(nb, "solutions/00_x.ipynb")


def test_check_mode_names_stale_files(tmp_path, capsys):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    write_notebook(solution_notebook(), sol / "00_warmup.ipynb")
    args = ["--solutions", str(sol), "--exercises", str(ex)]
    assert make_exercises.main([*args, "--check"]) == 1
    assert "00_warmup.ipynb" in capsys.readouterr().out
    assert make_exercises.main(args) == 0
    assert make_exercises.main([*args, "--check"]) == 0
    # Editing the solution makes the exercise stale again.
    nb = read_notebook(sol / "00_warmup.ipynb")
    nb["cells"][0]["source"] = ["# Warm-up, revised"]
    write_notebook(nb, sol / "00_warmup.ipynb")
    assert make_exercises.main([*args, "--check"]) == 1
    # An exercise without a solution is reported and then removed.
    write_notebook(solution_notebook(), ex / "99_orphan.ipynb")
    assert make_exercises.main([*args, "--check"]) == 1
    assert "99_orphan" in capsys.readouterr().out
    make_exercises.main(args)
    assert not (ex / "99_orphan.ipynb").exists()


def test_repository_exercises_are_up_to_date():
    assert make_exercises.main(["--check"]) == 0
