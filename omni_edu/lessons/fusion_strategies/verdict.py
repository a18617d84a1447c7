"""Lesson 05's rules, fixed before the run, that turn the measurements into verdicts.

* :func:`reasoning_check`, the reasoning half of "Early fusion enables deeper cross-modal
  reasoning but requires more compute": on the tight (binding) task, does early fusion leave
  the best blind baseline, and does it beat each late-fusion arm (LLaVA-style late fusion,
  Flamingo-style cross-attention) by more than the design can detect? With the design's
  :class:`~omni_edu.report.Power`: constant predictors, every arm within noise of the
  baseline, the smallest detectable difference.
* :func:`compute_check`, the compute half: does early fusion cost the most forward FLOPs per
  example at the matched parameter budget (an exact count; the measured latency beside it)?
* :func:`memory_verdict`: does the chapter's freezing recipe save 40 to 60 % of training
  memory at every batch size?
* :func:`control_note`: what the depth-matched control says about *where* against *how
  many* layers mix the modalities; :func:`gate_note`: what the open-gates control says
  about Flamingo's closed gates in a run from scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omni_edu.lessons.fusion_strategies.experiment import (
    GATES_OPEN,
    TASK_NAMES,
    FusionResults,
    seed_margin,
)
from omni_edu.report import Power, runs_agreeing

LATE_ARMS = ("late", "cross")  # the chapter's late fusion: LLaVA-style and Flamingo-style
ARMS = ("early", *LATE_ARMS)


def verdict_of(learned: bool, beats: dict[str, bool]) -> str:
    """The reasoning half's verdict from whether early fusion left the baseline and which
    late-fusion arms it beat by more than the detectable difference."""
    if not learned:
        return "not supported: early fusion did not leave the blind baseline"
    won = [arm for arm, yes in beats.items() if yes]
    if len(won) == len(beats):
        return "supported"
    if won:
        lost = [arm for arm in beats if arm not in won]
        return f"partly supported: early fusion beats {', '.join(won)} but not {', '.join(lost)}"
    return "not supported: early fusion beats no late-fusion arm by more than the noise"


@dataclass
class ReasoningCheck:
    """The reasoning half, measured. Accuracies are means over seeds on the test items.

    ``detectable[arm]``: two standard errors of the arm's mean (seeds and test size);
    ``left[arm]``: the mean beats the best blind baseline by more than that.
    ``lead[arm]``: early fusion's mean minus the late-fusion arm's; ``lead_detectable``:
    two standard errors of that difference; ``beats[arm]``: the lead is larger.
    ``per_seed``: the same rule applied to each seed's runs alone (paired by seed).
    """

    task: str
    means: dict[str, float]
    baseline: float
    detectable: dict[str, float]
    left: dict[str, bool]
    lead: dict[str, float]
    lead_detectable: dict[str, float]
    beats: dict[str, bool]
    per_seed: list[str]
    verdict: str
    power: Power

    @property
    def seeds_agreeing(self) -> str:
        """``"supported in 2 of 3 runs"``: how many seeds give each verdict."""
        return runs_agreeing(self.per_seed)


def reasoning_check(results: FusionResults, task: str = "binding") -> ReasoningCheck:
    """Apply the reasoning half's rule to ``results`` (see the module docstring)."""
    setups = list(dict.fromkeys(r["setup"] for r in results.runs if r["task"] == task))
    n_eval = results.settings["n_eval"]
    baseline = results.baseline(task)
    means = {s: results.mean(task, s) for s in setups}
    se = {s: results.standard_error(task, s) for s in setups}
    detectable = {s: 2 * se[s] for s in setups}
    left = {s: means[s] - baseline > detectable[s] for s in setups}
    lead = {a: means["early"] - means[a] for a in LATE_ARMS}
    # Two standard errors of a difference of two means (treated as independent: a little
    # wider than the paired truth, since both arms answer the same test items).
    lead_detectable = {a: 2 * (se["early"] ** 2 + se[a] ** 2) ** 0.5 for a in LATE_ARMS}
    beats = {a: lead[a] > lead_detectable[a] for a in LATE_ARMS}

    per_seed = []
    runs = {
        (r["setup"], r["seed"]): float(r["accuracy"]) for r in results.runs if r["task"] == task
    }
    for seed in sorted({s for _, s in runs}):
        acc = {arm: runs[(arm, seed)] for arm in ARMS}
        noise = {arm: (acc[arm] * (1 - acc[arm]) / n_eval) ** 0.5 for arm in ARMS}
        learned = acc["early"] > baseline + seed_margin(baseline, n_eval)
        won = {
            a: acc["early"] - acc[a] > 2 * (noise["early"] ** 2 + noise[a] ** 2) ** 0.5
            for a in LATE_ARMS
        }
        per_seed.append(verdict_of(learned, won))

    constant = tuple(s for s in setups if results.constant(task, s))
    power = Power(
        max(lead_detectable.values()),
        "accuracy (two standard errors of early fusion's lead, from seeds and test size)",
        constant_arms=constant,
        # Each arm against the baseline by its own noise, the rule that fills ``left``.
        near_baseline=not any(left.values()),
    )
    return ReasoningCheck(
        task,
        means,
        baseline,
        detectable,
        left,
        lead,
        lead_detectable,
        beats,
        per_seed,
        verdict_of(left["early"], beats),
        power,
    )


@dataclass
class ComputeCheck:
    """The compute half: forward MFLOPs per example (exact counts) and measured latency."""

    mflops: dict[str, float]
    latency: dict[str, float]
    most_flops: bool
    slowest: bool
    verdict: str
    power: Power


def compute_check(results: FusionResults, task: str = "binding") -> ComputeCheck:
    """Does early fusion cost the most forward FLOPs per example of the three variants?"""
    rows = {arm: results.row(task, arm) for arm in ARMS}
    mflops = {arm: float(rows[arm]["MFLOPs/example"]) for arm in ARMS}
    latency = {arm: float(rows[arm]["latency (ms/example)"]) for arm in ARMS}
    others = [mflops[a] for a in LATE_ARMS]
    most = mflops["early"] > max(others)
    slowest = latency["early"] > max(latency[a] for a in LATE_ARMS)
    power = Power(0.01, "MFLOPs per example (counted exactly from the layers' shapes, rounded)")
    return ComputeCheck(
        mflops, latency, most, slowest, "supported" if most else "not supported", power
    )


CLAIMED_SAVING = (40.0, 60.0)  # percent, the chapter's range


def memory_verdict(cuts: list[float], claimed: tuple[float, float] = CLAIMED_SAVING) -> str:
    """Supported if every saving lies in ``claimed``; above or below it at every batch size:
    the recipe cuts more or less than claimed; otherwise inside at some batch sizes only."""
    low, high = min(cuts), max(cuts)
    if claimed[0] <= low and high <= claimed[1]:
        return "supported"
    if low > claimed[1]:
        return "not supported as stated: the recipe cuts more than 40 to 60 %"
    if high < claimed[0]:
        return "not supported: the recipe cuts less than 40 to 60 %"
    return "partly supported: inside 40 to 60 % at some batch sizes only"


def control_note(check: ReasoningCheck, control: str, blocks: int) -> str:
    """What the depth-matched control (early fusion with late fusion's mixing depth) says,
    in words generated from the arms that left the baseline."""
    left = check.left
    if not (left["early"] or left[control]):
        return (
            "No early-fusion model left the blind baseline within this budget, so there is "
            "no advantage to explain; the cpu profile trains longer."
        )
    if left["late"] and left["cross"]:
        return (
            "Both late-fusion arms left the baseline too: at this budget, separate encoders "
            "did not stop the sound from being looked up in the picture."
        )
    if left[control]:
        missed = " and ".join(a for a in LATE_ARMS if not left[a])
        return (
            f"The control speaks against the depth explanation: early fusion with only "
            f"{blocks} blocks, as many as late fusion's decoder, left the baseline, and "
            f"{missed} did not. So fewer mixing layers do not explain their result; what "
            "remains is where the media meet: in late fusion each is encoded alone and they "
            "meet only in the decoder, in cross-attention fusion the question reads the "
            "picture and reaches the sound only through the text between them."
        )
    return (
        f"The control does not separate the explanations: with only {blocks} blocks, as "
        "many as late fusion's decoder, early fusion stayed at the baseline too. So the "
        "number of layers in which the picture and the sound can mix may be all that "
        "matters here."
    )


def gate_note(results: FusionResults, layers: int) -> str:
    """What the open-gates control says about cross-attention fusion, in words generated
    from the runs: on each task, its mean accuracy with Flamingo's closed gates and with
    the gates open at the start, whether opening them changed it by more than two standard
    errors of the difference, and whether either left the binding task's baseline.
    ``layers``: the gated cross-attention layers of the variant."""
    both = ("cross", GATES_OPEN)
    tasks = [t for t in TASK_NAMES if all(results.accuracies(t, s) for s in both)]
    if "binding" not in tasks:
        return ""

    moved, changes = {}, []
    for task in tasks:
        closed, opened = results.mean(task, "cross"), results.mean(task, GATES_OPEN)
        noise = 2 * math.hypot(*(results.standard_error(task, s) for s in both))
        moved[task] = opened - closed > noise
        changes.append(f"{task} task {closed:.2f} closed, {opened:.2f} open (noise {noise:.2f})")
    baseline = results.baseline("binding")
    left = {
        setup: results.mean("binding", setup) - baseline
        > 2 * results.standard_error("binding", setup)
        for setup in both
    }
    said = f"With its gates open at the start, cross-attention fusion scored: {'; '.join(changes)}."
    if left[GATES_OPEN] and not left["cross"]:
        return (
            f"{said} The closed gates, not where the media meet, kept it at the baseline: "
            "early fusion's lead over Flamingo's arm says nothing about reasoning here."
        )
    if left[GATES_OPEN]:
        return f"{said} Both left the baseline: the gates changed how fast it learned."
    if any(moved.values()):
        gated = f"{layers} gated layer" + ("s" if layers != 1 else "")
        return (
            f"{said} The closed gates slow it down, but even open it did not leave the binding "
            f"task's baseline: with {gated}, the question reads the picture before anything "
            "it read of the sound can shape what it looks for."
        )
    return f"{said} Opening the gates changed nothing beyond noise."


# The answers lesson 05's prediction offers, and the one the run gives.
CHOICES = {"early": "early", "late": "late", "cross": "cross-attention"}
NO_CLEAR_WINNER = "no clear difference"


def measured_choice(check: ReasoningCheck) -> str:
    """The variant whose mean beats the runner-up by more than two standard errors of their
    difference, as one of the prediction's choices; else :data:`NO_CLEAR_WINNER`."""
    top, second = sorted(ARMS, key=lambda arm: -check.means[arm])[:2]
    noise = (check.detectable[top] ** 2 + check.detectable[second] ** 2) ** 0.5
    return CHOICES[top] if check.means[top] - check.means[second] > noise else NO_CLEAR_WINNER
