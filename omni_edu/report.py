"""Reporting what a lesson measured: claim-check boxes and headline figures.

A **claim check** quotes a claim of a source chapter exactly, says how the lesson tested
it, and gives the result and a verdict. The verdict is *computed* from the numbers the run
printed, by a rule stated before the run, never typed: :func:`claim_check` renders the box
from those values, and a test of the course refuses a notebook whose ``claim_check`` call
passes a literal verdict or a result without a measured number in it.

**Power before verdict.** A check states what its design can see (:class:`Power`): the
smallest effect it could detect, and whether it is degenerate - an arm that predicts one
class (:func:`constant_predictor`), every arm within noise of its measured baseline
(:func:`within_noise`, against a measured baseline such as :func:`majority_baseline`), a
number borrowed from another claim, or a difference that is zero by construction. A
degenerate design cannot answer its claim, so the box's verdict becomes :data:`NOT_TESTED`
("not tested at this budget"), followed by the reasons and the verdict the numbers alone
would have given; the README records :data:`NOT_TESTED` too. Some of this is found without
being told: ``evidence=`` numbers that repeat an earlier check's of the same lesson mark
the check as borrowed, ``differences=`` that are all exactly zero mark a structural zero,
and ``predictions=`` per arm find constant predictors. A verdict that depends on the seed
reports how many runs agree (:func:`runs_agreeing`).

A **headline** is one sentence a lesson measured that the README quotes. The README's
figures are not typed in either: ``python -m omni_edu.tools.run_lessons run --readme`` runs
the lessons with ``OMNI_FIGURES`` pointing at a file, every :func:`claim_check` and
:func:`headline` appends its sentence there, and the tool writes them into the README with
the profile and the machine they came from.
"""

from __future__ import annotations

import collections
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

FIGURES_ENV = "OMNI_FIGURES"

# The verdict of a check whose design cannot see the effect it tests.
NOT_TESTED = "not tested at this budget"

# An arm that gives one answer this often is a constant predictor (issue 19).
CONSTANT_SHARE = 0.95

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


# ---------------------------------------------------------------------------------------
# What a design can see
# ---------------------------------------------------------------------------------------


@dataclass
class Power:
    """What a claim check's design can see, stated beside its verdict.

    Attributes:
        detectable: the smallest effect the design could detect, in ``unit`` (e.g. a 95 %
            interval's half-width, or 2 standard errors from the seeds and test size).
            ``math.inf`` when the design can detect nothing (one seed, no interval);
            ``math.nan`` when it is not stated.
        unit: what ``detectable`` is measured in, e.g. ``"accuracy"``, ``"nats per word"``.
        constant_arms: arms whose predictions are >= 95 % one class
            (:func:`constant_predictor`).
        near_baseline: every arm sits within noise of its measured (blind or majority)
            baseline (:func:`within_noise`).
        borrowed: the claim whose number this check reuses (``""`` if none).
        structural_zero: the tested difference is zero by construction (e.g. an arm that
            never sees the cue it is tested on).
    """

    detectable: float
    unit: str = ""
    constant_arms: Sequence[str] = ()
    near_baseline: bool = False
    borrowed: str = ""
    structural_zero: bool = False

    def __post_init__(self) -> None:
        self.detectable = float(self.detectable)
        if self.detectable < 0:
            raise ValueError(f"detectable is an effect size, >= 0; got {self.detectable}.")
        if isinstance(self.constant_arms, str):  # one arm's name, not its letters
            self.constant_arms = (self.constant_arms,)
        self.constant_arms = tuple(self.constant_arms)

    @property
    def reasons(self) -> list[str]:
        """Plain-language reasons the design cannot see the effect (empty: it can)."""
        found = []
        if self.constant_arms:
            one = len(self.constant_arms) == 1
            found.append(
                f"{', '.join(self.constant_arms)} {'predicts' if one else 'predict'} one class "
                f"for at least {CONSTANT_SHARE:.0%} of the items, so {'its' if one else 'their'} "
                "score says nothing about the effect"
            )
        if self.near_baseline:
            found.append(
                "every arm is within noise of its measured baseline (a blind or majority "
                "model scored the same way), so no arm shows that it learned the task"
            )
        if self.borrowed:
            found.append(
                f'its number is borrowed from another claim ("{self.borrowed}"), so it is '
                "not a test of its own"
            )
        if self.structural_zero:
            found.append(
                "the difference it tests is zero by construction, so it cannot be anything else"
            )
        if math.isinf(self.detectable):
            found.append("the design has no interval at all (its detectable effect is infinite)")
        return found

    @classmethod
    def from_interval(cls, low: float, high: float, unit: str = "", **reasons: Any) -> Power:
        """The power of a design whose 95 % interval of the difference is ``[low, high]``.

        The smallest effect it can detect is the interval's half-width: an effect that big
        puts the interval's edge at zero. ``reasons`` are the other fields (e.g.
        ``near_baseline=...``).
        """
        if high < low:
            raise ValueError(f"the interval should have low <= high; got [{low}, {high}].")
        return cls((float(high) - float(low)) / 2, unit, **reasons)

    @classmethod
    def from_standard_error(cls, se: float, unit: str = "", **reasons: Any) -> Power:
        """The power of a design whose difference has standard error ``se``: two of them."""
        return cls(2 * float(se), unit, **reasons)

    def describe(self) -> str:
        """``"smallest detectable effect: 0.052 accuracy"`` (``"not stated"`` for NaN)."""
        if math.isnan(self.detectable):
            return "smallest detectable effect: not stated"
        unit = f" {self.unit}" if self.unit else ""
        return f"smallest detectable effect: {self.detectable:.3g}{unit}"


def _labels(predictions: Any) -> list[Any]:
    """A 1-D sequence or tensor of labels as a list of hashable items."""
    if isinstance(predictions, (torch.Tensor, np.ndarray)):
        if predictions.ndim != 1:
            raise ValueError(
                f"predictions should be one label per item, a 1-D tensor; got shape "
                f"{tuple(predictions.shape)}. For scores per class take .argmax(-1) first."
            )
        return predictions.tolist()
    if isinstance(predictions, (str, bytes)):
        raise TypeError("predictions should be a sequence of labels, not one string.")
    return list(predictions)


def constant_predictor(predictions: Any, share: float = CONSTANT_SHARE) -> bool:
    """Does one label make up at least ``share`` of ``predictions``?

    ``predictions``: a 1-D sequence or tensor of class labels or answers, one per test
    item. An arm that is a constant predictor scores its test set's class split whatever
    it learned, so a comparison of such arms cannot see any effect.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share should be in (0, 1]; got {share}.")
    labels = _labels(predictions)
    if not labels:
        raise ValueError("predictions is empty: there is nothing to judge.")
    most = collections.Counter(labels).most_common(1)[0][1]
    return most >= share * len(labels)


def majority_baseline(
    answers: Sequence[Any],
    groups: Sequence[Any] | None = None,
    train_answers: Sequence[Any] | None = None,
    train_groups: Sequence[Any] | None = None,
) -> float:
    """The accuracy of a blind model that gives each group's commonest answer.

    The baseline a question-answering arm must leave: it sees the question's type
    (``groups``, e.g. "counting") but not the picture or the sound. The majority comes
    from ``train_answers`` (with ``train_groups``) when given, else from the test answers
    themselves, which flatters the baseline slightly (an upper bound). A group the
    training answers never saw gets the overall training majority.

    Args:
        answers: the right answer of each test item (scored by exact match).
        groups: each test item's type; ``None`` for one group.
        train_answers, train_groups: where the majorities come from.
    """
    answers = _labels(answers)
    if not answers:
        raise ValueError("answers is empty: give the test items' right answers.")
    groups = [None] * len(answers) if groups is None else _labels(groups)
    source = answers if train_answers is None else _labels(train_answers)
    if train_answers is None:
        source_groups = groups
    elif train_groups is None:
        source_groups = [None] * len(source)
    else:
        source_groups = _labels(train_groups)
    if len(groups) != len(answers) or len(source_groups) != len(source):
        raise ValueError("each answer needs one group: the lengths differ.")
    by_group: dict[Any, collections.Counter] = collections.defaultdict(collections.Counter)
    for group, answer in zip(source_groups, source, strict=True):
        by_group[group][answer] += 1
    overall = collections.Counter(source).most_common(1)[0][0]
    guess = {g: c.most_common(1)[0][0] for g, c in by_group.items()}
    hits = sum(guess.get(g, overall) == a for g, a in zip(groups, answers, strict=True))
    return hits / len(answers)


def within_noise(
    arms: Mapping[str, float], baseline: float | Mapping[str, float], detectable: float
) -> bool:
    """Is every arm within ``detectable`` of its baseline?

    Args:
        arms: each arm's score, e.g. ``{"early": 0.51, "late": 0.50}``.
        baseline: the measured baseline (a blind or majority model scored the same way),
            one number for all arms or one per arm (same keys as ``arms``).
        detectable: the design's smallest detectable effect (:attr:`Power.detectable`).
    """
    if not arms:
        raise ValueError("arms is empty: give each arm's score.")
    if isinstance(baseline, Mapping):
        missing = set(arms) - set(baseline)
        if missing:
            raise ValueError(f"baseline has no value for {sorted(missing)}.")
        base = {arm: float(baseline[arm]) for arm in arms}
    else:
        base = dict.fromkeys(arms, float(baseline))
    return all(abs(float(score) - base[arm]) <= detectable for arm, score in arms.items())


def runs_agreeing(verdicts: Sequence[str]) -> str:
    """How many runs gave each verdict: ``"supported in 2 of 3 runs"``.

    For a verdict near its threshold, where the training seed decides it (issue 19 item 11).
    The commonest verdict comes first; a tie names every verdict that shares the lead,
    ``"supported in 1 of 2 runs, not supported in 1 of 2 runs"``.
    """
    verdicts = [str(v) for v in verdicts]
    if not verdicts:
        raise ValueError("verdicts is empty: give one verdict per run.")
    counts = collections.Counter(verdicts)  # keeps first-seen order among equal counts
    top = max(counts.values())
    n = len(verdicts)
    return ", ".join(f"{v} in {k} of {n} runs" for v, k in counts.items() if k == top)


# ---------------------------------------------------------------------------------------
# Numbers a lesson's checks rest on: a later check may not reuse an earlier one's
# ---------------------------------------------------------------------------------------

# lesson -> claim -> {name: value}, in the order the checks ran in this process.
_EVIDENCE: dict[str, dict[str, dict[str, float]]] = {}


def reset_evidence() -> None:
    """Forget the numbers recorded so far (a new run of the lessons; tests)."""
    _EVIDENCE.clear()


def _borrowed_from(lesson: str, claim: str, evidence: Mapping[str, float]) -> str:
    """The earlier claim of ``lesson`` whose recorded numbers ``evidence`` repeats, or ""."""
    for other, numbers in _EVIDENCE.get(lesson, {}).items():
        if other == claim:  # the same check run again (a re-run cell) borrows nothing
            continue
        for name, value in evidence.items():
            for their_name, theirs in numbers.items():
                if value == theirs:
                    return f"{_short(other)}: {their_name} = {theirs:g} as {name}"
    return ""


def _short(claim: str, words: int = 12) -> str:
    parts = claim.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        value = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        if value.size != 1:
            raise ValueError(f"evidence {name!r} should be one number; got shape {value.shape}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"evidence {name!r} should be a number; got {type(value).__name__}.")
    return float(value)


def _all_zero(differences: Any) -> bool:
    """Are the paired differences all exactly zero (the arms cannot differ at all)?"""
    if isinstance(differences, torch.Tensor):
        values = differences.detach().cpu().double()
    else:
        values = torch.as_tensor(np.asarray(differences, dtype=np.float64))
    if values.numel() == 0:
        raise ValueError("differences is empty: give the paired differences the check tests.")
    return bool((values == 0).all())


# ---------------------------------------------------------------------------------------
# The box
# ---------------------------------------------------------------------------------------


@dataclass
class ClaimCheck:
    """A rendered claim-check box; shows as Markdown in a notebook, as text elsewhere.

    ``verdict`` is what the box and the README say: :data:`NOT_TESTED` when ``reasons`` is
    not empty, else ``measured_verdict``, the verdict the numbers alone give.
    """

    lesson: str
    claim: str
    chapter: str
    experiment: str
    result: str
    verdict: str
    rule: str = ""
    note: str = ""
    measured_verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    power: Power | None = None
    evidence: dict[str, float] = field(default_factory=dict)

    def markdown(self) -> str:
        where = CHAPTERS.get(self.chapter, self.chapter)
        lines = [
            f'> **Claim check — "{self.claim}"** (chapter {self.chapter}: {where})',
            ">",
            f"> *Experiment.* {self.experiment}",
        ]
        if self.rule:
            lines += [">", f"> *Rule, fixed before the run.* {self.rule}"]
        lines += [">", f"> *Result.* {self.result}"]
        if self.power is not None:
            lines += [">", f"> *Power.* {self.power.describe()}."]
        lines += [">", f"> *Verdict:* **{self.verdict}**"]
        if self.reasons:
            why = "; ".join(self.reasons)
            lines[-1] += (
                f". The design cannot see the effect: {why}. The numbers alone would have "
                f"said *{self.measured_verdict}*"
            )
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
    power: Power | None = None,
    *,
    evidence: Mapping[str, float] | None = None,
    differences: Any = None,
    predictions: Mapping[str, Any] | None = None,
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
        power: what the design can see (:class:`Power`); its smallest detectable effect is
            printed, and any reason it cannot see the effect turns the verdict into
            :data:`NOT_TESTED`.
        evidence: the check's key numbers by name, recorded for this lesson's run; a check
            whose number repeats an earlier check's exactly is marked as borrowing it.
        differences: the paired differences the check tests (a tensor or sequence); all
            exactly zero marks a structural zero.
        predictions: each arm's predicted labels (1-D), to find constant predictors.

    In a notebook make it the last expression of a cell so that it renders.
    """
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter should be one of {sorted(CHAPTERS)}; got {chapter!r}.")
    for name, value in (("claim", claim), ("result", result), ("verdict", verdict)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a claim check needs a non-empty {name}; got {value!r}.")
    if power is not None and not isinstance(power, Power):
        raise TypeError(f"power should be a report.Power; got {type(power).__name__}.")
    lesson, claim = str(lesson), claim.strip().strip('"')
    numbers = {name: _as_float(name, value) for name, value in (evidence or {}).items()}

    # What the design cannot see, found from the data where that is cheap.
    found: dict[str, Any] = {}
    if numbers and not (power is not None and power.borrowed):
        found["borrowed"] = _borrowed_from(lesson, claim, numbers)
    if differences is not None and _all_zero(differences):
        found["structural_zero"] = True
    constant = [arm for arm, p in (predictions or {}).items() if constant_predictor(p)]
    if constant:
        named = tuple(power.constant_arms) if power is not None else ()
        found["constant_arms"] = named + tuple(a for a in constant if a not in named)
    found = {k: v for k, v in found.items() if v}
    if found:
        base = power if power is not None else Power(math.nan)
        power = Power(**{**asdict(base), **found})

    reasons = power.reasons if power is not None else []
    box = ClaimCheck(
        lesson,
        claim,
        chapter,
        experiment,
        result,
        NOT_TESTED if reasons else verdict,
        rule,
        note,
        measured_verdict=verdict,
        reasons=reasons,
        power=power,
        evidence=numbers,
    )
    if numbers:
        _EVIDENCE.setdefault(lesson, {})[claim] = numbers
    entry = asdict(box)
    if entry["power"] is not None and math.isnan(entry["power"]["detectable"]):
        entry["power"]["detectable"] = None  # JSON has no NaN
    _record({"kind": "claim", **entry})
    return box
