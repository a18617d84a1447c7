"""The README's figures: each lesson's measured sentences, per profile, between markers.

``python -m omni_edu.tools.run_lessons run --profile P --readme`` runs the lessons, collects
what they record (:func:`omni_edu.report.headline` and every claim check) and writes them
into README.md between ``<!-- figures:start -->`` and ``<!-- figures:end -->`` (ci) or
``<!-- figures-P:start -->`` ... (other profiles), with the profile, the machine and each
lesson's wall time; another profile's section also names the claims whose verdicts
differ from ci's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from omni_edu.tools.machine import describe_machine

FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"
FIGURES_SUFFIX = ".figures.jsonl"
# A claim may quote words itself ('the model can become "text-dominant"'): it ends at the
# quote before "(chapter".
VERDICT = re.compile(
    r'Claim check: "(?P<claim>.+?)" \(chapter .*?Verdict: \*\*(?P<verdict>[^*]+)\*\*'
)


def figures_markers(profile: str = "ci") -> tuple[str, str]:
    """The README markers around one profile's figures: ``figures`` for ci (the suite's
    profile, first in the README), ``figures-<profile>`` for the others."""
    name = "figures" if profile == "ci" else f"figures-{profile}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def verdicts(section: str) -> dict[str, str]:
    """``{claim: verdict}`` of the claim checks a figures section lists."""
    return {m["claim"]: m["verdict"] for m in VERDICT.finditer(section)}


def verdict_differences(readme: str, profile: str, other: str = "ci") -> list[str]:
    """Sentences naming each claim whose verdict differs between two profiles' sections."""
    sections = {}
    for name in (profile, other):
        start, end = figures_markers(name)
        if start in readme and end in readme:
            sections[name] = verdicts(readme.split(start, 1)[1].split(end, 1)[0])
    if len(sections) < 2:
        return []
    return [
        f'"{claim[:80]}…": {other} **{sections[other][claim]}**, {profile} **{verdict}**'
        for claim, verdict in sections[profile].items()
        if claim in sections[other] and sections[other][claim] != verdict
    ]


def read_figures(path: str | Path) -> list[dict[str, Any]]:
    """The entries lessons appended to an ``OMNI_FIGURES`` file (missing file: none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def figures_path(notebook: str | Path) -> Path:
    """``folder/04_x.ipynb`` -> ``folder/04_x.figures.jsonl``: the figures an executed
    notebook recorded, saved beside it (by the lesson runner and by the test suite)."""
    notebook = Path(notebook)
    return notebook.with_name(notebook.stem + FIGURES_SUFFIX)


def executed_run(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report and figures of the run that executed the lessons saved in ``folder``.

    Built from each lesson's run record (:mod:`omni_edu.tools.run_record`) and the figures
    saved beside it, so that the README's table and the rendered course can come from the
    same run: the test suite's (``OMNI_EXECUTED_DIR``) or the lesson runner's (``--out``).
    """
    from omni_edu.tools.run_record import read_records

    folder = Path(folder)
    records = read_records(folder)
    if not records:
        raise ValueError(f"no run records (*.run.json) in {folder}; run the lessons first.")
    profiles = {r["profile"] for r in records.values()}
    if len(profiles) != 1:
        raise ValueError(f"the lessons in {folder} ran in several profiles: {sorted(profiles)}.")
    first = next(iter(records.values()))
    report = {
        "profile": profiles.pop(),
        "machine": first["machine"],
        "date": min(r["started"] for r in records.values())[:10],
        "runner": first["runner"],
        "sharing": max(r.get("sharing", 1) for r in records.values()),
        "lessons": [
            {"notebook": r["notebook"], "ok": r["ok"], "wall_s": r["wall_s"]}
            for _, r in sorted(records.items())
        ],
    }
    figures = [
        entry
        for name in sorted(records)
        for entry in read_figures(folder / (name + FIGURES_SUFFIX))
    ]
    return report, figures


def _source(report: dict[str, Any]) -> str:
    """The section's first sentences: which run wrote it, when, where and how."""
    where = f"{report['date']}, on {describe_machine(report['machine'])}"
    if report.get("runner") == "nbval":
        return (
            f"Written from the test suite's own run of the lessons on {where}: "
            "`OMNI_EXECUTED_DIR=DIR python -m pytest`, then `python -m "
            "omni_edu.tools.run_lessons readme --executed DIR/notebooks` "
            f"({report.get('sharing', 1)} lessons at a time; a lesson's time is the sum of its "
            "cells' run times). The rendered course is built from the same run."
        )
    return (
        f"Written by `python -m omni_edu.tools.run_lessons run --profile {report['profile']} "
        f"--readme` on {where}, one lesson after another."
    )


def _lesson_number(notebook: str) -> str:
    """``"04"`` for ``04_diffusion_head.ipynb``, ``"04b"`` for the lesson after it."""
    return Path(notebook).name.split("_", 1)[0]


def figures_markdown(report: dict[str, Any], figures: list[dict[str, Any]]) -> str:
    """The README section: where the figures come from, then each lesson's measurements."""
    lines = [
        f"### What the lessons measured (`{report['profile']}` profile)",
        "",
        f"{_source(report)} Every "
        "sentence below is one a lesson printed from its own run; your numbers will differ "
        "a little, and other profiles run larger versions.",
        "",
        "| lesson | wall time | result |",
        "|---|---|---|",
    ]
    for run in report["lessons"]:
        state = "ran" if run["ok"] else "**failed**"
        lines.append(f"| {Path(run['notebook']).stem} | {run['wall_s']:.0f} s | {state} |")
    times = [run["wall_s"] for run in report["lessons"]]
    lessons = f"{len(times)} lesson" + ("s" if len(times) != 1 else "")
    sharing = report.get("sharing", 1)
    how = "one after another" if sharing == 1 else f"in all, {sharing} at a time"
    lines += [
        "",
        f"The {lessons} took {sum(times):.0f} s (about {sum(times) / 60:.0f} minutes) {how}, "
        f"the longest {max(times):.0f} s.",
        "",
    ]
    by_lesson: dict[str, list[dict[str, Any]]] = {}
    for entry in figures:
        by_lesson.setdefault(str(entry.get("lesson", "")), []).append(entry)
    for lesson in sorted(by_lesson):
        for entry in by_lesson[lesson]:
            if entry.get("kind") == "claim":
                text = (
                    f'Claim check: "{entry["claim"]}" (chapter {entry["chapter"]}): '
                    f"{entry['result']} Verdict: **{entry['verdict']}**."
                )
            else:
                text = entry.get("text", "")
            lines.append(f"- **{lesson}** {' '.join(text.split())}")
    return "\n".join(lines).rstrip() + "\n"


def replace_figures_section(readme: str, section: str, profile: str = "ci") -> str:
    """Put ``section`` between ``profile``'s figures markers of ``readme``.

    Without the markers: another profile's section goes right after ci's block; ci's
    replaces the old "What the lessons measured" subsection (up to the next heading), or
    goes before the "Profiles" section (or at the end).
    """
    start, end = figures_markers(profile)
    block = f"{start}\n{section.rstrip()}\n{end}"
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    if profile != "ci" and FIGURES_END in readme:
        head, tail = readme.split(FIGURES_END, 1)
        return head + FIGURES_END + "\n\n" + block + tail
    old = re.search(r"^### What the lessons measured.*?(?=^#{1,3} )", readme, re.M | re.S)
    if old:
        return readme[: old.start()] + block + "\n\n" + readme[old.end() :]
    profiles = re.search(r"^## Profiles", readme, re.M)
    if profiles:
        return readme[: profiles.start()] + block + "\n\n" + readme[profiles.start() :]
    return readme.rstrip() + "\n\n" + block + "\n"


def measured_section(executed: str | Path) -> str:
    """What the lessons measured in this run, as the README lists it (empty when the run
    recorded no figures): the sentences and claim checks the site's pages print, gathered
    in one place from the same run (for the site's page on how it was made)."""
    from omni_edu.tools.run_record import read_records

    if not read_records(executed):
        return ""
    report, figures = executed_run(executed)
    if not figures:
        return ""
    # One level below the page's title (the README nests it one deeper).
    return "\n" + figures_markdown(report, figures).replace("### ", "## ", 1)
