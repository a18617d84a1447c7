"""Documents -> one interleaved batch, in three steps: layout, contents, targets.

A *document* is a list of segments (:mod:`omni_edu.model.segments`) in any order and
count, for example ``caption -> image -> caption -> audio``. :func:`pack` lays a list of
documents out as one padded :class:`PackedBatch`, one document per row:

1. **Layout** (:func:`~omni_edu.model.layout.batch_layout`): everything about the tokens
   except their contents - modalities, inserted markers, 1-D and M-RoPE positions,
   bidirectional spans, which tokens are trained - worked out once per distinct layout
   (documents of one task usually share one) and copied into their rows;
2. **Contents** (:func:`batch_contents`): token ids, patch and frame features and code ids,
   one copy per span for all the documents of a layout;
3. **Targets** (:func:`next_token_targets`, the one place where targets are shifted):
   position ``i`` is trained to predict token ``i + 1``, with the text head where token
   ``i + 1`` is text (its id) and with the image or audio head where it is an image patch
   or an audio frame (its features, or its code id).

A picture or a sound given as *discrete* tokens (code ids of a VQ/FSQ tokenizer, lesson
03) sits in ``codes`` and is predicted with a softmax over the tokenizer's codebook,
exactly like words; the modality id still says IMAGE or AUDIO, so positions (M-RoPE's
grid) and modality embeddings stay the same. Nothing here has parameters: the
:class:`~omni_edu.model.projector.OmniTokenProjector` turns a :class:`PackedBatch` into
embeddings. :func:`unpack` turns it back into the documents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.modalities import PAD, Modality
from omni_edu.model.layout import (
    BatchLayout,
    Span,
    attention_mask,
    batch_layout,
    mrope_grid,
)
from omni_edu.model.segments import (
    Segment,
    SpecialTokens,
    audio_segment,
    image_segment,
    text_segment,
)

# What lessons and modules import from here; the layout and the segments have their own
# modules, but a document's way into a batch starts at this one.
__all__ = [
    "IGNORE_INDEX",
    "PackedBatch",
    "Segment",
    "Span",
    "SpecialTokens",
    "attention_mask",
    "audio_segment",
    "image_segment",
    "mrope_grid",
    "next_token_targets",
    "pack",
    "text_segment",
    "unpack",
]

IGNORE_INDEX = -100  # text targets where no text is predicted; F.cross_entropy's default


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


# ----------------------------------------------------------------------------- pack


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
    dims = {
        Modality.IMAGE: _feature_dim(documents, Modality.IMAGE, image_dim),
        Modality.AUDIO: _feature_dim(documents, Modality.AUDIO, audio_dim),
    }
    # 1. Where every token goes and what it is; 2. what it holds; 3. what it predicts.
    layout = batch_layout(documents, specials, bidirectional, pad_to, pad_side)
    contents = batch_contents(documents, layout, dims)
    targets = next_token_targets(
        layout.modality,
        contents["text_ids"],
        contents["image"],
        contents["audio"],
        layout.predict,
        layout.span_ids,
        contents["codes"],
    )
    return PackedBatch(
        modality=layout.modality,
        **contents,
        positions=layout.positions,
        mrope_positions=layout.mrope,
        attn_mask=attention_mask(layout.modality != PAD, layout.span_ids),
        **targets,
        spans=layout.spans,
    )


def batch_contents(
    documents: Sequence[Sequence[Segment]], layout: BatchLayout, dims: dict[Modality, int]
) -> dict[str, Tensor]:
    """Step 2 of :func:`pack`: the tokens' contents, copied span by span, one copy for all
    the documents that share a layout.

    Returns ``text_ids`` ``(B, T)`` (markers included), ``codes`` ``(B, T)`` (-1 where no
    code), ``image`` ``(B, T, dims[IMAGE])`` and ``audio`` ``(B, T, dims[AUDIO])``.
    """
    batch, seq = layout.modality.shape
    out = {
        "text_ids": layout.marker_ids.clone(),
        "codes": torch.full((batch, seq), -1),
        "image": torch.zeros(batch, seq, dims[Modality.IMAGE]),
        "audio": torch.zeros(batch, seq, dims[Modality.AUDIO]),
    }
    fields = {Modality.TEXT: "text_ids", Modality.IMAGE: "image", Modality.AUDIO: "audio"}
    for rows in layout.groups:
        index = torch.tensor(rows)
        for span in layout.spans[rows[0]]:
            if span.segment < 0:
                continue  # an inserted marker: its id is part of the layout
            segments = [documents[row][span.segment] for row in rows]
            field = out["codes" if segments[0].discrete else fields[span.modality]]
            data = torch.stack([seg.data for seg in segments])
            field[index, span.start : span.stop] = data.to(field)
    return out


# ----------------------------------------------------------------------------- targets


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
