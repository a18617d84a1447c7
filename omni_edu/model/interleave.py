"""Segments -> one interleaved batch: modality ids, positions, attention and loss masks.

A *document* is a list of segments in any order and count, for example
``caption -> image -> caption -> audio``. :func:`pack` lays a list of documents out as one
padded batch, one document per row, and works out everything a decoder and a training
loop need besides the token contents:

* ``modality`` ``(batch, seq)``: which modality sits at each position (``PAD`` = -1);
* ``positions`` ``(batch, seq)``: 0, 1, 2, ... over the real tokens (for 1-D RoPE);
* ``mrope_positions`` ``(3, batch, seq)``: (time, height, width) as in Qwen2-VL's
  multimodal RoPE. Text and audio advance all three together, one step per token. An
  image keeps time fixed at its first position and spreads height and width over its
  patch grid; whatever follows continues from the largest position used so far + 1;
* ``attn_mask`` ``(batch, seq, seq)``: True = may attend. Causal everywhere, optionally
  bidirectional inside an image or audio span (as in Transfusion); padding is never
  attended, and a padding query attends to itself only, so that attention has at least
  one key per row and never produces NaN;
* next-token **targets** and **loss masks** per modality: position ``i`` is trained to
  predict token ``i + 1``, with the text head where token ``i + 1`` is text (its id) and
  with the image or audio head where it is an image patch or an audio frame (its
  features, or its code id).

A picture or a sound enters either as **continuous** tokens (patch or frame features,
``(n_tokens, features)`` floats) or as **discrete** tokens (code ids of a VQ/FSQ tokenizer,
``(n_tokens,)`` int64, lesson 03). Discrete media tokens sit in ``codes`` and are predicted
with a softmax over the tokenizer's codebook, exactly like words; the modality id still
says IMAGE or AUDIO, so positions (M-RoPE's grid) and modality embeddings stay the same.

Nothing here has parameters: the :class:`~omni_edu.model.projector.OmniTokenProjector`
turns a :class:`PackedBatch` into embeddings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.modalities import PAD, Modality

IGNORE_INDEX = -100  # text targets where no text is predicted; F.cross_entropy's default


@dataclass(eq=False)
class Segment:
    """A run of tokens of one modality inside a document.

    ``data`` is ``(n_tokens,)`` int64 ids for text, ``(n_patches, image_dim)`` patch
    features for an image (in row-major order over ``grid = (rows, cols)``) and
    ``(n_tokens, audio_dim)`` frame features for audio. A *discrete* image or sound holds
    ``(n_tokens,)`` int64 code ids of a tokenizer instead (same order, same grid).
    ``predict=False`` marks a segment the model reads but is not trained to produce (a
    prompt, an input image).
    """

    modality: Modality
    data: Tensor
    grid: tuple[int, int] | None = None
    predict: bool = True

    def __post_init__(self) -> None:
        self.modality = Modality(self.modality)
        name = self.modality.name.lower()
        if self.modality == Modality.TEXT:
            if self.data.dim() != 1 or self.data.dtype != torch.long:
                raise ValueError(
                    f"a text segment holds (n_tokens,) int64 ids; "
                    f"got {tuple(self.data.shape)} {self.data.dtype}."
                )
        elif self.data.dim() == 1:
            if self.data.dtype != torch.long:
                raise ValueError(
                    f"a discrete {name} segment holds (n_tokens,) int64 code ids; got "
                    f"{tuple(self.data.shape)} {self.data.dtype}. Continuous tokens are "
                    "(n_tokens, features) floats."
                )
        elif self.data.dim() != 2:
            hint = ""
            if self.data.dim() == 3 and self.data.shape[0] == 1:
                hint = " It looks batched: pass x[0] (one item), not the whole batch."
            raise ValueError(
                f"an {name} segment holds (n_tokens, features) features or (n_tokens,) "
                f"code ids for one item; got {tuple(self.data.shape)}.{hint}"
            )
        if len(self) == 0:
            raise ValueError(f"a {name} segment needs at least one token; got none.")
        if self.modality == Modality.IMAGE:
            if self.grid is None or len(self.grid) != 2 or self.grid[0] * self.grid[1] != len(self):
                raise ValueError(
                    f"an image segment's grid (rows, cols) should multiply to its "
                    f"{len(self)} patches; got grid {self.grid}."
                )
            self.grid = (int(self.grid[0]), int(self.grid[1]))
        elif self.grid is not None:
            raise ValueError(f"only image segments have a grid; got grid {self.grid} for {name}.")

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def discrete(self) -> bool:
        """True for an image or sound given as tokenizer code ids (not features)."""
        return self.modality != Modality.TEXT and self.data.dim() == 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return (
            self.modality == other.modality
            and self.grid == other.grid
            and self.predict == other.predict
            and self.data.shape == other.data.shape
            and torch.equal(self.data.cpu(), other.data.to(self.data.dtype).cpu())
        )

    def __repr__(self) -> str:
        grid = f", grid={self.grid}" if self.grid else ""
        predict = "" if self.predict else ", predict=False"
        codes = " codes" if self.discrete else ""
        return f"Segment({self.modality.name}, {len(self)}{codes} tokens{grid}{predict})"


def text_segment(ids: Sequence[int] | Tensor, predict: bool = True) -> Segment:
    """A text segment from token ids ``(n_tokens,)``."""
    return Segment(Modality.TEXT, torch.as_tensor(ids, dtype=torch.long).cpu(), predict=predict)


def _media(data: Tensor | Sequence) -> Tensor:
    """Code ids ``(n,)`` of any integer dtype as int64; features ``(n, dim)`` as float32."""
    data = torch.as_tensor(data).cpu()
    integer = not (data.is_floating_point() or data.is_complex() or data.dtype == torch.bool)
    return data.long() if data.dim() == 1 and integer else data.float()


def image_segment(
    patches: Tensor, grid: tuple[int, int] | None = None, predict: bool = True
) -> Segment:
    """An image segment from one image's patches ``(n_patches, image_dim)``, or from its
    code ids ``(n_patches,)`` int64 (a discrete image, lesson 03's tokenizer).

    ``grid`` is ``(rows, cols)`` of the patch grid; without it the grid is taken square.
    """
    patches = _media(patches)
    if grid is None and patches.dim() in (1, 2):
        side = round(patches.shape[0] ** 0.5)
        if side * side != patches.shape[0]:
            raise ValueError(
                f"{patches.shape[0]} patches do not make a square grid; pass grid=(rows, cols)."
            )
        grid = (side, side)
    return Segment(Modality.IMAGE, patches, grid=grid, predict=predict)


def audio_segment(frames: Tensor, predict: bool = True) -> Segment:
    """An audio segment from one clip's frame features ``(n_tokens, audio_dim)``, or from
    its code ids ``(n_tokens,)`` int64 (a discrete sound)."""
    return Segment(Modality.AUDIO, _media(frames), predict=predict)


@dataclass(frozen=True)
class SpecialTokens:
    """Text ids that :func:`pack` inserts: ``<bos>`` / ``<eos>`` around a document,
    ``<boi>`` / ``<eoi>`` around an image and ``<boa>`` / ``<eoa>`` around audio.

    ``None`` inserts nothing. The markers tell the model where a media span starts and
    ends; at generation time, predicting ``<boi>`` is how a model decides to draw.
    """

    bos: int | None = None
    eos: int | None = None
    boi: int | None = None
    eoi: int | None = None
    boa: int | None = None
    eoa: int | None = None

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int]) -> SpecialTokens:
        """Look the markers up by name (``"<bos>"``, ``"<boi>"``, ...) in ``vocab``,
        for example ``SpecialTokens.from_vocab(tokenizer.ids)``."""
        return cls(**{f.name: vocab.get(f"<{f.name}>") for f in dataclasses.fields(cls)})

    def around(self, modality: Modality) -> tuple[int | None, int | None]:
        """The (opening, closing) ids for a media span of ``modality``."""
        if modality == Modality.IMAGE:
            return self.boi, self.eoi
        if modality == Modality.AUDIO:
            return self.boa, self.eoa
        return None, None


@dataclass(frozen=True)
class Span:
    """Where one segment (or one inserted special token) sits in a packed row."""

    modality: Modality
    start: int
    length: int
    segment: int  # index of the segment in its document; -1 for an inserted special token
    grid: tuple[int, int] | None = None
    predict: bool = True
    bidirectional: bool = False

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass
class PackedBatch:
    """One padded batch of interleaved documents (one per row), ready for a decoder.

    Shapes use ``B`` = documents and ``T`` = the longest document, in tokens.
    """

    modality: Tensor  # (B, T) int64: Modality ids, PAD (-1) on padding
    text_ids: Tensor  # (B, T) int64: token id where text, 0 elsewhere
    image: Tensor  # (B, T, image_dim): patch features where image, 0 elsewhere
    audio: Tensor  # (B, T, audio_dim): frame features where audio, 0 elsewhere
    codes: Tensor  # (B, T) int64: code id where a discrete image/audio token sits, -1 elsewhere
    positions: Tensor  # (B, T) int64: 0..n-1 over real tokens, 0 on padding
    mrope_positions: Tensor  # (3, B, T) int64: (time, height, width)
    attn_mask: Tensor  # (B, T, T) bool: True = query (row) may attend to key (column)
    target_modality: Tensor  # (B, T) int64: modality of the token to predict, PAD = no loss
    text_targets: Tensor  # (B, T) int64: next token's id, IGNORE_INDEX where not text
    image_targets: Tensor  # (B, T, image_dim): next token's patch features, 0 elsewhere
    audio_targets: Tensor  # (B, T, audio_dim): next token's frame features, 0 elsewhere
    code_targets: Tensor  # (B, T) int64: next token's code id, IGNORE_INDEX where not discrete
    spans: list[list[Span]]  # per row, the spans in order

    @property
    def batch_size(self) -> int:
        return self.modality.shape[0]

    @property
    def seq_len(self) -> int:
        return self.modality.shape[1]

    @property
    def real(self) -> Tensor:
        """``(B, T)`` bool: True on real tokens, False on padding."""
        return self.modality != PAD

    @property
    def lengths(self) -> Tensor:
        """``(B,)`` int64: real tokens per row."""
        return self.real.sum(dim=1)

    def loss_mask(self, modality: Modality) -> Tensor:
        """``(B, T)`` bool: positions whose next token is ``modality`` and is trained on."""
        return self.target_modality == Modality(modality)

    def rope_positions(self, kind: str = "1d") -> Tensor:
        """Positions for the decoder: ``"1d"`` -> ``(B, T)``, ``"mrope"`` -> ``(3, B, T)``."""
        if kind == "1d":
            return self.positions
        if kind == "mrope":
            return self.mrope_positions
        raise ValueError(f"rope kind should be '1d' or 'mrope'; got {kind!r}.")

    def select(self, rows: Tensor | Sequence[int]) -> PackedBatch:
        """A batch of some of the rows (documents), keeping the sequence length."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        picked = {
            f.name: getattr(self, f.name)[rows]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor) and f.name != "mrope_positions"
        }
        picked["mrope_positions"] = self.mrope_positions[:, rows]  # batch is its 2nd dim
        picked["spans"] = [self.spans[i] for i in rows.tolist()]
        return dataclasses.replace(self, **picked)

    def to(self, device: torch.device | str) -> PackedBatch:
        """A copy with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def describe(self, row: int = 0) -> str:
        """One character per position: ``T`` text, ``I`` image, ``A`` audio, ``.`` padding;
        brackets around bidirectional spans. For example ``TTTT[IIII]TTAAA..``."""
        letters = {PAD: ".", Modality.TEXT: "T", Modality.IMAGE: "I", Modality.AUDIO: "A"}
        chars = [letters[int(m)] for m in self.modality[row].tolist()]
        for span in reversed(self.spans[row]):
            if span.bidirectional:
                chars.insert(span.stop, "]")
                chars.insert(span.start, "[")
        return "".join(chars)


def _check_documents(documents: Sequence[Sequence[Segment]]) -> None:
    if isinstance(documents, Segment) or (len(documents) > 0 and isinstance(documents[0], Segment)):
        raise ValueError(
            "pack takes a list of documents, each a list of segments; got a list of "
            "segments. Wrap a single document as [document]."
        )
    if len(documents) == 0:
        raise ValueError("pack needs at least one document; got an empty list.")
    for i, doc in enumerate(documents):
        if len(doc) == 0:
            raise ValueError(f"document {i} has no segments; every row needs a token.")
        for j, seg in enumerate(doc):
            if not isinstance(seg, Segment):
                raise ValueError(
                    f"document {i}, item {j} should be a Segment (text_segment, "
                    f"image_segment, audio_segment); got {type(seg).__name__}."
                )


def _feature_dim(
    documents: Sequence[Sequence[Segment]], modality: Modality, given: int | None
) -> int:
    """The one feature width of ``modality`` across all documents (0 when absent)."""
    name = modality.name.lower()
    dim = given
    for i, doc in enumerate(documents):
        for j, seg in enumerate(doc):
            if seg.modality != modality or seg.discrete:
                continue
            if dim is None:
                dim = seg.data.shape[1]
            elif seg.data.shape[1] != dim:
                raise ValueError(
                    f"{name} tokens should all be {dim} features wide; "
                    f"document {i}, segment {j} has {seg.data.shape[1]}."
                )
    return 0 if dim is None else dim


def _pieces(doc: Sequence[Segment], specials: SpecialTokens) -> list[tuple[Segment, int]]:
    """The document with special tokens inserted, as (segment, index in doc or -1)."""

    def marker(token: int | None, predict: bool) -> list[tuple[Segment, int]]:
        return [] if token is None else [(text_segment([token], predict=predict), -1)]

    out = marker(specials.bos, True)
    for index, seg in enumerate(doc):
        opening, closing = specials.around(seg.modality)
        out += marker(opening, seg.predict)
        out.append((seg, index))
        out += marker(closing, seg.predict)
    return out + marker(specials.eos, True)


def _mrope_rows(
    start: int, modality: Modality, length: int, grid: tuple[int, int] | None
) -> tuple[list[int], list[int], list[int]]:
    if modality == Modality.IMAGE:
        cols = grid[1]
        return (
            [start] * length,
            [start + i // cols for i in range(length)],
            [start + i % cols for i in range(length)],
        )
    steps = list(range(start, start + length))
    return steps, steps, steps


def mrope_grid(
    start: int, modality: Modality, length: int, grid: tuple[int, int] | None = None
) -> Tensor:
    """Multimodal RoPE positions ``(3, length)`` of one span that starts at ``start``.

    Text and audio: all three rows ``start, start + 1, ...``. An image: time stays at
    ``start``, height is ``start + row`` and width ``start + col`` over the patch grid
    ``(rows, cols)``. The next span starts after the largest of them.
    """
    return torch.tensor(_mrope_rows(start, Modality(modality), length, grid), dtype=torch.long)


def attention_mask(real: Tensor, span_ids: Tensor | None = None) -> Tensor:
    """The boolean attention mask ``(B, T, T)`` of a padded batch; True = may attend.

    Args:
        real: ``(B, T)`` bool, True on real tokens.
        span_ids: ``(B, T)`` int64, an id >= 0 shared by the tokens of one bidirectional
            span, -1 elsewhere. Tokens of one span see each other in both directions.

    Causal (a query sees itself and earlier keys), never a padding key; a padding query
    sees only itself, which keeps every row of softmax well defined.
    """
    seq = real.shape[1]
    idx = torch.arange(seq, device=real.device)
    causal = idx[None, :] <= idx[:, None]  # (T, T): key index <= query index
    mask = causal & real[:, None, :] & real[:, :, None]
    if span_ids is not None:
        same_span = (span_ids[:, :, None] == span_ids[:, None, :]) & (span_ids[:, :, None] >= 0)
        mask = mask | same_span
    pad_self = torch.eye(seq, dtype=torch.bool, device=real.device) & ~real[:, :, None]
    return mask | pad_self


def pack(
    documents: Sequence[Sequence[Segment]],
    *,
    specials: SpecialTokens | None = None,
    bidirectional: Collection[Modality] = (),
    pad_to: int | None = None,
    pad_side: str = "right",
    image_dim: int | None = None,
    audio_dim: int | None = None,
) -> PackedBatch:
    """Lay documents out as one padded batch, one document per row.

    Args:
        documents: a list of documents, each a list of :class:`Segment` in any order.
        specials: marker ids to insert (``<bos>``, ``<boi>``...), as text tokens.
        bidirectional: modalities whose spans attend both ways inside themselves, e.g.
            ``{Modality.IMAGE}``. Inside such a span the next token is visible, so those
            in-span next-token targets are dropped from the loss (predicting them would
            be copying); only the span's first token is still predicted, from before it.
        pad_to: make the sequence at least this long (for fixed shapes).
        pad_side: ``"right"`` (documents start together) or ``"left"`` (they end
            together, which generation with a KV cache needs: every row's next token
            then sits in the same column).
        image_dim, audio_dim: feature widths to use when no document has that modality.

    Returns:
        a :class:`PackedBatch`; ``unpack`` turns it back into the documents.
    """
    _check_documents(documents)
    specials = specials or SpecialTokens()
    bidirectional = {Modality(m) for m in bidirectional}
    if Modality.TEXT in bidirectional:
        raise ValueError(
            "text is generated left to right; only IMAGE or AUDIO can be bidirectional."
        )
    dims = {
        Modality.IMAGE: _feature_dim(documents, Modality.IMAGE, image_dim),
        Modality.AUDIO: _feature_dim(documents, Modality.AUDIO, audio_dim),
    }

    if pad_side not in ("right", "left"):
        raise ValueError(f"pad_side should be 'right' or 'left'; got {pad_side!r}.")
    rows = [_pieces(doc, specials) for doc in documents]
    lengths = [sum(len(seg) for seg, _ in pieces) for pieces in rows]
    seq = max(*lengths, pad_to or 0)
    batch = len(documents)

    # Build plain Python lists row by row and make each tensor once at the end: a
    # handful of small tensor writes per segment would cost more than the model step.
    fields = {
        k: []
        for k in ("modality", "text_ids", "codes", "positions", "t", "h", "w", "span", "predict")
    }
    chunks = {m: [] for m in dims}  # feature rows of each continuous modality...
    flat_index = {m: [] for m in dims}  # ...and where they go in the flattened (B * T)
    spans: list[list[Span]] = []
    n_bidirectional = 0
    for b, pieces in enumerate(rows):
        row = {k: [] for k in fields}
        offset = seq - lengths[b] if pad_side == "left" else 0  # column of the first token
        start, cursor = offset, 0  # cursor: next free M-RoPE position
        row_spans = []
        for seg, index in pieces:
            n, stop = len(seg), start + len(seg)
            both_ways = seg.modality in bidirectional
            row["modality"] += [int(seg.modality)] * n
            if seg.modality == Modality.TEXT:
                row["text_ids"] += seg.data.tolist()
                row["codes"] += [-1] * n
            elif seg.discrete:
                row["text_ids"] += [0] * n
                row["codes"] += seg.data.tolist()
            else:
                row["text_ids"] += [0] * n
                row["codes"] += [-1] * n
                chunks[seg.modality].append(seg.data)
                flat_index[seg.modality] += range(b * seq + start, b * seq + stop)
            row["positions"] += range(start - offset, stop - offset)
            t, h, w = _mrope_rows(cursor, seg.modality, n, seg.grid)
            row["t"], row["h"], row["w"] = row["t"] + t, row["h"] + h, row["w"] + w
            cursor = max(t[-1], h[-1], w[-1]) + 1  # the last token holds the largest
            row["span"] += [n_bidirectional if both_ways else -1] * n
            n_bidirectional += both_ways
            row["predict"] += [seg.predict] * n
            row_spans.append(Span(seg.modality, start, n, index, seg.grid, seg.predict, both_ways))
            start = stop
        padding = {"modality": PAD, "codes": -1, "span": -1, "predict": False}
        for k, values in row.items():
            pad = [padding.get(k, 0)] * (seq - lengths[b])
            fields[k].append(pad + values if pad_side == "left" else values + pad)
        spans.append(row_spans)

    modality = torch.tensor(fields["modality"], dtype=torch.long)
    text_ids = torch.tensor(fields["text_ids"], dtype=torch.long)
    codes = torch.tensor(fields["codes"], dtype=torch.long)
    positions = torch.tensor(fields["positions"], dtype=torch.long)
    mrope = torch.tensor([fields["t"], fields["h"], fields["w"]], dtype=torch.long)
    span_ids = torch.tensor(fields["span"], dtype=torch.long)
    predict = torch.tensor(fields["predict"], dtype=torch.bool)
    features = {}
    for m, d in dims.items():
        flat = torch.zeros(batch * seq, d)
        if chunks[m]:
            flat[torch.tensor(flat_index[m])] = torch.cat(chunks[m])
        features[m] = flat.view(batch, seq, d)

    real = modality != PAD
    targets = next_token_targets(
        modality,
        text_ids,
        features[Modality.IMAGE],
        features[Modality.AUDIO],
        predict,
        span_ids,
        codes,
    )
    return PackedBatch(
        modality=modality,
        text_ids=text_ids,
        image=features[Modality.IMAGE],
        audio=features[Modality.AUDIO],
        codes=codes,
        positions=positions,
        mrope_positions=mrope,
        attn_mask=attention_mask(real, span_ids),
        **targets,
        spans=spans,
    )


def next_token_targets(
    modality: Tensor,
    text_ids: Tensor,
    image: Tensor,
    audio: Tensor,
    predict: Tensor | None = None,
    span_ids: Tensor | None = None,
    codes: Tensor | None = None,
) -> dict[str, Tensor]:
    """What each position is trained to predict: the token after it.

    Args:
        modality: ``(B, T)`` modality ids, ``PAD`` on padding.
        text_ids, image, audio: ``(B, T)``, ``(B, T, image_dim)``, ``(B, T, audio_dim)``.
        predict: ``(B, T)`` bool, False on tokens the model reads but is not trained to
            produce; default all True.
        span_ids: ``(B, T)`` bidirectional span ids (-1 outside); a token whose next token
            sits in its own bidirectional span can already see it, so it gets no target.
        codes: ``(B, T)`` code ids of discrete media tokens, -1 elsewhere; default none.

    Returns:
        ``target_modality`` ``(B, T)`` (``PAD`` = no loss here), ``text_targets``
        ``(B, T)`` (``IGNORE_INDEX`` where the next token is not trained text),
        ``image_targets`` and ``audio_targets`` (zeros where not trained), and
        ``code_targets`` ``(B, T)`` (the next token's code id where it is a trained
        discrete media token, ``IGNORE_INDEX`` elsewhere).
    """
    if predict is None:
        predict = torch.ones_like(modality, dtype=torch.bool)
    if span_ids is None:
        span_ids = torch.full_like(modality, -1)
    if codes is None:
        codes = torch.full_like(modality, -1)

    def shift(x: Tensor, fill: float) -> Tensor:  # x[:, i] <- x[:, i + 1]
        return torch.cat([x[:, 1:], torch.full_like(x[:, :1], fill)], dim=1)

    next_modality = shift(modality, PAD)
    visible = (shift(span_ids, -1) == span_ids) & (span_ids >= 0)
    trained = (modality != PAD) & (next_modality != PAD) & shift(predict, False) & ~visible
    target_modality = torch.where(trained, next_modality, PAD)

    def masked(x: Tensor, m: Modality, fill: float) -> Tensor:
        keep = (target_modality == m).view(*target_modality.shape, *([1] * (x.dim() - 2)))
        return torch.where(keep, shift(x, fill), fill)

    next_codes = shift(codes, -1)
    media = (target_modality == Modality.IMAGE) | (target_modality == Modality.AUDIO)
    return {
        "target_modality": target_modality,
        "text_targets": masked(text_ids, Modality.TEXT, IGNORE_INDEX),
        "image_targets": masked(image, Modality.IMAGE, 0.0),
        "audio_targets": masked(audio, Modality.AUDIO, 0.0),
        "code_targets": torch.where(media & (next_codes >= 0), next_codes, IGNORE_INDEX),
    }


def unpack(packed: PackedBatch) -> list[list[Segment]]:
    """The documents a :class:`PackedBatch` was packed from (inserted markers removed)."""
    documents = []
    for b, row_spans in enumerate(packed.spans):
        doc = []
        for span in row_spans:
            if span.segment < 0:
                continue
            where = slice(span.start, span.stop)
            codes = packed.codes[b, where]
            if span.modality == Modality.TEXT:
                doc.append(text_segment(packed.text_ids[b, where], predict=span.predict))
            elif span.modality == Modality.IMAGE:
                data = codes if (codes >= 0).all() else packed.image[b, where]
                doc.append(image_segment(data, span.grid, span.predict))
            else:
                data = codes if (codes >= 0).all() else packed.audio[b, where]
                doc.append(audio_segment(data, predict=span.predict))
        documents.append(doc)
    return documents
