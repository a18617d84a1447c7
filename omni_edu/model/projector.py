"""The omni-token projector: every modality into one hidden size.

A decoder only understands vectors of size ``d_model``. Each modality arrives in its own
form - text as integer ids, an image as patch features ``3 * p * p`` wide, audio as
frames of log-mel features - so each gets its own small projector into ``d_model``:

* text:  an embedding table (one learned vector per id);
* image: a linear map (or a 2-layer MLP) from patch features;
* audio: a linear map (or a 2-layer MLP) from frame features.

A picture or a sound can also arrive as *discrete* tokens, the code ids of lesson 03's
VQ tokenizer; those are looked up in a table of their own, just like words
(``image_vocab_size`` / ``audio_vocab_size`` codes; 0 = no table).

On top, a learned **modality embedding** (one vector per modality) is added to every
token, so that the decoder can tell an image token from a text token even where their
projected contents happen to look alike. Lesson 01 switches it off to test that claim.

Unlike a projector that concatenates ``[text; image; audio]``, this one places each token
**at its position** in an interleaved sequence (see :mod:`omni_edu.model.interleave`):
the input says, per position, which modality sits there and what its content is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from omni_edu.modalities import Modality
from omni_edu.model.weights import init_weights
from omni_edu.profiles import Profile, get_profile

if TYPE_CHECKING:
    from omni_edu.model.interleave import PackedBatch


@dataclass
class ProjectorConfig:
    """Sizes of the omni-token projector.

    ``image_dim`` is the width of one image patch (``3 * patch_size**2``) and
    ``audio_dim`` the width of one audio token (``frames_per_token * n_mels``).
    """

    d_model: int = 64
    vocab_size: int = 64
    image_dim: int = 48
    audio_dim: int = 64
    modality_embeddings: bool = True  # add a learned vector per modality to every token
    mlp: bool = False  # 2-layer MLP (Linear-GELU-Linear) for image/audio instead of Linear
    image_vocab_size: int = 0  # codes of a discrete image tokenizer (0: continuous only)
    audio_vocab_size: int = 0  # codes of a discrete audio tokenizer (0: continuous only)

    @classmethod
    def from_profile(
        cls,
        vocab_size: int,
        frames_per_token: int,
        profile: Profile | None = None,
        **overrides,
    ) -> ProjectorConfig:
        """Sizes for the active profile: ``d_model``, patch width and frame width."""
        profile = profile or get_profile()
        sizes = dict(
            d_model=profile.d_model,
            vocab_size=vocab_size,
            image_dim=3 * profile.patch_size**2,
            audio_dim=frames_per_token * profile.n_mels,
        )
        sizes.update(overrides)
        return cls(**sizes)


def _feature_projector(in_dim: int, d_model: int, mlp: bool) -> nn.Module:
    if not mlp:
        return nn.Linear(in_dim, d_model)
    return nn.Sequential(nn.Linear(in_dim, d_model), nn.GELU(), nn.Linear(d_model, d_model))


def _check_features(name: str, x: Tensor, dim: int, unit: str, units: str) -> None:
    """Raise a ValueError a learner can act on when ``x`` is not ``(batch, n_<units>, dim)``."""
    expected = f"(batch, n_{units}, {dim})"
    if x.dim() == 3 and x.shape[-1] == dim:
        return
    got = tuple(x.shape)
    if x.dim() == 2 and x.shape[-1] == dim:
        hint = f" Did you forget the {unit} dimension? x.unsqueeze(1) makes one {unit} per item."
    elif x.dim() == 3:
        hint = f" The last dimension should be {dim}, the projector's {name}_dim."
    else:
        hint = ""
    raise ValueError(f"{name} features should be {expected}; got {got}.{hint}")


class OmniTokenProjector(nn.Module):
    """Per-modality projectors into ``d_model`` plus learned modality embeddings."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.text = nn.Embedding(config.vocab_size, config.d_model)
        self.image = _feature_projector(config.image_dim, config.d_model, config.mlp)
        self.audio = _feature_projector(config.audio_dim, config.d_model, config.mlp)
        # Discrete media: a table per modality, read where a code id sits (see interleave).
        self.codes = nn.ModuleDict(
            {
                name: nn.Embedding(size, config.d_model)
                for name, size in (
                    ("image", config.image_vocab_size),
                    ("audio", config.audio_vocab_size),
                )
                if size > 0
            }
        )
        # Off means "no such parameter at all", so lesson 01's ablation cannot leak one in.
        self.modality = (
            nn.Embedding(len(Modality), config.d_model) if config.modality_embeddings else None
        )
        self.apply(init_weights)  # GPT-2's small normal init, the decoder's too

    # One modality at a time: handy in lesson 01 and for checking shapes early.

    def embed_text(self, ids: Tensor) -> Tensor:
        """Text ids ``(batch, seq)`` int64 -> ``(batch, seq, d_model)``."""
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(
                f"text ids should be (batch, seq) int64; got {tuple(ids.shape)} {ids.dtype}."
            )
        return self._add_modality(self.text(self._valid_ids(ids)), Modality.TEXT)

    def embed_image(self, patches: Tensor) -> Tensor:
        """Image patches ``(batch, n_patches, image_dim)`` -> ``(batch, n_patches, d_model)``."""
        _check_features("image", patches, self.config.image_dim, "patch", "patches")
        return self._add_modality(self.image(patches), Modality.IMAGE)

    def embed_audio(self, frames: Tensor) -> Tensor:
        """Audio frames ``(batch, n_tokens, audio_dim)`` -> ``(batch, n_tokens, d_model)``."""
        _check_features("audio", frames, self.config.audio_dim, "token", "tokens")
        return self._add_modality(self.audio(frames), Modality.AUDIO)

    def _add_modality(self, h: Tensor, modality: Modality) -> Tensor:
        if self.modality is None:
            return h
        return h + self.modality.weight[modality]

    # Interleaved: every position embedded by the modality that sits there.

    def embed(
        self,
        modality: Tensor,
        text_ids: Tensor,
        image: Tensor,
        audio: Tensor,
        codes: Tensor | None = None,
    ) -> Tensor:
        """Embed an interleaved sequence position by position.

        Args:
            modality: ``(batch, seq)`` int64, ``Modality`` ids, ``PAD`` (-1) on padding.
            text_ids: ``(batch, seq)`` int64, read where ``modality == TEXT``.
            image: ``(batch, seq, image_dim)``, read where ``modality == IMAGE``.
            audio: ``(batch, seq, audio_dim)``, read where ``modality == AUDIO``.
            codes: ``(batch, seq)`` int64 code ids of discrete image/audio tokens, -1
                elsewhere (default: no discrete tokens). Where a code sits, it is looked
                up in that modality's code table instead of projecting features.

        Returns:
            ``(batch, seq, d_model)``; padding positions are zero vectors.
        """
        if modality.dim() != 2 or text_ids.shape != modality.shape:
            raise ValueError(
                "modality and text_ids should both be (batch, seq); "
                f"got {tuple(modality.shape)} and {tuple(text_ids.shape)}."
            )
        out = modality.new_zeros(*modality.shape, self.config.d_model, dtype=self.text.weight.dtype)
        is_text = modality == Modality.TEXT
        out[is_text] = self.text(self._valid_ids(text_ids[is_text]))
        discrete = torch.zeros_like(is_text) if codes is None else codes >= 0
        for m, features, proj, dim in (
            (Modality.IMAGE, image, self.image, self.config.image_dim),
            (Modality.AUDIO, audio, self.audio, self.config.audio_dim),
        ):
            name = m.name.lower()
            as_codes = (modality == m) & discrete
            if as_codes.any():
                table, ids = self._code_table(name), codes[as_codes]
                if ids.max() >= table.num_embeddings:
                    raise ValueError(
                        f"{name} code ids should lie in [0, {table.num_embeddings}), the "
                        f"tokenizer's codebook; got ids up to {int(ids.max())}."
                    )
                out[as_codes] = table(ids)
            here = (modality == m) & ~discrete
            if not here.any():
                continue  # a batch without this modality may carry 0-wide features
            if features.shape[:2] != modality.shape or features.shape[-1] != dim:
                raise ValueError(
                    f"{name} features should be (batch, seq, {dim}) with (batch, seq) = "
                    f"{tuple(modality.shape)}; got {tuple(features.shape)}."
                )
            out[here] = proj(features[here].to(out.dtype))
        if self.modality is not None:
            real = modality >= 0
            out = out + real.unsqueeze(-1) * self.modality(modality.clamp(min=0))
        return out

    def _code_table(self, name: str) -> nn.Embedding:
        if name not in self.codes:
            raise ValueError(
                f"this projector has no code table for discrete {name} tokens: build it with "
                f"{name}_vocab_size = the tokenizer's codebook size (now 0), or give the "
                f"{name} as continuous features."
            )
        return self.codes[name]

    def _valid_ids(self, ids: Tensor) -> Tensor:
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(
                f"text ids should lie in [0, {self.config.vocab_size}); "
                f"got ids from {int(ids.min())} to {int(ids.max())}."
            )
        return ids

    def forward(self, packed: PackedBatch) -> Tensor:
        """Embed a :class:`~omni_edu.model.interleave.PackedBatch` -> ``(batch, seq, d_model)``."""
        return self.embed(
            packed.modality, packed.text_ids, packed.image, packed.audio, packed.codes
        )
