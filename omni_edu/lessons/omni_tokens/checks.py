"""Checks for lesson 01's exercises: the omni-token projector and placing segments.

The references are the course's own implementations: the whole
:class:`~omni_edu.model.projector.OmniTokenProjector` (a core-build exercise, checked with
:func:`~omni_edu.grading.check_module` against the package's weights) and
:func:`~omni_edu.model.interleave.pack`. Every check takes ``show_recipe=True`` (show the
full recipe now) and ``time_limit`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from omni_edu.grading import Case, CheckResult, Hints, check_function, check_module
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

PROJECTOR = Hints(
    "OmniTokenProjector",
    nudge="Build the four parts the spec names (text, image, audio, modality) from the config, "
    "then embed every position with the part of its own modality and add its modality's "
    "vector. Start from an all-zero output and fill it one modality at a time.",
    failed="Each position gets exactly one projection, its own modality's, plus that "
    "modality's vector; padding positions (modality -1) stay zero vectors, and a config with "
    "modality_embeddings=False has no modality table at all.",
    on={
        "weights": "Name and shape the parts as the spec does - text: nn.Embedding(vocab_size, "
        "d_model); image: nn.Linear(image_dim, d_model); audio: nn.Linear(audio_dim, d_model); "
        "modality: nn.Embedding(3, d_model), or None when config.modality_embeddings is False - "
        "so that the reference's weights load into yours.",
        "shape": "The output is (batch, seq, d_model): one vector per position, in the "
        "positions' order (not the modalities one after the other).",
        "gradient": "The outputs match but a gradient does not: is every projection used, and "
        "nothing detached (no .data, no .detach())?",
    },
    recipe="__init__: self.text = nn.Embedding(config.vocab_size, config.d_model); self.image = "
    "nn.Linear(config.image_dim, config.d_model); self.audio = nn.Linear(config.audio_dim, "
    "config.d_model); self.modality = nn.Embedding(3, config.d_model) if "
    "config.modality_embeddings else None. forward: out = torch.zeros(*modality.shape, "
    "d_model); for each (m, part, content) in ((TEXT, text, text_ids), (IMAGE, image, image), "
    "(AUDIO, audio, audio)): here = modality == m; out[here] = part(content[here]). Then, if "
    "self.modality is not None: out = out + (modality >= 0).unsqueeze(-1) * "
    "self.modality(modality.clamp(min=0)).",
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


class ProjectorReference(OmniTokenProjector):
    """The package's projector with the exercise's forward pass: tensors in, not a packed
    batch. ``forward(modality, text_ids, image, audio)`` is :meth:`OmniTokenProjector.embed`:
    modality, text_ids ``(batch, seq)``; image ``(batch, seq, image_dim)``; audio
    ``(batch, seq, audio_dim)`` -> ``(batch, seq, d_model)``."""

    def forward(self, modality: Tensor, text_ids: Tensor, image: Tensor, audio: Tensor) -> Tensor:
        return self.embed(modality, text_ids, image, audio)


def reference_projector(config: ProjectorConfig) -> ProjectorReference:
    """The reference the check loads into the learner's module: every weight redrawn from a
    unit normal (the package's small initialisation would hide a missing term)."""
    projector = ProjectorReference(config)
    with torch.no_grad():
        for p in projector.parameters():
            p.normal_()
    return projector


# The configs the check builds both modules from: with modality embeddings, and without.
PROJECTOR_CONFIGS = {
    "with modality embeddings": ProjectorConfig(
        d_model=8, vocab_size=12, image_dim=12, audio_dim=6, modality_embeddings=True
    ),
    "without modality embeddings": ProjectorConfig(
        d_model=8, vocab_size=12, image_dim=12, audio_dim=6, modality_embeddings=False
    ),
}


def _interleaved(modality: list[list[int]]) -> Callable[[torch.Generator], tuple[Tensor, ...]]:
    """An input case: the modality layout given, contents drawn at random where they are read."""

    def make(g: torch.Generator) -> tuple[Tensor, ...]:
        m = torch.tensor(modality)
        ids = torch.randint(12, m.shape, generator=g) * (m == TXT)
        image = torch.randn(*m.shape, 12, generator=g) * (m == IMG).unsqueeze(-1)
        audio = torch.randn(*m.shape, 6, generator=g) * (m == AUD).unsqueeze(-1)
        return m, ids, image, audio

    return make


PROJECTOR_CASES = {
    "one text, image and audio token": _interleaved([[TXT, IMG, AUD]]),
    "two interleaved documents, the second padded": _interleaved(
        [
            [TXT, TXT, IMG, IMG, IMG, IMG, TXT, AUD, AUD, TXT],
            [AUD, AUD, TXT, IMG, IMG, IMG, IMG, TXT, PAD, PAD],
        ]
    ),
    "no audio in the batch, one padding position": _interleaved([[IMG, IMG, TXT, TXT, TXT, PAD]]),
}


def check_projector(
    learner: Callable[[ProjectorConfig], nn.Module],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner(config)`` build the omni-token projector?

    The reference's weights (:class:`ProjectorReference`, every weight redrawn) are loaded
    into the learner's module by name; outputs and gradients (of every weight and of the
    image and audio features) are compared on interleaved batches with padding, with
    modality embeddings and then without (``config.modality_embeddings=False``: no
    ``modality`` table at all).
    """
    result = None
    for which, config in PROJECTOR_CONFIGS.items():
        result = check_module(
            learner,
            reference_projector,
            config,
            {f"{label} ({which})": make for label, make in PROJECTOR_CASES.items()},
            name="OmniTokenProjector",
            hints=PROJECTOR,
            show_recipe=show_recipe,
            time_limit=time_limit,
            input_grads=(2, 3),
        )
        if not result.passed:
            return result
    return result


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
