"""Lesson 06b: does an unbalanced model treat pictures and sounds as secondary *inputs*?

Chapter 001: "If training data is not carefully balanced, the model can become
text-dominant, treating visual and audio inputs as secondary signals rather than
first-class modalities." The words are about *inputs*: how much the model's answers depend
on the picture or the sound it is given. So each variant is scored on the four directions
that read a picture or a sound (image -> text, audio -> text, image -> audio, audio -> image)
twice: with each scene's own input, and with the input of another scene (a fixed
derangement; the caption, the task and the scene scored against are unchanged). The drop
is the model's **media use**: zero for a model that ignores its media input, and as large
as its accuracy above what a blind answer gets for one that reads it.

Variants, each an any-to-any model with linear heads trained like the capstone's unified
stage at the same budget:

* **balanced**: the measured loss weights (:func:`~omni_edu.parts.any_to_any.balanced_loss_weights`)
  and every direction equally often;
* **equal loss weights**: the three losses simply added (text's cross-entropy, on a scale
  some hundred times larger than a patch's squared error, takes the gradient);
* **text-heavy mix**: the measured weights, with image -> text and audio -> text drawn four
  times as often as each direction that writes a picture or a sound.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from omni_edu.parts import any_to_any as a2a
from omni_edu.parts.judges import Judges
from omni_edu.profiles import Profile
from omni_edu.stats import bootstrap_difference

MEDIA_INPUT = ("image->text", "audio->text", "image->audio", "audio->image")
EQUAL = {"text": 1.0, "image": 1.0, "audio": 1.0}
EVERY = dict.fromkeys(a2a.DIRECTIONS, 1.0)
TEXT_HEAVY = {**EVERY, "image->text": 4.0, "audio->text": 4.0}
VARIANTS = ("balanced", "equal loss weights", "text-heavy mix")


def swapped_inputs(data: a2a.AnyToAnyData, seed: int = 0) -> a2a.AnyToAnyData:
    """``data`` with every prompt picture and sound taken from another scene (a fixed
    derangement); captions, tasks and the scenes that outputs are scored against stay."""
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    order = torch.randperm(n, generator=g)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(int(torch.randint(1, n, (1,), generator=g)))
    clone = copy.copy(data)
    clone.prompt_items = {name: items[partner] for name, items in data.prompt_items.items()}
    clone._pool = None
    return clone


def variant_setting(
    name: str, balanced_weights: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """The (data mix, loss weights) of variant ``name``."""
    if name == "balanced":
        return dict(EVERY), dict(balanced_weights)
    if name == "equal loss weights":
        return dict(EVERY), dict(EQUAL)
    if name == "text-heavy mix":
        return dict(TEXT_HEAVY), dict(balanced_weights)
    raise ValueError(f"variant should be one of {VARIANTS}; got {name!r}.")


@dataclass
class DominanceRun:
    """Per-scene scores of every variant and seed: ``real[variant, seed][direction]`` with
    each scene's own inputs (all six directions), ``swapped[variant, seed][direction]``
    with another scene's picture or sound (the four media-input directions)."""

    real: dict[tuple[str, int], dict[str, Tensor]]
    swapped: dict[tuple[str, int], dict[str, Tensor]]
    seeds: list[int]
    steps: int
    scenes: int
    weights: dict[str, float]

    def use(self, variant: str, seed: int, directions=MEDIA_INPUT) -> Tensor:
        """Media use per scene ``(n,)``: the mean over ``directions`` of own-input score
        minus swapped-input score."""
        drops = [self.real[variant, seed][d] - self.swapped[variant, seed][d] for d in directions]
        return torch.stack(drops).mean(0)

    def pooled_use(self, variant: str, directions=MEDIA_INPUT) -> Tensor:
        """:meth:`use` of every seed, one after another (paired with other variants by
        seed and scene)."""
        return torch.cat([self.use(variant, s, directions) for s in self.seeds])

    def mean(self, variant: str, direction: str, swapped: bool = False) -> float:
        table = self.swapped if swapped else self.real
        return float(torch.stack([table[variant, s][direction] for s in self.seeds]).mean())

    def against_balanced(self, variant: str, directions=MEDIA_INPUT) -> tuple[float, float, float]:
        """Media use of ``variant`` minus the balanced model's, paired over seeds and
        scenes: (difference, low, high) with a 95 % bootstrap interval."""
        return bootstrap_difference(
            self.pooled_use(variant, directions), self.pooled_use("balanced", directions)
        )

    def per_seed(self, variant: str) -> list[float]:
        """Media use minus the balanced model's, one number per seed."""
        return [float((self.use(variant, s) - self.use("balanced", s)).mean()) for s in self.seeds]


def run_dominance(
    train: a2a.AnyToAnyData,
    test: a2a.AnyToAnyData,
    judges: Judges,
    base_steps: int,
    seeds: list[int],
    n: int,
    batch_size: int,
    profile: Profile | None = None,
    progress: bool = True,
) -> DominanceRun:
    """Train every variant for every seed (the capstone's unified stage, ``2 * base_steps``
    updates, linear heads) and score it on the first ``n`` test scenes with own and
    swapped inputs."""
    weights = a2a.balanced_loss_weights(train)
    steps = 2 * base_steps
    swapped_test = swapped_inputs(test)
    real, swapped = {}, {}
    bar = tqdm(total=len(VARIANTS) * len(seeds), desc="text dominance", disable=not progress)
    for seed in seeds:
        for name in VARIANTS:
            mix, w = variant_setting(name, weights)
            model = a2a.build_model(train, seed=seed, loss_weights=w, profile=profile)
            a2a.train_stage(
                model, train, mix, steps, seed=seed, batch_size=batch_size, progress=False
            )
            real[name, seed] = a2a.score_directions(model, test, judges, n=n, per_scene=True)
            swapped[name, seed] = a2a.score_directions(
                model, swapped_test, judges, n=n, directions=MEDIA_INPUT, per_scene=True
            )
            bar.update(1)
    bar.close()
    return DominanceRun(real, swapped, list(seeds), steps, min(n, len(test)), weights)
