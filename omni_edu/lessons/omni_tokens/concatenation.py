"""What concatenating modalities loses: where each item sat in the document.

The chapter's first projector lays a sample out as ``[all text tokens; all image tokens;
all audio tokens]``. Within a modality the order survives, but *between* modalities it
is gone: "caption, picture, sound" and "sound, picture, caption" become the same
sequence. Any question whose answer depends on that order ("what did the speaker say
before the slide appeared?") then has no answer in the input.

This module makes the loss measurable without training anything: lay out documents both
ways, group identical inputs, and compute the best accuracy *any* model could reach on
an order-dependent task (:func:`best_possible_accuracy`).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

from omni_edu.data import OmniBatch
from omni_edu.data.documents import PARTS
from omni_edu.modalities import Modality, TextTokenizer, frame_audio, patch_grid, patchify
from omni_edu.model.interleave import (
    PackedBatch,
    Segment,
    SpecialTokens,
    audio_segment,
    image_segment,
    pack,
    text_segment,
)

ORDERS = tuple(itertools.permutations(PARTS))  # the 6 orders of one caption, image, sound


def concatenate_by_modality(document: Sequence[Segment]) -> list[Segment]:
    """The chapter's layout: every text segment, then every image, then every audio clip.

    Segments keep their order within a modality (a stable sort by modality id).
    """
    return sorted(document, key=lambda seg: int(seg.modality))


def scene_documents(
    batch: OmniBatch,
    tokenizer: TextTokenizer,
    patch_size: int,
    frames_per_token: int = 4,
    orders: Sequence[tuple[str, ...]] = ORDERS,
) -> tuple[list[list[Segment]], list[int]]:
    """Every scene of ``batch`` told in every order of ``orders``.

    Returns ``len(batch) * len(orders)`` documents and, for each, the index of its order
    in ``orders`` (the label of the "in which order?" task).
    """
    size = batch.images.shape[-1]
    grid = patch_grid(size, size, patch_size)
    patches = patchify(batch.images, patch_size)
    audio = frame_audio(batch.mels, frames_per_token)
    documents, labels = [], []
    for i, text in enumerate(batch.captions):
        parts = {
            "caption": text_segment(tokenizer.encode(text)),
            "image": image_segment(patches[i], grid),
            "audio": audio_segment(audio[i]),
        }
        for label, order in enumerate(orders):
            documents.append([parts[name] for name in order])
            labels.append(label)
    return documents, labels


def input_keys(packed: PackedBatch) -> list[bytes]:
    """One hashable key per row: everything the model reads there (modality ids, text
    ids, features and positions). Two rows with the same key are the same input."""
    keys = []
    for b in range(packed.batch_size):
        pieces = (
            packed.modality[b],
            packed.text_ids[b],
            packed.image[b],
            packed.audio[b],
            packed.positions[b],
        )
        keys.append(b"".join(p.contiguous().numpy().tobytes() for p in pieces))
    return keys


def best_possible_accuracy(keys: Sequence[Hashable], labels: Sequence[int]) -> float:
    """The highest accuracy any function of the input can reach on ``labels``.

    Inputs with equal ``keys`` must get the same answer, so the best a model can do on a
    group of identical inputs is its most common label.
    """
    if len(keys) != len(labels) or len(keys) == 0:
        raise ValueError(
            f"keys and labels should be equally long and non-empty; got {len(keys)} and "
            f"{len(labels)}"
        )
    groups: dict[Hashable, Counter] = defaultdict(Counter)
    for key, label in zip(keys, labels, strict=True):
        groups[key][label] += 1
    return sum(c.most_common(1)[0][1] for c in groups.values()) / len(labels)


def order_task_ceiling(
    documents: Sequence[Sequence[Segment]],
    labels: Sequence[int],
    specials: SpecialTokens | None = None,
) -> dict[str, float]:
    """Best possible accuracy on ``labels`` when documents are laid out by position
    (interleaved, as :func:`~omni_edu.model.interleave.pack` does) and when the
    modalities are concatenated (the chapter's layout)."""
    interleaved = pack(documents, specials=specials)
    concatenated = pack([concatenate_by_modality(d) for d in documents], specials=specials)
    return {
        "interleaved by position": best_possible_accuracy(input_keys(interleaved), labels),
        "concatenated by modality": best_possible_accuracy(input_keys(concatenated), labels),
    }


def modality_string(packed: PackedBatch, row: int = 0) -> str:
    """A row's modality ids as letters, e.g. ``"TTTT IIII AA"`` (T text, I image, A audio)."""
    letters = {int(m): m.name[0] for m in Modality}
    out, previous = [], None
    for m in packed.modality[row].tolist():
        if m < 0:
            break
        if previous is not None and m != previous:
            out.append(" ")
        out.append(letters[m])
        previous = m
    return "".join(out)
