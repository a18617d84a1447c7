"""OmniLM: projector + decoder + output heads, the tiny any-to-any model of lessons 02 and 06.

One forward pass over a :class:`~omni_edu.model.interleave.PackedBatch`:

1. the :class:`~omni_edu.model.projector.OmniTokenProjector` embeds each position by the
   modality that sits there;
2. the :class:`~omni_edu.model.transformer.Decoder` mixes them under the packed attention
   mask, with 1-D or multimodal (M-RoPE) positions;
3. position ``i``'s hidden state predicts token ``i + 1`` with the head of *that* token's
   modality: a softmax over the vocabulary for text, a continuous head for an image patch
   or an audio frame.

The continuous heads are pluggable: anything with ``loss(x, cond)`` (mean loss of tokens
``(n, token_dim)`` given hidden states ``(n, d_model)``) and ``sample(cond)`` (one token
per hidden state) fits, such as :class:`~omni_edu.model.heads.flow.FlowHead`. The default
is a linear map trained with mean-squared error, which predicts the conditional mean.

Generation lays the whole answer out first - the prompt followed by a span of
placeholders of the right length - and then fills the placeholders one at a time, left to
right. Causal attention means a placeholder not yet filled cannot influence the tokens
before it, so positions and masks are those of the finished sequence from the start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.modalities import Modality
from omni_edu.model.interleave import (
    PackedBatch,
    Segment,
    SpecialTokens,
    audio_segment,
    image_segment,
    pack,
    text_segment,
)
from omni_edu.model.projector import OmniTokenProjector, ProjectorConfig
from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache
from omni_edu.profiles import Profile, get_profile

CONTINUOUS = (Modality.IMAGE, Modality.AUDIO)


@dataclass
class OmniLMConfig:
    """Sizes and choices of the whole model.

    ``rope``: ``"1d"`` (one running index) or ``"mrope"`` (time, height, width).
    ``continuous_head``: ``"linear"`` (MSE regression, the default) or ``"flow"`` (a
    per-token flow-matching head); swap in any other head after construction.
    ``loss_weights``: how much each modality's loss counts in the total.
    """

    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    rope: str = "mrope"
    tie_embeddings: bool = True  # the text head reuses the text embedding table
    continuous_head: str = "linear"
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"text": 1.0, "image": 1.0, "audio": 1.0}
    )

    def __post_init__(self) -> None:
        if self.projector.d_model != self.decoder.d_model:
            raise ValueError(
                f"projector and decoder should share d_model; got {self.projector.d_model} "
                f"and {self.decoder.d_model}."
            )
        if self.rope not in ("1d", "mrope"):
            raise ValueError(f"rope should be '1d' or 'mrope'; got {self.rope!r}.")
        if self.continuous_head not in ("linear", "flow"):
            raise ValueError(
                f"continuous_head should be 'linear' or 'flow'; got {self.continuous_head!r}."
            )
        unknown = set(self.loss_weights) - {"text", "image", "audio"}
        if unknown:
            raise ValueError(
                f"loss_weights keys should be 'text', 'image', 'audio'; got {sorted(unknown)}."
            )

    @classmethod
    def from_profile(
        cls,
        vocab_size: int,
        frames_per_token: int,
        profile: Profile | str | None = None,
        **overrides,
    ) -> OmniLMConfig:
        """The sizes of a profile (the active one by default) for a given vocabulary."""
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        return cls(
            projector=ProjectorConfig.from_profile(vocab_size, frames_per_token, profile),
            decoder=DecoderConfig.from_profile(profile),
            **overrides,
        )


class LinearHead(nn.Module):
    """The simplest continuous head: a linear map from hidden state to token, MSE loss.

    Same interface as the flow head: ``loss(x, cond)`` and ``sample(cond)``.
    """

    def __init__(self, d_model: int, token_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, token_dim)

    def loss(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error of the prediction from ``cond`` ``(n, d_model)`` to ``x``."""
        return F.mse_loss(self.proj(cond), x)

    def sample(self, cond: Tensor, **_) -> Tensor:
        """The prediction ``(..., token_dim)`` for hidden states ``(..., d_model)``."""
        return self.proj(cond)


def _continuous_head(kind: str, d_model: int, token_dim: int) -> nn.Module:
    if kind == "linear":
        return LinearHead(d_model, token_dim)
    from omni_edu.model.heads.flow import FlowHead, FlowHeadConfig

    return FlowHead(FlowHeadConfig(token_dim=token_dim, cond_dim=d_model))


class OmniLM(nn.Module):
    """Projector + decoder + heads: trains on and generates interleaved documents."""

    def __init__(self, config: OmniLMConfig) -> None:
        super().__init__()
        self.config = config
        p = config.projector
        self.projector = OmniTokenProjector(p)
        self.decoder = Decoder(config.decoder)
        self.text_head = nn.Linear(p.d_model, p.vocab_size, bias=False)
        if config.tie_embeddings:
            # One matrix to read and write text: fewer parameters, and the input and
            # output meaning of a token stay the same vector.
            self.text_head.weight = self.projector.text.weight
        self.image_head = _continuous_head(config.continuous_head, p.d_model, p.image_dim)
        self.audio_head = _continuous_head(config.continuous_head, p.d_model, p.audio_dim)

    def num_parameters(self) -> int:
        """Trainable parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def head(self, modality: Modality) -> nn.Module:
        """The output head that predicts tokens of ``modality``."""
        return {
            Modality.TEXT: self.text_head,
            Modality.IMAGE: self.image_head,
            Modality.AUDIO: self.audio_head,
        }[Modality(modality)]

    def forward(
        self, packed: PackedBatch, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Hidden states ``(batch, seq, d_model)`` of a packed batch.

        With ``return_attention``, also each layer's weights ``(batch, heads, seq, seq)``.
        """
        x = self.projector(packed)
        positions = packed.rope_positions(self.config.rope)
        return self.decoder(x, positions, packed.attn_mask, return_attention=return_attention)

    def loss(self, packed: PackedBatch) -> dict[str, Tensor]:
        """Next-token losses: ``{"total": ..., "text": ..., "image": ..., "audio": ...}``.

        Each modality's loss is the mean over the positions whose next token has that
        modality (absent modalities are left out); ``total`` is their weighted sum, so a
        modality counts by its weight in ``config.loss_weights``, not by how many tokens
        it has (16 patches of one image weigh as much as 10 words of one caption).
        """
        hidden = self(packed)
        losses = {}
        text = packed.loss_mask(Modality.TEXT)
        if text.any():
            logits = self.text_head(hidden[text])
            losses["text"] = F.cross_entropy(logits, packed.text_targets[text])
        for modality, targets in (
            (Modality.IMAGE, packed.image_targets),
            (Modality.AUDIO, packed.audio_targets),
        ):
            here = packed.loss_mask(modality)
            if here.any():
                losses[modality.name.lower()] = self.head(modality).loss(
                    targets[here], hidden[here]
                )
        if not losses:
            raise ValueError("this batch has no token to predict (every loss mask is empty).")
        weights = self.config.loss_weights
        losses["total"] = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        return losses

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[Segment]],
        modality: Modality,
        n_tokens: int | None = None,
        grid: tuple[int, int] | None = None,
        stop_id: int | None = None,
        specials: SpecialTokens | None = None,
        bidirectional: Collection[Modality] = (),
        use_cache: bool = True,
        **sample_options,
    ) -> list[Tensor]:
        """Greedily continue each prompt (a document) with one span of ``modality``.

        Args:
            prompts: documents to continue, one per row.
            modality: what to generate: ``TEXT`` (``n_tokens`` at most, stopping early
                at ``stop_id``), ``IMAGE`` (a ``grid`` of patches, row by row) or ``AUDIO``
                (``n_tokens`` frames).
            specials, bidirectional: as used by :func:`pack` in training. With markers,
                the span is wrapped as in training (``<boi>`` before an image).
            use_cache: keep keys and values in a KV cache and feed one token per step;
                without it every step reruns the whole sequence (same result, slower).
            sample_options: passed to the continuous head's ``sample`` (for the flow
                head: ``steps``, ``guidance``, ``generator``).

        Returns:
            one tensor per prompt: text ids ``(n,)`` (cut before the first ``stop_id``,
            so possibly empty), image patches ``(rows * cols, image_dim)`` in row-major
            order, or audio frames ``(n_tokens, audio_dim)``. ``torch.stack`` them for a
            batch of images; wrap them in a segment to continue the document.
        """
        modality = Modality(modality)
        if modality in set(bidirectional):
            raise ValueError(
                f"{modality.name} spans are bidirectional here: each token would see the "
                "placeholders after it, so they cannot be generated token by token."
            )
        placeholder = self._placeholder(modality, n_tokens, grid)
        # Left padding lines the placeholders up: slot k sits in column start + k in
        # every row, so one decoder step serves the whole batch.
        packed = pack(
            [[*prompt, placeholder] for prompt in prompts],
            specials=specials,
            bidirectional=bidirectional,
            pad_side="left",
            image_dim=self.config.projector.image_dim,
            audio_dim=self.config.projector.audio_dim,
        ).to(self.text_head.weight.device)
        start = next(s.start for s in packed.spans[0] if s.segment == len(prompts[0]))
        if any(spans[0].start >= start for spans in packed.spans):
            raise ValueError("each prompt needs at least one token before the generated span.")

        n = len(placeholder)
        if use_cache:
            steps = self._cached_steps(packed, start, n)
        else:
            steps = (self(packed)[:, start + k - 1] for k in range(n))
        features = packed.image if modality == Modality.IMAGE else packed.audio
        for k, hidden in enumerate(steps):  # hidden: (batch, d_model) just before slot k
            if modality == Modality.TEXT:
                packed.text_ids[:, start + k] = self.text_head(hidden).argmax(dim=-1)
            else:
                features[:, start + k] = self.head(modality).sample(hidden, **sample_options)
        return [
            self._read_span(packed, b, start, placeholder, stop_id) for b in range(len(prompts))
        ]

    def _cached_steps(self, packed: PackedBatch, start: int, n: int) -> Iterator[Tensor]:
        """Hidden states ``(batch, d_model)`` just before each of the ``n`` slots from
        ``start``, feeding the decoder one new token per step through a KV cache.

        A generator: it reads slot ``k - 1`` only after the caller has filled it.
        """
        cache = KVCache(
            self.config.decoder, packed.batch_size, max_len=start + n, device=packed.modality.device
        )
        positions = packed.rope_positions(self.config.rope)

        def run(cols: slice) -> Tensor:
            x = self.projector.embed(
                packed.modality[:, cols],
                packed.text_ids[:, cols],
                packed.image[:, cols],
                packed.audio[:, cols],
            )
            mask = packed.attn_mask[:, cols, : cols.stop]  # new rows against all keys so far
            return self.decoder(x, positions[..., cols], mask, cache=cache)[:, -1]

        yield run(slice(0, start))  # prefill: the whole prompt in one call
        for k in range(1, n):
            yield run(slice(start + k - 1, start + k))  # the slot just filled

    def _placeholder(
        self, modality: Modality, n_tokens: int | None, grid: tuple[int, int] | None
    ) -> Segment:
        p = self.config.projector
        if modality == Modality.IMAGE:
            if grid is None:
                raise ValueError("generating an image needs its patch grid=(rows, cols).")
            return image_segment(torch.zeros(grid[0] * grid[1], p.image_dim), grid)
        if n_tokens is None or n_tokens < 1:
            raise ValueError(f"generating {modality.name} needs n_tokens >= 1; got {n_tokens}.")
        if modality == Modality.TEXT:
            return text_segment(torch.zeros(n_tokens, dtype=torch.long))
        return audio_segment(torch.zeros(n_tokens, p.audio_dim))

    @staticmethod
    def _read_span(
        packed: PackedBatch, row: int, start: int, placeholder: Segment, stop_id: int | None
    ) -> Tensor:
        where = slice(start, start + len(placeholder))
        if placeholder.modality == Modality.TEXT:
            ids = packed.text_ids[row, where].cpu()
            if stop_id is not None and (ids == stop_id).any():
                ids = ids[: int((ids == stop_id).nonzero()[0])]
            return ids
        features = packed.image if placeholder.modality == Modality.IMAGE else packed.audio
        return features[row, where].cpu()
