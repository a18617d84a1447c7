"""The pieces of a document: a run of text, a picture or a sound (:class:`Segment`).

A *document* is a list of segments in any order and count, for example ``caption ->
image -> caption -> audio``; :func:`~omni_edu.model.interleave.pack` lays documents out
as one batch. A picture or a sound enters either as **continuous** tokens (patch or frame
features, ``(n_tokens, features)`` floats) or as **discrete** tokens (code ids of a VQ/FSQ
tokenizer, ``(n_tokens,)`` int64, lesson 03). :class:`SpecialTokens` names the marker ids
that ``pack`` inserts around documents and media spans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.modalities import Modality


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
