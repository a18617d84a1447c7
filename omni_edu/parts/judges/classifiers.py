"""Judges: small classifiers that read generated pictures and sounds back (lessons 04, 06).

Papers judge image generators with FID or CLIP score and speech with a recogniser, all of
which need large pretrained networks. OmniWorld knows the truth of every scene it draws,
so the course uses a cheaper, sharper stand-in: a small CNN trained on *real* OmniWorld
pictures (and a 1-D CNN on real sounds) reads an object's shape, colour, size and
position back. A generated output scores one point per attribute the judge reads back
as the prompt asked: its **attribute accuracy**.

Attribute accuracy asks "is it the right picture?", not "does it look real?": a blurry
average of every possible picture can still read as the right colour in the right place.
:func:`frechet_distance` answers the second question the way FID does, with the judge's
features standing in for Inception's.

Both judges are a shared part of the system: :func:`judges` trains them once per profile
and keeps them in the course cache (:mod:`omni_edu.parts.course_cache`) for every lesson that
scores generations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.data import ATTRIBUTES, VALUES, OmniWorld
from omni_edu.profiles import Profile, get_profile
from omni_edu.train import fit


@dataclass
class AttributeClassifierConfig:
    channels: int = 32
    hidden: int = 64


class AttributeClassifier(nn.Module):
    """Image ``(batch, 3, H, W)`` -> one set of logits per attribute of its object."""

    def __init__(self, config: AttributeClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or AttributeClassifierConfig()
        c = self.config.channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.ReLU(),
            # A 4x4 map at any image size; it keeps *where* things are, which a global
            # average would throw away (and position is one of the attributes).
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * c, self.config.hidden),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.config.hidden, len(VALUES[name])) for name in ATTRIBUTES}
        )

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Logits ``{attribute: (batch, n_values)}``."""
        h = self.embed(images)
        return {name: head(h) for name, head in self.heads.items()}

    def embed(self, images: Tensor) -> Tensor:
        """The features the attribute heads read: ``(batch, hidden)``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images should be (batch, 3, H, W); got {tuple(images.shape)}.")
        return self.features(images)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Predicted attributes ``(batch, 4)`` int64, columns (shape, colour, size, position)."""
        logits = self(images)
        return torch.stack([logits[name].argmax(-1) for name in ATTRIBUTES], dim=1)


class AudioAttributeClassifier(nn.Module):
    """Log-mel ``(batch, frames, n_mels)`` -> logits for each attribute of its one object.

    A small 1-D convolution over time (mel bands are its channels): pitch (colour) and
    timbre (shape) live across bands, loudness (size) in the level, position in *when*
    the tone sounds, which the pooled time axis (4 slots) keeps.
    """

    def __init__(self, n_mels: int, channels: int = 48, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
            nn.Linear(4 * channels, hidden),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({a: nn.Linear(hidden, len(VALUES[a])) for a in ATTRIBUTES})

    def forward(self, mels: Tensor) -> dict[str, Tensor]:
        """Logits ``{attribute: (batch, n_values)}``."""
        h = self.embed(mels)
        return {a: head(h) for a, head in self.heads.items()}

    def embed(self, mels: Tensor) -> Tensor:
        """The features the attribute heads read: ``(batch, hidden)``."""
        if mels.dim() != 3:
            raise ValueError(f"mels should be (batch, frames, n_mels); got {tuple(mels.shape)}.")
        return self.features(mels.transpose(1, 2))

    @torch.no_grad()
    def predict(self, mels: Tensor) -> Tensor:
        """Predicted attributes ``(batch, 4)`` int64, columns (shape, colour, size, position)."""
        logits = self(mels)
        return torch.stack([logits[a].argmax(-1) for a in ATTRIBUTES], dim=1)


def single_object(attributes: Tensor) -> Tensor:
    """``(n, 4)`` attributes from ``(n, 4)`` or single-object ``(n, 1, 4)``."""
    if attributes.dim() == 3 and attributes.shape[1] == 1:
        attributes = attributes[:, 0]
    if attributes.dim() != 2 or attributes.shape[1] != len(ATTRIBUTES):
        raise ValueError(
            f"attributes should be (n, 4) or (n, 1, 4) for single-object scenes; got "
            f"{tuple(attributes.shape)}. A judge reads one object per picture or sound."
        )
    if (attributes < 0).any():
        raise ValueError("attributes contain -1 (an absent object); use single-object scenes.")
    return attributes.long()


def attribute_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """The Trainer's loss for a judge: the summed cross-entropy of the four attributes."""
    inputs, attributes = batch
    logits = model(inputs)
    losses = {a: F.cross_entropy(logits[a], attributes[:, k]) for k, a in enumerate(ATTRIBUTES)}
    return {"loss": sum(losses.values()), **losses}


def train_judge(
    judge: nn.Module,
    inputs: Tensor,
    attributes: Tensor,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Train ``judge`` in place on real ``inputs`` and their ``attributes`` ``(n, 4)``.

    Random batches (the same for the same step and seed) through the course Trainer
    (:func:`omni_edu.train.fit`); returns the judge, in eval mode.
    """
    attributes = single_object(attributes)
    if len(inputs) != len(attributes):
        raise ValueError(f"{len(inputs)} inputs but {len(attributes)} attribute rows.")

    def batches(step: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        pick = torch.randint(len(inputs), (batch_size,), generator=g)
        return inputs[pick], attributes[pick]

    desc = "picture judge" if isinstance(judge, AttributeClassifier) else "sound judge"
    fit(judge, attribute_loss, batches, steps, lr, seed, desc, progress)
    return judge


@torch.no_grad()
def attribute_scores(judge: nn.Module, inputs: Tensor, attributes: Tensor) -> Tensor:
    """Per example, the fraction of its four attributes the judge reads back: ``(n,)``.

    ``inputs`` are pictures ``(n, 3, H, W)`` for the picture judge or log-mels
    ``(n, frames, n_mels)`` for the sound judge. Their mean is the attribute accuracy;
    kept per example, they give intervals over test scenes.
    """
    return _right(judge, inputs, attributes).float().mean(dim=1)


def _right(judge: nn.Module, inputs: Tensor, attributes: Tensor) -> Tensor:
    attributes = single_object(attributes)
    if len(inputs) != len(attributes):
        raise ValueError(f"{len(inputs)} inputs but {len(attributes)} attribute rows.")
    judge.eval()
    device = next(judge.parameters(), torch.empty(0)).device
    predicted = torch.cat([judge.predict(chunk.to(device)) for chunk in inputs.split(512)])
    return predicted.cpu() == attributes


@torch.no_grad()
def attribute_accuracy(judge: nn.Module, inputs: Tensor, attributes: Tensor) -> dict[str, float]:
    """How often the judge reads each asked-for attribute back from ``inputs``.

    Returns one accuracy per attribute, ``mean`` (their average) and ``all`` (fraction of
    examples with every attribute right). Works for both judges.
    """
    right = _right(judge, inputs, attributes)
    result = {name: right[:, i].float().mean().item() for i, name in enumerate(ATTRIBUTES)}
    result["mean"] = right.float().mean().item()
    result["all"] = right.all(dim=1).float().mean().item()
    return result


def chance_accuracy() -> dict[str, float]:
    """Accuracy of guessing uniformly: the floor a generator must beat."""
    result = {name: 1 / len(VALUES[name]) for name in ATTRIBUTES}
    result["mean"] = sum(result.values()) / len(ATTRIBUTES)
    product = 1.0
    for name in ATTRIBUTES:
        product *= result[name]
    result["all"] = product
    return result


def chance_level() -> float:
    """Mean attribute accuracy of uniform guessing (1/4, 1/6, 1/2, 1/4 averaged): 0.29."""
    return chance_accuracy()["mean"]


@torch.no_grad()
def frechet_distance(judge: AttributeClassifier, images_a: Tensor, images_b: Tensor) -> float:
    """FID's formula on the picture judge's features: how unlike two sets of pictures look.

    Fits a Gaussian to the features of each set ``(n, 3, H, W)`` and returns
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``. Zero for identical
    sets; blurry or implausible pictures land far from real ones even when their
    attributes read right. Compare only values computed with the same set sizes.
    """
    judge.eval()
    device = next(judge.parameters()).device
    feats = [
        torch.cat([judge.embed(chunk.to(device)).cpu() for chunk in images.split(512)]).double()
        for images in (images_a, images_b)
    ]
    (mu_a, mu_b), (cov_a, cov_b) = [f.mean(0) for f in feats], [torch.cov(f.T) for f in feats]
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    # (S_a^1/2 S_b S_a^1/2) is symmetric and has the eigenvalues of S_a S_b.
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)


class Judges(nn.Module):
    """Both judges together: ``image`` reads pictures, ``audio`` reads log-mel sounds."""

    def __init__(self, image: AttributeClassifier, audio: AudioAttributeClassifier) -> None:
        super().__init__()
        self.image = image
        self.audio = audio


# Scenes and steps each judge trains on (before the profile's dry-run budget): enough for
# the picture judge to read real test pictures at ~0.9 and the sound judge at ~0.95 in ci.
JUDGE_SCENES, JUDGE_STEPS = 2048, 400


def judges(profile: Profile | str | None = None, retrain: bool = False, verbose: bool = True):
    """Both judges, trained on fresh single-object OmniWorld scenes, from the course cache.

    Returns a :class:`~omni_edu.parts.course_cache.CachedPart` whose ``model`` is a
    :class:`Judges`; ``extra`` holds each judge's accuracy on real held-out scenes (the
    ceiling a perfect generator could reach).
    """
    from omni_edu.parts.course_cache import load_or_train

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    n, steps = profile.budget(JUDGE_SCENES, dry=64), profile.budget(JUDGE_STEPS)
    world = OmniWorld("train", seed=0, n_objects=1, profile=profile)
    n_mels = profile.n_mels

    def build() -> Judges:
        torch.manual_seed(0)
        return Judges(AttributeClassifier(), AudioAttributeClassifier(n_mels))

    def train(model: Judges) -> dict:
        real = world.sample(n, seed=10_000)
        train_judge(model.image, real.images, real.attributes, steps)
        train_judge(model.audio, real.mels, real.attributes, steps)
        held = OmniWorld("test", seed=0, n_objects=1, profile=profile).sample(
            profile.budget(512, dry=32), seed=10_001
        )
        return {
            "image_on_real": attribute_accuracy(model.image, held.images, held.attributes),
            "audio_on_real": attribute_accuracy(model.audio, held.mels, held.attributes),
        }

    config = {"scenes": n, "steps": steps, "world_seed": 0, "sample_seed": 10_000, "version": 1}
    return load_or_train("judges", build, train, config, profile, retrain, verbose)
