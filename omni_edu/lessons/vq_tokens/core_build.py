"""The learner's VQ layer inside an autoencoder (lesson 03's core-build exercise).

The exercise has the learner build the VQ layer as one module: ``VQLayer(config)`` with a
``codebook`` and the EMA's ``cluster_size`` and ``embed_sum``, whose ``forward(z)`` returns
``(z_q, indices, loss)`` and, in training mode, moves the codes by EMA
(:func:`~omni_edu.lessons.vq_tokens.checks.check_vector_quantizer` checks it against the
package's weights). :func:`vqvae_with_layer` puts that module where a
:class:`~omni_edu.model.heads.vq.VQVAE`'s quantiser sits, so the learner trains a tokenizer
whose every code goes through their layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from omni_edu.lessons.vq_tokens.checks import VQLayerConfig
from omni_edu.model.heads.quantizers import QuantizerOutput, codebook_usage, kmeans, nearest_code
from omni_edu.model.heads.vq import VQVAE, VQVAEConfig


class AsQuantizer(nn.Module):
    """A learner's VQ layer, given the interface a :class:`VQVAE` calls: ``forward(z)`` ->
    :class:`QuantizerOutput`, ``indices``, ``lookup`` and ``continuous``.

    On its first training batch it places the layer's codes on k-means centroids of the
    encoder's outputs (the lesson's cure for codebook collapse; the layer's own EMA does the
    rest), writing the layer's ``codebook`` and ``embed_sum`` in place.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.codebook_size, self.code_dim = layer.codebook.shape
        self.register_buffer("initialised", torch.tensor(False))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                centroids = kmeans(
                    z.detach().reshape(-1, self.code_dim).float(), self.codebook_size
                )
                self.layer.codebook.copy_(centroids)
                self.layer.embed_sum.copy_(centroids)
                self.layer.cluster_size.fill_(1.0)
                self.initialised.fill_(True)
        z_q, indices, loss = self.layer(z)
        usage, perplexity = codebook_usage(indices, self.codebook_size)
        return QuantizerOutput(z_q, indices, loss, perplexity=perplexity, usage=usage)

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids ``(...)`` of ``z`` ``(..., code_dim)``; never changes the codebook."""
        flat = z.reshape(-1, self.code_dim).float()
        return nearest_code(flat, self.layer.codebook.float()).reshape(z.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., code_dim)`` of ids ``(...)``."""
        return self.layer.codebook[indices]

    def continuous(self, z: torch.Tensor) -> torch.Tensor:
        """The encoder's output itself (the codes live in its space)."""
        return z


def vqvae_with_layer(factory: Callable[[VQLayerConfig], nn.Module], config: VQVAEConfig) -> VQVAE:
    """A VQ-VAE of ``config`` (a ``"vq"`` bottleneck) whose quantiser is
    ``factory(VQLayerConfig(...))`` built from the config's codebook size, code width,
    ``beta``, ``decay`` and ``eps``."""
    if config.quantizer != "vq":
        raise ValueError(
            f"the VQ layer replaces a 'vq' bottleneck; got quantizer={config.quantizer!r}."
        )
    model = VQVAE(config)
    layer_config = VQLayerConfig(
        config.codebook_size, config.code_dim, config.beta, config.decay, config.eps
    )
    model.quantizer = AsQuantizer(factory(layer_config))
    return model
