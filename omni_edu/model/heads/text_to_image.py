"""Text -> image with one decoder and two kinds of image token (lesson 04's experiment).

The decoder reads a caption, then writes an image one token at a time, row by row:

    [caption words ...] <boi> img_1 img_2 ... img_N

Only the image tokens differ between the two variants, so everything else (decoder,
caption embedding, data, training budget) can be held equal:

* ``head="vq"``: an image token is a VQ-VAE code id (:mod:`~omni_edu.model.heads.vq`).
  The decoder embeds ids with a table and predicts the next id with a softmax, exactly
  like text. The VQ-VAE's decoder turns the ids back into pixels.
* ``head="flow"``: an image token is a raw ``p x p`` pixel patch, a continuous vector.
  The decoder embeds it with a linear map and a per-token
  :class:`~omni_edu.model.heads.flow.FlowHead` samples the next patch. No tokenizer, so
  nothing is lost to quantisation, but every token costs a few head evaluations.

Captions are left-padded to ``max_text_len`` so that the image starts at the same column
in every row; padded positions are hidden from attention.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.modalities.image import patchify, unpatchify
from omni_edu.model.heads.flow import FlowHead, FlowHeadConfig
from omni_edu.model.heads.vq import VQVAE
from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache
from omni_edu.profiles import Profile, get_profile
from omni_edu.train import History, TrainConfig, Trainer

HEADS = ("vq", "flow")
# The training budget (optimizer steps) of each text -> image run, per profile.
TRAIN_STEPS = {"ci": 900, "cpu": 1500, "gpu": 3000}


@dataclass
class TextToImageConfig:
    """Sizes of a caption-to-image decoder.

    ``head``: ``"vq"`` (code ids, softmax head) or ``"flow"`` (pixel patches, flow head).
    ``flow_repeats``: noise draws per image token in each training step; the flow head
    is tiny next to the decoder, so several draws per decoder pass are almost free and
    make its loss much less noisy (MAR uses 4).
    ``caption_dropout``: fraction of training captions replaced by an empty one, so the
    same model also learns unconditional images; classifier-free guidance at sampling
    contrasts the two (both heads support it).
    """

    head: str = "vq"
    text_vocab_size: int = 128
    pad_id: int = 0
    max_text_len: int = 24
    n_image_tokens: int = 16
    image_vocab_size: int = 64  # codebook size, for "vq"
    token_dim: int = 48  # 3 * patch * patch, for "flow"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    flow_width: int = 128
    flow_depth: int = 3
    flow_repeats: int = 4
    sampling_steps: int = 16
    caption_dropout: float = 0.1  # train without the caption this often, for guidance

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head should be one of {HEADS}; got {self.head!r}")

    @classmethod
    def from_profile(
        cls,
        head: str,
        text_vocab_size: int,
        pad_id: int = 0,
        profile: Profile | str | None = None,
        **overrides,
    ) -> TextToImageConfig:
        """Sizes for a profile: one image token per patch, the profile's decoder, a flow
        head as wide as the decoder (small next to it: two blocks)."""
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        p = profile.patch_size
        n_tokens = (profile.image_size // p) ** 2
        max_text_len = overrides.pop("max_text_len", 16)
        settings = {
            "head": head,
            "text_vocab_size": text_vocab_size,
            "pad_id": pad_id,
            "max_text_len": max_text_len,
            "n_image_tokens": n_tokens,
            "token_dim": 3 * p * p,
            "decoder": DecoderConfig.from_profile(profile, max_seq_len=max_text_len + n_tokens + 1),
            "flow_width": profile.d_model,
            "flow_depth": 2,
        }
        settings.update(overrides)
        return cls(**settings)


class TextToImage(nn.Module):
    """Caption ids ``(batch, max_text_len)`` -> image tokens, one decoder, one head."""

    def __init__(self, config: TextToImageConfig) -> None:
        super().__init__()
        self.config = config
        d = config.decoder.d_model
        self.text_embed = nn.Embedding(config.text_vocab_size, d)
        self.boi = nn.Parameter(0.02 * torch.randn(d))  # "begin of image": the first query
        if config.head == "vq":
            self.image_embed: nn.Module = nn.Embedding(config.image_vocab_size, d)
            self.head: nn.Module = nn.Linear(d, config.image_vocab_size)
        else:
            self.image_embed = nn.Linear(config.token_dim, d)
            self.head = FlowHead(
                FlowHeadConfig(
                    token_dim=config.token_dim,
                    cond_dim=d,
                    width=config.flow_width,
                    depth=config.flow_depth,
                    sampling_steps=config.sampling_steps,
                )
            )
        self.decoder = Decoder(config.decoder)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the decoder, the embeddings and the head, and the total."""

        def count(*modules: nn.Module) -> int:
            return sum(p.numel() for m in modules for p in m.parameters())

        counts = {
            "decoder": count(self.decoder),
            "embeddings": count(self.text_embed, self.image_embed) + self.boi.numel(),
            "head": count(self.head),
        }
        counts["total"] = sum(counts.values())
        return counts

    # ------------------------------------------------------------------------ sequences
    def _check(self, text_ids: torch.Tensor, image_tokens: torch.Tensor | None) -> None:
        c = self.config
        if text_ids.dim() != 2 or text_ids.shape[1] != c.max_text_len:
            raise ValueError(
                f"text_ids should be (batch, {c.max_text_len}), left-padded; got "
                f"{tuple(text_ids.shape)}. Use encode_captions(tokenizer, captions, "
                f"{c.max_text_len})."
            )
        if image_tokens is None:
            return
        expected = (
            (text_ids.shape[0], c.n_image_tokens)
            if c.head == "vq"
            else (text_ids.shape[0], c.n_image_tokens, c.token_dim)
        )
        if tuple(image_tokens.shape) != expected:
            kind = "code ids" if c.head == "vq" else "patches"
            raise ValueError(
                f"image_tokens ({kind}) should be {expected}; got {tuple(image_tokens.shape)}."
            )

    def _prefix(self, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings, real-token flags and positions of ``[caption, <boi>]``."""
        batch = text_ids.shape[0]
        real = torch.cat(
            [text_ids != self.config.pad_id, text_ids.new_ones(batch, 1, dtype=torch.bool)], 1
        )
        x = torch.cat([self.text_embed(text_ids), self.boi.expand(batch, 1, -1)], dim=1)
        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # real tokens count 0, 1, 2, ...
        return x, real, positions

    @staticmethod
    def _mask(real: torch.Tensor) -> torch.Tensor:
        """Causal mask that hides padding keys; ``(batch, seq, seq)``, True = may attend."""
        seq = real.shape[1]
        causal = torch.ones(seq, seq, dtype=torch.bool, device=real.device).tril()
        own = torch.eye(seq, dtype=torch.bool, device=real.device)  # a pad row sees itself
        return causal & (real[:, None, :] | own)

    def hidden_states(self, text_ids: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the states ``(batch, n_image_tokens, d_model)`` that predict
        image token ``k`` from the caption and tokens ``< k``."""
        self._check(text_ids, image_tokens)
        x, real, positions = self._prefix(text_ids)
        previous = self.image_embed(image_tokens[:, :-1])  # token k-1 is the input for k
        x = torch.cat([x, previous], dim=1)
        n_prev = previous.shape[1]
        real = torch.cat([real, real.new_ones(real.shape[0], n_prev)], dim=1)
        last = positions[:, -1:]
        positions = torch.cat([positions, last + torch.arange(1, n_prev + 1, device=x.device)], 1)
        hidden = self.decoder(x, positions, self._mask(real))
        return hidden[:, self.config.max_text_len :]

    def loss(self, text_ids: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the code ids (``vq``) or flow-matching loss of the patches."""
        if self.training and self.config.caption_dropout > 0:
            drop = torch.rand(text_ids.shape[0], device=text_ids.device)
            empty = (drop < self.config.caption_dropout)[:, None]
            text_ids = text_ids.masked_fill(empty, self.config.pad_id)
        hidden = self.hidden_states(text_ids, image_tokens)
        if self.config.head == "vq":
            logits = self.head(hidden)
            return F.cross_entropy(logits.flatten(0, 1), image_tokens.flatten())
        r = self.config.flow_repeats
        return self.head.loss(image_tokens.repeat(r, 1, 1), hidden.repeat(r, 1, 1))

    # ----------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        text_ids: torch.Tensor,
        temperature: float = 1.0,
        steps: int | None = None,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Write the image tokens for each caption, one token at a time (KV cache).

        ``temperature`` (``vq``): 0 picks the most likely code, 1 samples the softmax.
        ``steps`` (``flow``): Euler steps of the flow head per token.
        ``guidance``: classifier-free guidance scale; 1 is off. Above 1 the model also
        runs on an empty caption and pushes each token away from that unconditional
        prediction (logits for ``vq``, velocities for ``flow``), at twice the decoder cost.
        Returns code ids ``(batch, n_image_tokens)`` or patches
        ``(batch, n_image_tokens, token_dim)``.
        """
        self._check(text_ids, None)
        c = self.config
        batch = text_ids.shape[0]
        guided = guidance != 1.0
        if guided:  # second half of the batch: the same images without their caption
            text_ids = torch.cat([text_ids, torch.full_like(text_ids, c.pad_id)])
        rows = text_ids.shape[0]
        x, real, positions = self._prefix(text_ids)
        cache = KVCache(
            c.decoder, rows, max_len=x.shape[1] + c.n_image_tokens, device=x.device, dtype=x.dtype
        )
        hidden = self.decoder(x, positions, self._mask(real), cache=cache)[:, -1]
        tokens = []
        for k in range(c.n_image_tokens):
            token = self._next_token(hidden, batch, guidance, temperature, steps, generator)
            tokens.append(token)
            if k == c.n_image_tokens - 1:
                break
            real = torch.cat([real, real.new_ones(rows, 1)], dim=1)
            position = positions[:, -1:] + k + 1
            step_in = self.image_embed(token.repeat(rows // batch, *[1] * (token.dim() - 1)))
            hidden = self.decoder(step_in[:, None], position, real[:, None, :], cache=cache)[:, -1]
        return torch.stack(tokens, dim=1)

    def _next_token(
        self,
        hidden: torch.Tensor,
        batch: int,
        guidance: float,
        temperature: float,
        steps: int | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One image token per caption from the last hidden states ``(rows, d_model)``."""
        cond = hidden[:batch]
        uncond = hidden[batch:] if guidance != 1.0 else None
        if self.config.head == "flow":
            return self.head.sample(
                cond, steps=steps, guidance=guidance, generator=generator, uncond=uncond
            )
        logits = self.head(cond)
        if uncond is not None:
            logits_uncond = self.head(uncond)
            logits = logits_uncond + guidance * (logits - logits_uncond)
        if temperature <= 0:
            return logits.argmax(-1)
        probs = F.softmax(logits.float() / temperature, dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(hidden.device)


# --------------------------------------------------------------------------------------
# Between pictures and tokens
# --------------------------------------------------------------------------------------


def encode_captions(tokenizer, captions: Sequence[str], max_len: int) -> torch.Tensor:
    """Caption ids ``(batch, max_len)``, left-padded with the tokenizer's ``<pad>``."""
    out = torch.full((len(captions), max_len), tokenizer.pad_id, dtype=torch.long)
    for row, text in enumerate(captions):
        ids = tokenizer.encode(text)
        if len(ids) > max_len:
            raise ValueError(
                f"caption {text!r} has {len(ids)} tokens, more than max_len={max_len}."
            )
        if ids:
            out[row, max_len - len(ids) :] = torch.tensor(ids)
    return out


def patches_to_tokens(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Images ``(batch, 3, H, W)`` in [0, 1] -> patch tokens ``(batch, n, 3 * p * p)``
    centred to [-1, 1], the scale of the flow head's Gaussian noise."""
    return patchify(images, patch) * 2 - 1


def tokens_to_images(tokens: torch.Tensor, patch: int, image_size: int) -> torch.Tensor:
    """Inverse of :func:`patches_to_tokens`, clipped to [0, 1]."""
    return unpatchify((tokens + 1) / 2, patch, image_size, image_size).clamp(0, 1)


def image_tokens(
    images: torch.Tensor, head: str, vqvae: VQVAE | None = None, patch: int = 4
) -> torch.Tensor:
    """The training targets of ``head`` for ``images`` ``(batch, 3, H, W)``."""
    if head == "vq":
        if vqvae is None:
            raise ValueError("head='vq' needs the trained vqvae that turns images into codes.")
        return torch.cat([vqvae.encode_to_indices(chunk) for chunk in images.split(512)])
    return patches_to_tokens(images, patch)


def tokens_to_pictures(
    tokens: torch.Tensor,
    head: str,
    vqvae: VQVAE | None = None,
    patch: int = 4,
    image_size: int = 16,
) -> torch.Tensor:
    """Pictures ``(batch, 3, H, W)`` from generated tokens of ``head``."""
    if head == "vq":
        if vqvae is None:
            raise ValueError("head='vq' needs the vqvae to decode code ids into pixels.")
        return vqvae.decode_from_indices(tokens)
    return tokens_to_images(tokens, patch, image_size)


@dataclass
class Generation:
    """Pictures generated from captions, with what it cost."""

    pictures: torch.Tensor  # (n, 3, H, W)
    seconds_per_image: float
    decoder_passes: int  # per image: one per image token (the KV cache keeps the rest)
    head_passes: int  # per image: one per token for vq, one per Euler step per token for flow


def generate_pictures(
    model: TextToImage,
    text_ids: torch.Tensor,
    vqvae: VQVAE | None = None,
    patch: int = 4,
    image_size: int = 16,
    temperature: float = 1.0,
    steps: int | None = None,
    guidance: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
) -> Generation:
    """Generate one picture per caption and time it (wall clock, whole batch)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    pictures = []
    start = time.perf_counter()
    for chunk in text_ids.split(batch_size):
        tokens = model.generate(chunk.to(device), temperature, steps, guidance, generator)
        pictures.append(
            tokens_to_pictures(tokens, model.config.head, vqvae, patch, image_size).cpu()
        )
    seconds = (time.perf_counter() - start) / len(text_ids)
    n = model.config.n_image_tokens
    head_passes = n * (steps or model.config.sampling_steps) if model.config.head == "flow" else n
    runs = 2 if guidance != 1.0 else 1  # guidance runs everything twice (with, without)
    return Generation(torch.cat(pictures), seconds, runs * n, runs * head_passes)


def train_text_to_image(
    model: TextToImage,
    text_ids: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float = 6e-3,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` on caption ids ``(n, max_text_len)`` and image tokens ``targets``
    with the course :class:`~omni_edu.train.Trainer`; returns its history.

    Batch ``s`` is a fixed random draw (seeded by ``s``), so two models trained with the
    same arguments see exactly the same captions in the same order. The default ``lr``
    (tried: 3e-3, 6e-3, 1e-2 in the ``ci`` profile) was the best for the flow head and
    within 0.02 attribute accuracy of the best (1e-2) for the VQ head.
    """
    if len(text_ids) != len(targets):
        raise ValueError(f"{len(text_ids)} captions but {len(targets)} images.")

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        pick = torch.randint(len(targets), (batch_size,), generator=generator)
        return text_ids[pick], targets[pick]

    config = TrainConfig.from_profile(steps=steps, lr=lr, seed=seed, progress=progress)
    trainer = Trainer(model, lambda m, batch: {"loss": m.loss(*batch)}, batches, config)
    return trainer.fit()
