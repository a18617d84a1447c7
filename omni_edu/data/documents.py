"""Interleaved documents: one OmniWorld scene told as caption, picture and sound (lesson 02).

A native omni model trains on *documents* in which the modalities follow each other in any
order, like a web page with a photo between two paragraphs. Here each document is one
OmniWorld scene said several ways, for example::

    <bos> caption <boi> image patches <eoi> caption <boa> audio tokens <eoa> <eos>

:class:`InterleavedCorpus` holds a fixed pool of scenes, already turned into tokens (word
ids, image patches, audio tokens), and lays them out as documents in varied orders. Its
:meth:`~InterleavedCorpus.batches` gives the ``step -> PackedBatch`` function that the
:class:`~omni_edu.train.Trainer` wants, deterministic from the corpus seed and the step.

Because every document describes *one* scene, each part can be predicted from the parts
before it: a caption after a picture can be read off the picture, a sound after a
caption can be "spoken" from the caption. Which order a document uses decides which of
these cross-modal predictions it teaches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from omni_edu.data.language import caption
from omni_edu.data.world import OmniWorld
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
from omni_edu.model.omni_lm import OmniLMConfig
from omni_edu.profiles import Profile, get_profile

PARTS = ("caption", "image", "audio")

# Orders that cover every "X after Y" pair at least once, and the chapter's own example
# (a caption, the picture, a second caption in other words, then the sound).
ORDERS: tuple[tuple[str, ...], ...] = (
    ("caption", "image", "caption", "audio"),
    ("image", "caption", "audio"),
    ("audio", "caption", "image"),
    ("image", "audio", "caption"),
    ("caption", "audio", "image"),
)


def check_order(order: Sequence[str]) -> tuple[str, ...]:
    """Return ``order`` as a tuple after checking every part is a caption, image or audio."""
    if isinstance(order, str):
        raise ValueError(
            f"an order is a sequence of parts such as ('caption', 'image'); got the string "
            f"{order!r}. Wrap a single part as ({order!r},)."
        )
    order = tuple(order)
    unknown = [p for p in order if p not in PARTS]
    if not order or unknown:
        raise ValueError(f"an order lists parts from {PARTS}; got {order!r}.")
    return order


def order_name(order: Sequence[str]) -> str:
    """``("caption", "image", "audio")`` -> ``"caption > image > audio"``."""
    return " > ".join(check_order(order))


class InterleavedCorpus:
    """A fixed pool of OmniWorld scenes, ready to be laid out as interleaved documents.

    Args:
        n_scenes: scenes in the pool (for example ``profile.n_train``).
        split, seed, n_objects: passed to :class:`~omni_edu.data.OmniWorld`.
        frames_per_token: log-mel frames grouped into one audio token.
        orders: the document orders :meth:`batch` draws from.
        synonyms: caption with random templates and synonyms (two wordings per scene);
            the default is OmniWorld's canonical wording, so that a caption after the
            picture is fully decided by it and its loss shows how much the model reads.
        profile: sizes (default: the active profile).

    Attributes: ``tokenizer``, ``specials`` (the ``<bos>``, ``<boi>``... ids), ``patches``
    ``(n_scenes, n_patches, image_dim)``, ``grid`` ``(rows, cols)``, ``audio``
    ``(n_scenes, n_audio_tokens, audio_dim)``, ``captions`` (two wordings per scene, the
    same one twice without synonyms).
    """

    def __init__(
        self,
        n_scenes: int,
        split: str = "train",
        seed: int = 0,
        n_objects: int | tuple[int, int] = 1,
        frames_per_token: int = 4,
        orders: Sequence[Sequence[str]] = ORDERS,
        synonyms: bool = False,
        profile: Profile | None = None,
    ) -> None:
        if isinstance(n_scenes, bool) or not isinstance(n_scenes, int) or n_scenes < 1:
            raise ValueError(f"n_scenes should be a positive int; got {n_scenes!r}.")
        self.profile = profile or get_profile()
        self.orders = tuple(check_order(o) for o in orders)
        if not self.orders:
            raise ValueError("orders should hold at least one order.")
        self.seed = seed
        self.frames_per_token = frames_per_token
        self.tokenizer = TextTokenizer()
        self.specials = SpecialTokens.from_vocab(self.tokenizer.ids)
        world = OmniWorld(split, seed=seed, profile=self.profile, n_objects=n_objects)
        data = world.sample(n_scenes)
        size = self.profile.image_size
        self.grid = patch_grid(size, size, self.profile.patch_size)
        self.patches = patchify(data.images, self.profile.patch_size)
        self.audio = frame_audio(data.mels, frames_per_token)
        self.scenes = data.scenes
        if synonyms:
            # Two wordings per scene (templates and synonyms differ), so a document that
            # mentions its scene twice does not just repeat itself.
            rng = random.Random(seed)
            self.captions = [(data.captions[i], caption(s, rng)) for i, s in enumerate(data.scenes)]
        else:
            # One fixed wording: every word of the caption is then decided by the scene.
            self.captions = [(caption(s), caption(s)) for s in data.scenes]
        self._ids = [tuple(self.tokenizer.encode(c) for c in pair) for pair in self.captions]
        self._pool: PackedBatch | None = None

    def __len__(self) -> int:
        return len(self.scenes)

    def __repr__(self) -> str:
        return (
            f"InterleavedCorpus({len(self)} scenes, image {self.grid[0]}x{self.grid[1]} "
            f"patches of {self.image_dim}, audio {self.audio.shape[1]} tokens of "
            f"{self.audio_dim}, {len(self.orders)} orders)"
        )

    @property
    def image_dim(self) -> int:
        return self.patches.shape[-1]

    @property
    def audio_dim(self) -> int:
        return self.audio.shape[-1]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def document(self, index: int, order: Sequence[str]) -> list[Segment]:
        """Scene ``index`` as segments in ``order``; a second caption uses other words."""
        if not 0 <= index < len(self):
            raise ValueError(f"index should be in [0, {len(self)}); got {index}.")
        segments, n_captions = [], 0
        for part in check_order(order):
            if part == "caption":
                segments.append(text_segment(self._ids[index][n_captions % 2]))
                n_captions += 1
            elif part == "image":
                segments.append(image_segment(self.patches[index], self.grid))
            else:
                segments.append(audio_segment(self.audio[index]))
        return segments

    def pack(self, indices: Sequence[int], orders: Sequence[Sequence[str]]) -> PackedBatch:
        """Scenes ``indices`` laid out in ``orders`` (one each) as one padded batch."""
        if len(indices) != len(orders):
            raise ValueError(f"got {len(indices)} indices for {len(orders)} orders; give one each.")
        docs = [self.document(i, o) for i, o in zip(indices, orders, strict=True)]
        return pack(
            docs, specials=self.specials, image_dim=self.image_dim, audio_dim=self.audio_dim
        )

    @property
    def pool(self) -> PackedBatch:
        """Every scene as one document, packed once: scene ``i`` in a random order.

        Packing walks through every segment in Python, which costs about as much as a
        training step of the tiny model, so it is done once here and batches are rows
        picked from this pool (all padded to the longest document).
        """
        if self._pool is None:
            g = torch.Generator().manual_seed(self.seed)
            picks = torch.randint(len(self.orders), (len(self),), generator=g).tolist()
            self._pool = self.pack(range(len(self)), [self.orders[k] for k in picks])
        return self._pool

    def batch(self, step: int, batch_size: int) -> PackedBatch:
        """Batch number ``step``: random documents of the pool, the same for the same step."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return self.pool.select(torch.randint(len(self), (batch_size,), generator=g))

    def batches(self, batch_size: int | None = None) -> Callable[[int], PackedBatch]:
        """The ``step -> PackedBatch`` function for the Trainer (default: the profile's batch)."""
        size = batch_size or self.profile.batch_size
        return lambda step: self.batch(step, size)

    def model_config(self, **overrides) -> OmniLMConfig:
        """An :class:`~omni_edu.model.omni_lm.OmniLMConfig` sized for this corpus and profile."""
        return OmniLMConfig.from_profile(
            self.vocab_size, self.frames_per_token, self.profile, **overrides
        )

    def token_labels(self, packed: PackedBatch, row: int = 0) -> list[str]:
        """A readable label per position of one packed row: words, ``img r,c``, ``aud k``."""
        labels = []
        for span in packed.spans[row]:
            for k in range(span.length):
                if span.modality == Modality.TEXT:
                    labels.append(self.tokenizer.tokens[int(packed.text_ids[row, span.start + k])])
                elif span.modality == Modality.IMAGE:
                    r, c = divmod(k, span.grid[1])
                    labels.append(f"img {r},{c}")
                else:
                    labels.append(f"aud {k}")
        return labels
