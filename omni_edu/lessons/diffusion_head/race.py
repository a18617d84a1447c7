"""Lesson 04's race: how should OmniLM write a picture when the prompt leaves a choice?

The same decoder, data, batches and budget draw pictures from captions with five arms,
raced twice: on captions that name every attribute (the control: a picture given its
caption is nearly one picture) and on captions that leave some free ("a small circle":
any colour, anywhere). Two questions, each with its own pair of arms:

* *which head?* on pixel patches: ``linear regression`` and ``MLP regression`` (the flow
  head's own network, trained with mean squared error) against the ``flow head`` (steps,
  temperature and classifier-free guidance to choose);
* *which token?* through **one** autoencoder, lesson 03's, with and without its
  quantiser: ``VQ codes`` (a softmax, greedy or sampled) against ``flow head, latents``
  (the same flow head on the autoencoder's continuous vectors), so "codes against
  latents" compares token kinds behind the same decoder, not a lossy tokenizer against
  raw pixels.

The heads race on pixels because the autoencoder is lossy at the course's sizes (its
reconstructions are the ceiling of both of its arms, and lesson 04 prints it): on its
outputs no head could show what it adds.

Each arm draws K pictures per held-out prompt under each of its sampler settings, and
:func:`omni_edu.judges.metrics.sample_metrics` scores them: fidelity, validity, coverage,
ghost mass, precision and recall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from omni_edu import any_to_any as a2a
from omni_edu.data import ATTRIBUTES, OmniWorld, PromptSpec
from omni_edu.judges import Judges
from omni_edu.model.omni_lm import OmniLM
from omni_edu.profiles import Profile

DIRECTION = "text->image"
# Training prompts: each attribute left unnamed with probability 0.3 (a quarter of the
# captions still name all four), and one caption in ten empty: the unconditional branch
# that classifier-free guidance needs.
TRAIN_PROMPTS = PromptSpec.uniform(0.3, p_empty=0.1)
# Held-out prompts: "full" names every attribute; "open" leaves each free with
# probability 0.5 (prompts that happen to fix everything are set aside).
TEST_PROMPTS = {"full": PromptSpec(), "open": PromptSpec.uniform(0.5)}
# Optimizer steps per arm, per profile (gpu-dry cuts them through profile.budget).
STEPS = {"ci": 900, "cpu": 1500, "gpu": 3000}


@dataclass(frozen=True)
class Arm:
    """One contestant: a head kind, the token form it writes, and its sampler settings.

    ``form``: "codes" (the autoencoder with its quantiser), "latents" (without it) or
    "pixels" (no autoencoder). ``samplers``: name -> options for ``OmniLM.generate``; the
    first is the arm's default, fixed before the run.
    """

    label: str
    head: str
    form: str
    samplers: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: {"": {}})


def flow_samplers(steps: Sequence[int], temperatures: Sequence[float], guidance: Sequence[float]):
    """The flow head's settings: the default (8 steps, temperature 1, no guidance) first,
    then one knob at a time."""
    default = {"steps": 8, "temperature": 1.0, "guidance": 1.0}
    out = {"8 steps": default}
    out |= {f"{s} steps": {**default, "steps": s} for s in steps if s != 8}
    out |= {f"T={t}": {**default, "temperature": t} for t in temperatures if t != 1.0}
    out |= {f"CFG {w}": {**default, "guidance": w} for w in guidance if w != 1.0}
    return out


ARMS = (
    Arm("linear regression", "linear", "pixels"),
    Arm("MLP regression", "regression", "pixels"),
    Arm("flow head", "flow", "pixels", flow_samplers((1, 4, 16), (0.7,), (2.0,))),
    Arm(
        "VQ codes", "codes", "codes", {"greedy": {"temperature": 0.0}, "T=1": {"temperature": 1.0}}
    ),
    Arm("flow head, latents", "flow", "latents", {"8 steps": {"steps": 8}}),
)


@dataclass
class RacePools:
    """Training pools and held-out prompt sets of every token form."""

    train: dict[str, a2a.AnyToAnyData]
    test: dict[str, dict[str, a2a.AnyToAnyData]]  # form -> prompt set -> pool
    indices: dict[str, list[int]]  # prompt set -> the held-out prompts scored


def race_pools(
    profile: Profile, tokenizer: torch.nn.Module, n_train: int, n_test: int
) -> RacePools:
    """The same scenes and prompts in each token form (codes, latents, pixels)."""
    forms = {
        "codes": {"image_tokenizer": tokenizer},
        "latents": {"image_tokenizer": tokenizer, "latents": ("image",)},
        "pixels": {},
    }
    train_world = OmniWorld("train", seed=0, n_objects=1, profile=profile)
    test_world = OmniWorld("test", seed=0, n_objects=1, profile=profile)
    train = {
        form: a2a.AnyToAnyData(train_world, n_train, (DIRECTION,), prompts=TRAIN_PROMPTS, **kw)
        for form, kw in forms.items()
    }
    test = {
        form: {
            name: a2a.AnyToAnyData(test_world, 2 * n_test, (DIRECTION,), prompts=spec, **kw)
            for name, spec in TEST_PROMPTS.items()
        }
        for form, kw in forms.items()
    }
    indices = {}
    for name, pools in next(iter(test.values())).items():
        fixed = pools.fixed(DIRECTION)
        keep = range(len(fixed)) if name == "full" else (~fixed.all(1)).nonzero()[:, 0].tolist()
        indices[name] = list(keep)[:n_test]
    return RacePools(train, test, indices)


def train_arm(
    arm: Arm,
    pool: a2a.AnyToAnyData,
    steps: int,
    seed: int,
    batch_size: int,
    eval_fn=None,
    eval_every=0,
) -> tuple[OmniLM, a2a.History]:
    """A fresh OmniLM with ``arm``'s head (same seed, same initial decoder as the other
    arms), trained on text->image for ``steps`` updates with measured loss weights."""
    overrides = a2a.FLOW_HEAD if arm.head == "flow" else {}
    weights = a2a.balanced_loss_weights(pool, arm.head, "linear", **overrides)
    model = a2a.build_model(pool, seed, weights, None, arm.head, "linear", **overrides)
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
