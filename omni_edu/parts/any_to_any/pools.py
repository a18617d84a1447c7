"""A pool of OmniWorld scenes as model-ready pieces, for every task (:class:`AnyToAnyData`).

Pictures enter as patches, as lesson 03's code ids or as its continuous latents; every
(task, scene) document is packed once, so a training batch is a cheap row selection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from omni_edu.data import OmniBatch, OmniWorld, PromptSpec
from omni_edu.modalities import (
    TextTokenizer,
    frame_audio,
    patch_grid,
    patchify,
    unframe_audio,
    unpatchify,
)
from omni_edu.model.interleave import PackedBatch, Segment, SpecialTokens, pack, text_segment
from omni_edu.parts.any_to_any.directions import (
    DIRECTIONS,
    QUESTION,
    TASKS,
    UNIMODAL,
    _media_segment,
    get_direction,
    make_document,
    question_document,
)

# What turns a picture (or a sound) into code ids and back: lesson 03's VQ tokenizer.
# Anything with encode_to_indices(x) -> (n, tokens), decode_from_indices and vocab_size fits.
Tokenizer = nn.Module


class AnyToAnyData:
    """A pool of OmniWorld scenes as model-ready pieces, for every task.

    Args:
        world: where the scenes come from (its caption style and object count).
        n: scenes in the pool.
        tasks: which tasks to pack for training (default all of :data:`TASKS`).
        frames_per_token: log-mel frames per audio token.
        seed: the fixed batch of the world to draw (``world.sample(n, seed)``).
        question_modality: what questions are asked about: "image", "audio" or "text"
            (the caption).
        image_tokenizer, audio_tokenizer: lesson 03's tokenizers. With one, that
            modality enters and leaves the model as code ids (discrete tokens) instead of
            patch or frame features.
        latents: modalities ("image", "audio") whose tokenizer is used *without* its
            quantiser: the modality enters and leaves as the autoencoder's continuous
            latents (``encode_latents`` / ``decode_latents``), through the same decoder as
            its codes. Lesson 04 races codes against latents of one autoencoder.
        prompts: what the inputs of the directions leave free (an
            :class:`~omni_edu.data.PromptSpec`; default: nothing, every input is the
            scene's own caption, picture or sound). With free attributes, a direction
            reads the prompt (a caption naming only some attributes, a grey picture, an
            untimed sound) and writes the scene: its output has a distribution to sample.

    Attributes: ``batch`` (the :class:`~omni_edu.data.OmniBatch`), ``patches``
    ``(n, n_patches, image_dim)`` and ``audio`` ``(n, n_tokens, audio_dim)`` (the
    continuous tokens: pixel patches and log-mel frames, or latents), ``codes``
    (``{"image": (n, n_patches), "audio": (n, n_tokens)}`` for tokenized modalities),
    ``tokenizer``, ``specials``.
    """

    def __init__(
        self,
        world: OmniWorld,
        n: int,
        tasks: Sequence[str] = TASKS,
        frames_per_token: int = 4,
        seed: int = 0,
        question_modality: str = "image",
        image_tokenizer: Tokenizer | None = None,
        audio_tokenizer: Tokenizer | None = None,
        prompts: PromptSpec | None = None,
        latents: Sequence[str] = (),
    ) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks should come from {TASKS}; got {unknown}.")
        given_tokenizers = {"image": image_tokenizer, "audio": audio_tokenizer}
        if any(name not in given_tokenizers or given_tokenizers[name] is None for name in latents):
            raise ValueError(
                f"latents names modalities whose tokenizer is given ('image', 'audio'); got "
                f"{list(latents)} with tokenizers for "
                f"{[k for k, v in given_tokenizers.items() if v is not None]}."
            )
        self.world = world
        self.profile = world.profile
        self.frames_per_token = frames_per_token
        self.question_modality = question_modality
        self.tokenizer = TextTokenizer()
        self.specials = SpecialTokens.from_vocab(self.tokenizer.ids)
        self.prompt_spec = prompts or PromptSpec()
        self.batch: OmniBatch = world.sample(n, seed=seed, prompts=self.prompt_spec)
        size, patch = self.profile.image_size, self.profile.patch_size
        self.grid = patch_grid(size, size, patch)
        # Continuous tokens through an autoencoder without its quantiser, or discrete ones.
        self.latent_tokenizers = {name: given_tokenizers[name] for name in latents}
        self.tokenizers = {
            name: tok
            for name, tok in given_tokenizers.items()
            if tok is not None and name not in self.latent_tokenizers
        }
        self.patches = self.tokens("image", self.batch.images, continuous=True)
        self.audio = self.tokens("audio", self.batch.mels, continuous=True)
        self.codes = {
            name: self.tokens(name, self.batch.images if name == "image" else self.batch.mels)
            for name in self.tokenizers
        }
        # The inputs as the prompts give them (the scene's own ones where nothing is free).
        given = self.batch.prompts
        self.prompt_items = {
            "image": self.tokens("image", given.images),
            "audio": self.tokens("audio", given.mels),
        }
        for name, ids in self.codes.items():
            expected = (self.patches if name == "image" else self.audio).shape[1]
            if ids.shape != (len(self), expected):
                raise ValueError(
                    f"the {name} tokenizer should give one code per {name} token, "
                    f"({len(self)}, {expected}); got {tuple(ids.shape)}."
                )
        self.tasks = tuple(tasks)
        self._pool: PackedBatch | None = None

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def image_dim(self) -> int:
        return self.patches.shape[-1]

    @property
    def audio_dim(self) -> int:
        return self.audio.shape[-1]

    def vocab_size(self, modality: str) -> int:
        """Codes of ``modality``'s tokenizer (0 when it enters as features)."""
        tok = self.tokenizers.get(modality)
        return 0 if tok is None else int(tok.vocab_size)

    def feature_scale(self, modality: str) -> tuple[float, float]:
        """``(mean, std)`` of ``modality``'s token features over the pool (for the heads)."""
        x = self.patches if modality == "image" else self.audio
        return float(x.mean()), float(x.std())

    def tokens(self, modality: str, raw: Tensor, continuous: bool = False) -> Tensor:
        """Pictures ``(n, 3, H, W)`` or log-mels ``(n, frames, n_mels)`` as this pool's
        tokens: code ids ``(n, n_tokens)`` for a tokenized modality (unless
        ``continuous``), else continuous tokens ``(n, n_tokens, dim)``: the autoencoder's
        latents where ``latents`` named the modality, patch or frame features otherwise."""
        with torch.no_grad():
            if modality in self.tokenizers and not continuous:
                return _in_chunks(self.tokenizers[modality].encode_to_indices, raw)
            if modality in self.latent_tokenizers:
                return _in_chunks(self.latent_tokenizers[modality].encode_latents, raw)
        if modality == "image":
            return patchify(raw, self.profile.patch_size)
        return frame_audio(raw, self.frames_per_token)

    def fixed(self, direction: str) -> Tensor:
        """What the input of ``direction`` fixes about each scene's object: ``(n, 4)`` bool,
        columns (shape, colour, size, position) (single-object scenes)."""
        source = get_direction(direction).source
        return self.batch.prompts.fixed[source][:, 0]

    def prompt(self, modality: str, i: int) -> str | Tensor:
        """Scene ``i``'s input in ``modality`` as the prompts give it: a caption that may
        name only some attributes, a picture that may be grey, a sound that may be untimed
        (in this pool's token form)."""
        if modality == "text":
            return self.batch.prompts.texts[i]
        return self.prompt_items[modality][i]

    def item(self, modality: str, i: int) -> str | Tensor:
        """Scene ``i`` in one modality: its caption, its code ids (a tokenized modality),
        or its patches or audio frames."""
        if modality == "text":
            return self.batch.captions[i]
        if modality in self.codes:
            return self.codes[modality][i]
        return self.patches[i] if modality == "image" else self.audio[i]

    def decode(self, modality: str, tokens: Tensor) -> Tensor:
        """Generated tokens ``(n, n_tokens, ...)`` back to pictures ``(n, 3, H, W)`` in
        [0, 1] or log-mels ``(n, frames, n_mels)``."""
        with torch.no_grad():
            if modality in self.tokenizers:
                tok = self.tokenizers[modality]
                device = next(tok.parameters()).device
                out = tok.decode_from_indices(tokens.to(device)).cpu()
                return out.clamp(0, 1) if modality == "image" else out
            if modality in self.latent_tokenizers:
                tok = self.latent_tokenizers[modality]
                device = next(tok.parameters()).device
                return tok.decode_latents(tokens.to(device)).cpu()
        if modality == "image":
            size = self.profile.image_size
            return unpatchify(tokens, self.profile.patch_size, size, size).clamp(0, 1)
        return unframe_audio(tokens, self.frames_per_token)

    def document(self, task: str, i: int, with_target: bool = True) -> list[Segment]:
        """Scene ``i`` laid out for ``task`` (a direction, a single modality or a question)."""
        if task in DIRECTIONS:
            d = DIRECTIONS[task]
            target = self.item(d.target, i) if with_target else None
            return make_document(d, self.tokenizer, self.prompt(d.source, i), target)
        if task == QUESTION:
            m = self.question_modality
            return question_document(
                self.tokenizer, self.batch.questions[i], self.item(m, i), m, with_target
            )
        if task == "text":
            return [text_segment(self.tokenizer.encode(self.batch.captions[i]))]
        if task in UNIMODAL:
            return [_media_segment(task, self.item(task, i), True)]
        raise ValueError(f"task should be one of {TASKS}; got {task!r}.")

    def pack(self, documents: Sequence[Sequence[Segment]], pad_side: str = "right") -> PackedBatch:
        """Documents as one batch, with this pool's markers and feature widths."""
        return pack(
            documents,
            specials=self.specials,
            pad_side=pad_side,
            image_dim=self.image_dim,
            audio_dim=self.audio_dim,
        )

    @property
    def pool(self) -> PackedBatch:
        """Every (task, scene) document packed once: row ``t * n + i`` is task ``t``, scene
        ``i``. Batches are row selections of this pool; :func:`pack` lays out each distinct
        document layout once, so packing thousands of documents of a few tasks is fast."""
        if self._pool is None:
            docs = [self.document(t, i) for t in self.tasks for i in range(len(self))]
            self._pool = self.pack(docs)
        return self._pool

    def batches(
        self, mix: Mapping[str, float], batch_size: int, seed: int = 0
    ) -> Callable[[int], PackedBatch]:
        """``step -> PackedBatch`` drawing tasks in proportion to ``mix`` (``{task: weight}``).

        Deterministic: the same step gives the same batch.
        """
        missing = [t for t in mix if t not in self.tasks]
        if missing:
            raise ValueError(f"mix names tasks {missing} that this pool has not packed.")
        names = [t for t, w in mix.items() if w > 0]
        weights = torch.tensor([float(mix[t]) for t in names])
        if not names:
            raise ValueError(f"mix should give at least one task a positive weight; got {mix}.")
        offsets = torch.tensor([self.tasks.index(t) * len(self) for t in names])

        def batch(step: int) -> PackedBatch:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            task = torch.multinomial(weights, batch_size, replacement=True, generator=g)
            scene = torch.randint(len(self), (batch_size,), generator=g)
            return self.pool.select(offsets[task] + scene)

        return batch


def _in_chunks(encode: Callable[[Tensor], Tensor], x: Tensor, size: int = 512) -> Tensor:
    """A tokenizer's ``encode`` method over ``x`` in chunks, on the tokenizer's device."""
    device = next(encode.__self__.parameters()).device
    return torch.cat([encode(c.to(device)).cpu() for c in x.split(size)])
