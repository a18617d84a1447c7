"""Step 1 of packing: where every token of a document goes, and what it is.

Everything about a document's tokens except their contents (ids, features, codes):

* its **spans**: the segments in order, with the markers :class:`SpecialTokens` inserts
  (``<bos>`` / ``<eos>`` around a document, ``<boi>`` / ``<eoi>`` around an image,
  ``<boa>`` / ``<eoa>`` around audio);
* each token's **modality** (``PAD`` = -1 on padding) and whether it is trained;
* **positions**: 0, 1, 2, ... over the real tokens (1-D RoPE), and (time, height, width)
  as in Qwen2-VL's multimodal RoPE. Text and audio advance all three together, one step
  per token. An image keeps time fixed at its first position and spreads height and width
  over its patch grid; whatever follows continues from the largest position used + 1;
* the **attention mask** they make (:func:`attention_mask`): causal everywhere,
  optionally bidirectional inside an image or audio span (as in Transfusion); padding is
  never attended, and a padding query attends to itself only, so that attention has at
  least one key per row and never produces NaN.

It depends only on the segments' modalities, lengths, grids and flags
(:func:`layout_key`), so :func:`batch_layout` works it out once per distinct layout and
copies it into the rows of every document that shares it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.modalities import PAD, Modality
from omni_edu.model.segments import Segment, SpecialTokens


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


def layout_key(document: Sequence[Segment]) -> tuple:
    """What a document's layout depends on: each segment's modality, length, grid and
    flags, not its contents. Documents with equal keys get equal :class:`Layout` s."""
    return tuple((s.modality, len(s), s.grid, s.predict, s.discrete) for s in document)


@dataclass(frozen=True, eq=False)
class Layout:
    """Everything about one document's tokens except their contents, markers included.

    One entry per token, ``L`` tokens; the spans start at 0 (:func:`batch_layout` moves
    them to their columns in a padded row).
    """

    spans: tuple[Span, ...]  # the segments and inserted markers, in order
    modality: Tensor  # (L,) int64 Modality ids
    marker_ids: Tensor  # (L,) int64: the id of an inserted marker, 0 elsewhere
    mrope: Tensor  # (3, L) int64: (time, height, width)
    span_ids: Tensor  # (L,) int64: bidirectional span number within the document, -1 outside
    predict: Tensor  # (L,) bool: False on tokens read but not trained to be produced

    @property
    def length(self) -> int:
        return self.modality.shape[0]


def document_layout(
    document: Sequence[Segment],
    specials: SpecialTokens | None = None,
    bidirectional: Collection[Modality] = (),
) -> Layout:
    """The :class:`Layout` of one document, with ``specials`` inserted and the spans of
    ``bidirectional`` modalities marked (see :func:`~omni_edu.model.interleave.pack`)."""
    columns: dict[str, list[int]] = {
        k: [] for k in ("modality", "marker", "t", "h", "w", "span", "predict")
    }
    cursor, n_bidirectional = 0, 0  # cursor: next free M-RoPE position
    spans = _spans(document, specials or SpecialTokens(), set(bidirectional))
    for span, marker in spans:
        n = span.length
        columns["modality"] += [int(span.modality)] * n
        columns["marker"] += [marker] if marker is not None else [0] * n  # contents: step 2
        t, h, w = _mrope_rows(cursor, span.modality, n, span.grid)
        columns["t"] += t
        columns["h"] += h
        columns["w"] += w
        cursor = max(t[-1], h[-1], w[-1]) + 1  # the last token holds the largest
        columns["span"] += [n_bidirectional if span.bidirectional else -1] * n
        n_bidirectional += span.bidirectional
        columns["predict"] += [span.predict] * n
    table = torch.tensor(list(columns.values()))  # (7, L): one tensor made, then sliced
    return Layout(
        spans=tuple(span for span, _ in spans),
        modality=table[0],
        marker_ids=table[1],
        mrope=table[2:5],
        span_ids=table[5],
        predict=table[6].bool(),
    )


def _spans(
    document: Sequence[Segment], specials: SpecialTokens, bidirectional: set[Modality]
) -> list[tuple[Span, int | None]]:
    """The document's segments and inserted markers in order, as (span, the marker's id or
    ``None`` for a segment of the document)."""
    pieces = []  # (modality, tokens, index in the document or -1, grid, predict, marker id)

    def marker(token: int | None, predict: bool) -> None:
        if token is not None:
            pieces.append((Modality.TEXT, 1, -1, None, predict, token))

    marker(specials.bos, True)
    for index, seg in enumerate(document):
        opening, closing = specials.around(seg.modality)
        marker(opening, seg.predict)  # a prompt's markers are read, not trained, like it
        pieces.append((seg.modality, len(seg), index, seg.grid, seg.predict, None))
        marker(closing, seg.predict)
    marker(specials.eos, True)
    out, start = [], 0
    for modality, n, index, grid, predict, token in pieces:
        both_ways = modality in bidirectional
        out.append((Span(modality, start, n, index, grid, predict, both_ways), token))
        start += n
    return out


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


@dataclass(eq=False)
class BatchLayout:
    """Step 1 of :func:`~omni_edu.model.interleave.pack`: a batch without its contents.

    The fields of a :class:`Layout`, one row per document, padded to ``T`` tokens.
    """

    modality: Tensor  # (B, T) int64, PAD on padding
    marker_ids: Tensor  # (B, T) int64: the ids of inserted markers, 0 elsewhere
    positions: Tensor  # (B, T) int64: 0..n-1 over real tokens, 0 on padding
    mrope: Tensor  # (3, B, T) int64
    span_ids: Tensor  # (B, T) int64: bidirectional span number, -1 outside
    predict: Tensor  # (B, T) bool
    spans: list[list[Span]]  # per row, at their columns
    groups: list[list[int]]  # rows that share one layout, so one list of spans


def batch_layout(
    documents: Sequence[Sequence[Segment]],
    specials: SpecialTokens | None = None,
    bidirectional: Collection[Modality] = (),
    pad_to: int | None = None,
    pad_side: str = "right",
) -> BatchLayout:
    """Step 1 of :func:`~omni_edu.model.interleave.pack` (see its arguments): one
    :func:`document_layout` per distinct layout (documents of one task usually share one),
    copied into the rows of every document that has it."""
    bidirectional = {Modality(m) for m in bidirectional}
    if Modality.TEXT in bidirectional:
        raise ValueError(
            "text is generated left to right; only IMAGE or AUDIO can be bidirectional."
        )
    if pad_side not in ("right", "left"):
        raise ValueError(f"pad_side should be 'right' or 'left'; got {pad_side!r}.")
    groups: dict[tuple, list[int]] = {}
    for i, doc in enumerate(documents):
        groups.setdefault(layout_key(doc), []).append(i)
    layouts = [
        document_layout(documents[rows[0]], specials, bidirectional) for rows in groups.values()
    ]
    seq = max(*(layout.length for layout in layouts), pad_to or 0)
    batch = len(documents)
    out = BatchLayout(
        modality=torch.full((batch, seq), PAD),
        marker_ids=torch.zeros(batch, seq, dtype=torch.long),
        positions=torch.zeros(batch, seq, dtype=torch.long),
        mrope=torch.zeros(3, batch, seq, dtype=torch.long),
        span_ids=torch.full((batch, seq), -1),
        predict=torch.zeros(batch, seq, dtype=torch.bool),
        spans=[[] for _ in documents],
        groups=list(groups.values()),
    )
    for layout, rows in zip(layouts, out.groups, strict=True):
        offset = seq - layout.length if pad_side == "left" else 0  # column of the 1st token
        index, cols = torch.tensor(rows), slice(offset, offset + layout.length)
        out.modality[index, cols] = layout.modality
        out.marker_ids[index, cols] = layout.marker_ids
        out.positions[index, cols] = torch.arange(layout.length)
        out.mrope[:, index, cols] = layout.mrope[:, None]
        out.span_ids[index, cols] = layout.span_ids
        out.predict[index, cols] = layout.predict
        spans = [dataclasses.replace(s, start=s.start + offset) for s in layout.spans]
        for row in rows:  # a list per row, as if each document had been laid out alone
            out.spans[row] = list(spans)
    return out


# ----------------------------------------------------------------------------- masks


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
