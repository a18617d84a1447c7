"""The rendered course.

Its check finds missing lessons, missing figures, broken links, requests that leave the
site, frozen progress bars and bare widget reprs; the executed notebooks are checked for
missing and repeated outputs; staging makes them static pages and writes the page on how
the lessons ran from their run records; the nbval plugin keeps every notebook's outputs
under pytest-xdist; and, where Sphinx and myst-nb are installed (the ``docs`` extra), a
real build of a tiny executed lesson renders its figure, its formula as MathML and no
widget repr, and passes the check. CI builds the whole course after the tests
(``.ci/run``)."""

import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from omni_edu.tools import readme_figures, run_lessons, site
from omni_edu.tools.notebook_io import (
    build_notebook,
    cell_source,
    iter_notebooks,
    read_notebook,
    write_notebook,
)
from omni_edu.tools.readme_figures import figures_path
from omni_edu.tools.run_record import make_record, read_records, write_record

PNG = "iVBORw0KGgo="  # any string: the checks compare image data, they do not decode it
CODE = "\n".join(f"line {i} of a long piece of source code" for i in range(4))


def _page(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def _output(body):
    return f'<div class="cell_output docutils container"><pre>{body}</pre></div>'


def _good_site(root):
    _page(
        root / "index.html",
        '<a href="notebooks/00_a.html">a</a><img src="_images/x.png">'
        '<script src="_static/doctools.js"></script><link rel="stylesheet" href="_static/a.css">',
    )
    _page(
        root / "notebooks" / "00_a.html",
        '<h1 id="top">A</h1><a href="01_b.html#part">b</a><img src="../_images/x.png">'
        + _output("training: 100%|##########| 900/900"),
    )
    _page(root / "notebooks" / "01_b.html", '<h2 id="part">B</h2><a href="https://x.org/">x</a>')
    (root / "_images").mkdir()
    (root / "_images" / "x.png").write_bytes(b"png")
    for name in ("doctools.js", "a.css"):
        (root / "_static").mkdir(exist_ok=True)
        (root / "_static" / name).write_text("", encoding="utf-8")


# ---------------------------------------------------------------------------- the html check
def test_a_good_site_passes(tmp_path):
    _good_site(tmp_path)
    lessons = ["notebooks/00_a", "notebooks/01_b"]
    assert site.check_site(tmp_path, lessons, {"notebooks/00_a": 1, "notebooks/01_b": 0}) == []


def test_the_check_finds_a_missing_lesson_a_broken_link_and_a_missing_anchor(tmp_path):
    _good_site(tmp_path)
    _page(tmp_path / "notebooks" / "01_b.html", '<a href="../gone.html">g</a>')  # no "part"
    (tmp_path / "_images" / "x.png").unlink()
    problems = "\n".join(site.check_site(tmp_path, ["notebooks/00_a", "notebooks/02_c"]))
    assert "lesson notebooks/02_c has no page" in problems
    assert "broken link '../gone.html'" in problems
    assert "broken link '_images/x.png'" in problems
    assert "'01_b.html#part' names a missing anchor" in problems


def test_the_check_fails_on_anything_fetched_from_outside_the_site(tmp_path):
    _good_site(tmp_path)
    _page(
        tmp_path / "notebooks" / "01_b.html",
        '<h2 id="part">B</h2><a href="https://example.org/">a link is fine</a>'
        '<script src="https://cdnjs.example.org/require.min.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/a.css">'
        '<img src="http://example.org/x.png"><img src="data:image/png;base64,AAAA">',
    )
    problems = site.check_site(tmp_path, ["notebooks/00_a", "notebooks/01_b"])
    assert sorted(p.split("fetches ")[1] for p in problems) == [
        "'//fonts.example.org/a.css' from outside the site",
        "'http://example.org/x.png' from outside the site",
        "'https://cdnjs.example.org/require.min.js' from outside the site",
    ]


def test_the_check_fails_on_frozen_bars_and_widget_reprs_in_outputs_only(tmp_path):
    _good_site(tmp_path)
    bar = "training:   0%|          | 0/900 [00:00&lt;?, ?it/s]"
    box = "VBox(children=(IntSlider(value=1024, description='image side (px)'),))"
    _page(
        tmp_path / "notebooks" / "01_b.html",
        f'<h2 id="part">B</h2><pre>{box}</pre>' + _output(bar) + _output(box),  # code, outputs
    )
    problems = site.check_site(tmp_path, ["notebooks/00_a", "notebooks/01_b"])
    assert problems == [
        "notebooks/01_b.html: an output shows a progress bar frozen at 0%: '0%|          | 0/900'",
        "notebooks/01_b.html: an output shows a bare widget repr: 'VBox(children='",
    ]


def test_the_check_fails_when_a_page_shows_fewer_figures_than_its_notebook_holds(tmp_path):
    _good_site(tmp_path)
    problems = site.check_site(tmp_path, ["notebooks/00_a"], {"notebooks/00_a": 3})
    assert problems == [
        "lesson notebooks/00_a: its page shows 1 figures, its executed notebook holds 3"
    ]


# ------------------------------------------------------------------------ executed notebooks
def _notebook(*cells_outputs):
    nb = build_notebook([("code", f"cell_{i}()") for i in range(len(cells_outputs))])
    for cell, outputs in zip(nb["cells"][1:], cells_outputs, strict=True):
        cell["outputs"] = list(outputs)
    return nb


def _image(png=PNG):
    return {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}}


def _text(text, kind="execute_result"):
    return {"output_type": kind, "data": {"text/plain": text}, "metadata": {}}


def test_a_notebook_saved_without_its_run_is_a_problem():
    assert site.notebook_problems(_notebook([], []), "01_a") == [
        "01_a: no cell has an output (the notebook was saved without its run)"
    ]


def test_a_cell_that_shows_the_same_figure_or_long_text_twice_is_a_problem():
    nb = _notebook(
        [_image(), _image()],  # the inline backend's figure, then the cell's value
        [_text(CODE, "display_data"), _text(CODE)],  # displayed and returned
        [_image(), _image("other")],  # two different figures: fine
        [_text("ok"), _text("ok")],  # a short text may well repeat
        [{"output_type": "stream", "name": "stdout", "text": CODE}, _text("x")],
    )
    problems = site.notebook_problems(nb, "02_b")
    assert problems == [
        "02_b, code cell 2 ('cell_0()'): the same image twice",
        "02_b, code cell 3 ('cell_1()'): the same text twice",
    ]
    assert site.output_images(nb) == 4


def test_a_static_page_keeps_no_widget_state_bare_widget_or_set_up_code():
    widget = {"version_major": 2, "version_minor": 0, "model_id": "abc"}
    bar = {
        "output_type": "display_data",
        "data": {site.WIDGET_VIEW: widget, "text/plain": "training:   0%|   | 0/900"},
    }
    planner = {  # a course widget carries its static figure (omni_edu.viz.fallback)
        "output_type": "execute_result",
        "data": {site.WIDGET_VIEW: widget, "image/png": PNG, "text/plain": "Cost planner"},
    }
    nb = _notebook([bar, _text("after the bar")], [planner])
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": "# 04 · Heads"})
    site.prepare_notebook(nb, " (worked solutions)")
    assert "widgets" not in nb["metadata"]
    assert nb["cells"][0]["source"] == ["# 04 · Heads (worked solutions)"]
    assert nb["cells"][1]["metadata"]["tags"] == ["remove-input"]  # the Colab set-up cell
    assert nb["cells"][2]["outputs"] == [_text("after the bar")]
    assert nb["cells"][3]["outputs"] == [
        {"output_type": "execute_result", "data": {"image/png": PNG}}
    ]


# ---------------------------------------------------------------------------------- staging
MACHINE = {"cpu": "CPU", "cores": 2, "ram_gib": 4, "gpu": None, "torch": "2"}
BUILT = {"profile": "ci", "date": "2027-03-04", "machine": MACHINE}


def _record(notebook, **changes):
    record = make_record(
        notebook,
        profile="ci",
        runner="nbval",
        started=1.8e9,
        finished=1.8e9 + 30,
        wall_s=12.4,
        cells=5,
        cells_run=5,
        ok=True,
        sharing=2,
    )
    return {**record, "machine": MACHINE, **changes}


def test_staging_lays_out_the_lessons_and_says_when_and_where_they_ran(tmp_path):
    executed = tmp_path / "executed"
    for name in ("00_a", "01_b"):
        write_notebook(_notebook([_image()]), executed / f"{name}.ipynb")
    write_record(executed / "00_a.ipynb", _record("notebooks/00_a.ipynb"))
    staged = site.stage_site(executed, tmp_path / "stage", BUILT)
    assert staged.lessons == ["notebooks/00_a", "notebooks/01_b"]
    assert staged.figures == {"notebooks/00_a": 1, "notebooks/01_b": 1} and not staged.problems
    stage = tmp_path / "stage"
    assert (stage / "index.md").exists() and not (stage / "conf.py").exists()
    assert sorted(p.name for p in (stage / "notebooks").iterdir()) == ["00_a.ipynb", "01_b.ipynb"]
    # the exercise and its solution get different titles in the site's index
    exercise = read_notebook(stage / "exercises" / "03_vq_tokens.ipynb")
    solution = read_notebook(stage / "solutions" / "03_vq_tokens.ipynb")
    title = next(c for c in exercise["cells"] if "".join(c["source"]).startswith("# "))
    assert "".join(title["source"]).splitlines()[0] == "# 03 · VQ tokens — exercises"
    assert "# 03 · VQ tokens — exercises (worked solutions)" in json.dumps(
        solution, ensure_ascii=False
    )
    about = (stage / "about_this_build.md").read_text()
    assert "`ci` profile (nbval, 2 lessons at a time) on CPU, 2 cores" in about
    assert "from 2027-01-15 08:00 UTC to 2027-01-15 08:00 UTC" in about
    assert "| 00_a | 2027-01-15 08:00 UTC | 12 s | 5 of 5 | passed |" in about
    assert "| 01_b | not recorded | | | |" in about
    assert "rendered from those runs on 2027-03-04" in about
    assert "What the lessons measured" not in about  # the run recorded no figures
    figure = {"profile": "ci", "lesson": "00", "kind": "headline", "text": "loss fell to 0.1"}
    figures_path(executed / "00_a.ipynb").write_text(json.dumps(figure) + "\n")
    site.stage_site(executed, stage, BUILT)
    about = (stage / "about_this_build.md").read_text()
    assert "\n## What the lessons measured (`ci` profile)" in about
    assert "- **00** loss fell to 0.1" in about and "| 00_a | 12 s | ran |" in about
    with pytest.raises(ValueError, match="no executed lessons"):
        site.stage_site(tmp_path / "empty", tmp_path / "stage2", BUILT)


def test_the_about_page_names_each_run_when_they_differ():
    records = {
        "00_a": _record("notebooks/00_a.ipynb"),
        "01_b": _record("notebooks/01_b.ipynb", profile="cpu", ok=False, runner="run_lessons"),
    }
    about = site.about_page(["00_a", "01_b"], records, BUILT)
    assert "| 00_a | 2027-01-15 08:00 UTC | 12 s | 5 of 5 | passed (`ci`, nbval, CPU" in about
    assert "| 01_b | 2027-01-15 08:00 UTC | 12 s | 5 of 5 | **failed** (`cpu`, run_lessons" in about


# ------------------------------------------------------------------------------- the plugin
def _run_pytest(tmp_path, *args):
    env = {**os.environ, "OMNI_EXECUTED_DIR": str(tmp_path / "executed"), "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(tmp_path), "--nbval-lax", "--nbval-current-env"]
    command += ["-p", "omni_edu.tools.nbval_executed", *args, str(tmp_path / "notebooks")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nbval_runs_can_keep_their_outputs_and_figures_for_the_site(tmp_path):
    """With OMNI_EXECUTED_DIR set, the notebooks nbval ran are saved with their outputs,
    figures drawn inline, so CI renders the site without running every lesson twice."""
    lesson = build_notebook(
        [
            ("markdown", "# 00 · Tiny"),
            (
                "code",
                "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('drawn')",
            ),
            ("code", "from omni_edu.report import headline\nprint(headline('00', 'drew 1 line'))"),
        ]
    )
    write_notebook(lesson, tmp_path / "notebooks" / "00_tiny.ipynb")
    _run_pytest(tmp_path)
    folder = tmp_path / "executed" / "notebooks"
    nb = nbformat.read(folder / "00_tiny.ipynb", as_version=4)
    outputs = next(c for c in nb.cells if "plt.plot" in c.source).outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
    assert any("drawn" in o.get("text", "") for o in outputs)
    assert nb.cells[0].cell_type == "markdown"  # the whole notebook, not only its code
    # What it recorded lies beside it: the README's table and the site's come from this run.
    report, figures = readme_figures.executed_run(folder)
    assert figures == [{"profile": "ci", "lesson": "00", "kind": "headline", "text": "drew 1 line"}]
    assert report["runner"] == "nbval" and report["lessons"][0]["ok"]
    section = readme_figures.figures_markdown(report, figures)
    assert "The rendered course is built from the same run." in section
    assert "- **00** drew 1 line" in section
    _run_pytest(tmp_path)  # a second run replaces the first's figures, never adds to them
    assert len(readme_figures.executed_run(folder)[1]) == 1


def test_under_xdist_every_notebook_keeps_its_outputs_and_its_run_record(tmp_path):
    """Each worker ran one notebook; before the fix the last worker to finish wrote the
    other's notebook too, without outputs, over the real one."""
    for name in ("00_one", "01_two"):
        lesson = build_notebook([("code", f"print('{name} ran')"), ("code", "1 + 1")])
        write_notebook(lesson, tmp_path / "notebooks" / f"{name}.ipynb")
    _run_pytest(tmp_path, "-n", "2", "--dist", "loadfile")
    folder = tmp_path / "executed" / "notebooks"
    for name in ("00_one", "01_two"):
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        assert f"{name} ran" in nb.cells[1].outputs[0]["text"]
        assert nb.cells[2].outputs[0]["data"]["text/plain"] == "2"
    records = read_records(folder)
    assert sorted(records) == ["00_one", "01_two"]
    for name, record in records.items():
        assert record["notebook"] == f"notebooks/{name}.ipynb" and record["runner"] == "nbval"
        assert record["ok"] and record["cells"] == record["cells_run"] == 3
        assert record["sharing"] == 2 and record["profile"] == "ci" and record["wall_s"] >= 0
        assert record["started"] <= record["finished"] and record["machine"]["cores"] >= 1
    assert not list(folder.glob(".*"))  # no temporary file left behind


# ---------------------------------------------------------------------------- a real build
def test_a_real_build_renders_an_executed_lesson_offline(tmp_path, monkeypatch):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("latex2mathml")
    lesson = build_notebook(
        [
            (
                "markdown",
                "# 00 · Tiny\n\nSee [the exercises](../exercises/00_welcome.ipynb); the loss "
                "is $L = E + A/N^{\\alpha}$.",
            ),
            (
                "code",
                "from tqdm.auto import tqdm\nfrom omni_edu.viz.system import system_diagram\n"
                "for _ in tqdm(range(3), desc='training'):\n    pass\nsystem_diagram()",
            ),
            (
                "code",
                "from omni_edu.lessons.cost_and_serving.planner import cost_planner\n"
                "cost_planner()",
            ),
        ]
    )
    write_notebook(lesson, tmp_path / "src" / "00_tiny.ipynb")
    run = run_lessons.execute_notebook(
        tmp_path / "src" / "00_tiny.ipynb",
        "ci",
        out_path=tmp_path / "executed" / "00_tiny.ipynb",
        inline_figures=True,
    )
    assert run.ok, run.error
    assert read_records(tmp_path / "executed")["00_tiny"]["runner"] == "run_lessons"
    monkeypatch.setattr(site, "SITE_BUILD", tmp_path / "_build")
    with pytest.raises(RuntimeError) as partial:  # one lesson of ten: the others are missing
        site.build_site("ci", executed=tmp_path / "executed", out=tmp_path / "_build" / "html")
    message = str(partial.value)
    assert "lesson 01_omni_tokens was not executed" in message
    problems = message.split("the site has problems:\n")[1].splitlines()
    assert all("was not executed" in p for p in problems), problems  # nothing else is wrong
    summary = json.loads(message.splitlines()[0])
    assert summary["lessons"] == 1 and summary["figures"] == {"00_tiny": 2}
    html = tmp_path / "_build" / "html"
    page = (html / "notebooks" / "00_tiny.html").read_text()
    assert "00 · Tiny" in page and "exercises/00_welcome.html" in page  # a link to the page
    assert "<math" in page and "\\alpha" not in page  # MathML, typeset at build time
    assert "Set-up cell" not in page  # the Colab cell's code is hidden
    assert "VBox" not in page and "0%|" not in page  # no widget repr, no frozen bar
    assert "&#169;." not in (html / "index.html").read_text()  # the footer names the authors
    assert site.check_site(html, ["notebooks/00_tiny"], {"notebooks/00_tiny": 2}) == []
    # A broken link fails the build's check.
    shutil.rmtree(html / "exercises")
    assert any("broken link" in p for p in site.check_site(html, ["notebooks/00_tiny"]))


# -------------------------------------------------------------------- links in the lessons
LESSON_PATHS = iter_notebooks([run_lessons.ROOT / "notebooks"])
NAMED_IN_CODE = re.compile(r"(?<!\[)`((?:exercises|solutions)/\d\d[a-z]?_\w+\.ipynb)`")
LINKED = re.compile(r"\]\(((?:\.\./)?(?:exercises|solutions)/[^)\s]+)\)")
# A lesson without exercises of its own names the lesson whose exercises build what it trains.
EXERCISES_OF = {"06b_modality_transfer.ipynb": "06_any_to_any.ipynb"}


@pytest.mark.parametrize("path", LESSON_PATHS, ids=[p.name for p in LESSON_PATHS])
def test_lessons_link_their_exercises_with_links_that_resolve(path):
    """A relative link works on GitHub, in JupyterLab and, as a page link, in the site."""
    text = "\n".join(
        cell_source(c) for c in read_notebook(path)["cells"] if c["cell_type"] == "markdown"
    )
    assert NAMED_IN_CODE.findall(text) == [], "make these links: [name](../name)"
    targets = LINKED.findall(text)
    assert f"../exercises/{EXERCISES_OF.get(path.name, path.name)}" in targets
    assert all((path.parent / target).resolve().exists() for target in targets), targets
