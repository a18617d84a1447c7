"""Attribute accuracy: does a generated picture show what its caption asked for?

Papers judge image generators with FID or CLIP score, which need large pretrained
networks. OmniWorld knows the truth of every picture it draws, so the course uses a
cheaper, sharper stand-in: a small CNN trained on *real* OmniWorld pictures to read an
object's shape, colour, size and position. A generated picture scores one point per
attribute the classifier reads back as the caption said.

The classifier is trained on single-object scenes; generated pictures are scored against
the attributes of the scene their caption described.

Attribute accuracy asks "is it the right picture?", not "does it look real?": a blurry
average of every possible picture can still read as the right colour in the right place.
:func:`frechet_distance` answers the second question the way FID does, with this
classifier's features standing in for Inception's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from omni_edu.data.scene import ATTRIBUTES, VALUES


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

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{attribute: (batch, n_values)}``."""
        h = self.embed(images)
        return {name: head(h) for name, head in self.heads.items()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The features the attribute heads read: ``(batch, hidden)``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images should be (batch, 3, H, W); got {tuple(images.shape)}.")
        return self.features(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted attributes ``(batch, 4)`` int64, columns (shape, colour, size, position)."""
        logits = self(images)
        return torch.stack([logits[name].argmax(-1) for name in ATTRIBUTES], dim=1)


def _single_object(attributes: torch.Tensor) -> torch.Tensor:
    """``(n, 4)`` attributes from ``(n, 4)`` or single-object ``(n, 1, 4)``."""
    if attributes.dim() == 3 and attributes.shape[1] == 1:
        attributes = attributes[:, 0]
    if attributes.dim() != 2 or attributes.shape[1] != len(ATTRIBUTES):
        raise ValueError(
            f"attributes should be (n, 4) or (n, 1, 4) for single-object scenes; got "
            f"{tuple(attributes.shape)}. The attribute classifier reads one object per picture."
        )
    if (attributes < 0).any():
        raise ValueError("attributes contain -1 (an absent object); use single-object scenes.")
    return attributes.long()


def train_attribute_classifier(
    images: torch.Tensor,
    attributes: torch.Tensor,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> AttributeClassifier:
    """Fit an :class:`AttributeClassifier` on real pictures ``(n, 3, H, W)``.

    attributes: ``(n, 4)`` or ``(n, 1, 4)`` (shape, colour, size, position) indices.
    """
    attributes = _single_object(attributes)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = AttributeClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(steps), desc="attribute classifier", disable=not progress, leave=False):
        pick = torch.randint(len(images), (batch_size,), generator=generator)
        logits = model(images[pick])
        loss = sum(
            F.cross_entropy(logits[name], attributes[pick, i]) for i, name in enumerate(ATTRIBUTES)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def attribute_accuracy(
    classifier: AttributeClassifier, images: torch.Tensor, attributes: torch.Tensor
) -> dict[str, float]:
    """How often the classifier reads each asked-for attribute back from ``images``.

    Returns one accuracy per attribute, ``mean`` (their average) and ``all`` (fraction of
    pictures with every attribute right).
    """
    attributes = _single_object(attributes)
    if len(images) != len(attributes):
        raise ValueError(f"{len(images)} images but {len(attributes)} attribute rows.")
    classifier.eval()
    predicted = torch.cat([classifier.predict(chunk) for chunk in images.split(512)])
    right = predicted == attributes.to(predicted.device)
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


@torch.no_grad()
def frechet_distance(
    classifier: AttributeClassifier, images_a: torch.Tensor, images_b: torch.Tensor
) -> float:
    """FID's formula on the classifier's features: how unlike two sets of pictures look.

    Fits a Gaussian to the features of each set ``(n, 3, H, W)`` and returns
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``. Zero for identical
    sets; blurry or implausible pictures land far from real ones even when their
    attributes read right. Compare only values computed with the same set sizes.
    """
    classifier.eval()
    feats = [
        torch.cat([classifier.embed(chunk) for chunk in images.split(512)]).double()
        for images in (images_a, images_b)
    ]
    (mu_a, mu_b), (cov_a, cov_b) = [f.mean(0) for f in feats], [torch.cov(f.T) for f in feats]
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    # (S_a^1/2 S_b S_a^1/2) is symmetric and has the eigenvalues of S_a S_b.
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)
