"""Lesson 04b's race: the diffusion family against the per-token heads, at one budget.

Six arms, each an OmniLM with the profile's decoder, trained from the same seed on the same
text -> image batches for the same number of steps (:mod:`omni_edu.generation.race`):

===========================  ===========  ==========================================
arm                          token        how a picture is written
===========================  ===========  ==========================================
linear regression            pixel patch  one token per decoder pass, the mean
per-token flow head (MAR)    pixel patch  one token per decoder pass, ``steps`` head steps
DiT head                     pixel patch  one decoder pass, ``steps`` DiT passes, jointly
whole-image diffusion        pixel patch  ``steps`` decoder passes over the whole span
VQ codes (autoregressive)    code id      one code per decoder pass, sampled
masked codes (MaskGIT)       code id      ``steps`` decoder passes, surest codes first
===========================  ===========  ==========================================

The DiT is sized to the per-token flow head's parameter count (matched parameters); the
other heads are what their design is (whole-image diffusion adds only a read-out and a
time embedding to the decoder), and the table prints every arm's parameters. Linear
regression stands for regression: it had the higher full-prompt fidelity of lesson 04's
two regression arms in ci. Codes come from lesson 03's autoencoder, so both code arms share
its ceiling (the lesson prints it); the four continuous arms write pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from torch import Tensor
from tqdm.auto import tqdm

from omni_edu.generation.costs import sampling_cost, training_flops
from omni_edu.generation.race import DIRECTION, Arm, RacePools
from omni_edu.lessons.diffusion_family.budget import DEFAULT_STEPS, DIT_DEPTH
from omni_edu.modalities import Modality
from omni_edu.model.heads.dit import matched_width
from omni_edu.model.omni_lm import OmniLM
from omni_edu.model.weights import count_parameters
from omni_edu.parts import any_to_any as a2a

REGRESSION = "linear regression"
FLOW = "per-token flow head"
DIT = "DiT head"
WHOLE_IMAGE = "whole-image diffusion"
VQ = "VQ codes"
MASKED = "masked codes"
# The chapter's "lightweight Diffusion head (or DiT) appended to the end of the network".
APPENDED = (FLOW, DIT)


def step_samplers(sweep: Sequence[int], **fixed: float) -> dict[str, dict[str, float]]:
    """Sampler settings over ``sweep`` sampling steps, the default (:data:`DEFAULT_STEPS`)
    first; ``fixed`` options go with every setting."""
    names = {s: f"{s} step{'s' * (s != 1)}" for s in sweep}
    order = [DEFAULT_STEPS, *(s for s in sweep if s != DEFAULT_STEPS)]
    return {names.get(s, f"{s} steps"): {"steps": s, **fixed} for s in order}


def dit_overrides(pool: a2a.AnyToAnyData, depth: int = DIT_DEPTH) -> dict[str, int]:
    """The DiT's width and blocks: ``depth`` blocks as wide as makes it the size of the
    per-token flow head that the same pool's flow arm gets."""
    flow = a2a.model_config(pool, None, None, "flow", "linear", **a2a.FLOW_HEAD).head_config(
        "image"
    )
    return {"head_width": matched_width(flow, depth), "head_depth": depth}


def arms(pixels: a2a.AnyToAnyData, sweep: Sequence[int]) -> tuple[Arm, ...]:
    """The six arms; ``pixels`` is the pixel training pool (it sizes the DiT), ``sweep``
    the sampling steps every iterative arm is scored at."""
    steps = step_samplers(sweep)
    return (
        Arm(REGRESSION, "linear", "pixels"),
        Arm(FLOW, "flow", "pixels", steps),
        Arm(DIT, "dit", "pixels", steps, dit_overrides(pixels)),
        Arm(WHOLE_IMAGE, "transfusion", "pixels", steps),
        Arm(VQ, "codes", "codes", {"T=1": {"temperature": 1.0}}),
        Arm(MASKED, "masked_codes", "codes", step_samplers(sweep, temperature=1.0)),
    )


def default_sampler(arm: Arm) -> str:
    """The setting an arm is judged by, fixed before the run: its first."""
    return next(iter(arm.samplers))


def cost_rows(
    arm_list: Sequence[Arm],
    models: Mapping[str, OmniLM],
    pools: RacePools,
    steps: int,
    batch_size: int,
    n_pictures: int,
    repeats: int = 3,
) -> list[dict]:
    """One row per arm: its parameters (all, and the image head's own), the FLOPs of its
    training run (one step counted, times ``steps``), and what drawing a picture with its
    default sampler costs (:func:`omni_edu.generation.costs.sampling_cost`, ``n_pictures``
    held-out open prompts drawn in one batch, the best time of ``repeats`` draws)."""
    rows = []
    for arm in tqdm(arm_list, desc="costs", leave=False):
        model, pool = models[arm.label], pools.train[arm.form]
        options = arm.samplers[default_sampler(arm)]
        test = pools.test[arm.form]["open"]
        cost = sampling_cost(
            model, test, DIRECTION, pools.indices["open"][:n_pictures], repeats, **options
        )
        rows.append(
            {
                "arm": arm.label,
                "parameters": model.num_parameters(),
                "head parameters": count_parameters(model.image_head),
                "training TFLOPs": steps
                * training_flops(model, pool, DIRECTION, batch_size)
                / 1e12,
                **cost.row(),
            }
        )
    return rows


def mean_of(rows: Sequence[Mapping], arm: str, sampler: str, prompts: str, metric: str) -> float:
    """The mean over seeds of one metric of ``run_race``'s ``rows``."""
    found = [
        r[metric] for r in rows if (r["arm"], r["sampler"], r["prompts"]) == (arm, sampler, prompts)
    ]
    if not found:
        raise ValueError(f"no row for {arm!r}, {sampler!r}, {prompts!r}.")
    return sum(found) / len(found)


SUMMARY = (
    ("full", "fidelity"),
    ("full", "validity"),
    ("open", "fidelity"),
    ("open", "validity"),
    ("open", "coverage_tv"),
    ("open", "ghost_mass"),
)


def summary_rows(rows: Sequence[Mapping], arm_list: Sequence[Arm]) -> list[dict]:
    """One row per arm (its default sampler): the metrics of :data:`SUMMARY`."""
    out = []
    for arm in arm_list:
        sampler = default_sampler(arm)
        label = f"{arm.label} ({sampler})" if sampler else arm.label
        out.append(
            {"arm": label}
            | {f"{p}: {m}": mean_of(rows, arm.label, sampler, p, m) for p, m in SUMMARY}
        )
    return out


def step_curves(rows: Sequence[Mapping], arm_list: Sequence[Arm]) -> dict[str, dict[int, dict]]:
    """For every arm whose samplers take ``steps``: steps -> ``{"full: fidelity": ...,
    "open: validity": ..., "open: coverage_tv": ...}`` (means over seeds)."""
    curves = {}
    for arm in arm_list:
        by_steps = {}
        for sampler, options in arm.samplers.items():
            if "steps" in options:
                by_steps[int(options["steps"])] = {
                    f"{p}: {m}": mean_of(rows, arm.label, sampler, p, m)
                    for p, m in (
                        ("full", "fidelity"),
                        ("open", "validity"),
                        ("open", "coverage_tv"),
                    )
                }
        if by_steps:
            curves[arm.label] = by_steps
    return curves


def document_masks(pool: a2a.AnyToAnyData) -> tuple[dict[str, Tensor], list[str]]:
    """The attention masks of ``pool``'s first document under a per-token head and under a
    head that denoises inside the decoder, ``{title: (T, T) bool}``, and a short name per
    position (its word, its marker, or ``p<k>`` for the k-th patch)."""
    packed = pool.pool.select([0])
    length = int(packed.lengths[0])
    config = a2a.model_config(pool, image_head="flow", **a2a.FLOW_HEAD)
    masks = {}
    for title, head in (
        ("per-token heads: causal everywhere", "flow"),
        ("whole-image diffusion, masked codes: the picture both ways", "transfusion"),
    ):
        model = OmniLM(replace(config, image_head=head))
        masks[title] = model.attention_mask(packed)[0, :length, :length]
    labels, patch = [], 0
    for kind, token in zip(
        packed.modality[0, :length].tolist(), packed.text_ids[0, :length].tolist(), strict=True
    ):
        if kind == Modality.IMAGE:
            labels.append(f"p{patch}")
            patch += 1
        else:
            labels.append(pool.tokenizer.decode([token]))
    return masks, labels
