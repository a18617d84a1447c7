"""Discrete image tokens: a small convolutional VQ-VAE and its vector quantiser.

An encoder turns an image ``(batch, 3, H, W)`` into a grid of vectors
``(batch, code_dim, h, w)``; the quantiser replaces every vector by its nearest entry in
a learned codebook of ``K`` codes, so the image becomes ``h * w`` integers (tokens a
decoder language model can predict with a softmax); the decoder turns the codes back
into pixels.

Everything the lesson discusses is written out here:

* nearest-code lookup by squared distance;
* the loss ``reconstruction + codebook + beta * commitment`` with its two stop-gradients;
* the straight-through gradient ``z + (z_q - z).detach()``;
* EMA codebook updates with Laplace smoothing (instead of the codebook loss);
* dead-code restart and k-means initialisation (two cures for codebook collapse).

The same autoencoder also runs with FSQ (:mod:`omni_edu.model.heads.fsq`) or with no
quantiser at all (a continuous autoencoder), so lesson 03 can measure what quantisation
throws away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from omni_edu.model.heads.fsq import FSQ
from omni_edu.profiles import Profile, get_profile

# Width of the autoencoder's convolutions per profile (bigger pictures, wider network).
AUTOENCODER_CHANNELS = {"ci": 32, "cpu": 32, "gpu": 64}


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
        if z.shape[-1] != self.code_dim:
            raise ValueError(
                f"z should be (..., {self.code_dim}) with the code dimension last; "
                f"got {tuple(z.shape)}."
            )
        flat = z.reshape(-1, self.code_dim)
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

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for integer ``indices`` ``(...)``; returns ``(..., code_dim)``."""
        return self.codebook[indices]

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


class FSQQuantizer(nn.Module):
    """Adapter that gives :class:`~omni_edu.model.heads.fsq.FSQ` the quantiser interface."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.fsq = FSQ(levels)
        self.codebook_size = self.fsq.codebook_size
        self.code_dim = len(levels)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z_q = self.fsq(z)
        indices = self.fsq.codes_to_indices(z_q.detach())
        usage, perplexity = codebook_usage(indices, self.codebook_size)
        return QuantizerOutput(
            z_q=z_q, indices=indices, loss=z.new_zeros(()), perplexity=perplexity, usage=usage
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices)


# --------------------------------------------------------------------------------------
# The autoencoder
# --------------------------------------------------------------------------------------


@dataclass
class VQVAEConfig:
    """Sizes of the image autoencoder.

    ``downsample`` stride-2 convolutions shrink the image by ``2**downsample`` per side:
    a 16x16 image with ``downsample=2`` becomes a 4x4 grid of 16 codes.
    """

    image_size: int = 16
    channels: int = 32  # width of the convolutional stacks
    downsample: int = 2
    quantizer: str = "vq"  # "vq", "fsq" or "none" (continuous autoencoder)
    codebook_size: int = 64  # K, for "vq"
    code_dim: int = 8  # for "vq" and "none"; FSQ uses len(fsq_levels)
    beta: float = 0.25  # weight of the commitment loss
    ema: bool = False  # EMA codebook updates instead of the codebook loss
    decay: float = 0.99
    eps: float = 1e-5
    dead_code_steps: int = 0  # restart codes unused for this many steps (0 = never)
    kmeans_init: bool = False
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)

    @property
    def grid_size(self) -> int:
        return self.image_size // 2**self.downsample

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides) -> VQVAEConfig:
        """Sizes for a profile: one code per ``patch_size`` x ``patch_size`` patch, so an
        image becomes as many VQ tokens as it has patch tokens."""
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        settings = {
            "image_size": profile.image_size,
            "downsample": int(math.log2(profile.patch_size)),
            "channels": AUTOENCODER_CHANNELS.get(profile.name, 32),
        }
        settings.update(overrides)
        return cls(**settings)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


@dataclass
class VQVAEOutput:
    recon: torch.Tensor  # (batch, 3, H, W)
    loss: torch.Tensor  # reconstruction + quantiser loss
    recon_loss: torch.Tensor
    quant: QuantizerOutput


class VQVAE(nn.Module):
    """Image ``(batch, 3, H, W)`` -> grid of codes ``(batch, h, w)`` -> image."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        if config.image_size % 2**config.downsample:
            raise ValueError(
                f"image_size {config.image_size} is not divisible by 2**downsample "
                f"= {2**config.downsample}; pick a smaller downsample."
            )
        self.config = config
        c = config.channels
        if config.quantizer == "vq":
            code_dim = config.code_dim
            self.quantizer: nn.Module = VectorQuantizer(
                config.codebook_size,
                code_dim,
                beta=config.beta,
                ema=config.ema,
                decay=config.decay,
                eps=config.eps,
                dead_code_steps=config.dead_code_steps,
                kmeans_init=config.kmeans_init,
            )
        elif config.quantizer == "fsq":
            self.quantizer = FSQQuantizer(config.fsq_levels)
            code_dim = len(config.fsq_levels)
        elif config.quantizer == "none":
            code_dim = config.code_dim
            self.quantizer = IdentityQuantizer()
        else:
            raise ValueError(f"quantizer should be 'vq', 'fsq' or 'none'; got {config.quantizer!r}")
        self.code_dim = code_dim
        down = [nn.Conv2d(3, c, 3, padding=1)]
        for _ in range(config.downsample):
            down += [nn.ReLU(), nn.Conv2d(c, c, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*down, ResBlock(c), nn.ReLU(), nn.Conv2d(c, code_dim, 1))
        up: list[nn.Module] = [nn.Conv2d(code_dim, c, 3, padding=1), ResBlock(c)]
        for _ in range(config.downsample):
            up += [nn.ReLU(), nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1))

    @property
    def vocab_size(self) -> int | None:
        """Number of distinct tokens (``None`` for the continuous autoencoder)."""
        return getattr(self.quantizer, "codebook_size", None)

    @property
    def tokens_per_image(self) -> int:
        return self.config.grid_size**2

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images should be (batch, 3, {size}, {size}); got {tuple(images.shape)}."
            )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``(batch, h, w, code_dim)`` (before quantisation)."""
        self._check_images(images)
        return self.encoder(images).permute(0, 2, 3, 1)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Codes ``(batch, h, w, code_dim)`` -> images ``(batch, 3, H, W)``."""
        return self.decoder(z_q.permute(0, 3, 1, 2))

    def forward(self, images: torch.Tensor) -> VQVAEOutput:
        quant = self.quantizer(self.encode(images))
        recon = self.decode(quant.z_q)
        recon_loss = F.mse_loss(recon, images)
        return VQVAEOutput(
            recon=recon, loss=recon_loss + quant.loss, recon_loss=recon_loss, quant=quant
        )

    @torch.no_grad()
    def encode_to_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(batch, 3, H, W)`` -> token ids ``(batch, h * w)``, row by row."""
        if self.vocab_size is None:
            raise ValueError("The continuous autoencoder (quantizer='none') has no token ids.")
        quant = self.quantizer(self.encode(images))
        return quant.indices.reshape(images.shape[0], -1)

    @torch.no_grad()
    def decode_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids ``(batch, h * w)`` -> images ``(batch, 3, H, W)`` clipped to ``[0, 1]``."""
        if self.vocab_size is None:
            raise ValueError("The continuous autoencoder (quantizer='none') has no token ids.")
        g = self.config.grid_size
        if indices.dim() != 2 or indices.shape[1] != g * g:
            raise ValueError(
                f"indices should be (batch, {g * g}) for a {g}x{g} code grid; "
                f"got {tuple(indices.shape)}."
            )
        codes = self.quantizer.lookup(indices.long()).reshape(indices.shape[0], g, g, -1)
        return self.decode(codes).clamp(0, 1)


def train_autoencoder(
    model: VQVAE,
    images: torch.Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` on ``images`` ``(n, 3, H, W)`` with Adam; return the curves.

    The history holds, per step: ``loss``, ``recon`` (pixel MSE), ``perplexity`` and
    ``usage`` (fraction of the codebook used in the batch; NaN without a codebook).
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    history: dict[str, list[float]] = {"loss": [], "recon": [], "perplexity": [], "usage": []}
    model.train()
    for _ in tqdm(range(steps), desc="autoencoder", disable=not progress, leave=False):
        batch = images[torch.randint(len(images), (batch_size,), generator=generator)]
        out = model(batch.to(device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        history["loss"].append(out.loss.item())
        history["recon"].append(out.recon_loss.item())
        history["perplexity"].append(out.quant.perplexity)
        history["usage"].append(out.quant.usage)
    model.eval()
    return history


@torch.no_grad()
def evaluate_autoencoder(
    model: VQVAE, images: torch.Tensor, batch_size: int = 256
) -> dict[str, float]:
    """Reconstruction MSE and codebook use of ``model`` over ``images`` ``(n, 3, H, W)``.

    Returns ``recon_mse`` (mean squared pixel error), ``usage`` (fraction of codes used
    at least once) and ``perplexity`` (effective number of codes) over the whole set.
    """
    model.eval()
    device = next(model.parameters()).device
    errors, all_indices = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        out = model(batch)
        errors.append(F.mse_loss(out.recon, batch, reduction="sum").item())
        if out.quant.indices is not None:
            all_indices.append(out.quant.indices.reshape(-1).cpu())
    result = {"recon_mse": sum(errors) / images.numel()}
    if all_indices:
        usage, perplexity = codebook_usage(torch.cat(all_indices), model.vocab_size)
        result.update(usage=usage, perplexity=perplexity)
    else:
        result.update(usage=float("nan"), perplexity=float("nan"))
    return result
