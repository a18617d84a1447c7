"""Lesson 01's core-build check: plausible wrong projectors, each a module a learner might
write, and what the check must say about them.

``tests/test_checks.py`` puts these in its table (one test per mistake: each is rejected);
the tests here pin down *what* the check says, and that the learner's projector trains
inside OmniLM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omni_edu import grading
from omni_edu.data.documents import InterleavedCorpus
from omni_edu.lessons.omni_tokens.checks import check_projector
from omni_edu.lessons.omni_tokens.core_build import omnilm_with_projector


class ProjectorWritten(nn.Module):
    """A right answer written differently: position by position, with a masked embedding."""

    def __init__(self, config) -> None:
        super().__init__()
        self.text = nn.Embedding(config.vocab_size, config.d_model)
        self.image = nn.Linear(config.image_dim, config.d_model)
        self.audio = nn.Linear(config.audio_dim, config.d_model)
        self.modality = nn.Embedding(3, config.d_model) if config.modality_embeddings else None

    def contents(self, modality: Tensor, text_ids: Tensor, image: Tensor, audio: Tensor) -> Tensor:
        """Each position's own projection, no modality vector; padding zero."""
        rows = []
        for b in range(modality.shape[0]):
            row = []
            for t in range(modality.shape[1]):
                m = int(modality[b, t])
                if m < 0:
                    row.append(torch.zeros(self.text.embedding_dim))
                elif m == 0:
                    row.append(self.text(text_ids[b, t]))
                elif m == 1:
                    row.append(self.image(image[b, t]))
                else:
                    row.append(self.audio(audio[b, t]))
            rows.append(torch.stack(row))
        return torch.stack(rows)

    def forward(self, modality: Tensor, text_ids: Tensor, image: Tensor, audio: Tensor) -> Tensor:
        out = self.contents(modality, text_ids, image, audio)
        if self.modality is None:
            return out
        real = (modality >= 0).unsqueeze(-1)
        return out + real * self.modality.weight[modality.clamp(min=0)]


class NoModalityVector(ProjectorWritten):
    # Mistake: builds the modality table but never adds it.
    def forward(self, modality, text_ids, image, audio):
        return self.contents(modality, text_ids, image, audio)


class ModalityOnPadding(ProjectorWritten):
    # Mistake: padding (-1) clamped to text and given the text vector too.
    def forward(self, modality, text_ids, image, audio):
        out = self.contents(modality, text_ids, image, audio)
        if self.modality is None:
            return out
        return out + self.modality(modality.clamp(min=0))


class TextVectorEverywhere(ProjectorWritten):
    # Mistake: adds one modality's vector (text's) to every real position.
    def forward(self, modality, text_ids, image, audio):
        out = self.contents(modality, text_ids, image, audio)
        if self.modality is None:
            return out
        return out + (modality >= 0).unsqueeze(-1) * self.modality.weight[0]


class GroupedByModality(ProjectorWritten):
    # Mistake: the chapter's concatenation - all text, then images, then audio - per row.
    def forward(self, modality, text_ids, image, audio):
        out = super().forward(modality, text_ids, image, audio)
        order = torch.argsort(
            torch.where(modality < 0, 99, modality) * 100 + torch.arange(modality.shape[1]), dim=1
        )
        return torch.gather(out, 1, order.unsqueeze(-1).expand_as(out))


class AlwaysAModalityTable(ProjectorWritten):
    # Mistake: ignores config.modality_embeddings (an extra parameter without embeddings).
    def __init__(self, config) -> None:
        super().__init__(config)
        self.modality = nn.Embedding(3, config.d_model)


class ImageDetached(ProjectorWritten):
    # Mistake: the image projection computed with detached weights (right numbers, no
    # gradient for the image map).
    def forward(self, modality, text_ids, image, audio):
        out = super().forward(modality, text_ids, image, audio).clone()
        here = modality == 1
        fixed = image[here] @ self.image.weight.detach().T + self.image.bias.detach()
        out[here] = fixed + (0 if self.modality is None else self.modality.weight[1])
        return out


class LinearWithoutBias(ProjectorWritten):
    # Mistake: the image and audio maps without a bias.
    def __init__(self, config) -> None:
        super().__init__(config)
        self.image = nn.Linear(config.image_dim, config.d_model, bias=False)
        self.audio = nn.Linear(config.audio_dim, config.d_model, bias=False)


MISTAKES = (
    NoModalityVector,
    ModalityOnPadding,
    TextVectorEverywhere,
    GroupedByModality,
    AlwaysAModalityTable,
    ImageDetached,
    LinearWithoutBias,
)


def test_what_the_check_says_about_each_mistake(monkeypatch):
    monkeypatch.setenv("OMNI_STRICT_CHECKS", "0")
    said = {m.__name__: check_projector(m) for m in MISTAKES}
    assert all(not r.passed for r in said.values())
    assert "modality.weight" in str(said["AlwaysAModalityTable"])  # named by the weights' load
    assert "image.bias" in str(said["LinearWithoutBias"])
    assert "without modality embeddings" in str(said["AlwaysAModalityTable"])
    assert "gradient" in str(said["ImageDetached"])
    assert check_projector(ProjectorWritten).passed


def test_the_learners_projector_trains_inside_omnilm():
    corpus = InterleavedCorpus(16, seed=0)
    factory, note = grading.learner_module_or_reference(
        check_projector(ProjectorWritten), ProjectorWritten, None
    )
    assert factory is ProjectorWritten and "your own" in note
    torch.manual_seed(0)
    model = omnilm_with_projector(factory, corpus.model_config())
    assert isinstance(model.projector.module, ProjectorWritten)
    assert model.text_head.weight is model.projector.module.text.weight  # still tied
    packed = corpus.batch(0, 4)
    loss = model.loss(packed)["loss"]
    loss.backward()
    assert model.projector.module.image.weight.grad.abs().sum() > 0
