"""Metrics of a *distribution*: K samples per prompt, scored against the data's own.

Attribute accuracy rewards the mean: for a prompt that names every attribute, the best
picture is nearly one picture, and a blurry average still reads right. For a prompt that
leaves something free (:mod:`omni_edu.data.prompts`), a good sampler draws *different*
clean objects, as often as the data does. So, for each held-out prompt, draw K samples
(say 8) and measure:

* :func:`fidelity` - the judge's accuracy on the attributes the prompt fixes;
* :func:`validity` - the share of samples that are one clean object: the judge reads
  every attribute confidently, and a picture's object has a palette colour, a sound's
  tone sounds in one time slot;
* :func:`coverage` - per free attribute, the total-variation distance between the
  samples' readings and the data's conditional distribution, and how many distinct
  values the K samples take. K is small, so even real samples are not at 0:
  :func:`coverage_reference` measures where a perfect sampler lands;
* :func:`ghost_mass` - (prompts without a position) the share of the object's energy
  outside the brightest cell of the 2x2 grid (pictures) or the loudest of the four time
  slots (sounds): regression's faint copies;
* :func:`precision_recall` - Kynkäänniemi et al. (2019): the share of samples inside the
  real data's k-nearest-neighbour manifold in the judge's feature space (precision), and
  of real data inside the samples' manifold (recall), instead of one Fréchet distance.

Every function returns a :class:`Metric`: values per prompt (NaN where it does not
apply; bootstrap over prompts for intervals) and their mean. :func:`sample_metrics`
computes all of them, with the references, in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from omni_edu.data import ATTRIBUTES, VALUES, OmniWorld, conditional_distributions
from omni_edu.data.prompts import single_prompts
from omni_edu.data.render import BACKGROUND, RGB
from omni_edu.parts.judges.classifiers import AttributeClassifier, AudioAttributeClassifier

# The judge is confident when its top class has at least this probability. Calibrated on
# 2000 real test pictures and sounds in the ci profile (judges() of the course cache): the
# picture judge's shape head is the least sure (1% of real pictures below 0.45, 10% below
# 0.64), so 0.9 for every attribute would call 29% of real pictures invalid; at these
# thresholds 96% of real pictures and all real sounds are confident.
CONFIDENCE = {"shape": 0.5, "colour": 0.9, "size": 0.9, "position": 0.9}
# Object pixels rise at least this far above the background (10 standard deviations of
# the pixel noise; the faintest palette colour, green, rises 0.67).
OBJECT_LEVEL = 0.3
# The object's colour is the mean of its core: pixels at least this share of the
# brightest one's rise (full coverage, not the anti-aliased rim).
CORE = 0.85
# A colour is a palette colour within this distance (RGB, Euclidean). Calibrated on real
# test pictures: 99% lie within 0.13 at 16x16 (ci) and 0.09 at 32x32 (gpu); the palette's
# closest pair is 0.47 apart; 50/50 blends of two real pictures pass only when both
# objects share a colour (4% of blends).
PALETTE_DISTANCE = 0.15
# Energy below this rise over the background is pixel noise (3 standard deviations).
GHOST_FLOOR = 0.1
# Sounds: log-mel silence is -1. Energy is the rise above silence less SOUND_FLOOR; a
# sound is there when something rises SOUND_LEVEL (real tones rise 1.36 or more), and it
# is one tone in one slot when at most SLOT_SPREAD of its energy lies outside its loudest
# time slot (real sounds: 0; 50/50 blends of two real sounds of different scenes: 24%
# pass, and with the confidence test 10%).
SILENCE, SOUND_FLOOR, SOUND_LEVEL, SLOT_SPREAD = -1.0, 0.2, 0.5, 0.1
# Neighbours that set each point's radius in precision and recall (the paper's k).
NEIGHBOURS = 3


@dataclass
class Metric:
    """One metric over prompts.

    per_prompt: ``(n_prompts,)`` float, NaN where the metric does not apply to a prompt
    (e.g. fidelity of a prompt that fixes nothing). parts: per-prompt values of its parts
    (per attribute, and ``"palette"`` for picture validity), each ``(n_prompts,)``.
    distinct: for coverage, ``{attribute: (n_prompts,)}`` distinct values among the K
    samples (NaN where the attribute is fixed).
    """

    name: str
    per_prompt: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    distinct: dict[str, Tensor] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        """Mean over the prompts it applies to (NaN when none)."""
        kept = self.per_prompt[~self.per_prompt.isnan()]
        return kept.mean().item() if len(kept) else math.nan

    @property
    def n(self) -> int:
        """Prompts it applies to."""
        return int((~self.per_prompt.isnan()).sum())

    def __repr__(self) -> str:
        return f"Metric({self.name}: mean {self.mean:.3f} over {self.n} prompts)"


@dataclass
class Readings:
    """What a judge reads from samples ``(n_prompts, K, ...)``.

    probs: ``{attribute: (n_prompts, K, n_values)}`` softmax probabilities; features:
    ``(n_prompts, K, hidden)`` what its heads read (the space of precision and recall).
    """

    probs: dict[str, Tensor]
    features: Tensor

    @property
    def predicted(self) -> Tensor:
        """Top class per attribute: ``(n_prompts, K, 4)`` int64."""
        return torch.stack([self.probs[a].argmax(-1) for a in ATTRIBUTES], dim=-1)

    @property
    def confidence(self) -> Tensor:
        """Top class probability per attribute: ``(n_prompts, K, 4)``."""
        return torch.stack([self.probs[a].amax(-1) for a in ATTRIBUTES], dim=-1)


def _is_picture_judge(judge: nn.Module) -> bool:
    if isinstance(judge, AttributeClassifier):
        return True
    if isinstance(judge, AudioAttributeClassifier):
        return False
    raise TypeError(
        f"judge should be a picture judge (AttributeClassifier) or a sound judge "
        f"(AudioAttributeClassifier), e.g. judges().model.image; got {type(judge).__name__}"
    )


def _check_samples(judge: nn.Module, samples: Tensor) -> None:
    if _is_picture_judge(judge):
        if samples.dim() != 5 or samples.shape[2] != 3:
            raise ValueError(
                f"samples should be pictures (n_prompts, K, 3, H, W) for the picture judge; "
                f"got {tuple(samples.shape)}. One sample per prompt? Use samples[:, None]."
            )
    elif samples.dim() != 4:
        raise ValueError(
            f"samples should be log-mels (n_prompts, K, frames, n_mels) for the sound judge; "
            f"got {tuple(samples.shape)}. One sample per prompt? Use samples[:, None]."
        )


@torch.no_grad()
def read(judge: nn.Module, samples: Tensor) -> Readings:
    """Run ``judge`` over samples ``(n_prompts, K, 3, H, W)`` (picture judge) or
    ``(n_prompts, K, frames, n_mels)`` (sound judge), in chunks on the judge's device."""
    _check_samples(judge, samples)
    judge.eval()
    device = next(judge.parameters()).device
    features, probs = [], {a: [] for a in ATTRIBUTES}
    for chunk in samples.flatten(0, 1).split(512):
        h = judge.embed(chunk.to(device))
        features.append(h.cpu())
        for a in ATTRIBUTES:
            probs[a].append(judge.heads[a](h).softmax(-1).cpu())
    shape = samples.shape[:2]
    return Readings(
        {a: torch.cat(p).unflatten(0, shape) for a, p in probs.items()},
        torch.cat(features).unflatten(0, shape),
    )


def _prompts(samples: Tensor, attributes: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor]:
    attributes, fixed = single_prompts(attributes, fixed)
    if len(attributes) != len(samples):
        raise ValueError(
            f"samples are for {len(samples)} prompts but attributes has {len(attributes)} rows"
        )
    return attributes, fixed


def fidelity(judge: nn.Module, samples: Tensor, attributes: Tensor, fixed: Tensor) -> Metric:
    """Accuracy of ``judge`` on the attributes each prompt fixes.

    samples: ``(n_prompts, K, 3, H, W)`` pictures or ``(n_prompts, K, frames, n_mels)``
    log-mels; attributes: ``(n_prompts, 4)`` (or ``(n_prompts, 1, 4)``) the prompt's
    scene; fixed: the same shape, bool. Per prompt: the share of (sample, fixed
    attribute) pairs read right; NaN for prompts that fix nothing. parts: per attribute.
    """
    attributes, fixed = _prompts(samples, attributes, fixed)
    right = (read(judge, samples).predicted == attributes[:, None]).float()  # (n, K, 4)
    weight = fixed[:, None].float().expand_as(right)
    per_prompt = (right * weight).sum((1, 2)) / weight.sum((1, 2))  # 0/0 -> NaN
    parts = {
        a: torch.where(fixed[:, k], right[:, :, k].mean(1), math.nan)
        for k, a in enumerate(ATTRIBUTES)
    }
    return Metric("fidelity", per_prompt, parts)


@torch.no_grad()
def object_colour_distance(images: Tensor) -> Tensor:
    """Distance (RGB) from each picture's object colour to the nearest palette colour.

    images: ``(n, 3, H, W)`` in [0, 1]. The object's colour is the mean of its core
    pixels (at least :data:`CORE` of the brightest pixel's rise above the background).
    Returns ``(n,)`` on the CPU; ``inf`` where nothing rises :data:`OBJECT_LEVEL` above
    the background (no object at all).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images should be (n, 3, H, W); got {tuple(images.shape)}")
    rise = (images - BACKGROUND).amax(dim=1)  # (n, H, W)
    peak = rise.flatten(1).amax(dim=1)
    core = (rise >= CORE * peak[:, None, None]).float()[:, None]
    colour = (images * core).sum((2, 3)) / core.sum((2, 3))
    palette = RGB.to(images.device, torch.float64)
    distance = torch.cdist(colour.double(), palette).amin(dim=1).float()
    return torch.where(peak > OBJECT_LEVEL, distance, math.inf).cpu()


def validity(
    judge: nn.Module, samples: Tensor, confidence: dict[str, float] | None = None
) -> Metric:
    """Share of each prompt's samples that are one clean object.

    samples: ``(n_prompts, K, 3, H, W)`` pictures or ``(n_prompts, K, frames, n_mels)``
    log-mels. A sample is valid when the judge's top probability reaches
    ``confidence[attribute]`` (default :data:`CONFIDENCE`) for every attribute and it is
    one clean object: a picture's object colour lies within :data:`PALETTE_DISTANCE` of
    a palette colour (:func:`object_colour_distance`); a sound rises :data:`SOUND_LEVEL`
    above silence somewhere, and at most :data:`SLOT_SPREAD` of its energy lies outside
    its loudest time slot (:func:`ghost_mass_of`). parts: the share confident per
    attribute, and the share clean (``"palette"`` for pictures, ``"one_slot"`` for sounds).
    """
    thresholds = {**CONFIDENCE, **(confidence or {})}
    readings = read(judge, samples)
    sure = readings.confidence >= torch.tensor([thresholds[a] for a in ATTRIBUTES])
    valid = sure.all(dim=-1)
    parts = {a: sure[:, :, k].float().mean(1) for k, a in enumerate(ATTRIBUTES)}
    flat = samples.flatten(0, 1)
    if _is_picture_judge(judge):
        name, clean = "palette", object_colour_distance(flat) <= PALETTE_DISTANCE
    else:
        audible = (flat - SILENCE).flatten(1).amax(dim=1).cpu() >= SOUND_LEVEL
        name, clean = "one_slot", audible & (ghost_mass_of(flat) <= SLOT_SPREAD)
    clean = clean.unflatten(0, samples.shape[:2])
    parts[name] = clean.float().mean(1)
    return Metric("validity", (valid & clean).float().mean(1), parts)


def coverage(
    judge: nn.Module, samples: Tensor, attributes: Tensor, fixed: Tensor, split: str
) -> Metric:
    """How well each prompt's K samples spread over what the prompt leaves free.

    samples, attributes, fixed: as in :func:`fidelity`; split: whose shape-colour pairs
    the data's conditional distribution keeps ("test" for prompts from the test split).
    For each free attribute: the total-variation distance between the distribution of
    the judge's readings of the K samples and the data's conditional distribution
    (0 = the same, 1 = disjoint; K copies of one value score 1 - p(that value)), and
    the number of distinct values read (``distinct``). Per prompt: the mean distance
    over its free attributes; NaN for prompts that fix everything. Compare with
    :func:`coverage_reference` (real samples, same K): K is small, so they are not at 0.
    """
    attributes, fixed = _prompts(samples, attributes, fixed)
    predicted = read(judge, samples).predicted  # (n, K, 4)
    target = conditional_distributions(split, attributes, fixed)
    parts, distinct = {}, {}
    for k, a in enumerate(ATTRIBUTES):
        one_hot = torch.nn.functional.one_hot(predicted[:, :, k], len(VALUES[a])).float()
        counts = one_hot.sum(dim=1)  # (n, n_values)
        tv = 0.5 * (counts / counts.sum(1, keepdim=True) - target[a]).abs().sum(dim=1)
        parts[a] = torch.where(fixed[:, k], math.nan, tv)
        distinct[a] = torch.where(fixed[:, k], math.nan, (counts > 0).sum(dim=1).float())
    per_prompt = torch.stack(list(parts.values()), dim=1).nanmean(dim=1)
    return Metric("coverage_tv", per_prompt, parts, distinct)


def conditional_samples(
    world: OmniWorld,
    attributes: Tensor,
    fixed: Tensor,
    k: int,
    modality: str = "image",
    seed: int = 0,
) -> Tensor:
    """Real samples from the data's conditional distribution: what a perfect sampler draws.

    attributes, fixed: ``(n_prompts, 4)``. Returns pictures ``(n_prompts, k, 3, H, W)``
    (modality "image") or log-mels ``(n_prompts, k, frames, n_mels)`` ("audio") drawn by
    ``world.sample_given`` (its split and profile).
    """
    if modality not in ("image", "audio"):
        raise ValueError(f"modality should be 'image' or 'audio'; got {modality!r}")
    batch = world.sample_given(attributes, fixed, k, seed=seed)
    data = batch.images if modality == "image" else batch.mels
    return data.unflatten(0, (len(data) // k, k))


def coverage_reference(
    judge: nn.Module,
    world: OmniWorld,
    attributes: Tensor,
    fixed: Tensor,
    k: int,
    seed: int = 0,
) -> Metric:
    """:func:`coverage` of real samples drawn from the data's conditional distribution
    with the same prompts and K: the distance a perfect sampler reaches (measured, so it
    includes the judge's own errors). ``world`` gives the split and the profile."""
    modality = "image" if _is_picture_judge(judge) else "audio"
    real = conditional_samples(world, attributes, fixed, k, modality, seed)
    return _reference(judge, real, attributes, fixed, world.split)


def _reference(judge: nn.Module, real: Tensor, attributes, fixed, split: str) -> Metric:
    reference = coverage(judge, real, attributes, fixed, split)
    reference.name = "coverage_tv_reference"
    return reference


@torch.no_grad()
def ghost_mass_of(samples: Tensor) -> Tensor:
    """Share of each sample's energy outside its strongest quarter: ``(n,)``.

    samples: pictures ``(n, 3, H, W)`` (quarters: the cells of the 2x2 grid; energy: the
    brightest channel's rise above the background less :data:`GHOST_FLOOR`) or log-mels
    ``(n, frames, n_mels)`` (quarters: the four time slots; energy: the rise above
    silence less :data:`SOUND_FLOOR`). 0 for one object in one cell or slot, 0.5 for two
    equal copies, 0.75 for four. Nothing drawn (no energy) gives 0: validity, not this,
    catches a blank picture or a silent sound.
    """
    if samples.dim() == 4 and samples.shape[1] == 3 and samples.shape[-1] % 2 == 0:
        n, _, h, w = samples.shape
        energy = ((samples - BACKGROUND).amax(dim=1) - GHOST_FLOOR).clamp(min=0)
        quarters = energy.reshape(n, 2, h // 2, 2, w // 2).sum(dim=(2, 4)).flatten(1)
    elif samples.dim() == 3 and samples.shape[1] >= 4:
        n, frames, _ = samples.shape
        energy = (samples - SILENCE - SOUND_FLOOR).clamp(min=0).sum(dim=2)[:, : frames // 4 * 4]
        quarters = energy.reshape(n, 4, -1).sum(dim=2)
    else:
        raise ValueError(
            f"samples should be pictures (n, 3, H, W) with even H, W or log-mels "
            f"(n, frames >= 4, n_mels); got {tuple(samples.shape)}"
        )
    total = quarters.sum(dim=1)
    return torch.where(total > 0, 1 - quarters.amax(dim=1) / total.clamp(min=1e-12), 0.0).cpu()


def ghost_mass(samples: Tensor, fixed: Tensor) -> Metric:
    """Mean :func:`ghost_mass_of` over each prompt's K samples, for prompts that leave
    the position free (NaN for the others).

    samples: pictures ``(n_prompts, K, 3, H, W)`` or log-mels ``(n_prompts, K, frames,
    n_mels)``; fixed: ``(n_prompts, 4)`` bool (or ``(n_prompts, 1, 4)``).
    """
    if samples.dim() not in (4, 5):
        raise ValueError(
            f"samples should be (n_prompts, K, 3, H, W) or (n_prompts, K, frames, n_mels); "
            f"got {tuple(samples.shape)}"
        )
    if fixed.dim() == 3 and fixed.shape[1] == 1:
        fixed = fixed[:, 0]
    fixed = fixed.cpu()
    if fixed.shape != (len(samples), len(ATTRIBUTES)) or fixed.dtype != torch.bool:
        raise ValueError(
            f"fixed should be bool ({len(samples)}, 4); got {fixed.dtype} {tuple(fixed.shape)}"
        )
    ghosts = ghost_mass_of(samples.flatten(0, 1)).unflatten(0, samples.shape[:2]).mean(1)
    position = ATTRIBUTES.index("position")
    return Metric("ghost_mass", torch.where(fixed[:, position], math.nan, ghosts))


def _inside(points: Tensor, centres: Tensor, k: int) -> Tensor:
    """For each of ``points (m, d)``: inside the union of balls around ``centres (c, d)``
    whose radii reach each centre's k-th nearest other centre. ``(m,)`` bool."""
    if len(centres) <= k:
        raise ValueError(f"precision and recall need more than k={k} samples; got {len(centres)}")
    between = torch.cdist(centres, centres)
    radius = between.kthvalue(k + 1, dim=1).values  # k + 1: the nearest is the centre itself
    return (torch.cdist(points, centres) <= radius[None]).any(dim=1)


def precision_recall(
    judge: nn.Module, samples: Tensor, real: Tensor, k: int = NEIGHBOURS
) -> tuple[Metric, Metric]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) in the judge's features.

    samples: ``(n_prompts, K, ...)`` generated; real: ``(n_prompts, K_real, ...)`` real
    samples for the same prompts (e.g. :func:`conditional_samples`). Each set's manifold
    is the union of balls around its points reaching their k-th nearest neighbour (all
    prompts pooled). Precision: per prompt, the share of its samples inside the real
    manifold (are they realistic?). Recall: per prompt, the share of its real samples
    inside the generated manifold (is the data's variety drawn?). Both near 1 for two
    real sets; copies of one picture per prompt keep precision but lose recall.
    """
    if real.shape[0] != samples.shape[0] or real.shape[2:] != samples.shape[2:]:
        raise ValueError(
            f"real should be (n_prompts, K_real, ...) like samples {tuple(samples.shape)}; "
            f"got {tuple(real.shape)}"
        )
    fake_features = read(judge, samples).features
    real_features = read(judge, real).features
    fake, true = fake_features.flatten(0, 1).double(), real_features.flatten(0, 1).double()
    precision = _inside(fake, true, k).float().unflatten(0, samples.shape[:2]).mean(1)
    recall = _inside(true, fake, k).float().unflatten(0, real.shape[:2]).mean(1)
    return Metric("precision", precision), Metric("recall", recall)


def sample_metrics(
    judge: nn.Module,
    samples: Tensor,
    attributes: Tensor,
    fixed: Tensor,
    world: OmniWorld,
    seed: int = 0,
) -> dict[str, Metric]:
    """Every metric of this module for one set of samples, with the references.

    samples: ``(n_prompts, K, ...)`` pictures (picture judge) or log-mels (sound judge);
    attributes, fixed: ``(n_prompts, 4)``; world: the prompts' world (its split gives the
    conditional distribution; real samples for the references are drawn from it with
    ``seed``). Returns fidelity, validity, coverage_tv, coverage_tv_reference, precision,
    recall and ghost_mass.
    """
    _check_samples(judge, samples)
    modality = "image" if _is_picture_judge(judge) else "audio"
    real = conditional_samples(world, attributes, fixed, samples.shape[1], modality, seed)
    precision, recall = precision_recall(judge, samples, real)
    return {
        "fidelity": fidelity(judge, samples, attributes, fixed),
        "validity": validity(judge, samples),
        "coverage_tv": coverage(judge, samples, attributes, fixed, world.split),
        "coverage_tv_reference": _reference(judge, real, attributes, fixed, world.split),
        "precision": precision,
        "recall": recall,
        "ghost_mass": ghost_mass(samples, fixed),
    }
