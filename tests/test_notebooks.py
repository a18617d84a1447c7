"""Rules every course notebook follows (their cells themselves run under nbval)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from omni_edu.tools.colab import colab_url, setup_cell_source
from omni_edu.tools.make_exercises import BEGIN, count_blocks
from omni_edu.tools.notebook_io import cell_source, iter_notebooks, read_notebook

ROOT = Path(__file__).resolve().parents[1]
ALL = iter_notebooks([ROOT / "notebooks", ROOT / "solutions", ROOT / "exercises"])
NAME = re.compile(r"^\d\d[a-z]?_[a-z0-9_]+\.ipynb$")  # NN_topic, or NNb_topic after lesson NN


def code_cells(path):
    return [cell_source(c) for c in read_notebook(path)["cells"] if c["cell_type"] == "code"]


def test_there_are_lessons():
    assert (ROOT / "notebooks" / "00_welcome.ipynb").exists()
    assert len(ALL) >= 3


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_first_code_cell_is_the_colab_setup(path):
    assert NAME.match(path.name), f"{path.name} should be named NN_topic.ipynb"
    assert code_cells(path)[0] == setup_cell_source()


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_cell_reaches_the_network(path):
    for source in code_cells(path)[1:]:
        for word in ("urllib", "requests.", "wget ", "curl ", "pip install", "http://", "https://"):
            assert word not in source, f"{path.name}: a cell mentions {word!r}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_cells_parse(path):
    for source in code_cells(path):
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        ast.parse("\n".join(lines))


def test_every_lesson_has_a_colab_link_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert colab_url(f"notebooks/{path.name}") in readme, f"README lacks {path.name}"


def test_solutions_are_solved_and_exercises_are_not():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = read_notebook(path)
        assert count_blocks(nb) >= 1, f"{path.name} has no '{BEGIN}' block"
        assert not any("NotImplementedError" in src for src in code_cells(path)), path.name
        exercise = ROOT / "exercises" / path.name
        assert any("NotImplementedError" in src for src in code_cells(exercise)), path.name


def test_readme_commands_are_where_ci_reads_them():
    import subprocess

    script = (ROOT / ".ci" / "run").read_text()
    start = script.index("readme_command() {")
    function = script[start : script.index("\n}\n", start) + 3]
    commands = (
        ("course-command", "jupyter lab"),
        ("test-command", "pytest"),
        ("site-command", "tools.site"),
    )
    for marker, expected in commands:
        out = subprocess.run(
            ["bash", "-c", f"{function}\nreadme_command {marker}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out.startswith("pip install") and expected in out, (marker, out)


def test_progress_bars_in_the_suites_kernels_redraw_rarely():
    # conftest.py sets TQDM_MININTERVAL for the kernels nbval starts; tqdm reads it when it is
    # imported, so a fresh process (as a kernel is) must see it, or long cells flood nbval's
    # message queue.
    code = "import io; from tqdm.auto import tqdm; print(tqdm(file=io.StringIO()).mininterval)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert float(shown.stdout) == float(os.environ["TQDM_MININTERVAL"]) >= 1, shown.stderr
