"""Lesson 03's core-build check: plausible wrong VQ layers, each a module a learner might
write, and what the check says about them.

``tests/test_checks.py`` puts these in its table (one test per mistake: each is rejected);
the tests here pin down what the check says about some, and that the learner's layer
trains inside an autoencoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu import grading
from omni_edu.lessons.vq_tokens.checks import VQLayerConfig, check_vector_quantizer
from omni_edu.lessons.vq_tokens.core_build import AsQuantizer, vqvae_with_layer
from omni_edu.model.heads.vq import VQVAEConfig
from omni_edu.parts.tokenizers import train_autoencoder


class VQLayerWritten(nn.Module):
    """A right answer written differently: torch.cdist, index_add_ for the sums."""

    def __init__(self, config: VQLayerConfig) -> None:
        super().__init__()
        self.config = config
        self.codebook = nn.Parameter(
            torch.randn(config.codebook_size, config.code_dim), requires_grad=False
        )
        self.register_buffer("cluster_size", torch.ones(config.codebook_size))
        self.register_buffer("embed_sum", self.codebook.detach().clone())

    def nearest(self, flat):
        return torch.cdist(flat, self.codebook).argmin(dim=1)

    def straight_through(self, flat, code):
        return flat + (code - flat).detach()

    def loss(self, flat, code):
        return self.config.beta * F.mse_loss(flat, code.detach())

    def statistics(self, flat, code, indices):
        counts = torch.zeros(self.config.codebook_size).index_add_(
            0, indices, torch.ones(len(indices))
        )
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        return counts, sums

    def smoothed(self, sizes):
        k, eps = self.config.codebook_size, self.config.eps
        total = sizes.sum()
        return (sizes + eps) / (total + k * eps) * total

    def update(self, flat, code, indices):
        d = self.config.decay
        counts, sums = self.statistics(flat, code, indices)
        self.cluster_size.mul_(d).add_((1 - d) * counts)
        self.embed_sum.mul_(d).add_((1 - d) * sums)
        self.codebook.copy_(self.embed_sum / self.smoothed(self.cluster_size)[:, None])

    def forward(self, z):
        flat = z.reshape(-1, self.config.code_dim)
        indices = self.nearest(flat)
        code = self.codebook[indices]
        z_q, loss = self.straight_through(flat, code), self.loss(flat, code)
        if self.training:
            with torch.no_grad():
                self.update(flat.detach(), code, indices)
        return z_q.reshape(z.shape), indices.reshape(z.shape[:-1]), loss


class NoStraightThrough(VQLayerWritten):
    # Mistake: returns the code itself, so the decoder's gradient never reaches z.
    def straight_through(self, flat, code):
        return code


class CodebookLossKept(VQLayerWritten):
    # Mistake: keeps the codebook term of the plain VQ-VAE although EMA moves the codes.
    def loss(self, flat, code):
        return F.mse_loss(code, flat.detach()) + super().loss(flat, code)


class CommitmentWithoutBeta(VQLayerWritten):
    # Mistake: the commitment term at full weight.
    def loss(self, flat, code):
        return F.mse_loss(flat, code.detach())


class FarthestCode(VQLayerWritten):
    # Mistake: argmax instead of argmin.
    def nearest(self, flat):
        return torch.cdist(flat, self.codebook).argmax(dim=1)


class NoSmoothing(VQLayerWritten):
    # Mistake: divides the sums by the raw counts.
    def smoothed(self, sizes):
        return sizes


class DecaySwapped(VQLayerWritten):
    # Mistake: decay weighs the new batch and (1 - decay) the old statistics.
    def update(self, flat, code, indices):
        d = self.config.decay
        counts, sums = self.statistics(flat, code, indices)
        self.cluster_size.mul_(1 - d).add_(d * counts)
        self.embed_sum.mul_(1 - d).add_(d * sums)
        self.codebook.copy_(self.embed_sum / self.smoothed(self.cluster_size)[:, None])


class AveragesTheCodes(VQLayerWritten):
    # Mistake: the running sums add the chosen codes, not the encoder's outputs.
    def statistics(self, flat, code, indices):
        return super().statistics(code, code, indices)


class UpdatesFirst(VQLayerWritten):
    # Mistake: moves the codes before quantising, so z_q uses the new codebook.
    def forward(self, z):
        flat = z.reshape(-1, self.config.code_dim)
        if self.training:
            with torch.no_grad():
                first = self.nearest(flat)
                self.update(flat.detach(), self.codebook[first], first)
        indices = self.nearest(flat)
        code = self.codebook[indices]
        z_q, loss = self.straight_through(flat, code), self.loss(flat, code)
        return z_q.reshape(z.shape), indices.reshape(z.shape[:-1]), loss


class FlatIndices(VQLayerWritten):
    # Mistake: one index per flattened vector, not the shape of z without its last axis.
    def forward(self, z):
        z_q, indices, loss = super().forward(z)
        return z_q, indices.reshape(-1), loss


MISTAKES = (
    NoStraightThrough,
    CodebookLossKept,
    CommitmentWithoutBeta,
    FarthestCode,
    NoSmoothing,
    DecaySwapped,
    AveragesTheCodes,
    UpdatesFirst,
    FlatIndices,
)


def test_what_the_check_says(monkeypatch):
    monkeypatch.setenv("OMNI_STRICT_CHECKS", "0")
    assert check_vector_quantizer(VQLayerWritten).passed
    no_st = check_vector_quantizer(NoStraightThrough)
    assert not no_st.passed and "gradient" in str(no_st)
    assert "codebook after the step" in str(check_vector_quantizer(AveragesTheCodes))
    assert "shape" in str(check_vector_quantizer(FlatIndices))

    class NoBuffers(VQLayerWritten):
        def __init__(self, config):
            super().__init__(config)
            del self.embed_sum

    assert "embed_sum" in str(check_vector_quantizer(NoBuffers))


def test_the_learners_layer_trains_inside_an_autoencoder():
    config = VQVAEConfig(
        image_size=8, downsample=1, channels=8, codebook_size=16, code_dim=4, ema=True
    )
    factory, note = grading.learner_module_or_reference(
        check_vector_quantizer(VQLayerWritten), VQLayerWritten, None
    )
    assert factory is VQLayerWritten and "your own" in note
    torch.manual_seed(0)
    model = vqvae_with_layer(factory, config)
    assert isinstance(model.quantizer, AsQuantizer) and model.vocab_size == 16
    data = torch.rand(64, 3, 8, 8)
    history = train_autoencoder(model, data, 30, batch_size=16, progress=False)
    assert bool(model.quantizer.initialised)  # k-means placed the codes on the first batch
    assert history.losses["recon"][-1] < history.losses["recon"][0]
    ids = model.encode_to_indices(data[:2])
    assert ids.shape == (2, 16) and ids.max() < 16
    assert model.decode_from_indices(ids).shape == (2, 3, 8, 8)
