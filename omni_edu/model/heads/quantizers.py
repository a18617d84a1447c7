"""Quantisers: how an autoencoder's continuous vectors become code ids (lesson 03).

The pieces of vector quantisation as plain functions (the lesson's exercises): the
nearest-code lookup, the straight-through gradient ``z + (z_q - z).detach()``, the
codebook and commitment losses with their two stop-gradients, EMA codebook updates with
Laplace smoothing, codebook usage, k-means initialisation. Then the quantisers as modules
with one interface (:class:`QuantizerOutput`): :class:`VectorQuantizer` (with dead-code
restart), :class:`FSQQuantizer` (FSQ, :mod:`omni_edu.model.heads.fsq`) and
:class:`IdentityQuantizer` (none: a continuous autoencoder). The autoencoders that use
them are :mod:`omni_edu.model.heads.vq`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.model.heads.fsq import FSQ


@dataclass
class QuantizerOutput:
    """What a quantiser returns for ``z`` of shape ``(..., code_dim)``.

    ``z_q`` has the shape of ``z`` and carries the straight-through gradient;
    ``indices`` has shape ``(...)`` (``None`` for the identity quantiser); ``loss`` is the
    quantiser's own loss term (codebook + beta * commitment for VQ, zero for FSQ).
    """

    z_q: torch.Tensor
    indices: torch.Tensor | None
    loss: torch.Tensor
    perplexity: float = float("nan")
    usage: float = float("nan")


# --------------------------------------------------------------------------------------
# The pieces of vector quantisation, as plain functions (the lesson's exercises)
# --------------------------------------------------------------------------------------


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook entry for every vector.

    z: ``(n, code_dim)``; codebook: ``(K, code_dim)``; returns ``(n,)`` int64.
    ``|z - e|^2 = |z|^2 - 2 z.e + |e|^2``: one matrix product instead of an
    ``(n, K, code_dim)`` difference tensor.
    """
    if z.dim() != 2 or codebook.dim() != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"z should be (n, code_dim) and codebook (K, code_dim); got {tuple(z.shape)} "
            f"and {tuple(codebook.shape)}. Flatten the grid first: z.reshape(-1, code_dim)."
        )
    distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)[None, :]
    return distances.argmin(dim=1)


def quantize_straight_through(
    z: torch.Tensor, codebook: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each vector by its nearest code; let the gradient pass straight through.

    z: ``(n, code_dim)``; codebook: ``(K, code_dim)``.
    Returns ``(z_q, indices)``: ``z_q`` ``(n, code_dim)`` equals ``codebook[indices]`` in
    value, but its gradient flows to ``z`` unchanged (``argmin`` has no gradient, so we
    pretend the quantiser is the identity on the backward pass).
    """
    indices = nearest_code(z, codebook)
    z_q = codebook[indices]
    # Forward: z + (z_q - z) = z_q.  Backward: the detached part is a constant, so
    # d z_q_st / d z = identity and the decoder's gradient reaches the encoder.
    z_q_st = z + (z_q - z).detach()
    return z_q_st, indices


def vq_loss_terms(z: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two quantiser losses of the VQ-VAE paper, each with one side frozen.

    z: encoder outputs; z_q: the chosen codes (``codebook[indices]``, *not* the
    straight-through version). Returns ``(codebook_loss, commitment_loss)``.
    """
    # Codebook loss: pull the codes towards the encoder outputs. The encoder output is
    # detached, so this term only moves the codebook.
    codebook_loss = F.mse_loss(z_q, z.detach())
    # Commitment loss: keep the encoder close to the code it chose, so its outputs do not
    # drift away from the codebook. The code is detached, so this only moves the encoder.
    commitment_loss = F.mse_loss(z, z_q.detach())
    return codebook_loss, commitment_loss


def ema_codebook_update(
    cluster_size: torch.Tensor,
    embed_sum: torch.Tensor,
    z: torch.Tensor,
    indices: torch.Tensor,
    decay: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One exponential-moving-average codebook update (VQ-VAE paper, appendix).

    cluster_size: ``(K,)`` running count of vectors per code; embed_sum: ``(K, code_dim)``
    running sum of the vectors assigned to each code; z: ``(n, code_dim)`` this batch's
    encoder outputs; indices: ``(n,)`` their codes.
    Returns ``(cluster_size, embed_sum, codebook)``, the new running statistics and the
    new codebook ``embed_sum / smoothed_count``. Laplace smoothing (``eps``) keeps a code
    that has received nothing lately from dividing by zero.
    """
    n_codes = cluster_size.shape[0]
    one_hot = F.one_hot(indices, n_codes).to(z.dtype)  # (n, K)
    counts = one_hot.sum(0)  # (K,) vectors that chose each code in this batch
    sums = one_hot.T @ z  # (K, code_dim) their sum
    cluster_size = decay * cluster_size + (1 - decay) * counts
    embed_sum = decay * embed_sum + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + n_codes * eps) * total
    codebook = embed_sum / smoothed[:, None]
    return cluster_size, embed_sum, codebook


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """``(fraction of codes used, perplexity)`` of a batch of code indices.

    Perplexity ``exp(entropy)`` of the code histogram is the "effective number of codes":
    ``codebook_size`` when all codes are used equally, 1 when everything maps to one code.
    """
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp(min=1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return (counts > 0).float().mean().item(), math.exp(entropy.item())


def kmeans(
    x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``k`` centroids of the rows of ``x`` ``(n, dim)`` by Lloyd's algorithm; ``(k, dim)``.

    Starts from ``k`` random rows (with replacement when ``n < k``); a centroid that loses
    all its points keeps its old position.
    """
    n = x.shape[0]
    if n >= k:
        start = torch.randperm(n, generator=generator)[:k]
    else:
        start = torch.randint(n, (k,), generator=generator)
    centroids = x[start].clone()
    for _ in range(iters):
        assign = nearest_code(x, centroids)
        one_hot = F.one_hot(assign, k).to(x.dtype)
        counts = one_hot.sum(0)
        sums = one_hot.T @ x
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


# --------------------------------------------------------------------------------------
# Quantisers as modules
# --------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """A codebook of ``codebook_size`` vectors of size ``code_dim``.

    ``forward(z)`` takes ``z`` of shape ``(..., code_dim)`` and returns a
    :class:`QuantizerOutput`. In training mode it also runs the optional codebook
    maintenance: k-means initialisation on the first batch, EMA updates, dead-code
    restart.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_steps: int = 0,
        kmeans_init: bool = False,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.beta = beta
        self.ema = ema
        self.decay = decay
        self.eps = eps
        self.dead_code_steps = dead_code_steps
        self.kmeans_init = kmeans_init
        # The classic small uniform initialisation. Far from the encoder's outputs, it
        # is what makes codebook collapse easy to watch in lesson 03.
        codebook = torch.empty(codebook_size, code_dim).uniform_(
            -1 / codebook_size, 1 / codebook_size
        )
        # With EMA the codebook is not trained by gradient descent.
        self.codebook = nn.Parameter(codebook, requires_grad=not ema)
        # EMA statistics. A count of 1 per code (rather than 0) means "each code starts
        # as the average of one vector: itself", so an unused code stays where it is.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialised", torch.tensor(not kmeans_init))
        self.restarts = 0  # how many codes dead-code restart has revived so far

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self._check(z)
        # Distances and running averages in float32, even under mixed precision: bf16
        # keeps 8 bits of mantissa, too few to tell near codes apart or to sum a batch.
        with torch.autocast(z.device.type, enabled=False):
            flat = z.reshape(-1, self.code_dim).float()
            if self.training and not bool(self.initialised):
                self._kmeans_init(flat.detach())
            z_q_st, indices = quantize_straight_through(flat, self.codebook)
            z_q = self.codebook[indices]
            codebook_loss, commitment_loss = vq_loss_terms(flat, z_q)
            if self.ema:
                # EMA replaces the codebook loss: the codes move by running averages below.
                loss = self.beta * commitment_loss
            else:
                loss = codebook_loss + self.beta * commitment_loss
            if self.training:
                with torch.no_grad():
                    if self.ema:
                        self._ema_update(flat.detach(), indices)
                    if self.dead_code_steps > 0:
                        self._restart_dead_codes(flat.detach(), indices)
        usage, perplexity = codebook_usage(indices, self.codebook_size)
        return QuantizerOutput(
            z_q=z_q_st.reshape(z.shape),
            indices=indices.reshape(z.shape[:-1]),
            loss=loss,
            perplexity=perplexity,
            usage=usage,
        )

    def _check(self, z: torch.Tensor) -> None:
        if z.shape[-1] != self.code_dim:
            raise ValueError(
                f"z should be (..., {self.code_dim}) with the code dimension last; "
                f"got {tuple(z.shape)}."
            )

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids ``(...)`` of ``z`` ``(..., code_dim)``, without any codebook maintenance
        (tokenizing data never changes the codebook, even in training mode)."""
        self._check(z)
        with torch.autocast(z.device.type, enabled=False):
            flat = z.reshape(-1, self.code_dim).float()
            return nearest_code(flat, self.codebook.float()).reshape(z.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for integer ``indices`` ``(...)``; returns ``(..., code_dim)``."""
        return self.codebook[indices]

    def continuous(self, z: torch.Tensor) -> torch.Tensor:
        """What the decoder reads when the quantiser is skipped: ``z`` itself, ``(..., code_dim)``
        (the codes live in the encoder's own space)."""
        return z

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        centroids = kmeans(flat, self.codebook_size)
        self.codebook.data.copy_(centroids)
        self.embed_sum.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        cluster_size, embed_sum, codebook = ema_codebook_update(
            self.cluster_size, self.embed_sum, flat, indices, self.decay, self.eps
        )
        self.cluster_size.copy_(cluster_size)
        self.embed_sum.copy_(embed_sum)
        self.codebook.data.copy_(codebook)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        used = torch.bincount(indices, minlength=self.codebook_size) > 0
        self.steps_unused[used] = 0
        self.steps_unused[~used] += 1
        dead = self.steps_unused >= self.dead_code_steps
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        # Re-seed each dead code on a random recent encoder output: it now sits where
        # the data is, so it will win some vectors in the next batches.
        picks = flat[torch.randint(flat.shape[0], (n_dead,), device=flat.device)]
        self.codebook.data[dead] = picks
        self.embed_sum[dead] = picks
        self.cluster_size[dead] = 1.0
        self.steps_unused[dead] = 0
        self.restarts += n_dead


class IdentityQuantizer(nn.Module):
    """No quantisation: the continuous autoencoder that lesson 03 compares against."""

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        return QuantizerOutput(z_q=z, indices=None, loss=z.new_zeros(()))

    def continuous(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` unchanged, ``(..., code_dim)``."""
        return z


class FSQQuantizer(nn.Module):
    """Adapter that gives :class:`~omni_edu.model.heads.fsq.FSQ` the quantiser interface."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.fsq = FSQ(levels)
        self.codebook_size = self.fsq.codebook_size
        self.code_dim = len(levels)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # float32 for the same reason as VectorQuantizer: rounding boundaries need the bits.
        with torch.autocast(z.device.type, enabled=False):
            z_q = self.fsq(z.float())
        indices = self.fsq.codes_to_indices(z_q.detach())
        usage, perplexity = codebook_usage(indices, self.codebook_size)
        return QuantizerOutput(
            z_q=z_q, indices=indices, loss=z.new_zeros(()), perplexity=perplexity, usage=usage
        )

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids ``(...)`` of ``z`` ``(..., len(levels))``."""
        with torch.autocast(z.device.type, enabled=False):
            return self.fsq.codes_to_indices(self.fsq(z.float()))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., len(levels))`` in ``[-1, 1]`` for token ids ``(...)``."""
        return self.fsq.indices_to_codes(indices)

    def continuous(self, z: torch.Tensor) -> torch.Tensor:
        """The codes before rounding, ``(..., len(levels))`` in ``(-1, 1)``: FSQ's codes live
        in the squashed space, not in the encoder's raw output."""
        with torch.autocast(z.device.type, enabled=False):
            return self.fsq.squash(z.float())
