"""Discrete image and sound tokens: small convolutional VQ-VAEs.

An encoder turns an image ``(batch, 3, H, W)`` into a grid of vectors
``(batch, code_dim, h, w)``; the quantiser replaces every vector by its nearest entry in
a learned codebook of ``K`` codes, so the image becomes ``h * w`` integers (tokens a
decoder language model can predict with a softmax); the decoder turns the codes back
into pixels. :class:`AudioVQVAE` does the same for log-mel frames, one code per audio
token. The quantisers and the pieces of vector quantisation the lesson writes out
(nearest code, straight-through gradient, the two stop-gradient losses, EMA updates,
dead-code restart, k-means initialisation) are :mod:`omni_edu.model.heads.quantizers`;
the loss here is ``reconstruction + the quantiser's own loss``.

The same autoencoder also runs with FSQ (:mod:`omni_edu.model.heads.fsq`) or with no
quantiser at all (a continuous autoencoder), so lesson 03 can measure what quantisation
throws away. With *quantiser dropout* one autoencoder is both: a share of every training
batch skips the quantiser and is decoded from the encoder's continuous output, so the one
decoder learns to draw from code ids (``encode_to_indices`` / ``decode_from_indices``) and
from continuous latents (``encode_latents`` / ``decode_latents``) on the same grid. The
models live here; training them is :mod:`omni_edu.parts.tokenizers`' job (nothing under
``omni_edu.model`` imports training code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.modalities.audio import frame_audio, unframe_audio
from omni_edu.model.heads.quantizers import (
    FSQQuantizer,
    IdentityQuantizer,
    QuantizerOutput,
    VectorQuantizer,
    codebook_usage,
)
from omni_edu.profiles import Profile, get_profile

# Width of the autoencoders' convolutions per profile (bigger pictures, wider network).
AUTOENCODER_CHANNELS = {"ci": 32, "cpu": 32, "gpu": 64}
AUDIO_AUTOENCODER_CHANNELS = {"ci": 128, "cpu": 128, "gpu": 256}


# --------------------------------------------------------------------------------------
# The autoencoders: pictures and sounds
# --------------------------------------------------------------------------------------


@dataclass
class QuantizerConfig:
    """The bottleneck of an autoencoder: which quantiser, and its settings."""

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
    # Quantiser dropout: the share of the examples of each training batch decoded from the
    # encoder's continuous output instead of their codes, so one decoder serves both
    # (0 = a plain VQ-VAE; no effect without a quantiser).
    quantizer_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantizer_dropout < 1.0:
            raise ValueError(
                f"quantizer_dropout should be a share in [0, 1); got {self.quantizer_dropout}."
            )

    def describe(self) -> str:
        """The bottleneck in a few words: ``"VQ K=256"``, ``"FSQ 64 (4,4,4)"`` or
        ``"continuous (8 per token)"``, with ``", quantiser dropout 0.25"`` when it has one."""
        if self.quantizer == "vq":
            name = f"VQ K={self.codebook_size}"
        elif self.quantizer == "fsq":
            name = f"FSQ {math.prod(self.fsq_levels)} ({','.join(map(str, self.fsq_levels))})"
        else:
            return f"continuous ({self.code_dim} per token)"
        if self.quantizer_dropout:
            name += f", quantiser dropout {self.quantizer_dropout:g}"
        return name

    def build_quantizer(self) -> tuple[nn.Module, int]:
        """The quantiser and the width of the vectors it takes (the encoder's output)."""
        if self.quantizer == "vq":
            quantizer = VectorQuantizer(
                self.codebook_size,
                self.code_dim,
                beta=self.beta,
                ema=self.ema,
                decay=self.decay,
                eps=self.eps,
                dead_code_steps=self.dead_code_steps,
                kmeans_init=self.kmeans_init,
            )
            return quantizer, self.code_dim
        if self.quantizer == "fsq":
            return FSQQuantizer(self.fsq_levels), len(self.fsq_levels)
        if self.quantizer == "none":
            return IdentityQuantizer(), self.code_dim
        raise ValueError(f"quantizer should be 'vq', 'fsq' or 'none'; got {self.quantizer!r}")


@dataclass
class VQVAEConfig(QuantizerConfig):
    """Sizes of the image autoencoder (and, inherited, its quantiser).

    ``downsample`` stride-2 convolutions shrink the image by ``2**downsample`` per side:
    a 16x16 image with ``downsample=2`` becomes a 4x4 grid of 16 codes.
    """

    image_size: int = 16
    channels: int = 32  # width of the convolutional stacks
    downsample: int = 2

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


@dataclass
class AudioVQVAEConfig(QuantizerConfig):
    """Sizes of the sound autoencoder (and, inherited, its quantiser).

    One code per audio token of ``frames_per_token`` log-mel frames, the same grouping as
    :func:`omni_edu.modalities.frame_audio`: a discrete sound has as many tokens as a
    continuous one.
    """

    n_mels: int = 32
    frames_per_token: int = 4
    channels: int = 128  # width of the convolutional stacks

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides) -> AudioVQVAEConfig:
        """Sizes for a profile: its ``n_mels``, four frames per token (1/16 s)."""
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        settings = {
            "n_mels": profile.n_mels,
            "channels": AUDIO_AUTOENCODER_CHANNELS.get(profile.name, 128),
        }
        settings.update(overrides)
        return cls(**settings)


class ResBlock(nn.Module):
    """``x + f(x)`` with a 3-wide and a 1-wide convolution, in 1-D (sound) or 2-D (pictures)."""

    def __init__(self, channels: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.net = nn.Sequential(
            nn.ReLU(),
            conv(channels, channels, 3, padding=1),
            nn.ReLU(),
            conv(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


@dataclass
class VQVAEOutput:
    recon: torch.Tensor  # the input's shape
    loss: torch.Tensor  # reconstruction + quantiser loss
    recon_loss: torch.Tensor
    quant: QuantizerOutput


class QuantizedAutoencoder(nn.Module):
    """encoder -> quantiser -> decoder, and the token interface of a tokenizer.

    ``encode_to_indices(x) -> (batch, n_tokens)`` int64, ``decode_from_indices(ids) -> x``
    and ``vocab_size``: all a language model needs to read and write a modality as code
    ids. ``encode_latents(x) -> (batch, n_tokens, latent_dim)`` and
    ``decode_latents(latents) -> x`` are the same grid without the quantiser: the
    continuous path (trained when ``config.quantizer_dropout > 0``, or when there is no
    quantiser). Subclasses supply ``encode`` (input -> ``(batch, *grid, code_dim)``), ``decode``
    (the inverse), ``_check_input``, ``_grid`` (the code grid for ``n_tokens`` ids) and
    ``output_range`` (where decoded values are clipped).
    """

    output_range: tuple[float, float]

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        self.quantizer, self.code_dim = config.build_quantizer()

    @property
    def vocab_size(self) -> int | None:
        """Number of distinct tokens (``None`` for the continuous autoencoder)."""
        return getattr(self.quantizer, "codebook_size", None)

    @property
    def latent_dim(self) -> int:
        """Numbers per token of the continuous path (``encode_latents``' last axis)."""
        return self.code_dim

    def forward(self, x: torch.Tensor, quantize: bool = True) -> VQVAEOutput:
        """Encode, quantise, decode. ``recon`` has ``x``'s shape.

        ``quantize=False`` decodes every example from its continuous latents (the
        quantiser still runs, so ``quant`` reports the codes and their loss). In training
        mode a share ``config.quantizer_dropout`` of the examples skips the quantiser.
        """
        z = self.encode(x)
        quant = self.quantizer(z)
        z_dec = quant.z_q
        skip = None
        if not quantize:
            skip = torch.ones(len(x), dtype=torch.bool, device=x.device)
        elif self.training and self.config.quantizer_dropout > 0:
            # One draw per example, none when the share is 0: a plain VQ-VAE consumes
            # exactly the random numbers it always did.
            skip = torch.rand(len(x), device=x.device) < self.config.quantizer_dropout
        if skip is not None:
            continuous = self.quantizer.continuous(z).to(z_dec.dtype)
            z_dec = torch.where(skip.view(-1, *[1] * (z.dim() - 1)), continuous, z_dec)
        recon = self.decode(z_dec)
        recon_loss = F.mse_loss(recon, x)
        return VQVAEOutput(
            recon=recon, loss=recon_loss + quant.loss, recon_loss=recon_loss, quant=quant
        )

    def _require_tokens(self) -> None:
        if self.vocab_size is None:
            raise ValueError("The continuous autoencoder (quantizer='none') has no token ids.")

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> token ids ``(batch, n_tokens)`` int64, in the order of the code grid
        (row by row for pictures, in time for sounds). Never changes the codebook."""
        self._require_tokens()
        return self.quantizer.indices(self.encode(x)).reshape(x.shape[0], -1)

    @torch.no_grad()
    def decode_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids ``(batch, n_tokens)`` -> decoded input, clipped to ``output_range``."""
        self._require_tokens()
        if indices.dim() != 2:
            raise ValueError(f"indices should be (batch, n_tokens); got {tuple(indices.shape)}.")
        grid = self._grid(indices.shape[1])
        codes = self.quantizer.lookup(indices.long()).reshape(indices.shape[0], *grid, -1)
        return self.decode(codes).clamp(*self.output_range)

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> continuous latents ``(batch, n_tokens, latent_dim)`` float32, one per
        token in the order of ``encode_to_indices`` (row by row for pictures, in time for
        sounds): what the decoder reads when the quantiser is skipped."""
        latents = self.quantizer.continuous(self.encode(x)).float()
        return latents.reshape(x.shape[0], -1, self.latent_dim)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Continuous latents ``(batch, n_tokens, latent_dim)`` -> decoded input, clipped to
        ``output_range``: pictures ``(batch, 3, H, W)`` or mels ``(batch, frames, n_mels)``."""
        if latents.dim() != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents should be (batch, n_tokens, {self.latent_dim}); got "
                f"{tuple(latents.shape)}. encode_latents gives that shape."
            )
        grid = self._grid(latents.shape[1])
        return self.decode(latents.reshape(latents.shape[0], *grid, -1)).clamp(*self.output_range)


class VQVAE(QuantizedAutoencoder):
    """Image ``(batch, 3, H, W)`` in [0, 1] -> grid of codes ``(batch, h, w)`` -> image."""

    output_range = (0.0, 1.0)

    def __init__(self, config: VQVAEConfig) -> None:
        if config.image_size % 2**config.downsample:
            raise ValueError(
                f"image_size {config.image_size} is not divisible by 2**downsample "
                f"= {2**config.downsample}; pick a smaller downsample."
            )
        super().__init__(config)
        c, code_dim = config.channels, self.code_dim
        down = [nn.Conv2d(3, c, 3, padding=1)]
        for _ in range(config.downsample):
            down += [nn.ReLU(), nn.Conv2d(c, c, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*down, ResBlock(c), nn.ReLU(), nn.Conv2d(c, code_dim, 1))
        up: list[nn.Module] = [nn.Conv2d(code_dim, c, 3, padding=1), ResBlock(c)]
        for _ in range(config.downsample):
            up += [nn.ReLU(), nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1))

    @property
    def tokens_per_image(self) -> int:
        return self.config.grid_size**2

    def _check_input(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images should be (batch, 3, {size}, {size}); got {tuple(images.shape)}."
            )

    def _grid(self, n_tokens: int) -> tuple[int, ...]:
        g = self.config.grid_size
        if n_tokens != g * g:
            raise ValueError(
                f"a {g}x{g} code grid takes ids (batch, {g * g}) or latents (batch, {g * g}, "
                f"latent_dim); got {n_tokens} tokens per image."
            )
        return (g, g)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``(batch, h, w, code_dim)`` (before quantisation)."""
        self._check_input(images)
        return self.encoder(images).permute(0, 2, 3, 1)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Codes ``(batch, h, w, code_dim)`` -> images ``(batch, 3, H, W)``."""
        return self.decoder(z_q.permute(0, 3, 1, 2))


class AudioVQVAE(QuantizedAutoencoder):
    """Log-mel frames ``(batch, frames, n_mels)`` -> one code per audio token -> frames.

    An audio token is ``frames_per_token`` consecutive frames, grouped exactly as
    :func:`~omni_edu.modalities.frame_audio` groups them. Each token is one position of
    a 1-D convolutional stack; its 3-wide convolutions let a code see the neighbouring
    tokens (a sound's onset or decay spans token boundaries).
    """

    output_range = (-1.0, 1.0)  # log-mel features: silence is -1, a full-scale tone about 1

    def __init__(self, config: AudioVQVAEConfig) -> None:
        super().__init__(config)
        c, code_dim = config.channels, self.code_dim
        width = config.frames_per_token * config.n_mels  # numbers in one audio token
        self.encoder = nn.Sequential(
            nn.Conv1d(width, c, 3, padding=1),
            ResBlock(c, dims=1),
            nn.ReLU(),
            nn.Conv1d(c, code_dim, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv1d(code_dim, c, 3, padding=1),
            ResBlock(c, dims=1),
            nn.ReLU(),
            nn.Conv1d(c, width, 3, padding=1),
        )

    def tokens_per_clip(self, n_frames: int) -> int:
        """Audio tokens of a clip of ``n_frames`` log-mel frames."""
        return n_frames // self.config.frames_per_token

    def _check_input(self, mels: torch.Tensor) -> None:
        k, n_mels = self.config.frames_per_token, self.config.n_mels
        if mels.dim() != 3 or mels.shape[2] != n_mels or mels.shape[1] % k:
            raise ValueError(
                f"mels should be (batch, frames, {n_mels}) with frames a multiple of "
                f"{k} (frames per token); got {tuple(mels.shape)}."
            )

    def _grid(self, n_tokens: int) -> tuple[int, ...]:
        if n_tokens < 1:
            raise ValueError("indices or latents should hold at least one audio token per clip.")
        return (n_tokens,)

    def encode(self, mels: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``(batch, n_tokens, code_dim)`` (before quantisation)."""
        self._check_input(mels)
        tokens = frame_audio(mels, self.config.frames_per_token)  # (batch, T, k * n_mels)
        return self.encoder(tokens.transpose(1, 2)).transpose(1, 2)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Codes ``(batch, n_tokens, code_dim)`` -> mels ``(batch, n_tokens * k, n_mels)``."""
        tokens = self.decoder(z_q.transpose(1, 2)).transpose(1, 2)
        return unframe_audio(tokens, self.config.frames_per_token)


@torch.no_grad()
def evaluate_autoencoder(
    model: QuantizedAutoencoder, data: torch.Tensor, batch_size: int = 256, quantize: bool = True
) -> dict[str, float]:
    """Reconstruction MSE and codebook use of ``model`` over ``data`` (pictures
    ``(n, 3, H, W)`` or log-mel clips ``(n, frames, n_mels)``).

    Returns ``recon_mse`` (mean squared error per value), ``usage`` (fraction of codes
    used at least once) and ``perplexity`` (effective number of codes) over the whole set.
    ``quantize=False`` measures the continuous path (the decoder reads the encoder's
    latents); usage and perplexity still describe the codes the quantiser chose.
    """
    model.eval()
    device = next(model.parameters()).device
    errors, all_indices = [], []
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size].to(device)
        out = model(batch, quantize=quantize)
        errors.append(F.mse_loss(out.recon.float(), batch, reduction="sum").item())
        if out.quant.indices is not None:
            all_indices.append(out.quant.indices.reshape(-1).cpu())
    result = {"recon_mse": sum(errors) / data.numel()}
    if all_indices:
        usage, perplexity = codebook_usage(torch.cat(all_indices), model.vocab_size)
        result.update(usage=usage, perplexity=perplexity)
    else:
        result.update(usage=float("nan"), perplexity=float("nan"))
    return result
