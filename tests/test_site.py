"""The rendered course: its check finds missing lessons and broken links; its layout
holds every executed lesson; and, where Sphinx and myst-nb are installed (the ``docs``
extra), a real build of a tiny executed lesson renders its figure and passes the check.
CI builds the whole course in the ci profile after the tests (``.ci/run``)."""

import shutil

import pytest

from omni_edu.tools import run_lessons
from omni_edu.tools.notebook_io import build_notebook, write_notebook


def _page(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def _good_site(root):
    _page(root / "index.html", '<a href="notebooks/00_a.html">a</a><img src="_images/x.png">')
    _page(root / "notebooks" / "00_a.html", '<h1 id="top">A</h1><a href="01_b.html#part">b</a>')
    _page(root / "notebooks" / "01_b.html", '<h2 id="part">B</h2><a href="https://x.org/">x</a>')
    (root / "_images").mkdir()
    (root / "_images" / "x.png").write_bytes(b"png")


def test_a_good_site_passes(tmp_path):
    _good_site(tmp_path)
    assert run_lessons.check_site(tmp_path, ["notebooks/00_a", "notebooks/01_b"]) == []


def test_the_check_finds_a_missing_lesson_a_broken_link_and_a_missing_anchor(tmp_path):
    _good_site(tmp_path)
    _page(tmp_path / "notebooks" / "01_b.html", '<a href="../gone.html">g</a>')  # no "part"
    (tmp_path / "_images" / "x.png").unlink()
    problems = "\n".join(run_lessons.check_site(tmp_path, ["notebooks/00_a", "notebooks/02_c"]))
    assert "lesson notebooks/02_c has no page" in problems
    assert "broken link '../gone.html'" in problems
    assert "broken link '_images/x.png'" in problems
    assert "'01_b.html#part' names a missing anchor" in problems


def test_staging_lays_out_every_executed_lesson_and_the_exercises(tmp_path):
    executed = tmp_path / "executed"
    for name in ("00_a", "01_b"):
        write_notebook(build_notebook([("markdown", f"# {name}")]), executed / f"{name}.ipynb")
    report = {
        "profile": "ci",
        "date": "2026-01-01",
        "machine": {"cpu": "CPU", "cores": 2, "ram_gib": 4, "gpu": None, "torch": "2"},
        "lessons": [{"notebook": "notebooks/00_a.ipynb", "wall_s": 12.0}],
    }
    lessons = run_lessons.stage_site(executed, tmp_path / "stage", report)
    assert lessons == ["notebooks/00_a", "notebooks/01_b"]
    stage = tmp_path / "stage"
    assert (stage / "index.md").exists() and not (stage / "conf.py").exists()
    assert sorted(p.name for p in (stage / "notebooks").iterdir()) == ["00_a.ipynb", "01_b.ipynb"]
    assert any((stage / "exercises").glob("*.ipynb")) and any((stage / "solutions").glob("*.ipynb"))
    about = (stage / "about_this_build.md").read_text()
    assert "`ci` profile" in about and "| 00_a | 12 s |" in about
    with pytest.raises(ValueError, match="no executed lessons"):
        run_lessons.stage_site(tmp_path / "empty", tmp_path / "stage2", None)


def test_a_real_build_renders_an_executed_lesson(tmp_path, monkeypatch):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    lesson = build_notebook(
        [
            ("markdown", "# 00 · Tiny\n\nSee [the exercises](../exercises/00_welcome.ipynb)."),
            (
                "code",
                "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.title('t')\nplt.show()",
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
    monkeypatch.setattr(run_lessons, "SITE_BUILD", tmp_path / "_build")
    summary = run_lessons.build_site(
        "ci", executed=tmp_path / "executed", out=tmp_path / "_build" / "html"
    )
    html = tmp_path / "_build" / "html"
    assert summary["lessons"] == 1 and (html / "notebooks" / "00_tiny.html").exists()
    page = (html / "notebooks" / "00_tiny.html").read_text()
    assert "<img" in page and "00 · Tiny" in page
    assert "exercises/00_welcome.html" in page  # the link became a link to the page
    # A broken link fails the build's check.
    shutil.rmtree(html / "exercises")
    assert any("broken link" in p for p in run_lessons.check_site(html, ["notebooks/00_tiny"]))


def test_nbval_runs_can_keep_their_outputs_and_figures_for_the_site(tmp_path):
    """With OMNI_EXECUTED_DIR set, the notebooks nbval ran are saved with their outputs,
    figures drawn inline, so CI renders the site without running every lesson twice."""
    import os
    import subprocess
    import sys

    import nbformat

    lesson = build_notebook(
        [
            ("markdown", "# 00 · Tiny"),
            (
                "code",
                "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('drawn')",
            ),
        ]
    )
    write_notebook(lesson, tmp_path / "notebooks" / "00_tiny.ipynb")
    env = {**os.environ, "OMNI_EXECUTED_DIR": str(tmp_path / "executed"), "MPLBACKEND": "Agg"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
    ]
    command += ["--nbval-lax", "--nbval-current-env", "-p", "omni_edu.tools.nbval_executed"]
    done = subprocess.run(
        [*command, str(tmp_path / "notebooks")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    nb = nbformat.read(tmp_path / "executed" / "notebooks" / "00_tiny.ipynb", as_version=4)
    outputs = nb.cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
    assert any("drawn" in o.get("text", "") for o in outputs)
    assert nb.cells[0].cell_type == "markdown"  # the whole notebook, not only its code
