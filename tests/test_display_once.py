"""Every output appears once: a helper displays or returns, never both.

A figure helper returns its figure detached from pyplot, so Jupyter shows it once, as the
cell's value; ``show_source`` displays and returns nothing; a course widget returns one
object that carries its static picture. Checked three ways: in the package's source, by
running a tiny notebook of helper calls in a real kernel (as JupyterLab does, and as nbval
does with ``store_history=False``, where a trailing ``;`` hides nothing), and on the
committed lessons, whose cells must end with the helper's call or ``display`` its figure.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch

from omni_edu.tools import run_lessons, site
from omni_edu.tools.notebook_io import (
    build_notebook,
    cell_source,
    iter_notebooks,
    read_notebook,
    write_notebook,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- the package rule
def _makes_a_pyplot_figure(function: ast.FunctionDef) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("subplots", "figure")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "plt"
        for node in ast.walk(function)
    )


def _calls(function: ast.FunctionDef, name: str) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
        for node in ast.walk(function)
    )


@functools.cache  # parsing the package takes half a second; every notebook's test asks
def figure_helpers() -> dict[str, list[str]]:
    """Module-level functions of omni_edu that make a pyplot figure: name -> where."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "omni_edu").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and _makes_a_pyplot_figure(node):
                found.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_function_that_makes_a_pyplot_figure_returns_it_detached():
    offenders = []
    for path in sorted((ROOT / "omni_edu").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _makes_a_pyplot_figure(node):
                if not _calls(node, "detached"):
                    offenders.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert offenders == [], "return the figure through omni_edu.viz.plots.detached"


def test_figure_helpers_leave_nothing_open_in_pyplot_but_draw_into_a_given_axes():
    from omni_edu.data import OmniWorld
    from omni_edu.lessons.interleaved_autoregression.attention import attention_figure
    from omni_edu.viz.omniworld import show_batch, show_sample
    from omni_edu.viz.plots import bar_chart, plot_loss_curves, show_image_rows, show_images
    from omni_edu.viz.system import system_diagram

    plt.close("all")
    batch = OmniWorld("train", seed=0).sample(2, seed=0)
    made = [
        show_images(torch.rand(2, 3, 8, 8)),
        show_image_rows({"input": torch.rand(2, 3, 8, 8)}),
        plot_loss_curves([0, 1], {"loss": [1.0, 0.5]}),
        bar_chart({"a": 1.0}),
        system_diagram("heads"),
        show_batch(batch, n=2),
        show_sample(batch[0]),
        attention_figure(np.eye(3), [0, 1, 1]),
    ]
    assert plt.get_fignums() == []  # closed in pyplot ...
    assert all(fig.axes for fig in made)  # ... and still whole
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_loss_curves([0, 1], {"loss": [1.0, 0.5]}, ax=left) is fig
    assert bar_chart({"a": 1.0}, ax=right) is fig and system_diagram(ax=right) is fig
    assert plt.get_fignums() == [fig.number]  # the caller's figure stays the caller's
    plt.close(fig)


# --------------------------------------------------------------------------- in a kernel
HELPER_CELLS = {
    "figure helper": "from omni_edu.viz.system import system_diagram\nsystem_diagram()",
    "figure helper, ;": "import torch\nfrom omni_edu.viz.plots import show_images\n"
    "show_images(torch.rand(2, 3, 8, 8));",
    "displayed figure": "from IPython.display import display\n"
    "from omni_edu.viz.plots import plot_loss_curves\n"
    "fig = plot_loss_curves([0, 1], {'loss': [1.0, 0.5]})\nfig.suptitle('x')\ndisplay(fig)\n"
    "print('after')",
    "helper on ax": "import matplotlib.pyplot as plt\nfrom omni_edu.viz.plots import bar_chart\n"
    "fig, ax = plt.subplots()\nbar_chart({'a': 1.0}, ax=ax)\nplt.show()",
    "source": "from omni_edu.viz.source import show_source, source_of\nshow_source(source_of)",
    "widget": "from omni_edu.lessons.cost_and_serving.planner import cost_planner\ncost_planner()",
    "attention widget": "import numpy as np\n"
    "from omni_edu.lessons.interleaved_autoregression.attention import explore_attention\n"
    "explore_attention(np.eye(3), [0, 1, 1])",
}
# What each cell must show, once: (images, outputs in all).
EXPECTED = {
    "figure helper": (1, 1),
    "figure helper, ;": (1, 1),  # nbval shows it, JupyterLab hides it: see the lesson rule
    "displayed figure": (1, 2),
    "helper on ax": (1, 1),
    "source": (0, 1),
    "widget": (1, 1),
    "attention widget": (1, 1),
}


def _shown(nb) -> dict[str, tuple[int, int]]:
    code = [c for c in nb.cells if c.cell_type == "code"][1:]  # after the Colab set-up cell
    return {
        name: (sum("image/png" in o.get("data", {}) for o in cell.outputs), len(cell.outputs))
        for name, cell in zip(HELPER_CELLS, code, strict=True)
    }


@pytest.fixture(scope="module")
def helper_notebook(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("display_once")
    path = folder / "notebooks" / "00_helpers.ipynb"
    write_notebook(build_notebook([("code", src) for src in HELPER_CELLS.values()]), path)
    return path


def test_each_helper_shows_its_output_once_in_jupyter(helper_notebook, tmp_path):
    """nbclient, as JupyterLab runs a cell (store_history=True), inline figures."""
    out = tmp_path / "executed.ipynb"
    run = run_lessons.execute_notebook(helper_notebook, "ci", out_path=out, inline_figures=True)
    assert run.ok, run.error
    nb = nbformat.read(out, as_version=4)
    shown = _shown(nb)
    shown["figure helper, ;"] = EXPECTED["figure helper, ;"]  # hidden here, by design
    assert shown == EXPECTED
    assert site.notebook_problems(nb, "00_helpers") == []


def test_each_helper_shows_its_output_once_under_nbval(helper_notebook, tmp_path):
    """nbval runs cells with store_history=False, where a trailing ; hides nothing."""
    env = {**os.environ, "OMNI_EXECUTED_DIR": str(tmp_path), "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
    command += ["--rootdir", str(helper_notebook.parent.parent), "--nbval-lax"]
    command += ["--nbval-current-env", "-p", "omni_edu.tools.nbval_executed"]
    done = subprocess.run([*command, str(helper_notebook)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    nb = nbformat.read(tmp_path / "notebooks" / helper_notebook.name, as_version=4)
    assert _shown(nb) == EXPECTED
    assert site.notebook_problems(nb, "00_helpers") == []


# --------------------------------------------------------------------------- the lessons
def _last_statement_hidden(source: str) -> bool:
    """Does the cell's last line end with ``;`` (which hides its value in JupyterLab)?"""
    lines = [line.split("#")[0].rstrip() for line in source.strip().splitlines()]
    lines = [line for line in lines if line]
    return bool(lines) and lines[-1].endswith(";")


def figure_display_problems(source: str, helpers: set[str]) -> list[str]:
    """Calls in one cell whose figure would not be shown once.

    A call of a figure helper (without ``ax=``) must end the cell, with no trailing ``;``,
    or be passed to ``display``, or be assigned to a name that the cell displays or ends
    with. Calls inside a function or class body are the caller's business.
    """
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    last = tree.body[-1] if tree.body else None
    displayed = {
        arg.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "display"
        for arg in node.args
        if isinstance(arg, ast.Name)
    }
    if isinstance(last, ast.Expr) and isinstance(last.value, ast.Name):
        displayed.add(last.value.id)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name not in helpers or any(k.arg == "ax" for k in node.keywords):
            continue
        if name == "show" and getattr(node.func.value, "id", None) in ("plt", "fig"):
            continue  # pyplot's show, not OmniSample.show
        parent, inside_def = parents.get(node), False
        while parent is not None:
            inside_def |= isinstance(parent, (ast.FunctionDef, ast.Lambda, ast.ClassDef))
            parent = parents.get(parent)
        if inside_def:
            continue
        holder = parents.get(node)
        if isinstance(holder, ast.Call) and getattr(holder.func, "id", None) == "display":
            continue
        if holder is last and isinstance(last, ast.Expr):
            if _last_statement_hidden(source):
                problems.append(f"{name}(...); ends with ';', which hides it in JupyterLab")
            continue
        targets = holder.targets if isinstance(holder, ast.Assign) else []
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id in displayed:
            continue
        problems.append(f"{name}(...) is never shown: end the cell with it, or display it")
    return problems


def test_the_display_rule_finds_hidden_and_lost_figures():
    helpers = {"plot_sweep", "show_images", "show"}
    good = [
        "plot_sweep(records)",
        "fig = plot_sweep(records)\nfig.suptitle('x')\ndisplay(fig)\nprint('done')",
        "fig = show_images(x)\nfig",
        "display(show_images(x))\nprint(1)",
        "fig, ax = plt.subplots()\nplot_sweep(records, ax=ax)\nplt.show()",
        "def f():\n    return plot_sweep(records)",
        "plt.plot([1, 2])\nplt.show()",
    ]
    assert [figure_display_problems(src, helpers) for src in good] == [[]] * len(good)
    assert figure_display_problems("plot_sweep(records);  # quiet", helpers) == [
        "plot_sweep(...); ends with ';', which hides it in JupyterLab"
    ]
    lost = "plot_sweep(records)\nplt.show()\nfig = show_images(x)\nfig.suptitle('x')\nplt.show()"
    assert figure_display_problems(lost, helpers) == [
        "plot_sweep(...) is never shown: end the cell with it, or display it",
        "show_images(...) is never shown: end the cell with it, or display it",
    ]
    assert figure_display_problems("sample.show()\nprint(sample.caption)", helpers) == [
        "show(...) is never shown: end the cell with it, or display it"
    ]


LESSONS = iter_notebooks([ROOT / "notebooks", ROOT / "solutions"])


@pytest.mark.parametrize("path", LESSONS, ids=[f"{p.parent.name}/{p.name}" for p in LESSONS])
def test_lesson_cells_show_each_figure_once(path):
    helpers = set(figure_helpers())
    problems = [
        f"code cell {number}: {problem}"
        for number, cell in enumerate(
            (c for c in read_notebook(path)["cells"] if c["cell_type"] == "code"), start=1
        )
        for problem in figure_display_problems(cell_source(cell), helpers)
    ]
    assert problems == []
