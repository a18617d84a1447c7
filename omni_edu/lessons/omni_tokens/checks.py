"""Checks for lesson 01's exercises: the omni-token projector and placing segments.

The references are the course's own implementations: :meth:`OmniTokenProjector.embed`
(:mod:`omni_edu.model.projector`) and :func:`~omni_edu.model.interleave.pack`. Every check
takes ``show_recipe=True`` (show the full recipe now) and ``time_limit`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from omni_edu.grading import Case, CheckResult, Hints, check_function
from omni_edu.modalities import PAD, Modality
from omni_edu.model.interleave import (
    Segment,
    SpecialTokens,
    audio_segment,
    image_segment,
    pack,
    text_segment,
)
from omni_edu.model.projector import OmniTokenProjector, ProjectorConfig

TXT, IMG, AUD = int(Modality.TEXT), int(Modality.IMAGE), int(Modality.AUDIO)

EMBED_INTERLEAVED = Hints(
    "embed_interleaved",
    nudge="Every position is embedded by the projector of its own modality (text ids, image "
    "features or audio features), then its modality's embedding is added. Start from an "
    "all-zero output and fill it one modality at a time.",
    failed="Each position gets exactly one projection - its own modality's - plus its "
    "modality's embedding; padding positions (modality -1) stay zero.",
    on={
        "shape": "The output is (batch, seq, d_model): one vector per position, in the "
        "positions' order (not the modalities one after the other).",
    },
    recipe="Start from zeros (batch, seq, d_model). For each modality m, take the positions "
    "where modality == m, project only their content there (projector.text for ids, "
    "projector.image / projector.audio for features), then add "
    "projector.modality(modality) on real positions only (padding is -1 and stays zero). "
    "If projector.modality is None, add nothing.",
)

PLACE_SEGMENTS = Hints(
    "place_segments",
    nudge="Walk through the document's segments in order and write down, for every token, "
    "its modality and (for text) its id. Markers such as <boi> are text tokens too.",
    failed="Keep the document's order (do not group tokens by modality); image and audio "
    "positions get text id 0.",
    on={
        "shape": "The sequence holds every token of every segment plus the markers: <bos>, "
        "<eos>, and a <boi>/<eoi> (or <boa>/<eoa>) pair around each media span, leaving out "
        "markers whose id is None.",
    },
    recipe="Walk through the segments in document order (do not group them by modality). "
    "Markers are text tokens: <bos> first, then per segment <boi>/<boa> before an image "
    "or audio span and <eoi>/<eoa> after it, <eos> last; skip a marker whose id is None. "
    "Media positions get text id 0.",
)


def embed_interleaved(
    projector: OmniTokenProjector, modality: Tensor, text_ids: Tensor, image: Tensor, audio: Tensor
) -> Tensor:
    """Reference: :meth:`OmniTokenProjector.embed` - each position embedded by its own
    modality's projector, plus that modality's embedding; padding stays zero.

    modality, text_ids ``(batch, seq)``; image ``(batch, seq, image_dim)``; audio
    ``(batch, seq, audio_dim)`` -> ``(batch, seq, d_model)``.
    """
    return projector.embed(modality, text_ids, image, audio)


def _projector_cases() -> list[Case]:
    def projector(seed: int, modality_embeddings: bool = True) -> OmniTokenProjector:
        torch.manual_seed(seed)
        config = ProjectorConfig(
            d_model=8, vocab_size=12, image_dim=12, audio_dim=6,
            modality_embeddings=modality_embeddings,
        )  # fmt: skip
        proj = OmniTokenProjector(config)
        with torch.no_grad():  # larger than the init so that every term is visible
            for p in proj.parameters():
                p.normal_()
        return proj

    def inputs(modality: list[list[int]], seed: int) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        m = torch.tensor(modality)
        ids = torch.randint(12, m.shape, generator=g) * (m == TXT)
        image = torch.randn(*m.shape, 12, generator=g) * (m == IMG).unsqueeze(-1)
        audio = torch.randn(*m.shape, 6, generator=g) * (m == AUD).unsqueeze(-1)
        return m, ids, image, audio

    padding = (
        "Padding positions (modality -1) get nothing at all - no projection and no modality "
        "embedding - so they stay zero."
    )
    interleaved = [
        [TXT, TXT, IMG, IMG, IMG, IMG, TXT, AUD, AUD, TXT],
        [AUD, AUD, TXT, IMG, IMG, IMG, IMG, TXT, PAD, PAD],
    ]
    return [
        Case(
            (projector(0), *inputs([[TXT, IMG, AUD]], 1)), label="one text, image and audio token"
        ),
        Case(
            (projector(1), *inputs(interleaved, 2)),
            label="two interleaved documents, the second padded",
            hint=padding,
        ),
        Case(
            (projector(2), *inputs([[IMG, IMG, TXT, TXT, TXT, PAD]], 3)),
            label="no audio in the batch (and one padding position)",
            hint=padding,
        ),
        Case(
            (projector(3, modality_embeddings=False), *inputs(interleaved, 4)),
            label="a projector without modality embeddings (projector.modality is None)",
            hint="projector.modality can be None (a projector without modality embeddings): "
            "then add nothing after the projections.",
        ),
    ]


def check_embed_interleaved(
    learner_fn: Callable[..., Tensor], *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(projector, modality, text_ids, image, audio)`` embed every
    position with its own modality's projector and add the modality embedding?"""
    return check_function(
        "embed_interleaved",
        learner_fn,
        embed_interleaved,
        _projector_cases(),
        atol=1e-5,
        hints=EMBED_INTERLEAVED,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def place_segments(
    document: Sequence[Segment], specials: SpecialTokens | None = None
) -> tuple[Tensor, Tensor]:
    """Reference: lay one document out token by token, as :func:`pack` does.

    Returns ``(modality, text_ids)``, both ``(seq,)`` int64: the modality of every token
    in document order (markers such as ``<boi>`` are text) and the text id at text
    positions, 0 at image and audio positions.
    """
    packed = pack([list(document)], specials=specials)
    return packed.modality[0], packed.text_ids[0]


def _place_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    words = text_segment([20, 21, 22])
    more = text_segment([23, 24])
    picture = image_segment(torch.rand(4, 12, generator=g), (2, 2))
    sound = audio_segment(torch.rand(3, 6, generator=g))
    markers = SpecialTokens(bos=1, eos=2, boi=4, eoi=5, boa=6, eoa=7)
    order = "Keep the document's order: a sound before a caption stays before it."
    with_markers = (
        "With markers: <bos> first, <boi> before and <eoi> after each image span (<boa>/<eoa> "
        "for audio), <eos> last. Markers are text tokens with their own ids."
    )
    return [
        Case(([words, picture, more],), label="caption, picture, caption (no markers)"),
        Case(([sound, words, picture],), label="sound, caption, picture (no markers)", hint=order),
        Case(
            ([words, picture, more, sound], markers),
            label="caption, picture, caption, sound with <bos>/<boi>/<eoi>/<boa>/<eoa>/<eos>",
            hint=with_markers,
        ),
        Case(
            ([picture, sound, picture], markers),
            label="two pictures around a sound, markers",
            hint=with_markers,
        ),
    ]


def check_place_segments(
    learner_fn: Callable[..., tuple[Tensor, Tensor]],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(document, specials=None)`` place every token at its position in
    the document, with the markers around media spans?"""
    return check_function(
        "place_segments",
        learner_fn,
        place_segments,
        _place_cases(),
        hints=PLACE_SEGMENTS,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
