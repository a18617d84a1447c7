"""Discrete Representation Inconsistency, measured in one space (lesson 03's claim check).

Chapter 000: "strict quantization introduces Discrete Representation Inconsistency (DRI),
throwing away fine-grained continuous details." Two halves, each measured the same way for
a quantised and a continuous bottleneck, so the numbers can be set side by side:

* **inconsistency**: nudge every held-out picture so little that it is the same picture
  (Gaussian noise far below its own pixel noise) and measure, for each *path* from a
  picture to what a decoder draws, how far three things move: the vector the decoder reads
  (relative to that path's typical vector length), the decoded picture (pixel RMS), and the
  attributes the course's judge reads off the decoded picture (the share that flips). All
  of it **on the object's patches**: a background patch holds nothing but the dark
  background and noise, so what happens there is not a "fine-grained detail" of the scene.
* **information loss**: the reconstruction error of each path on the clean pictures.

The paths (:data:`PATHS`): the course's image tokenizer decoding its **codes** (the
quantised path), the same model decoding its **latents** (its quantiser skipped: the same
encoder and decoder), and a **continuous autoencoder** of the same width (no quantiser at
all). A measured baseline sits beside them: how much the nudge moved the input pixels, and
how often it flips the judge on the real pictures themselves.

:func:`measure` does one seed (one trained tokenizer and one continuous autoencoder);
the lesson repeats it over three seeds and applies a rule fixed before the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from omni_edu.model.heads.vq import QuantizedAutoencoder

# The three paths: (the model's role, decode its codes?).
PATHS: dict[str, tuple[str, bool]] = {
    "codes": ("tokenizer", True),
    "latents": ("tokenizer", False),
    "continuous autoencoder": ("continuous", False),
}

# A patch shows part of the object if one of its pixels is far brighter than the dark
# background (0.08) plus its pixel noise (sigma 0.03) could make it.
OBJECT_LEVEL = 0.3


def object_patches(images: Tensor, patch_size: int, level: float = OBJECT_LEVEL) -> Tensor:
    """``(n, n_patches)`` bool, row by row over the patch grid: True where a patch of
    ``images`` ``(n, 3, H, W)`` holds a pixel brighter than ``level`` (part of the object)."""
    if images.dim() != 4 or images.shape[-1] % patch_size or images.shape[-2] % patch_size:
        raise ValueError(
            f"images should be (n, 3, H, W) with H and W multiples of {patch_size}; got "
            f"{tuple(images.shape)}."
        )
    p = patch_size
    brightest = images.unfold(2, p, p).unfold(3, p, p).amax(dim=(1, 4, 5))  # (n, h, w)
    return (brightest > level).reshape(len(images), -1)


def patch_pixels(patches: Tensor, image_size: int) -> Tensor:
    """``(n, 1, H, W)`` bool: the pixels of the patches marked in ``patches``
    ``(n, n_patches)``, a square grid row by row (a nearest-neighbour upscale of it)."""
    grid = round(patches.shape[1] ** 0.5)
    if grid * grid != patches.shape[1]:
        raise ValueError(f"patches should mark a square grid; got {patches.shape[1]} per picture.")
    marks = patches.reshape(-1, 1, grid, grid).float()
    return torch.nn.functional.interpolate(marks, size=(image_size, image_size)) > 0


@torch.no_grad()
def decoder_inputs(model: QuantizedAutoencoder, x: Tensor, quantize: bool) -> Tensor:
    """``(n, n_tokens, dim)``: the vectors ``model``'s decoder reads for pictures ``x``: the
    codes (``quantize=True``: each token's code vector) or the continuous latents."""
    model.eval()
    if quantize:
        ids = model.encode_to_indices(x)
        return model.quantizer.lookup(ids).float()
    return model.encode_latents(x)


@torch.no_grad()
def decode(model: QuantizedAutoencoder, vectors: Tensor) -> Tensor:
    """The pictures ``(n, 3, H, W)`` ``model`` draws from ``vectors`` ``(n, n_tokens, dim)``
    (codes or latents: the same decoder), clipped to ``[0, 1]``."""
    return model.decode_latents(vectors)


def _rms(x: Tensor, mask: Tensor) -> Tensor:
    """``(n,)`` root-mean-square of ``x`` ``(n, ...)`` over the True entries of ``mask``."""
    mask = mask.expand_as(x).float()
    return ((x.pow(2) * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)).sqrt()


@torch.no_grad()
def path_change(
    model: QuantizedAutoencoder,
    quantize: bool,
    x: Tensor,
    x_new: Tensor,
    on_object: Tensor,
    judge: nn.Module,
) -> dict[str, Tensor]:
    """How one path moves when its input moves from ``x`` to ``x_new`` (pictures
    ``(n, 3, H, W)``), on the object patches ``on_object`` ``(n, n_patches)``.

    Returns per picture ``(n,)`` tensors: ``vector`` (mean over object tokens of the change
    of the vector the decoder reads, divided by that path's root-mean-square vector length
    over all clean tokens), ``decoded`` (RMS change of the decoded picture over the object
    patches' pixels), ``flips`` (share of the judge's four attributes that differ between
    the two decoded pictures) and ``recon`` (mean squared error of the clean picture's
    reconstruction, all pixels); and ``attributes`` ``(n, 4)``, what the judge reads off the
    clean picture's reconstruction (to see that it is no constant predictor).
    """
    device = next(model.parameters()).device
    x, x_new = x.to(device), x_new.to(device)
    v, v_new = decoder_inputs(model, x, quantize), decoder_inputs(model, x_new, quantize)
    if v.shape[1] != on_object.shape[1]:
        raise ValueError(
            f"the model reads {v.shape[1]} tokens per picture but on_object marks "
            f"{on_object.shape[1]} patches: measure with one token per patch."
        )
    length = v.pow(2).sum(-1).mean().sqrt().clamp(min=1e-12)
    moved = (v_new - v).norm(dim=-1).cpu() / length.cpu()  # (n, tokens)
    mask = on_object.float()
    vector = (moved * mask).sum(1) / mask.sum(1).clamp(min=1)
    drawn, drawn_new = decode(model, v).cpu(), decode(model, v_new).cpu()
    pixels = patch_pixels(on_object, x.shape[-1])
    read = judge.predict(drawn)
    return {
        "vector": vector,
        "decoded": _rms(drawn_new - drawn, pixels),
        "flips": (read != judge.predict(drawn_new)).float().mean(1),
        "recon": (drawn - x.cpu()).pow(2).flatten(1).mean(1),
        "attributes": read,
    }


@torch.no_grad()
def measure(
    tokenizer: QuantizedAutoencoder,
    continuous: QuantizedAutoencoder,
    x: Tensor,
    x_new: Tensor,
    patch_size: int,
    judge: nn.Module,
) -> dict[str, dict[str, Tensor]]:
    """One seed: every path of :data:`PATHS` and the baseline, on the same pictures.

    ``tokenizer`` has codes and latents (quantiser dropout), ``continuous`` no quantiser.
    Returns ``{path: path_change(...)}`` plus ``"input"``: ``{"decoded": the RMS change of
    the input pixels themselves on the object patches, "flips": the judge's flips on the
    real pictures}`` (per picture).
    """
    on_object = object_patches(x.cpu(), patch_size)
    models = {"tokenizer": tokenizer, "continuous": continuous}
    out = {
        name: path_change(models[role], quantize, x, x_new, on_object, judge)
        for name, (role, quantize) in PATHS.items()
    }
    pixels = patch_pixels(on_object, x.shape[-1])
    x, x_new = x.cpu(), x_new.cpu()
    out["input"] = {
        "decoded": _rms(x_new - x, pixels),
        "flips": (judge.predict(x) != judge.predict(x_new)).float().mean(1),
    }
    return out


def paired(a: Tensor, b: Tensor, z: float = 1.96) -> dict[str, float]:
    """Mean of ``a - b`` over pairs with a normal 95 % interval (``{"mean", "low", "high"}``)."""
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"give two (n,) tensors with n >= 2; got {tuple(a.shape)}, {tuple(b.shape)}."
        )
    d = (a - b).double()
    mean, half = d.mean().item(), z * d.std().item() / len(d) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half}


def ratio(
    runs: Sequence[dict], key: str, a: str = "codes", b: str = "continuous autoencoder"
) -> list[float]:
    """Per run, the mean of ``key`` on path ``a`` divided by its mean on path ``b``."""
    return [r[a][key].mean().item() / max(r[b][key].mean().item(), 1e-12) for r in runs]


# --------------------------------------------------------------------------------------
# Discrete Representation Inconsistency: does nearly the same input keep its tokens?
# --------------------------------------------------------------------------------------


def shift_along(x: torch.Tensor, dim: int, steps: int = 1) -> torch.Tensor:
    """``x`` moved by ``steps`` positions along ``dim`` (towards higher indices), the
    first slice repeated into the gap: a picture moved one pixel right (``dim=-1``) or a
    sound delayed by one log-mel frame (``dim=1``)."""
    if not 0 < steps < x.shape[dim]:
        raise ValueError(f"steps should be in [1, {x.shape[dim]}) for dim {dim}; got {steps}.")
    edge = x.narrow(dim, 0, 1)
    repeated = edge.expand(*[steps if d == dim % x.dim() else -1 for d in range(x.dim())])
    return torch.cat([repeated, x.narrow(dim, 0, x.shape[dim] - steps)], dim=dim)


def add_noise(
    x: torch.Tensor, sigma: float, seed: int = 0, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``sigma``, clipped to ``[low, high]``."""
    if sigma < 0:
        raise ValueError(f"sigma should be >= 0; got {sigma}.")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return (x + sigma * noise).clamp(low, high)


@torch.no_grad()
def representation_change(
    model: QuantizedAutoencoder, x: torch.Tensor, x_new: torch.Tensor, batch_size: int = 256
) -> dict[str, float]:
    """How much a tokenizer's output moves when its input moves from ``x`` to ``x_new``.

    Returns:
        latent_change: the encoder's continuous output, before quantisation: mean over
            token positions of ``|z_new - z|``, divided by the root-mean-square ``|z|``
            (what a continuous-token model would see move);
        token_change: fraction of token positions whose id changes (NaN for the
            continuous autoencoder, which has no ids);
        sequence_change: fraction of examples whose token sequence changes at all.
    """
    if x.shape != x_new.shape:
        raise ValueError(
            f"x and x_new should have one shape; got {tuple(x.shape)} and {tuple(x_new.shape)}."
        )
    model.eval()
    device = next(model.parameters()).device
    moved = squared = positions = changed = sequences = 0.0
    discrete = model.vocab_size is not None
    for start in range(0, len(x), batch_size):
        a = x[start : start + batch_size].to(device)
        b = x_new[start : start + batch_size].to(device)
        za, zb = model.encode(a).float(), model.encode(b).float()  # (batch, *grid, code_dim)
        moved += (zb - za).norm(dim=-1).sum().item()
        squared += za.pow(2).sum().item()
        positions += za[..., 0].numel()
        if discrete:
            ids_a = model.quantizer.indices(za).reshape(len(a), -1)
            ids_b = model.quantizer.indices(zb).reshape(len(b), -1)
            differ = ids_a != ids_b
            changed += differ.sum().item()
            sequences += differ.any(dim=1).sum().item()
    nan = float("nan")
    return {
        "latent_change": (moved / positions) / (squared / positions) ** 0.5,
        "token_change": changed / positions if discrete else nan,
        "sequence_change": sequences / len(x) if discrete else nan,
    }
