"""OmniLM: the one system of the course - projector, decoder, output heads.

Each lesson adds or measures a part of it:

* lesson 01: the :class:`~omni_edu.model.projector.OmniTokenProjector` embeds each position
  by the modality that sits there (with modality embeddings);
* lesson 02: the :class:`~omni_edu.model.transformer.Decoder` mixes them under the packed
  attention mask of :mod:`~omni_edu.model.interleave`, with 1-D or multimodal (M-RoPE)
  positions and a KV cache for generation;
* lesson 03: pictures and sounds may enter and leave as *discrete* tokens, the code ids of
  a VQ tokenizer (``image_head="codes"``);
* lesson 04: or as *continuous* tokens with a regression or a per-token flow head
  (``image_head="flow"``), for pictures and for audio frames alike;
* lesson 04b: or a whole span at once: a DiT head over the picture's patches
  (``"dit"``), whole-image diffusion by the decoder itself (``"transfusion"``), masked
  discrete diffusion over code ids (``"masked_codes"``);
* lesson 06: one set of weights for every direction (:mod:`omni_edu.parts.any_to_any`).

One forward pass over a :class:`~omni_edu.model.interleave.PackedBatch`: embed, decode,
and let position ``i``'s hidden state predict token ``i + 1`` with the head of *that*
token's modality: a softmax over the vocabulary for text, the image or audio head for a
patch, a frame or a code (see :mod:`omni_edu.model.heads.output` for the head kinds).

Generation lays the whole answer out first - the prompt followed by a span of
placeholders of the right length - and then fills the placeholders one at a time, left to
right. Causal attention means a placeholder not yet filled cannot influence the tokens
before it, so positions and masks are those of the finished sequence from the start.
A span head fills the whole span at once instead: from the decoder's states at placeholders
(DiT, one decoder pass), or by running the decoder over the span a few times with the
prompt's KV cache kept (whole-image diffusion, masked codes; their spans attend both ways,
in training and generation alike).

The module is longer than 500 lines on purpose: the model, its loss and its one generation
loop (token by token, or a whole span at once) read best side by side, as nanoGPT keeps
its model in one file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.modalities import Modality
from omni_edu.model.heads.flow import FlowHeadConfig
from omni_edu.model.heads.output import DISCRETE_KINDS, HEAD_KINDS, build_head, sample_token
from omni_edu.model.heads.span import (
    SpanState,
    WrittenSpans,
    both_ways_within,
    guided_rows,
    written_spans,
)
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
from omni_edu.model.weights import count_parameters
from omni_edu.profiles import Profile, get_profile

CONTINUOUS = (Modality.IMAGE, Modality.AUDIO)
ROPES = ("1d", "mrope", "mrope_fast_width")


@dataclass
class OmniLMConfig:
    """Sizes and choices of the whole model.

    ``rope``: ``"1d"`` (one running index), ``"mrope"`` (time, height, width, Qwen2-VL's
    layout: time on the fastest rotary pairs) or ``"mrope_fast_width"`` (the same
    coordinates with width on the fastest pairs and time on the slowest; lesson 02
    measures all three).
    ``image_head``, ``audio_head``: how pictures and sounds are written, one of
    ``"linear"`` (linear regression, MSE: the baseline), ``"regression"`` (an MLP as large
    as the flow head, MSE), ``"flow"`` (a per-token flow-matching head) or ``"codes"``
    (a softmax over the tokenizer codes; needs ``projector.image_vocab_size`` /
    ``audio_vocab_size``, and the media given as code ids); or a span head (lesson 04b):
    ``"dit"``, ``"transfusion"`` (whole-image diffusion in the decoder) or
    ``"masked_codes"`` (masked discrete diffusion over code ids, like ``"codes"``).
    ``head_width``, ``head_depth``: the MLP of the regression and flow heads (width
    default: the larger of ``d_model`` and the token's width), or the DiT's width and
    blocks. ``flow_repeats``: noise draws per token per step; ``flow_steps``: default
    Euler steps when sampling (and decoding steps of masked codes);
    ``flow_time_sampling``: how the flow head draws training times and
    ``flow_time_shift`` how far towards the noise (see
    :class:`~omni_edu.model.heads.flow.FlowHeadConfig`);
    ``head_cond_dropout``: the share of training tokens whose decoder state the flow head
    replaces by a learned null state (a head-level unconditional branch for guidance; the
    model-level one is an empty prompt, see :meth:`OmniLM.generate`).
    ``image_scale``, ``audio_scale``: ``(shift, scale)`` of the data for the regression
    and flow heads, which work on ``(x - shift) / scale`` (pixels in [0, 1] -> [-1, 1]).
    ``loss_weights``: how much each modality's loss counts in the total.
    """

    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    rope: str = "mrope"
    tie_embeddings: bool = True  # the text (and code) heads reuse their embedding tables
    image_head: str = "linear"
    audio_head: str = "linear"
    head_width: int | None = None
    head_depth: int = 2
    flow_repeats: int = 4
    flow_steps: int = 8
    flow_time_sampling: str = "uniform"
    flow_time_shift: float = 1.0
    head_cond_dropout: float = 0.0
    image_scale: tuple[float, float] = (0.5, 0.5)
    audio_scale: tuple[float, float] = (0.0, 1.0)
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"text": 1.0, "image": 1.0, "audio": 1.0}
    )

    def __post_init__(self) -> None:
        if self.projector.d_model != self.decoder.d_model:
            raise ValueError(
                f"projector and decoder should share d_model; got {self.projector.d_model} "
                f"and {self.decoder.d_model}."
            )
        if self.rope not in ROPES:
            raise ValueError(f"rope should be one of {ROPES}; got {self.rope!r}.")
        for name in ("image", "audio"):
            kind = getattr(self, f"{name}_head")
            if kind not in HEAD_KINDS:
                raise ValueError(f"{name}_head should be one of {HEAD_KINDS}; got {kind!r}.")
            if kind in DISCRETE_KINDS and getattr(self.projector, f"{name}_vocab_size") < 1:
                raise ValueError(
                    f"{name}_head={kind!r} writes tokenizer codes, so the projector needs "
                    f"{name}_vocab_size = the codebook size (now 0)."
                )
        self.image_scale = tuple(float(v) for v in self.image_scale)
        self.audio_scale = tuple(float(v) for v in self.audio_scale)
        unknown = set(self.loss_weights) - {"text", "image", "audio"}
        if unknown:
            raise ValueError(
                f"loss_weights keys should be 'text', 'image', 'audio'; got {sorted(unknown)}."
            )

    def head_config(self, name: str) -> FlowHeadConfig:
        """The network, data scale and sampling settings of the ``name`` ("image" or
        "audio") head when it is a regression or flow head."""
        if name not in ("image", "audio"):
            raise ValueError(f"name should be 'image' or 'audio'; got {name!r}.")
        shift, scale = getattr(self, f"{name}_scale")
        return FlowHeadConfig(
            token_dim=getattr(self.projector, f"{name}_dim"),
            cond_dim=self.projector.d_model,
            # At least as wide as the token it writes (a 128-number audio frame through a
            # 64-wide head cannot be modelled) and as the decoder state it reads.
            width=self.head_width
            or max(self.projector.d_model, getattr(self.projector, f"{name}_dim")),
            depth=self.head_depth,
            sampling_steps=self.flow_steps,
            shift=shift,
            scale=scale,
            repeats=self.flow_repeats,
            time_sampling=self.flow_time_sampling,
            time_shift=self.flow_time_shift,
            cond_dropout=self.head_cond_dropout,
        )

    @classmethod
    def from_profile(
        cls,
        vocab_size: int,
        frames_per_token: int,
        profile: Profile | str | None = None,
        projector_overrides: dict | None = None,
        **overrides,
    ) -> OmniLMConfig:
        """The sizes of a profile (the active one by default) for a given vocabulary.

        ``projector_overrides`` change the projector's config (for example the code
        tables of discrete media); other ``overrides`` are fields of this config.
        """
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        projector = ProjectorConfig.from_profile(
            vocab_size, frames_per_token, profile, **(projector_overrides or {})
        )
        return cls(projector=projector, decoder=DecoderConfig.from_profile(profile), **overrides)


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
        self.image_head = self._media_head("image", p.image_dim, p.image_vocab_size)
        self.audio_head = self._media_head("audio", p.audio_dim, p.audio_vocab_size)

    def _media_head(self, name: str, token_dim: int, vocab_size: int) -> nn.Module:
        c = self.config
        flow = c.head_config(name)
        head = build_head(
            getattr(c, f"{name}_head"), c.projector.d_model, token_dim, vocab_size, flow
        )
        if head.discrete and c.tie_embeddings:  # like text: one table to read and write codes
            head.proj.weight = self.projector.codes[name].weight
        return head

    def num_parameters(self) -> int:
        """Trainable parameters (a tied matrix counts once)."""
        return count_parameters(self, trainable_only=True)

    def head(self, modality: Modality) -> nn.Module:
        """The output head that predicts tokens of ``modality``."""
        return {
            Modality.TEXT: self.text_head,
            Modality.IMAGE: self.image_head,
            Modality.AUDIO: self.audio_head,
        }[Modality(modality)]

    def positions(self, packed: PackedBatch) -> Tensor:
        """The rotary positions of ``packed`` for this model's ``rope``: ``(B, T)`` or
        ``(3, B, T)``. ``"mrope_fast_width"`` reorders M-RoPE's rows to (width, height,
        time), so that width turns the fastest pairs."""
        if self.config.rope == "mrope_fast_width":
            return packed.mrope_positions.flip(0)
        return packed.rope_positions(self.config.rope)

    def attention_mask(self, packed: PackedBatch) -> Tensor:
        """The mask ``(batch, seq, seq)`` this model reads ``packed`` with: the packed one,
        and every span of a modality whose head denoises inside the decoder (whole-image
        diffusion, masked codes) attending both ways within itself."""
        mask = packed.attn_mask
        for modality in CONTINUOUS:
            if getattr(self.head(modality), "in_decoder", False):
                mask = both_ways_within(mask, packed.modality == modality)
        return mask

    def forward(
        self,
        packed: PackedBatch,
        return_attention: bool = False,
        corrupted: dict[Modality, tuple[WrittenSpans, SpanState]] | None = None,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Hidden states ``(batch, seq, d_model)`` of a packed batch.

        With ``return_attention``, also each layer's weights ``(batch, heads, seq, seq)``.
        ``corrupted`` (from :meth:`corrupt_spans`): spans whose contents the decoder reads
        noised or masked, as whole-image diffusion and masked codes train.
        """
        corrupted = corrupted or {}
        for modality, (spans, state) in corrupted.items():
            if state.contents.dtype == torch.long:
                packed = replace(packed, codes=packed.codes.index_put(spans.index, state.contents))
            else:
                name = "image" if modality == Modality.IMAGE else "audio"
                features = getattr(packed, name).index_put(spans.index, state.contents)
                packed = replace(packed, **{name: features})
        x = self.projector(packed)
        for modality, (spans, state) in corrupted.items():
            x = x.index_put(spans.index, self.head(modality).embed(x[spans.index], state))
        mask = self.attention_mask(packed)
        return self.decoder(x, self.positions(packed), mask, return_attention=return_attention)

    def corrupt_spans(
        self, packed: PackedBatch, generator: torch.Generator | None = None
    ) -> dict[Modality, tuple[WrittenSpans, SpanState]]:
        """What the decoder reads in the trained spans of each modality written by a span
        head: noised (whole-image diffusion), partly masked (masked codes) or placeholders
        (DiT), ``{modality: (spans, state)}``."""
        out = {}
        for modality in CONTINUOUS:
            head = self.head(modality)
            spans = written_spans(packed, modality) if getattr(head, "writes_span", False) else None
            if spans is not None:
                clean = packed.codes if head.discrete else self._features(packed, modality)
                out[modality] = (spans, head.corrupt(clean[spans.index], spans.grid, generator))
        return out

    @staticmethod
    def _features(packed: PackedBatch, modality: Modality) -> Tensor:
        return packed.image if modality == Modality.IMAGE else packed.audio

    def loss(self, packed: PackedBatch) -> dict[str, Tensor]:
        """Next-token losses: ``{"loss": ..., "text": ..., "image": ..., "audio": ...}``.

        Each modality's loss is the mean over the positions whose next token has that
        modality (absent modalities are left out); ``"loss"`` is their weighted sum, the
        one key the :class:`~omni_edu.train.Trainer` back-propagates (``train.model_loss``
        hands this method to it), so a
        modality counts by its weight in ``config.loss_weights``, not by how many tokens
        it has (16 patches of one image weigh as much as 10 words of one caption).

        A span head's loss is over whole spans, predicted at the span's own positions in
        the same pass as the text (one model, the text loss plus theirs): whole-image
        diffusion and masked codes read their spans noised or masked, a DiT head reads the
        decoder's states at placeholders.
        """
        corrupted = self.corrupt_spans(packed)
        hidden = self(packed, corrupted=corrupted)
        losses = {}
        text = packed.loss_mask(Modality.TEXT)
        if text.any():
            logits = self.text_head(hidden[text])
            losses["text"] = F.cross_entropy(logits, packed.text_targets[text])
        for modality, features in (
            (Modality.IMAGE, packed.image_targets),
            (Modality.AUDIO, packed.audio_targets),
        ):
            name, head = modality.name.lower(), self.head(modality)
            if getattr(head, "writes_span", False):
                if modality in corrupted:
                    spans, state = corrupted[modality]
                    losses[name] = head.span_loss(hidden[spans.index], state)
                continue
            here = packed.loss_mask(modality)
            if here.any():
                targets = self._targets(name, head, here, packed.code_targets, features)
                losses[name] = head.loss(targets, hidden[here])
        if not losses:
            raise ValueError("this batch has no token to predict (every loss mask is empty).")
        weights = self.config.loss_weights
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        return {"loss": total, **losses}

    @staticmethod
    def _targets(
        name: str, head: nn.Module, here: Tensor, code_targets: Tensor, features: Tensor
    ) -> Tensor:
        """The targets at positions ``here`` in the form ``head`` predicts, or a clear error."""
        codes = code_targets[here]
        given_codes = codes >= 0
        if head.discrete and given_codes.all():
            return codes
        if not head.discrete and not given_codes.any():
            return features[here]
        wanted = "code ids (a discrete tokenizer)" if head.discrete else "features"
        got = "code ids" if given_codes.any() else "features"
        raise ValueError(
            f"this model writes {name} tokens as {wanted}, but the batch holds {name} {got}. "
            f"Build the data and the model with the same {name} tokens."
        )

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
        guidance: float = 1.0,
        uncond_prompts: Sequence[Sequence[Segment]] | None = None,
        **sample_options,
    ) -> list[Tensor]:
        """Continue each prompt (a document) with one span of ``modality``.

        Args:
            prompts: documents to continue, one per row.
            modality: what to generate: ``TEXT`` (``n_tokens`` at most, stopping early
                at ``stop_id``), ``IMAGE`` (a ``grid`` of patches or codes, row by row) or
                ``AUDIO`` (``n_tokens`` frames or codes), written by that modality's head.
            specials, bidirectional: as used by :func:`pack` in training. With markers,
                the span is wrapped as in training (``<boi>`` before an image).
            use_cache: keep keys and values in a KV cache and feed one token per step;
                without it every step reruns the whole sequence (same result, slower).
                Tokens being generated are causal (a bidirectional span cannot be written
                token by token, so it is refused); bidirectional spans in the prompt are
                fine, since the prompt is read in one pass. A span head writes the span at
                once: the DiT head draws from the decoder's states at the span's
                placeholders (prompt and placeholders in one pass), while whole-image
                diffusion and masked codes run the prompt once into the cache and rerun
                the span ``steps`` times against its keys and values (without the cache,
                against the prompt recomputed each time).
            guidance, uncond_prompts: classifier-free guidance for media heads. With
                ``guidance != 1`` and ``uncond_prompts`` (one per prompt: the same request
                with its content left out, e.g. ``<draw>`` alone), each unconditional
                prompt runs beside its prompt in the same batch, receives the same tokens,
                and its hidden state is the head's unconditional branch:
                ``guided = uncond + guidance * (cond - uncond)``. Without
                ``uncond_prompts`` a flow or DiT head uses its learned null state instead
                (whole-image diffusion and masked codes need ``uncond_prompts``).
            sample_options: passed to the head that writes each token: ``temperature``,
                ``top_k``, ``generator`` for text and codes (greedy by default);
                ``steps``, ``temperature``, ``generator`` for a flow head, and for a span
                head (``steps``: denoising or decoding passes). A head ignores the options
                of the others.

        Returns:
            one tensor per prompt: text ids ``(n,)`` (cut before the first ``stop_id``,
            so possibly empty), image patches ``(rows * cols, image_dim)`` in row-major
            order (or code ids ``(rows * cols,)``), or audio frames ``(n_tokens,
            audio_dim)`` (or code ids ``(n_tokens,)``). ``torch.stack`` them for a batch
            of images; wrap them in a segment to continue the document.
        """
        modality = Modality(modality)
        head = None if modality == Modality.TEXT else self.head(modality)
        writes_span = getattr(head, "writes_span", False)
        if modality in set(bidirectional) and not writes_span:
            raise ValueError(
                f"{modality.name} spans are bidirectional here: each token would see the "
                "placeholders after it, so they cannot be generated token by token."
            )
        placeholder = self._placeholder(modality, n_tokens, grid)
        n_rows = len(prompts)
        rows = list(prompts)
        guided = guidance != 1.0 and uncond_prompts is not None
        if guidance != 1.0:
            if modality == Modality.TEXT:
                raise ValueError("guidance applies to picture and sound heads, not to text.")
            if uncond_prompts is not None:
                if len(uncond_prompts) != n_rows:
                    raise ValueError(
                        f"uncond_prompts needs one document per prompt ({n_rows}); got "
                        f"{len(uncond_prompts)}."
                    )
                rows += list(uncond_prompts)  # rows n_rows.. : the unconditional twins
        # Left padding lines the placeholders up: slot k sits in column start + k in
        # every row, so one decoder step serves the whole batch.
        packed = pack(
            [[*prompt, placeholder] for prompt in rows],
            specials=specials,
            bidirectional=bidirectional,
            pad_side="left",
            image_dim=self.config.projector.image_dim,
            audio_dim=self.config.projector.audio_dim,
        ).to(self.text_head.weight.device)
        start = next(s.start for s in packed.spans[0] if s.segment == len(rows[0]))
        if any(spans[0].start >= start for spans in packed.spans):
            raise ValueError("each prompt needs at least one token before the generated span.")

        n = len(placeholder)
        if modality == Modality.TEXT:
            slots = packed.text_ids
        elif placeholder.discrete:
            slots = packed.codes
        else:
            slots = self._features(packed, modality)
        if writes_span:  # the whole span at once
            if guidance != 1.0 and not guided and head.in_decoder:
                raise ValueError(
                    "guidance with a head that denoises inside the decoder needs "
                    "uncond_prompts (its unconditional branch is the empty prompt)."
                )
            span = self._write_span(
                packed, start, placeholder, n_rows, guidance, use_cache, **sample_options
            )
            slots[:, start : start + n] = torch.cat([span, span]) if guided else span
            return [self._read_span(packed, b, start, placeholder, stop_id) for b in range(n_rows)]
        if use_cache:
            steps = self._cached_steps(packed, start, n)
        else:
            steps = (self(packed)[:, start + k - 1] for k in range(n))
        for k, hidden in enumerate(steps):  # hidden: (batch, d_model) just before slot k
            if modality == Modality.TEXT:
                token = sample_token(self.text_head(hidden), **_text_options(sample_options))
            elif guided:
                token = self.head(modality).sample(
                    hidden[:n_rows], guidance=guidance, uncond=hidden[n_rows:], **sample_options
                )
                token = torch.cat([token, token])  # the twin reads the same token
            else:
                token = self.head(modality).sample(hidden, guidance=guidance, **sample_options)
            slots[:, start + k] = token
        return [self._read_span(packed, b, start, placeholder, stop_id) for b in range(n_rows)]

    def _cached_steps(self, packed: PackedBatch, start: int, n: int) -> Iterator[Tensor]:
        """Hidden states ``(batch, d_model)`` just before each of the ``n`` slots from
        ``start``, feeding the decoder one new token per step through a KV cache.

        A generator: it reads slot ``k - 1`` only after the caller has filled it.
        """
        cache = KVCache(
            self.config.decoder, packed.batch_size, max_len=start + n, device=packed.modality.device
        )
        positions, full_mask = self.positions(packed), self.attention_mask(packed)

        def run(cols: slice) -> Tensor:
            x = self._embed_columns(packed, cols)
            mask = full_mask[:, cols, : cols.stop]  # new rows against all keys so far
            return self.decoder(x, positions[..., cols], mask, cache=cache)[:, -1]

        yield run(slice(0, start))  # prefill: the whole prompt in one call
        for k in range(1, n):
            yield run(slice(start + k - 1, start + k))  # the slot just filled

    def _embed_columns(self, packed: PackedBatch, cols: slice) -> Tensor:
        """The projector's embeddings ``(batch, len(cols), d_model)`` of some columns."""
        return self.projector.embed(
            packed.modality[:, cols],
            packed.text_ids[:, cols],
            packed.image[:, cols],
            packed.audio[:, cols],
            packed.codes[:, cols],
        )

    def _write_span(
        self,
        packed: PackedBatch,
        start: int,
        placeholder: Segment,
        n_rows: int,
        guidance: float,
        use_cache: bool,
        **options,
    ) -> Tensor:
        """The span a span head writes for the first ``n_rows`` rows (the rest are their
        unconditional twins): features ``(n_rows, n, dim)`` or code ids ``(n_rows, n)``."""
        modality, n = placeholder.modality, len(placeholder)
        head, device = self.head(modality), packed.modality.device
        # A DiT reads the span once: prompt and placeholders in one pass, nothing to cache.
        run_span = self._span_runner(packed, start, n, use_cache and head.in_decoder)
        twins = packed.batch_size // n_rows  # 2 with guidance: each row beside its empty prompt

        def decode(state: SpanState) -> Tensor:  # the decoder's output over the span
            embedded = self._embed_span(modality, state.contents)
            return run_span(head.embed(embedded, state))

        if not head.in_decoder:  # DiT: the decoder reads placeholders once, the head draws
            states = decode(SpanState(self._features(packed, modality)[:, start : start + n]))
            uncond = states[n_rows:] if twins > 1 else None
            grid = placeholder.grid or (1, n)
            return head.sample(states[:n_rows], grid, guidance=guidance, uncond=uncond, **options)

        if head.discrete:  # masked codes: logits of every position of the span

            def logits_of(codes: Tensor, masked: Tensor) -> Tensor:
                state = SpanState(codes.repeat(twins, 1), masked=masked.repeat(twins, 1))
                return guided_rows(head.proj(decode(state)), n_rows, guidance)

            return head.sample(logits_of, (n_rows, n), device=device, **options)

        def velocity_of(x_t: Tensor, t: Tensor) -> Tensor:  # whole-image diffusion
            state = SpanState(head.to_data(x_t).repeat(twins, 1, 1), t=t.repeat(twins))
            return guided_rows(head.velocity(decode(state)), n_rows, guidance)

        width = placeholder.data.shape[-1]
        return head.sample(velocity_of, (n_rows, n, width), device=device, **options)

    def _span_runner(
        self, packed: PackedBatch, start: int, n: int, use_cache: bool
    ) -> Callable[[Tensor], Tensor]:
        """``run_span(x)``: the decoder's output ``(batch, n, d_model)`` for span embeddings
        ``x`` ``(batch, n, d_model)`` in columns ``start..start + n``, after the prompt.

        With the cache, the prompt (the columns before ``start``) runs once now, and each
        run reads its cached keys and values and then drops the span's own (the next run
        rewrites the span); without it, each run recomputes the prompt.
        """
        positions, mask = self.positions(packed), self.attention_mask(packed)
        prompt, span, end = slice(0, start), slice(start, start + n), start + n
        x_prompt = self._embed_columns(packed, prompt)
        if not use_cache:

            def run_span(x: Tensor) -> Tensor:
                both = torch.cat([x_prompt, x], dim=1)
                return self.decoder(both, positions[..., :end], mask[:, :end, :end])[:, start:]

            return run_span
        device = packed.modality.device
        cache = KVCache(self.config.decoder, packed.batch_size, max_len=end, device=device)
        self.decoder(x_prompt, positions[..., prompt], mask[:, prompt, prompt], cache=cache)
        prompt_only = list(cache.blocks)

        def run_span(x: Tensor) -> Tensor:
            hidden = self.decoder(x, positions[..., span], mask[:, span, :end], cache=cache)
            cache.blocks = list(prompt_only)  # forget the span: the next step rewrites it
            return hidden

        return run_span

    def _embed_span(self, modality: Modality, contents: Tensor) -> Tensor:
        """The projector's embeddings ``(batch, n, d_model)`` of a span of ``modality``
        holding ``contents``: code ids ``(batch, n)`` or features ``(batch, n, dim)``."""
        batch, n = contents.shape[:2]
        device = contents.device
        kinds = torch.full((batch, n), int(modality), device=device)
        empty = torch.zeros(batch, n, 0, device=device)
        if contents.dtype == torch.long:
            features, codes = {}, contents
        else:
            features, codes = {modality: contents}, torch.full_like(kinds, -1)
        return self.projector.embed(
            kinds,
            torch.zeros_like(kinds),
            features.get(Modality.IMAGE, empty),
            features.get(Modality.AUDIO, empty),
            codes,
        )

    def _placeholder(
        self, modality: Modality, n_tokens: int | None, grid: tuple[int, int] | None
    ) -> Segment:
        p = self.config.projector
        if modality == Modality.IMAGE:
            if grid is None:
                raise ValueError("generating an image needs its patch grid=(rows, cols).")
            n_tokens, width = grid[0] * grid[1], p.image_dim
        elif n_tokens is None or n_tokens < 1:
            raise ValueError(f"generating {modality.name} needs n_tokens >= 1; got {n_tokens}.")
        else:
            width = p.audio_dim
        if modality == Modality.TEXT or self.head(modality).discrete:
            ids = torch.zeros(n_tokens, dtype=torch.long)  # text ids, or tokenizer codes
            if modality == Modality.TEXT:
                return text_segment(ids)
            return image_segment(ids, grid) if modality == Modality.IMAGE else audio_segment(ids)
        if modality == Modality.IMAGE:
            return image_segment(torch.zeros(n_tokens, width), grid)
        return audio_segment(torch.zeros(n_tokens, width))

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
        if placeholder.discrete:
            return packed.codes[row, where].cpu()
        features = packed.image if placeholder.modality == Modality.IMAGE else packed.audio
        return features[row, where].cpu()


def _text_options(options: dict) -> dict:
    """The options of ``sample_token`` among generate's sampling options."""
    return {k: options[k] for k in ("temperature", "top_k", "generator") if k in options}
