"""The lesson runner, on two tiny notebooks the test writes: one that trains, records a
figure and draws a plot, one that fails in its third code cell."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from omni_edu.tools import readme_figures, run_lessons
from omni_edu.tools.notebook_io import build_notebook, write_notebook
from omni_edu.tools.run_record import read_records

TRAINS = [
    ("markdown", "# 98 · A tiny lesson"),
    (
        "code",
        """import matplotlib.pyplot as plt
import torch

from omni_edu import train
from omni_edu.profiles import get_profile
from omni_edu.report import headline

model = torch.nn.Linear(4, 1)
batch = torch.ones(8, 4)
train.fit(model, lambda m, b: {"loss": m(b).pow(2).mean()}, lambda s: batch, steps=3)
print(headline("98", f"trained {train.run_stats()['steps']} steps in {get_profile().key}"))""",
    ),
    ("code", "plt.plot([0, 1], [1, 0])\nplt.title('a line')\nplt.show()"),
]
FAILS = [
    ("markdown", "# 99 · A lesson that breaks"),
    ("code", "x = 1"),
    ("code", "y = x / 0"),
    ("code", "print('never reached')"),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    base = tmp_path_factory.mktemp("runner")
    write_notebook(build_notebook(TRAINS), base / "lessons" / "98_tiny.ipynb")
    write_notebook(build_notebook(FAILS), base / "lessons" / "99_breaks.ipynb")
    figures = base / "figures.jsonl"
    report = run_lessons.run_lessons(
        [base / "lessons"],
        "ci",
        out_dir=base / "out",
        figures_file=figures,
        inline_figures=True,
        measured_peak=1e9,
        progress=False,
    )
    return base, report, figures


def test_a_lesson_that_trains_reports_its_steps_memory_and_mfu(ran):
    _, report, _ = ran
    tiny = report["lessons"][0]
    assert tiny["ok"] and tiny["error"] is None and tiny["wall_s"] > 0
    stats = tiny["stats"]
    assert stats["steps"] == 3 and stats["flops"] > 0 and stats["seconds"] > 0
    assert stats["peak_rss_mib"] > 50  # a kernel that imported torch
    assert stats["device"] == "cpu" and stats["peak_source"] == "measured matmul"
    assert stats["mfu"] == pytest.approx(stats["flops"] / stats["seconds"] / 1e9)
    assert report["profile"] == "ci" and report["machine"]["cores"] >= 1


def test_a_failure_names_the_cell_and_the_error(ran):
    _, report, _ = ran
    broken = report["lessons"][1]
    assert not broken["ok"]
    assert "cell 3 (code cell 3)" in broken["error"]  # markdown, set-up cell, x = 1, y = ...
    assert "ZeroDivisionError" in broken["error"] and "y = x / 0" in broken["error"]
    assert broken["stats"] == {} or broken["stats"]["mfu"] is None  # the stats cell never ran


def test_executed_notebooks_keep_outputs_and_figures_but_not_the_stats_cell(ran):
    base, _, _ = ran
    nb = nbformat.read(base / "out" / "lessons" / "98_tiny.ipynb", as_version=4)
    assert len(nb.cells) == len(build_notebook(TRAINS)["cells"])
    assert not any(run_lessons.STATS_MARKER in cell.source for cell in nb.cells)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("trained 3 steps in ci" in o.get("text", "") for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_each_executed_notebook_gets_a_run_record_beside_it(ran):
    base, report, _ = ran
    records = read_records(base / "out" / "lessons")
    assert sorted(records) == ["98_tiny", "99_breaks"]
    tiny, broken = records["98_tiny"], records["99_breaks"]
    assert tiny["notebook"] == "lessons/98_tiny.ipynb" and tiny["runner"] == "run_lessons"
    assert tiny["ok"] and tiny["cells"] == tiny["cells_run"] == 3 and tiny["profile"] == "ci"
    assert tiny["wall_s"] == pytest.approx(report["lessons"][0]["wall_s"], abs=0.1)
    assert tiny["machine"] == report["machine"] and tiny["started"] <= tiny["finished"]
    assert not broken["ok"] and broken["cells_run"] == 3 < broken["cells"] == 4  # stopped


def test_figures_reach_the_readme_with_profile_machine_and_times(ran, tmp_path):
    _, report, figures = ran
    entries = readme_figures.read_figures(figures)
    assert entries == [
        {"profile": "ci", "lesson": "98", "kind": "headline", "text": "trained 3 steps in ci"}
    ]
    section = readme_figures.figures_markdown(report, entries)
    assert "`ci` profile" in section and report["machine"]["cpu"] in section
    assert "| 98_tiny |" in section and "**failed**" in section
    assert "- **98** trained 3 steps in ci" in section


def test_saved_lessons_keep_their_figures_for_a_readme_from_the_same_run(ran, tmp_path):
    base, _, figures = ran
    lessons = shutil.copytree(base / "out" / "lessons", tmp_path / "lessons")
    saved, entries = readme_figures.executed_run(lessons)
    assert entries == readme_figures.read_figures(figures)  # the run's file holds the same
    assert readme_figures.figures_path(lessons / "98_tiny.ipynb").exists()
    assert saved["profile"] == "ci" and saved["runner"] == "run_lessons"
    assert [Path(r["notebook"]).name for r in saved["lessons"]] == [
        "98_tiny.ipynb",
        "99_breaks.ipynb",
    ]
    assert [r["ok"] for r in saved["lessons"]] == [True, False]
    readme = tmp_path / "README.md"
    readme.write_text("# R\n\n<!-- figures:start -->\n<!-- figures:end -->\n")
    args = ["readme", "--executed", str(lessons), "--readme-path", str(readme)]
    assert run_lessons.main(args) == 1 and "trained" not in readme.read_text()  # 99 failed
    (lessons / "99_breaks.run.json").unlink()
    assert run_lessons.main(args) == 0
    assert "- **98** trained 3 steps in ci" in readme.read_text()
    assert run_lessons.main(["readme", "--readme-path", str(readme)]) == 2  # nothing to read
    with pytest.raises(ValueError, match="no run records"):
        readme_figures.executed_run(tmp_path / "nothing")


def test_the_figures_section_replaces_markers_or_the_old_section():
    new = "### Measured\n\n- fresh\n"
    marked = "# R\n\nintro\n\n<!-- figures:start -->\nold\n<!-- figures:end -->\n\n## Next\n"
    out = readme_figures.replace_figures_section(marked, new)
    assert "old" not in out and "- fresh" in out and out.endswith("## Next\n")
    assert readme_figures.replace_figures_section(out, new) == out  # idempotent
    unmarked = (
        "# R\n\n## The lessons\n\n### What the lessons measured here\n\n- stale\n\n## Profiles\n"
    )
    out = readme_figures.replace_figures_section(unmarked, new)
    assert "stale" not in out and "## The lessons" in out and "## Profiles" in out
    assert out.index(readme_figures.FIGURES_START) < out.index("## Profiles")
    bare = readme_figures.replace_figures_section("# R\n\n## Profiles\n", new)
    assert bare.index("- fresh") < bare.index("## Profiles")


def test_each_profile_keeps_its_own_section_and_differing_verdicts_are_named():
    claim = 'Claim check: "Cats can fly." (chapter 000): it flew 3 m. Verdict: **{}**.'
    ci = "### ci\n\n- **01** " + claim.format("supported") + "\n"
    cpu = "### cpu\n\n- **01** " + claim.format("not supported") + "\n"
    readme = readme_figures.replace_figures_section("# R\n\n## Profiles\n", ci)
    readme = readme_figures.replace_figures_section(readme, cpu, "cpu")
    start, _ = readme_figures.figures_markers("cpu")
    assert (
        readme.index(readme_figures.FIGURES_END) < readme.index(start) < readme.index("## Profiles")
    )
    again = readme_figures.replace_figures_section(readme, cpu, "cpu")
    assert again == readme and readme.count(start) == 1  # idempotent, one section each
    assert readme_figures.verdicts(ci) == {"Cats can fly.": "supported"}
    differ = readme_figures.verdict_differences(readme, "cpu")
    assert len(differ) == 1 and "ci **supported**, cpu **not supported**" in differ[0]
    same = readme_figures.replace_figures_section(readme, ci.replace("ci", "cpu"), "cpu")
    assert readme_figures.verdict_differences(same, "cpu") == []
    quoted = 'Claim check: "It goes "text-dominant," they say." (chapter 001): x. Verdict: **a**.'
    assert readme_figures.verdicts(quoted) == {'It goes "text-dominant," they say.': "a"}


def test_mfu_uses_the_datasheet_when_it_lists_the_device():
    stats = {"seconds": 2.0, "flops": 130e12, "device": "Tesla T4", "dtype": "fp16"}
    run_lessons.add_mfu(stats, measured_peak=1.0)
    assert stats["peak_source"] == "datasheet" and stats["mfu"] == pytest.approx(1.0)
    h100 = {"seconds": 1.0, "flops": 98.9e12, "device": "NVIDIA H100 80GB HBM3", "dtype": "bf16"}
    assert run_lessons.add_mfu(h100)["mfu"] == pytest.approx(0.1)
    unknown = run_lessons.add_mfu({"seconds": 1.0, "flops": 1e12, "device": "NVIDIA L4"})
    assert unknown["mfu"] is None  # not in the table, nothing measured: no guess
    assert run_lessons.add_mfu({"seconds": 0.0, "flops": 0.0})["mfu"] is None


def test_cli_writes_the_json_and_the_readme(tmp_path):
    write_notebook(build_notebook(TRAINS[:2]), tmp_path / "nb" / "98_tiny.ipynb")
    readme = tmp_path / "README.md"
    readme.write_text("# R\n\n<!-- figures:start -->\n<!-- figures:end -->\n")
    args = ["run", str(tmp_path / "nb"), "--json", str(tmp_path / "r.json"), "--readme"]
    assert run_lessons.main([*args, "--readme-path", str(readme)]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["lessons"][0]["ok"]
    assert "- **98** trained 3 steps in ci" in readme.read_text()
    assert "The 1 lesson took" in readme.read_text()
    with pytest.raises(ValueError, match="Unknown profile"):
        run_lessons.main(["run", str(tmp_path / "nb"), "--profile", "laptop"])


def test_a_notebook_past_its_time_limit_is_stopped_and_still_measured(tmp_path):
    nb = build_notebook([("code", "import time\n\ntime.sleep(600)"), ("code", "print('after')")])
    write_notebook(nb, tmp_path / "97_slow.ipynb")
    run = run_lessons.execute_notebook(tmp_path / "97_slow.ipynb", "ci", limit_s=5)
    assert not run.ok and "ran past" in run.error and run.wall_s < 300
    assert "peak_rss_mib" in run.stats  # the stats cell ran after the interrupt


MACHINE = {"cpu": "AMD EPYC", "cores": 2, "ram_gib": 23.5, "gpu": None, "torch": "2.13.0"}


def test_the_readme_command_writes_a_saved_runs_section_and_refuses_a_failed_one(tmp_path):
    lesson = {"notebook": "notebooks/98_tiny.ipynb", "wall_s": 12.0, "ok": True}
    report = {"profile": "cpu", "date": "2026-12-06", "machine": MACHINE, "lessons": [lesson]}
    figures = tmp_path / "f.jsonl"
    figures.write_text(json.dumps({"lesson": "98", "kind": "headline", "text": "x = 1"}) + "\n")
    (tmp_path / "r.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text("# R\n\n<!-- figures:start -->\n<!-- figures:end -->\n")
    args = ["readme", str(tmp_path / "r.json"), str(figures), "--readme-path", str(readme)]
    assert run_lessons.main(args) == 0
    text = readme.read_text()
    assert "<!-- figures-cpu:start -->" in text and "- **98** x = 1" in text
    assert "| 98_tiny | 12 s | ran |" in text and "took 12 s" in text
    report["lessons"][0]["ok"] = False
    (tmp_path / "r.json").write_text(json.dumps(report))
    readme.write_text("untouched")
    assert run_lessons.main(args) == 1 and readme.read_text() == "untouched"
