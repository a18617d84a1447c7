"""Does a pipeline lose information at its hand-off? Lesson 06's recipe, over several seeds.

The course's any-to-any model can turn a picture into a sound two ways: **natively**
(``image->audio``, one pass) or as a **cascade** (``image->text``, then ``text->audio``
reading its own caption: two passes through text, the same weights). The sound judge reads
the four attributes back from each sound. Whether the cascade loses more than the native
direction is a property of the *recipe*, not of one trained model, so :func:`handoff_run`
trains lesson 06's recipe with several seeds (:func:`seed_model`, cached in the course
cache like the capstone, at the budget :data:`HANDOFF` gives per profile) and
:func:`seed_level` puts the interval at the seed level: one paired difference per seed
(native minus cascade, averaged over the test scenes), a t interval over the seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from omni_edu.lessons.cost_and_serving.real_run import with_generated_captions
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import Profile, get_profile
from omni_edu.stats import t_interval

# Per profile: the seeds and the base steps each seed trains (lesson 06's recipe has 600 in
# ci, 400 in cpu). A seed trains 2 x base unified steps and 2/3 x base instruct steps. In ci,
# 300 is the smallest budget measured to give sounds above chance (at 150 a seed's sounds
# scored 0.25-0.33 against a chance of 0.29; at 300, 0.71); a seed trains in about a minute
# on a 2-core CPU and is cached after. In cpu, 130 was too few: the second pass alone
# (text->audio) scored 0.323 against a blind 0.310 over 3 seeds, so no loss at the hand-off
# could show; cpu trains each seed as long as ci does.
HANDOFF: dict[str, tuple[tuple[int, ...], int]] = {
    "ci": ((0, 1, 2), 300),
    "cpu": ((0, 1, 2), 300),
    "gpu": ((0, 1, 2, 3, 4), 0),  # 0: the recipe's own budget
}


def handoff_plan(profile: Profile | str | None = None) -> tuple[tuple[int, ...], int]:
    """``(seeds, base_steps)`` of the hand-off check in ``profile`` (dry runs: 2 seeds, 3
    steps)."""
    p = profile if isinstance(profile, Profile) else get_profile(profile)
    seeds, base = HANDOFF[p.name]
    base = base or a2a.capstone_recipe(p).base_steps
    return tuple(seeds[: p.budget(len(seeds), dry=2)]), p.budget(base, dry=3)


def seed_model(seed: int, base_steps: int, profile: Profile | str | None = None, verbose=True):
    """Lesson 06's recipe with ``seed`` and ``base_steps``, from the course cache or trained.

    Returns a :class:`~omni_edu.parts.course_cache.CachedPart` (``model`` on the CPU). The name in
    the cache carries the seed and the budget, so the capstone itself is never replaced.
    """
    from omni_edu.parts.course_cache import load_or_train

    p = profile if isinstance(profile, Profile) else get_profile(profile)
    recipe = replace(a2a.capstone_recipe(p), seed=seed, base_steps=base_steps)
    data, _ = a2a.capstone_data(recipe, p)
    heads = (recipe.image_head, recipe.audio_head)
    config = a2a.model_config(data, None, p, *heads, recipe.seed, **recipe.model_settings)

    def build():
        from omni_edu.model.omni_lm import OmniLM

        torch.manual_seed(recipe.seed)
        return OmniLM(config)

    def train(model) -> dict:
        weights = a2a.balanced_loss_weights(data, *heads, **recipe.model_settings)
        model.config.loss_weights = weights
        return {"losses": a2a.train_recipe(model, data, recipe), "loss_weights": weights}

    settings = {"recipe": asdict(recipe), "model": asdict(config), "version": 2}
    name = f"handoff_seed{seed}_base{base_steps}"
    part = load_or_train(name, build, train, settings, p, False, verbose)
    part.model.config.loss_weights = dict(part.extra["loss_weights"])
    return part


@dataclass
class SeedScores:
    """One seed's per-scene attribute accuracy of the sounds (``(scenes,)`` tensors): spoken
    from the picture (``native``), through its own caption (``cascade``), from the true
    caption (``from_truth``); how right its captions were (``captions``); and a measured
    blind baseline scored the same way (``shuffled``: the native sounds judged against
    other scenes' attributes, what a system that ignores its input scores)."""

    seed: int
    native: torch.Tensor
    cascade: torch.Tensor
    from_truth: torch.Tensor
    captions: torch.Tensor
    shuffled: torch.Tensor

    @property
    def difference(self) -> float:
        """Native minus cascade, averaged over the scenes."""
        return float((self.native - self.cascade).mean())


def seed_scores(model, test, judges, scenes: int, steps: int, seed: int) -> SeedScores:
    """Score one trained model's native and cascaded sounds on the first ``scenes`` test
    scenes (``steps``: the flow head's Euler steps)."""
    model.eval()
    everyone = list(range(min(scenes, len(test))))
    spoken = a2a.generate(model, test, "image->audio", everyone, steps=steps)
    described = a2a.generate(model, test, "image->text", everyone)
    retold = with_generated_captions(test, described)
    from_words = a2a.generate(model, retold, "text->audio", everyone, steps=steps)
    from_truth = a2a.generate(model, test, "text->audio", everyone, steps=steps)

    def score(g):
        return a2a.score_generations(g, test, judges, per_scene=True)

    others = torch.randperm(len(everyone), generator=torch.Generator().manual_seed(seed))
    elsewhere = replace(spoken, indices=[everyone[k] for k in others.tolist()])
    return SeedScores(
        seed,
        score(spoken),
        score(from_words),
        score(from_truth),
        score(described),
        score(elsewhere),
    )


@dataclass
class SeedLevel:
    """Native minus cascade over seeds: ``differences`` (one per seed), their ``mean`` and a
    95 % t interval ``(low, high)`` over the seeds (infinite with one seed)."""

    differences: list[float]
    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def seed_level(values: list[float]) -> SeedLevel:
    """Mean of one number per seed with its 95 % t interval over the seeds
    (:func:`omni_edu.stats.t_interval`)."""
    mean, low, high = t_interval(values)
    return SeedLevel([float(v) for v in values], mean, low, high)


def handoff_run(
    judges,
    profile: Profile | str | None = None,
    scenes: int | None = None,
    progress: bool = True,
) -> list[SeedScores]:
    """Every seed of :func:`handoff_plan`: load or train it, then score it
    (:func:`seed_scores`) on the capstone's test scenes. ``scenes`` defaults to all of them."""
    from tqdm.auto import tqdm

    p = profile if isinstance(profile, Profile) else get_profile(profile)
    seeds, base = handoff_plan(p)
    _, test = a2a.capstone_data(a2a.capstone_recipe(p), p)
    scenes = len(test) if scenes is None else scenes
    out = []
    for seed in tqdm(seeds, desc="hand-off seeds", disable=not progress):
        model = seed_model(seed, base, p, verbose=progress).model
        steps = model.config.flow_steps
        out.append(seed_scores(model, test, judges, scenes, steps, seed))
    return out
