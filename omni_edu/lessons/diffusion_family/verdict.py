"""How lesson 04b scores its race and turns the scores into a verdict, fixed before the run.

One number per arm, the same rule lesson 06 uses to choose the capstone's heads
(:data:`omni_edu.lessons.any_to_any.heads.RULE`, for pictures alone): the mean of
fidelity on full prompts, validity on open prompts and 1 - coverage distance on open
prompts (:func:`score`). Differences between two arms get a 95 % bootstrap interval that
resamples the held-out prompts of both sets, the same prompts for both arms (paired,
:func:`score_difference`); half its width is the smallest difference the race could see.

A *blind* reference - real pictures of random scenes, drawn without reading the prompt
(:func:`blind_reference`) - is scored the same way: its fidelity is the chance level,
measured, and an arm whose full-prompt fidelity is not clear of it has not learned to read
the caption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from omni_edu.generation.race import DIRECTION, RacePools
from omni_edu.parts.judges import Judges
from omni_edu.parts.judges.metrics import conditional_samples, sample_metrics

# (prompt set, metric, sign): the three parts of the score; coverage distance counts as 1 - TV.
PARTS = (("full", "fidelity", 1.0), ("open", "validity", 1.0), ("open", "coverage_tv", -1.0))
RULE = (
    "an arm's score is (fidelity on full prompts + validity on open prompts + 1 - coverage "
    "distance on open prompts) / 3 with its default sampler, lesson 06's rule for choosing "
    "heads; a design wins when its score is the highest and the 95 % paired bootstrap "
    "interval of its lead over the runner-up lies above 0. The claim is supported at this "
    "size when the winner is a lightweight head appended to the end of the network (the "
    "per-token flow head or the DiT head), not supported when the winner is another design "
    "(the decoder denoising itself, codes autoregressive or masked, regression), and open "
    "when nobody wins; not tested at this budget when no appended head, or no rival, reads "
    "the caption (its full-prompt fidelity is not clear of the blind reference's)"
)
BLIND = "blind: real pictures, prompt ignored"

PerPrompt = Mapping[tuple, Mapping[str, Tensor]]


def values(
    per_prompt: PerPrompt, entry: tuple[str, str], prompts: str, metric: str, seeds
) -> Tensor:
    """Per-prompt values ``(n_prompts * n_seeds,)`` of ``entry`` = (arm, sampler)."""
    arm, sampler = entry
    return torch.cat([per_prompt[arm, sampler, prompts, s][metric].float() for s in seeds])


def _score(parts: Sequence[Tensor]) -> Tensor:
    """The score from per-prompt parts (NaN where a metric does not apply), ``(...)``."""
    total = 0.0
    for (_, _, sign), x in zip(PARTS, parts, strict=True):
        mean = x.nanmean(dim=-1)
        total = total + (mean if sign > 0 else 1 - mean)
    return total / len(PARTS)


def score(per_prompt: PerPrompt, entry: tuple[str, str], seeds: Sequence[int]) -> float:
    """An arm's score under :data:`RULE`, over seeds."""
    return float(_score([values(per_prompt, entry, p, m, seeds) for p, m, _ in PARTS]))


def score_difference(
    per_prompt: PerPrompt,
    a: tuple[str, str],
    b: tuple[str, str],
    seeds: Sequence[int],
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Score of ``a`` minus score of ``b`` (each (arm, sampler)), with a 95 % bootstrap
    interval that resamples each prompt set's prompts, the same ones for both arms:
    ``(difference, low, high)``."""
    g = torch.Generator().manual_seed(seed)
    pa = [values(per_prompt, a, p, m, seeds) for p, m, _ in PARTS]
    pb = [values(per_prompt, b, p, m, seeds) for p, m, _ in PARTS]
    draws = {}
    for prompts in ("full", "open"):
        n = len(values(per_prompt, a, prompts, "fidelity", seeds))
        draws[prompts] = torch.randint(n, (n_boot, n), generator=g)
    boot_a = _score([x[draws[p]] for x, (p, _, _) in zip(pa, PARTS, strict=True)])
    boot_b = _score([x[draws[p]] for x, (p, _, _) in zip(pb, PARTS, strict=True)])
    diff = (boot_a - boot_b).sort().values
    low, high = diff[int(0.025 * n_boot)], diff[int(0.975 * n_boot) - 1]
    return float(_score(pa) - _score(pb)), float(low), float(high)


def metric_difference(
    per_prompt: PerPrompt,
    a: tuple[str, str],
    b: tuple[str, str],
    prompts: str,
    metric: str,
    seeds: Sequence[int],
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """One metric of ``a`` minus ``b`` on one prompt set, paired over prompts, with a 95 %
    bootstrap interval: ``(difference, low, high)``; prompts where either is NaN are left
    out."""
    x, y = (
        values(per_prompt, a, prompts, metric, seeds),
        values(per_prompt, b, prompts, metric, seeds),
    )
    keep = ~(x.isnan() | y.isnan())
    d = (x - y)[keep]
    g = torch.Generator().manual_seed(seed)
    means = d[torch.randint(len(d), (n_boot, len(d)), generator=g)].mean(dim=1).sort().values
    return float(d.mean()), float(means[int(0.025 * n_boot)]), float(means[int(0.975 * n_boot) - 1])


def blind_reference(
    pools: RacePools, judges: Judges, k: int, seeds: Sequence[int]
) -> dict[tuple, dict[str, Tensor]]:
    """Per-prompt metrics of a sampler that ignores the prompt - ``k`` real pictures of
    random scenes for each held-out prompt - in the race's ``per_prompt`` format, under
    (:data:`BLIND`, "")."""
    out = {}
    for name, indices in pools.indices.items():
        pool = pools.test["pixels"][name]
        attributes = pool.batch.attributes[indices, 0]
        fixed = pool.fixed(DIRECTION)[indices]
        for s in seeds:
            anything = torch.zeros_like(fixed)  # nothing fixed: any scene at all
            pictures = conditional_samples(pool.world, attributes, anything, k, "image", 100 + s)
            metrics = sample_metrics(judges.image, pictures, attributes, fixed, pool.world, seed=s)
            out[BLIND, "", name, s] = {m: v.per_prompt for m, v in metrics.items()}
    return out


def winner(per_prompt: PerPrompt, entries: Sequence[tuple[str, str]], seeds: Sequence[int]) -> dict:
    """The best entry by score and its lead over the runner-up: ``{"best", "runner_up",
    "lead": (difference, low, high), "scores": {arm: score}, "wins": bool}``."""
    scores = {arm: score(per_prompt, (arm, sampler), seeds) for arm, sampler in entries}
    ranked = sorted(entries, key=lambda e: scores[e[0]], reverse=True)
    lead = score_difference(per_prompt, ranked[0], ranked[1], seeds)
    return {
        "best": ranked[0][0],
        "runner_up": ranked[1][0],
        "lead": lead,
        "scores": scores,
        "wins": lead[1] > 0,
    }


def claim_verdict(result: Mapping, appended: Sequence[str], tested: bool) -> str:
    """The verdict of :data:`RULE` from :func:`winner`'s ``result``: ``tested`` says whether
    any diffusion arm read the prompt (full-prompt fidelity clear of the blind reference)."""
    if not tested:
        return "not tested at this budget"
    if not result["wins"]:
        return "open at this size: no design wins beyond the smallest detectable difference"
    if result["best"] in appended:
        return "supported at this size"
    return "not supported at this size"
