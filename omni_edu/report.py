"""Reporting what a lesson measured: claim-check boxes and headline figures.

A **claim check** quotes a claim of a source chapter exactly, says how the lesson tested
it, and gives the result and a verdict. The verdict is *computed* from the numbers the run
printed, by a rule stated before the run, never typed: :func:`claim_check` renders the box
from those values, and a test of the course refuses a notebook whose ``claim_check`` call
passes a literal verdict or a result without a measured number in it.

A **headline** is one sentence a lesson measured that the README quotes. The README's
figures are not typed in either: ``python -m omni_edu.tools.run_lessons run --readme`` runs
the lessons with ``OMNI_FIGURES`` pointing at a file, every :func:`claim_check` and
:func:`headline` appends its sentence there, and the tool writes them into the README with
the profile and the machine they came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

FIGURES_ENV = "OMNI_FIGURES"

# The two source chapters the course tests (see the course design).
CHAPTERS = {
    "000": "section 11.3, *Unified Multimodal (Any-to-Any)*",
    "001": "chapter 27, *Unified Multimodal Models & Omni-Architectures*",
}


def _record(entry: dict) -> None:
    """Append ``entry`` to the figures file named by ``OMNI_FIGURES`` (if any)."""
    path = os.environ.get(FIGURES_ENV, "").strip()
    if not path:
        return
    from omni_edu.profiles import get_profile

    entry = {"profile": get_profile().key, **entry}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def headline(lesson: str, text: str) -> str:
    """Record one measured sentence of lesson ``lesson`` (e.g. ``"04"``) for the README.

    Returns ``text``, so a lesson can print it too: ``print(headline("04", f"..."))``.
    """
    _record({"lesson": str(lesson), "kind": "headline", "text": text})
    return text


@dataclass
class ClaimCheck:
    """A rendered claim-check box; shows as Markdown in a notebook, as text elsewhere."""

    lesson: str
    claim: str
    chapter: str
    experiment: str
    result: str
    verdict: str
    rule: str = ""
    note: str = ""

    def markdown(self) -> str:
        where = CHAPTERS.get(self.chapter, self.chapter)
        lines = [
            f'> **Claim check — "{self.claim}"** (chapter {self.chapter}: {where})',
            ">",
            f"> *Experiment.* {self.experiment}",
        ]
        if self.rule:
            lines += [">", f"> *Rule, fixed before the run.* {self.rule}"]
        lines += [">", f"> *Result.* {self.result}", ">", f"> *Verdict:* **{self.verdict}**"]
        if self.note:
            note = self.note.strip()
            lines[-1] += f". {note[:1].upper()}{note[1:]}" + ("" if note.endswith(".") else ".")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.markdown().replace("> ", "").replace(">\n", "\n")


def claim_check(
    lesson: str,
    claim: str,
    chapter: str,
    experiment: str,
    result: str,
    verdict: str,
    rule: str = "",
    note: str = "",
) -> ClaimCheck:
    """Render (and record for the README) one claim check.

    Args:
        lesson: the lesson's number, e.g. ``"05"``.
        claim: the chapter's words, exactly (no quotation marks; they are added).
        chapter: ``"000"`` or ``"001"``, the source chapter (see :data:`CHAPTERS`).
        experiment: what was run: data, controls, seeds, budget.
        result: the measured numbers, formatted from the run's variables.
        verdict: computed from those numbers, e.g. ``"supported" if cut > 0.4 else ...``.
        rule: the rule that turns numbers into the verdict, stated before the run.
        note: one sentence that qualifies the verdict (which statistic answers the
            claim, when two disagree).

    In a notebook make it the last expression of a cell so that it renders.
    """
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter should be one of {sorted(CHAPTERS)}; got {chapter!r}.")
    for name, value in (("claim", claim), ("result", result), ("verdict", verdict)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a claim check needs a non-empty {name}; got {value!r}.")
    box = ClaimCheck(str(lesson), claim.strip().strip('"'), chapter, experiment, result, verdict)
    box.rule, box.note = rule, note
    _record({"kind": "claim", **asdict(box)})
    return box
