"""Three ways to fuse modalities, built from the same parts and matched in parameters.

Every variant reads the same :class:`FusionBatch` - text ids, image patches and audio
tokens, each token with its place in one interleaved order - and answers a question from
the hidden state of the last text token. They differ only in *where* the modalities meet:

* :class:`EarlyFusion` (GPT-4o / Gemini style): every token, whatever its modality, is
  embedded into one sequence and a single decoder mixes them from the first layer on::

      [text | image | audio | text] -> decoder (all layers) -> head

* :class:`LateFusion` (LLaVA style): each modality first goes through its *own* encoder
  for a few layers; a small connector projects the encoded media into the decoder, which
  then reads them as tokens of its sequence. Encoders can be frozen, which is how LLaVA
  trains a language model on top of a pretrained CLIP::

      image -> image encoder -> connector --+
      audio -> audio encoder -> connector --+--> [text | media | text] -> decoder -> head

* :class:`CrossAttentionFusion` (Flamingo style): the decoder's sequence holds *text
  only*. Media reach it through gated cross-attention layers placed before each decoder
  block, ``x + tanh(a) * xattn(norm(x), media)`` (and the same for a feed-forward), with
  the gates ``a`` starting at zero so that a fresh layer is the identity and the language
  model starts out exactly as it was. Which media a text token may read is Flamingo's
  rule by default: only the *most recent* media item (one image, one clip) placed before
  it; ``FusionConfig(visibility="all")`` lets it read every earlier item instead
  (:func:`media_visibility_mask`). With nothing before it, it reads nothing::

      media -> encoders ------------------+
                                          v (keys, values)
      text -> [gated xattn -> block] x n -> head

The budget is counted in layers: early fusion stacks ``depth`` decoder blocks; late
fusion spends a quarter of them on each modality's encoder and the rest on its decoder;
cross-attention fusion spends the same on encoders and splits the rest evenly between
decoder blocks and gated cross-attention layers (one of which holds about as many weights
as a block). :func:`parameter_table` prints the counts side by side. ``decoder_layers``
overrides the number of decoder blocks of any variant: the depth-matched control of
lesson 05 (e.g. early fusion with only as many mixing layers as late fusion's decoder).

Freezing (``frozen_encoders``, ``frozen_decoder``; late and cross-attention fusion) turns
off gradients for the media encoders and for the language model. Cross-attention fusion
with both frozen is Flamingo's recipe: only the gated cross-attention layers (and the task
head) train.

Every variant is made of the course's own parts: the omni-token projector
(:mod:`omni_edu.model.projector`) embeds the tokens, and every encoder and decoder is a
:class:`~omni_edu.model.transformer.Decoder` (its blocks, RMSNorm, RoPE and init). The
only new layers are :class:`CrossAttention` (queries from text, keys and values from
media) and the :class:`GatedCrossAttention` wrapper around it (the decoder's RMSNorm and
MLP, behind tanh gates), in :mod:`omni_edu.model.cross_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from omni_edu.model.cross_attention import (
    VISIBILITY,
    CrossAttention,
    GatedCrossAttention,
    media_visibility_mask,
)
from omni_edu.model.projector import OmniTokenProjector, ProjectorConfig
from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.model.weights import count_parameters, init_weights
from omni_edu.profiles import Profile, check_overrides, get_profile

# fmt: off
__all__ = [
    "MEDIA", "VARIANTS", "VISIBILITY", "CrossAttention", "CrossAttentionFusion", "EarlyFusion",
    "FusionBatch", "FusionConfig", "FusionModel", "GatedCrossAttention", "LateFusion",
    "build_fusion_model", "media_visibility_mask", "parameter_table",
]
# fmt: on

VARIANTS = ("early", "late", "cross")
MEDIA = ("image", "audio")


@dataclass
class FusionConfig:
    """Sizes shared by the three variants, and the options lesson 05 varies.

    ``depth`` is the layer budget: the number of decoder blocks of early fusion. The other
    variants spend the same budget differently (see the module docstring).
    ``decoder_layers``: decoder blocks of the variant built (cross-attention: pairs of a
    gated layer and a block) instead of what the budget gives; the depth-matched control.
    ``frozen_encoders`` (late and cross-attention fusion): which media encoders are
    frozen, e.g. ``("image",)``; a frozen encoder, with its patch embedding, gets no
    gradients and keeps no activations for the backward pass.
    ``frozen_decoder`` (late and cross-attention fusion): freeze the language model too
    (text and modality embeddings, decoder blocks, final norm). What still trains is what
    connects the media to it: late fusion's connectors (LLaVA's first stage) or the gated
    cross-attention layers (Flamingo), and the task head.
    ``visibility`` (cross-attention fusion): ``"recent"`` = Flamingo's rule, a text token
    reads only the most recent media item before it; ``"all"`` = every earlier item.
    ``gate_init`` (cross-attention fusion): the gates' value at the start. Flamingo's is 0,
    so that a fresh layer leaves a trained language model untouched; a model trained from
    scratch has nothing to protect, and lesson 05 measures what the closed gates cost it.
    """

    d_model: int = 64
    n_heads: int = 4
    depth: int = 4
    vocab_size: int = 64
    image_dim: int = 48
    audio_dim: int = 128
    n_classes: int = 2
    max_seq_len: int = 256
    decoder_layers: int | None = None
    frozen_encoders: tuple[str, ...] = ()
    frozen_decoder: bool = False
    visibility: str = "recent"
    gate_init: float = 0.0

    def __post_init__(self) -> None:
        if self.depth < 4:
            raise ValueError(
                f"depth should be at least 4 (one encoder layer per medium, and at least "
                f"one decoder block and one cross-attention layer); got {self.depth}."
            )
        if self.decoder_layers is not None and self.decoder_layers < 1:
            raise ValueError(
                f"decoder_layers should be at least 1 (or None for the budget's share); "
                f"got {self.decoder_layers}."
            )
        self.frozen_encoders = tuple(self.frozen_encoders)
        unknown = set(self.frozen_encoders) - set(MEDIA)
        if unknown:
            raise ValueError(
                f"frozen_encoders should name media from {MEDIA}; got {sorted(unknown)}."
            )
        if self.visibility not in VISIBILITY:
            raise ValueError(f"visibility should be one of {VISIBILITY}; got {self.visibility!r}.")

    @property
    def encoder_layers(self) -> int:
        """Layers of each medium's encoder (late and cross-attention fusion)."""
        return self.depth // 4

    @property
    def early_decoder_layers(self) -> int:
        """Decoder blocks of early fusion: the whole budget."""
        return self.decoder_layers or self.depth

    @property
    def late_decoder_layers(self) -> int:
        """Decoder blocks of late fusion: what the two encoders leave of the budget."""
        return self.decoder_layers or self.depth - 2 * self.encoder_layers

    @property
    def cross_layers(self) -> int:
        """Decoder blocks (and as many gated cross-attention layers) of cross fusion."""
        return self.decoder_layers or max(1, (self.depth - 2 * self.encoder_layers) // 2)

    def decoder_config(self, n_layers: int) -> DecoderConfig:
        return DecoderConfig(
            d_model=self.d_model,
            n_layers=n_layers,
            n_heads=self.n_heads,
            max_seq_len=self.max_seq_len,
        )

    def projector_config(self) -> ProjectorConfig:
        return ProjectorConfig(
            d_model=self.d_model,
            vocab_size=self.vocab_size,
            image_dim=self.image_dim,
            audio_dim=self.audio_dim,
        )

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides) -> FusionConfig:
        """Sizes of a profile: ``d_model``, ``n_heads``, ``depth = 2 * n_layers``, patch width.

        ``vocab_size``, ``audio_dim`` and ``n_classes`` depend on the task; pass them.
        """
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        check_overrides(cls, overrides)
        base = cls(
            d_model=profile.d_model,
            n_heads=profile.n_heads,
            depth=2 * profile.n_layers,
            image_dim=3 * profile.patch_size**2,
        )
        return replace(base, **overrides)


@dataclass
class FusionBatch:
    """One batch of interleaved text, image and audio, with a class label per example.

    Every token carries its *position* in the interleaved order of its example, so the
    variants agree on what came before what (positions are distinct within an example).
    Keep an image's patches (and a clip's audio tokens) in one contiguous run: the media
    encoders of late and cross-attention fusion read a whole image at once, so a text
    token placed *between* two patches of one image would see the later patches through
    the earlier ones.

    text_ids ``(batch, n_text)`` int64 and text_positions ``(batch, n_text)`` int64, in
    increasing order; the last text token is the one that answers.
    image ``(batch, n_patches, image_dim)`` and image_positions ``(batch, n_patches)``.
    audio ``(batch, n_audio, audio_dim)`` and audio_positions ``(batch, n_audio)``.
    labels ``(batch,)`` int64 class indices.
    """

    text_ids: Tensor
    text_positions: Tensor
    image: Tensor
    image_positions: Tensor
    audio: Tensor
    audio_positions: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        batch = self.text_ids.shape[0]
        for name in ("text", "image", "audio"):
            values = self.text_ids if name == "text" else getattr(self, name)
            positions = getattr(self, f"{name}_positions")
            if positions.shape != values.shape[:2] or values.shape[0] != batch:
                raise ValueError(
                    f"{name}_positions should be (batch, n_{name}) = "
                    f"{(batch, *values.shape[1:2])} to match the {name} tokens; "
                    f"got {tuple(positions.shape)}."
                )
        if self.labels.shape != (batch,):
            raise ValueError(
                f"labels should be (batch,) = ({batch},); got {tuple(self.labels.shape)}."
            )

    def __len__(self) -> int:
        return self.text_ids.shape[0]

    def __getitem__(self, index) -> FusionBatch:
        """A smaller batch: ``batch[:8]`` or ``batch[index_tensor]``."""
        return FusionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> FusionBatch:
        return FusionBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def seq_len(self) -> int:
        """Tokens of one interleaved example (text + image + audio)."""
        return self.text_ids.shape[1] + self.image.shape[1] + self.audio.shape[1]


# ----------------------------------------------------------------------------- helpers


def interleave(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Merge token runs into one sequence sorted by position.

    parts: ``[(x (batch, n_i, d), positions (batch, n_i)), ...]``. Returns the merged
    ``(batch, sum n_i, d)``, its sorted positions and ``where (batch, sum n_i)``: the index
    in the merged sequence of each input token, in the order of ``parts`` (so the hidden
    state of the first part's token ``j`` is ``merged[b, where[b, j]]``).
    """
    x = torch.cat([p[0] for p in parts], dim=1)
    positions = torch.cat([p[1] for p in parts], dim=1)
    order = positions.argsort(dim=1)
    sorted_x = x.gather(1, order.unsqueeze(-1).expand_as(x))
    return sorted_x, positions.gather(1, order), order.argsort(dim=1)


def _rows(hidden: Tensor, where: Tensor) -> Tensor:
    """``hidden (batch, seq, d)`` at ``where (batch, n)`` -> ``(batch, n, d)``."""
    return hidden.gather(1, where.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def bidirectional_mask(n: int, device: torch.device) -> Tensor:
    """``(n, n)`` all True: an encoder's tokens all see each other (ViT, Whisper)."""
    return torch.ones(n, n, dtype=torch.bool, device=device)


class FusionModel(nn.Module):
    """What the variants share: the omni-token projector, the classifier, the read-out.

    Subclasses implement :meth:`text_hidden` and say which modules are their language
    model (:meth:`language_model`); :meth:`forward` answers from the last text token,
    ``(batch, n_classes)`` logits.
    """

    kind = "base"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        self.projector = OmniTokenProjector(config.projector_config())
        self.head = nn.Linear(config.d_model, config.n_classes)
        init_weights(self.head)  # the decoder's init, for the layers this file adds

    def text_hidden(self, batch: FusionBatch) -> Tensor:
        """Hidden states of the text tokens ``(batch, n_text, d_model)``."""
        raise NotImplementedError

    def forward(self, batch: FusionBatch) -> Tensor:
        """Class logits ``(batch, n_classes)`` from the last text token's hidden state."""
        return self.head(self.text_hidden(batch)[:, -1])

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self, trainable_only)

    def language_model(self) -> nn.ModuleList:
        """The modules of the language model: text (and modality) embeddings, decoder."""
        parts = [self.projector.text, self.decoder]
        if self.projector.modality is not None:
            parts.append(self.projector.modality)
        return nn.ModuleList(parts)

    def _freeze(self) -> None:
        """Switch gradients off for what the config freezes (after the layers exist)."""
        for name in self.config.frozen_encoders:
            self.encoders.parts(self.projector, name).requires_grad_(False)
        if self.config.frozen_decoder:
            self.language_model().requires_grad_(False)


class EarlyFusion(FusionModel):
    """One decoder over all tokens of all modalities, from the first layer on."""

    kind = "early"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        self.decoder = Decoder(config.decoder_config(config.early_decoder_layers))

    def text_hidden(self, batch: FusionBatch) -> Tensor:
        p = self.projector
        x, positions, where = interleave(
            [
                (p.embed_text(batch.text_ids), batch.text_positions),
                (p.embed_image(batch.image), batch.image_positions),
                (p.embed_audio(batch.audio), batch.audio_positions),
            ]
        )
        hidden = self.decoder(x, positions)  # causal over the interleaved order
        return _rows(hidden, where[:, : batch.text_ids.shape[1]])


class MediaEncoders(nn.Module):
    """One bidirectional encoder per medium (a tiny ViT for images, a Whisper-like one
    for audio). Output: encoded tokens ``(batch, n, d_model)`` per medium."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.frozen = config.frozen_encoders
        self.image = Decoder(config.decoder_config(config.encoder_layers))
        self.audio = Decoder(config.decoder_config(config.encoder_layers))

    def parts(self, projector: OmniTokenProjector, name: str) -> nn.ModuleList:
        """The modules of ``name``'s encoder: its patch/frame embedding and its layers."""
        return nn.ModuleList([getattr(projector, name), getattr(self, name)])

    def encode(self, projector: OmniTokenProjector, name: str, features: Tensor) -> Tensor:
        """``features (batch, n, image_dim | audio_dim)`` -> encoded ``(batch, n, d_model)``."""
        # A frozen encoder runs without autograd: nothing of it is kept for backward.
        with torch.set_grad_enabled(torch.is_grad_enabled() and name not in self.frozen):
            embed = projector.embed_image if name == "image" else projector.embed_audio
            x = embed(features)
            mask = bidirectional_mask(x.shape[1], x.device)
            return getattr(self, name)(x, attn_mask=mask)


class LateFusion(FusionModel):
    """Separate media encoders, a connector per medium, then a shared causal decoder."""

    kind = "late"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        self.encoders = MediaEncoders(config)
        # LLaVA's projector: encoder space -> decoder space.
        self.connector = nn.ModuleDict(
            {m: nn.Linear(config.d_model, config.d_model) for m in MEDIA}
        )
        self.connector.apply(init_weights)
        self.decoder = Decoder(config.decoder_config(config.late_decoder_layers))
        self._freeze()

    def text_hidden(self, batch: FusionBatch) -> Tensor:
        parts = [(self.projector.embed_text(batch.text_ids), batch.text_positions)]
        for name in MEDIA:
            encoded = self.encoders.encode(self.projector, name, getattr(batch, name))
            parts.append((self.connector[name](encoded), getattr(batch, f"{name}_positions")))
        x, positions, where = interleave(parts)
        hidden = self.decoder(x, positions)
        return _rows(hidden, where[:, : batch.text_ids.shape[1]])


class CrossAttentionFusion(FusionModel):
    """A text-only decoder that reads encoded media through gated cross-attention.

    The decoder is the course's :class:`~omni_edu.model.transformer.Decoder` (its blocks,
    rotary tables and final norm); a :class:`GatedCrossAttention` layer runs before each
    of its blocks. ``layer`` builds that layer from the decoder's config instead (any
    module with the same parameters and ``forward(x, media, visible)``): lesson 05 trains
    the learner's own layer this way.
    """

    kind = "cross"

    def __init__(
        self,
        config: FusionConfig,
        layer: Callable[[DecoderConfig], nn.Module] = GatedCrossAttention,
    ) -> None:
        super().__init__(config)
        self.encoders = MediaEncoders(config)
        dec = config.decoder_config(config.cross_layers)
        self.decoder = Decoder(dec)
        self.xattn = nn.ModuleList(layer(dec) for _ in range(config.cross_layers))
        self.xattn.apply(init_weights)
        for name, p in self.xattn.named_parameters():
            # The decoder's scaled residual init: a gated layer adds two branches too.
            if name.endswith(("proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.cross_layers))
            elif name.endswith("_gate"):
                nn.init.constant_(p, config.gate_init)
        self._freeze()

    def media(self, batch: FusionBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Encoded media ``(batch, n_image + n_audio, d)``, their positions and items
        ``(batch, n_image + n_audio)`` (item 0: the image, item 1: the sound)."""
        tokens = [self.encoders.encode(self.projector, m, getattr(batch, m)) for m in MEDIA]
        positions = torch.cat([getattr(batch, f"{m}_positions") for m in MEDIA], dim=1)
        items = torch.cat(
            [torch.full_like(getattr(batch, f"{m}_positions"), i) for i, m in enumerate(MEDIA)],
            dim=1,
        )
        return torch.cat(tokens, dim=1), positions, items

    def text_hidden(self, batch: FusionBatch) -> Tensor:
        media, media_positions, items = self.media(batch)
        visible = media_visibility_mask(
            batch.text_positions, media_positions, items, self.config.visibility
        )
        x = self.projector.embed_text(batch.text_ids)
        cos, sin = self.decoder.rope_cos_sin(batch.text_positions)
        for xattn, block in zip(self.xattn, self.decoder.blocks, strict=True):
            x = xattn(x, media, visible)
            x, _, _ = block(x, cos=cos, sin=sin)  # causal self-attention among text tokens
        return self.decoder.norm(x)


_CLASSES = {"early": EarlyFusion, "late": LateFusion, "cross": CrossAttentionFusion}


def build_fusion_model(
    kind: str,
    config: FusionConfig,
    cross_layer: Callable[[DecoderConfig], nn.Module] | None = None,
) -> FusionModel:
    """``"early"``, ``"late"`` or ``"cross"`` -> a fresh model of that variant.

    ``cross_layer`` (cross-attention fusion only): the class or factory of its gated
    layers, ``DecoderConfig -> module`` (default :class:`GatedCrossAttention`).
    """
    if kind not in _CLASSES:
        raise ValueError(f"kind should be one of {VARIANTS}; got {kind!r}.")
    if cross_layer is not None:
        if kind != "cross":
            raise ValueError(
                f"cross_layer builds the gated layers of cross-attention fusion; {kind!r} "
                "fusion has none."
            )
        return CrossAttentionFusion(config, layer=cross_layer)
    if kind == "early" and (config.frozen_encoders or config.frozen_decoder):
        raise ValueError(
            f"early fusion has no separate encoders or language model to freeze; got "
            f"frozen_encoders={config.frozen_encoders}, frozen_decoder="
            f"{config.frozen_decoder}. Freezing is a late / cross-attention option."
        )
    return _CLASSES[kind](config)


def parameter_table(models: dict[str, FusionModel]) -> list[dict[str, object]]:
    """One row per model: total and trainable parameters, and the gap to the first model."""
    first = next(iter(models.values())).num_parameters()
    return [
        {
            "variant": name,
            "parameters": m.num_parameters(),
            "trainable": m.num_parameters(trainable_only=True),
            "vs first (%)": round(100 * (m.num_parameters() / first - 1), 1),
        }
        for name, m in models.items()
    ]
