"""A race of ways to write a picture: the same decoder, data, batches and budget.

Lesson 04 races output heads (which head? which token?), lesson 04b the diffusion family;
both on text -> image, on two sets of held-out prompts: captions that name every
attribute (the control: a picture given its caption is nearly one picture) and captions
that leave some free ("a small circle": any colour, anywhere).

An :class:`Arm` is one contestant: a head kind of :class:`~omni_edu.model.omni_lm.OmniLM`,
the token form it writes (pixels, or one autoencoder's codes or latents) and its sampler
settings. :func:`run_race` trains each arm from the same initial weights and draws K
pictures per held-out prompt under each sampler setting, scored by
:func:`omni_edu.parts.judges.metrics.sample_metrics`: fidelity, validity, coverage, ghost mass,
precision and recall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from omni_edu.data import ATTRIBUTES, OmniWorld, PromptSpec
from omni_edu.model.heads.output import PER_TOKEN_SIBLING
from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts import any_to_any as a2a
from omni_edu.parts.judges import Judges
from omni_edu.profiles import Profile
from omni_edu.train import History

DIRECTION = "text->image"
# Training prompts: each attribute left unnamed with probability 0.3 (a quarter of the
# captions still name all four), and one caption in ten empty: the unconditional branch
# that classifier-free guidance needs.
TRAIN_PROMPTS = PromptSpec.uniform(0.3, p_empty=0.1)
# Held-out prompts: "full" names every attribute; "open" leaves each free with
# probability 0.5 (prompts that happen to fix everything are set aside).
TEST_PROMPTS = {"full": PromptSpec(), "open": PromptSpec.uniform(0.5)}
FORMS = ("codes", "latents", "pixels")


@dataclass(frozen=True)
class Arm:
    """One contestant: a head kind, the token form it writes, and its sampler settings.

    ``form``: "codes" (the autoencoder with its quantiser), "latents" (without it) or
    "pixels" (no autoencoder). ``samplers``: name -> options for ``OmniLM.generate``; the
    first is the arm's default, fixed before the run. ``overrides``: further fields of
    the model's config (a DiT's width and blocks).
    """

    label: str
    head: str
    form: str
    samplers: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: {"": {}})
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"an arm's form is one of {FORMS}; got {self.form!r}.")
        if not self.samplers:
            raise ValueError(f"arm {self.label!r} needs at least one sampler setting.")


@dataclass
class RacePools:
    """Training pools and held-out prompt sets of every token form."""

    train: dict[str, a2a.AnyToAnyData]
    test: dict[str, dict[str, a2a.AnyToAnyData]]  # form -> prompt set -> pool
    indices: dict[str, list[int]]  # prompt set -> the held-out prompts scored


def race_pools(
    profile: Profile,
    tokenizer: torch.nn.Module | None,
    n_train: int,
    n_test: int,
    forms: Sequence[str] = FORMS,
) -> RacePools:
    """The same scenes and prompts in each token form of ``forms`` (codes, latents,
    pixels); ``tokenizer`` is lesson 03's autoencoder (unused for pixels alone)."""
    kwargs = {
        "codes": {"image_tokenizer": tokenizer},
        "latents": {"image_tokenizer": tokenizer, "latents": ("image",)},
        "pixels": {},
    }
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise ValueError(f"forms should come from {FORMS}; got {list(forms)}.")
    if tokenizer is None and set(forms) - {"pixels"}:
        raise ValueError("codes and latents come from an autoencoder: pass tokenizer=...")
    train_world = OmniWorld("train", seed=0, n_objects=1, profile=profile)
    test_world = OmniWorld("test", seed=0, n_objects=1, profile=profile)
    train = {
        form: a2a.AnyToAnyData(
            train_world, n_train, (DIRECTION,), prompts=TRAIN_PROMPTS, **kwargs[form]
        )
        for form in forms
    }
    test = {
        form: {
            name: a2a.AnyToAnyData(
                test_world, 2 * n_test, (DIRECTION,), prompts=spec, **kwargs[form]
            )
            for name, spec in TEST_PROMPTS.items()
        }
        for form in forms
    }
    indices = {}
    for name, pools in next(iter(test.values())).items():
        fixed = pools.fixed(DIRECTION)
        keep = range(len(fixed)) if name == "full" else (~fixed.all(1)).nonzero()[:, 0].tolist()
        indices[name] = list(keep)[:n_test]
    return RacePools(train, test, indices)


def arm_model(arm: Arm, pool: a2a.AnyToAnyData, seed: int) -> OmniLM:
    """A fresh OmniLM with ``arm``'s head for ``pool``, seeded by ``seed``, its loss
    weights measured (:func:`~omni_edu.parts.any_to_any.balanced_loss_weights`) for the arm's
    head or, for a span head, for the per-token head of the same token form."""
    sibling = PER_TOKEN_SIBLING.get(arm.head, arm.head)
    flow = a2a.FLOW_HEAD if sibling == "flow" else {}
    weights = a2a.balanced_loss_weights(pool, sibling, "linear", **flow)
    settings = {**flow, **arm.overrides}  # the arm's own settings win (a DiT's width, blocks)
    config = a2a.model_config(pool, weights, None, sibling, "linear", seed, **settings)
    return OmniLM(replace(config, image_head=arm.head))


def train_arm(
    arm: Arm,
    pool: a2a.AnyToAnyData,
    steps: int,
    seed: int,
    batch_size: int,
    eval_fn=None,
    eval_every=0,
) -> tuple[OmniLM, History]:
    """A fresh OmniLM with ``arm``'s head (:func:`arm_model`), trained on text->image for
    ``steps`` updates."""
    model = arm_model(arm, pool, seed)
    history = a2a.train_stage(
        model,
        pool,
        {DIRECTION: 1.0},
        steps,
        seed=seed,
        batch_size=batch_size,
        eval_fn=eval_fn,
        eval_every=eval_every,
        progress=True,
    )
    return model, history


def run_race(
    pools: RacePools,
    judges: Judges,
    arms: Sequence[Arm],
    steps: int,
    seeds: Sequence[int],
    k: int,
    batch_size: int,
) -> tuple[list[dict], dict]:
    """Train every arm for every seed and score every sampler on every prompt set.

    Returns ``rows`` (one per arm, sampler, prompt set and seed: the metric means) and
    ``per_prompt`` (``(arm, sampler, set, seed) -> {metric: (n,) per-prompt values}``, for
    paired intervals) plus the trained models under ``per_prompt["models"]``.
    """
    rows, per_prompt, models = [], {}, {}
    for seed in seeds:
        for arm in arms:
            model, _ = train_arm(arm, pools.train[arm.form], steps, seed, batch_size)
            models[arm.label, seed] = model
            for name, indices in pools.indices.items():
                pool = pools.test[arm.form][name]
                for sampler, options in tqdm(
                    arm.samplers.items(), desc=f"{arm.label}, {name}", leave=False
                ):
                    metrics = a2a.sample_scores(
                        model, pool, judges, DIRECTION, indices, k, seed, **options
                    )
                    per_prompt[arm.label, sampler, name, seed] = {
                        m: v.per_prompt for m, v in metrics.items()
                    }
                    rows.append(
                        {
                            "arm": arm.label,
                            "sampler": sampler,
                            "prompts": name,
                            "seed": seed,
                            **{m: v.mean for m, v in metrics.items()},
                        }
                    )
    per_prompt["models"] = models
    return rows, per_prompt


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not beaten on both coordinates (higher x and higher y are
    better), sorted by x: the front a learner can pick from by turning a knob."""
    front = [
        i
        for i, (x, y) in enumerate(points)
        if not any(ox >= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)
    ]
    return sorted(front, key=lambda i: points[i][0])


def fixed_share(pool: a2a.AnyToAnyData, indices: Sequence[int]) -> dict[str, float]:
    """How often each attribute is fixed among prompts ``indices``."""
    fixed = pool.fixed(DIRECTION)[indices].float().mean(0)
    return {a: float(fixed[k]) for k, a in enumerate(ATTRIBUTES)}
