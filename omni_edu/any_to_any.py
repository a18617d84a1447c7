"""Any-to-any: one OmniLM, every direction, chosen by the prompt (lesson 06).

The same weights caption a picture, transcribe a sound, draw a caption, speak a caption,
and turn a picture into a sound or a sound into a picture. What to do is written in the
prompt: a *task token* that names the output, then the input, then the output::

    <bos> <caption> <boi> image <eoi> a small red circle at the top left <eos>   image->text
    <bos> <draw> a small red circle at the top left <boi> image <eoi> <eos>      text->image
    <bos> <speak> <boi> image <eoi> <boa> audio <eoa> <eos>                      image->audio

Only the output is trained (the task token and the input are ``predict=False``), so the
model learns to *answer* prompts, not to write them.

This module holds the pieces lessons 04 and 06 build and measure with:

* :data:`DIRECTIONS` and :func:`make_document` - the prompt format of every direction;
* :class:`AnyToAnyData` - a pool of OmniWorld scenes as model-ready pieces (pictures as
  patches or as lesson 03's code ids), laid out as documents of any task and packed once,
  so a training batch is a cheap row selection;
* :func:`build_model` and :func:`balanced_loss_weights` - an OmniLM with the chosen output
  heads, its modality losses put on one scale;
* :func:`train_stage` - one stage of a curriculum (a data mix and a number of steps);
* :func:`score_directions` - per-direction attribute accuracy: captions are parsed,
  generated pictures and sounds are read back by the judges of :mod:`omni_edu.judges`;
* :func:`capstone` - the course's any-to-any model, trained once by this recipe and kept
  in the course cache: lesson 06 builds it, lessons 08 and 09 measure it.

What lesson 06b measures with these pieces (curriculum, text dominance, the grounding test
of transfer) lives in :mod:`omni_edu.lessons.modality_transfer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.data import (
    ATTRIBUTES,
    VALUES,
    OmniBatch,
    OmniWorld,
    PromptSpec,
    Question,
    score_caption,
)
from omni_edu.judges import Judges, attribute_scores
from omni_edu.judges.metrics import Metric, sample_metrics
from omni_edu.modalities import (
    Modality,
    TextTokenizer,
    frame_audio,
    patch_grid,
    patchify,
    unframe_audio,
    unpatchify,
)
from omni_edu.model.heads.flow import FlowHeadConfig
from omni_edu.model.heads.output import DISCRETE_KINDS, PER_TOKEN_SIBLING, build_head
from omni_edu.model.interleave import (
    PackedBatch,
    Segment,
    SpecialTokens,
    audio_segment,
    image_segment,
    pack,
    text_segment,
)
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.profiles import Profile, get_profile
from omni_edu.train import EMA, History, TrainConfig, Trainer, fit

# What turns a picture (or a sound) into code ids and back: lesson 03's VQ tokenizer.
# Anything with encode_to_indices(x) -> (n, tokens), decode_from_indices and vocab_size fits.
Tokenizer = nn.Module


@dataclass(frozen=True)
class Direction:
    """One generation direction: read ``source``, write ``target``, asked by ``task``.

    The task token names what to produce (``<draw>`` = a picture, ``<speak>`` = a sound,
    ``<caption>`` / ``<transcribe>`` = words about a picture / a sound); the input's own
    modality says what to produce it from.
    """

    source: str
    target: str
    task: str

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"


DIRECTIONS: dict[str, Direction] = {
    d.name: d
    for d in (
        Direction("image", "text", "<caption>"),
        Direction("audio", "text", "<transcribe>"),
        Direction("text", "image", "<draw>"),
        Direction("text", "audio", "<speak>"),
        Direction("image", "audio", "<speak>"),
        Direction("audio", "image", "<draw>"),
    )
}
# Tasks besides the six directions: one modality alone (pretraining) and questions.
UNIMODAL = ("text", "image", "audio")
QUESTION = "question"
TASKS = (*DIRECTIONS, *UNIMODAL, QUESTION)


def get_direction(direction: str | Direction) -> Direction:
    """The :class:`Direction` called ``direction`` (``"text->image"``...)."""
    if isinstance(direction, Direction):
        return direction
    if direction not in DIRECTIONS:
        raise ValueError(f"direction should be one of {list(DIRECTIONS)}; got {direction!r}.")
    return DIRECTIONS[direction]


def _media_segment(modality: str, data: Tensor, predict: bool) -> Segment:
    if modality == "image":
        return image_segment(data, predict=predict)
    return audio_segment(data, predict=predict)


def make_document(
    direction: str | Direction,
    tokenizer: TextTokenizer,
    source: str | Tensor,
    target: str | Tensor | None = None,
) -> list[Segment]:
    """The segments of one example of ``direction``: the prompt, then the output.

    Args:
        direction: for example ``"text->image"``.
        source: the input: a caption (str) for text, patches ``(n_patches, image_dim)``
            for an image (a square grid), frames ``(n_tokens, audio_dim)`` for audio.
        target: the output in the same forms, or None for the prompt alone (what
            generation continues).

    Returns:
        ``[task token (+ the caption when text is the input), input, output]``: the task
        token and the input are read, not trained (``predict=False``); the output is
        trained. :func:`~omni_edu.model.interleave.pack` adds ``<bos>``/``<eos>`` and the
        ``<boi>``/``<boa>`` markers around media.
    """
    d = get_direction(direction)
    task = tokenizer[d.task]
    if d.source == "text":
        if not isinstance(source, str):
            raise ValueError(f"{d.name} reads a caption (str); got {type(source).__name__}.")
        document = [text_segment([task, *tokenizer.encode(source)], predict=False)]
    else:
        document = [text_segment([task], predict=False), _media_segment(d.source, source, False)]
    if target is None:
        return document
    if d.target == "text":
        if not isinstance(target, str):
            raise ValueError(f"{d.name} writes a caption (str); got {type(target).__name__}.")
        return [*document, text_segment(tokenizer.encode(target))]
    return [*document, _media_segment(d.target, target, True)]


def question_document(
    tokenizer: TextTokenizer,
    question: Question,
    context: str | Tensor,
    modality: str,
    answer: bool = True,
) -> list[Segment]:
    """An instruction-style example: ``<answer>`` + context + question ``<sep>`` + answer.

    ``context`` is what the question is about: a caption (``modality="text"``), image
    patches or audio frames. Only the answer is trained.
    """
    words = [*tokenizer.encode(question.text), tokenizer["<sep>"]]
    if modality == "text":
        prompt = [text_segment([tokenizer["<answer>"], *tokenizer.encode(context), *words], False)]
    else:
        prompt = [
            text_segment([tokenizer["<answer>"]], predict=False),
            _media_segment(modality, context, False),
            text_segment(words, predict=False),
        ]
    if not answer:
        return prompt
    return [*prompt, text_segment(tokenizer.encode(question.answer))]


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


# ------------------------------------------------------------------------------- training


WEIGHT_RULES = ("explained", "blind")


def balanced_loss_weights(
    data: AnyToAnyData,
    image_head: str = "linear",
    audio_head: str = "linear",
    rule: str = "explained",
    **overrides,
) -> dict[str, float]:
    """Loss weights that put every media modality on one scale, measured per head.

    Cross-entropy of text starts near log(vocabulary) and ends near 0.1-1, but the mean
    squared error of an image patch or an audio frame is at most its variance across the
    data (what predicting the average gives), here a few hundredths. Summed with equal
    weights, text dominates the gradient. What a media loss should be divided by depends
    on the head, so it is *measured* (:func:`prompt_losses`) by training the same head
    twice on the pool's tokens: once blind (a constant condition) and once told the scene
    (the object's attributes and the token's place):

    * ``rule="explained"`` (default): 1 / (blind - told), the part of the loss that
      reading the prompt can remove, so that it is worth 1 in every modality. For a
      linear head that is close to the data's variance; a flow head that ignores the
      prompt still reads much of the token from ``x_t``, so far less of its loss is the
      prompt's to explain, and its weight is larger;
    * ``rule="blind"``: 1 / blind, "ignoring the prompt costs 1".

    ``overrides`` are the model's other config fields (head size, time shift), which a
    flow head's losses depend on. Text keeps weight 1. A span head (lesson 04b) gets the
    weight of the per-token head of its token form (``PER_TOKEN_SIBLING``).
    """
    if rule not in WEIGHT_RULES:
        raise ValueError(f"rule should be one of {WEIGHT_RULES}; got {rule!r}.")
    image_head = PER_TOKEN_SIBLING.get(image_head, image_head)
    audio_head = PER_TOKEN_SIBLING.get(audio_head, audio_head)
    config = model_config(data, None, None, image_head, audio_head, **overrides)
    weights = {"text": 1.0}
    for name, kind in (("image", image_head), ("audio", audio_head)):
        losses = prompt_losses(data, name, kind, config.head_config(name))
        scale = losses["blind"] - losses["told"] if rule == "explained" else losses["blind"]
        weights[name] = float(f"{1.0 / max(scale, 1e-6):.2g}")
    return weights


_PROMPT_LOSSES: dict[tuple, dict[str, float]] = {}  # measured once per process


def prompt_losses(
    data: AnyToAnyData, modality: str, kind: str, head: FlowHeadConfig, steps: int = 300
) -> dict[str, float]:
    """How much of a ``kind`` head's loss on ``modality`` tokens the prompt can explain.

    Trains the head (its own loss, ``steps`` seeded updates, 256 tokens each) on the pool's
    tokens twice: ``"blind"``, with a constant condition, and ``"told"``, with a condition
    that names the scene (one-hot shape, colour, size and position) and the token's place
    in the sequence: what a decoder that reads the prompt perfectly could tell the head.
    Returns both losses averaged over fixed held-out draws (single-object scenes).
    """
    features = data.patches if modality == "image" else data.audio
    tokens = data.codes[modality] if kind == "codes" else features
    # Keyed by the tokens' content, not the pool object: a pool built again later (or a
    # new one at a freed object's address) must not reuse another pool's measurement.
    fingerprint = (
        tuple(tokens.shape),
        float(tokens.float().sum()),
        float(tokens.float().square().sum()),
    )
    key = (fingerprint, modality, kind, repr(head), steps)
    if key in _PROMPT_LOSSES:
        return dict(_PROMPT_LOSSES[key])
    n, length = tokens.shape[:2]
    attributes = data.batch.attributes[:, 0]
    if kind in ("linear", "regression"):
        # Mean squared error has closed forms: the best constant leaves the variance, and
        # the best prediction from (scene, place) leaves the variance within each group.
        scale = 1.0 if kind == "linear" else head.scale
        groups = (attributes * torch.tensor([1000, 100, 10, 1])).sum(-1)
        within = [features[groups == g].var(dim=0, unbiased=False) for g in groups.unique()]
        counts = torch.stack([(groups == g).sum() for g in groups.unique()]).float()
        told = (torch.stack(within).mean(dim=(1, 2)) * counts).sum() / counts.sum()
        blind = features.reshape(n * length, -1).var(dim=0, unbiased=False).mean()
        result = {"blind": float(blind) / scale**2, "told": float(told) / scale**2}
    else:
        told = torch.cat(
            [F.one_hot(attributes[:, k], len(VALUES[a])) for k, a in enumerate(ATTRIBUTES)], -1
        )
        told = torch.cat(
            [told[:, None].expand(-1, length, -1), torch.eye(length)[None].expand(n, -1, -1)],
            dim=-1,
        ).float()
        flat = tokens.reshape(n * length, *tokens.shape[2:])
        conditions = {"blind": torch.zeros(n * length, 1), "told": told.reshape(n * length, -1)}
        result = {
            name: _fit_head(kind, flat, cond, head, steps) for name, cond in conditions.items()
        }
    _PROMPT_LOSSES[key] = result
    return dict(result)


def _fit_head(kind: str, tokens: Tensor, cond: Tensor, head: FlowHeadConfig, steps: int) -> float:
    """Train a fresh ``kind`` head to predict ``tokens`` from ``cond``; its held-out loss."""
    torch.manual_seed(0)
    width = cond.shape[-1]
    vocab = int(tokens.max()) + 1 if kind == "codes" else 0
    model = build_head(kind, width, head.token_dim, vocab, replace(head, cond_dropout=0.0))
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))
    train, held = order[: -len(order) // 8], order[-len(order) // 8 :]

    def batches(step: int) -> tuple[Tensor, Tensor]:
        pick = train[
            torch.randint(len(train), (256,), generator=torch.Generator().manual_seed(step))
        ]
        return tokens[pick], cond[pick]

    fit(model, lambda m, b: {"loss": m.loss(*b)}, batches, steps, lr=3e-3, progress=False)
    g = torch.Generator().manual_seed(10_000)
    with torch.no_grad():
        losses = [model.loss(tokens[c], cond[c], generator=g) for c in held.split(256)]
    return float(torch.stack(losses).mean())


def _head_scale(data: AnyToAnyData, modality: str) -> tuple[float, float]:
    """The (shift, scale) the regression and flow heads work in: the mean and spread of the
    modality's token features over the pool, so that the head's standard-normal noise has
    the data's scale (pixels have mean about 0.11 and spread 0.14 here; mapping [0, 1] to
    [-1, 1] instead left them at mean -0.78, spread 0.27)."""
    mean, std = data.feature_scale(modality)
    return (round(mean, 3), round(std, 3))


def build_model(
    data: AnyToAnyData,
    seed: int = 0,
    loss_weights: Mapping[str, float] | None = None,
    profile: Profile | None = None,
    image_head: str = "linear",
    audio_head: str = "linear",
    **overrides,
) -> OmniLM:
    """A fresh OmniLM sized by the profile for ``data``'s vocabulary and tokens.

    ``image_head``, ``audio_head``: ``"linear"``, ``"regression"``, ``"flow"`` or
    ``"codes"`` (the latter needs ``data`` built with that modality's tokenizer).
    ``overrides``: other fields of :class:`~omni_edu.model.omni_lm.OmniLMConfig`.
    """
    return OmniLM(
        model_config(data, loss_weights, profile, image_head, audio_head, seed, **overrides)
    )


# The flow heads' settings in OmniLM, measured by benchmarks/flow_ablation.py (issue 18,
# ci, 2-core CPU, 2026-12-06): training times shifted towards the noise, where reading the
# prompt matters (without the shift the generating directions fell from 0.72 to 0.56 and
# text->audio to 0.38), drawn logit-normal (0.82 against 0.77 for uniform times, mean of
# three seeds, higher in each), and three blocks.
FLOW_HEAD = {"flow_time_shift": 12.0, "flow_time_sampling": "logit_normal", "head_depth": 3}

# The rotary layout of the any-to-any model: M-RoPE with width on the fastest pairs, the
# layout lesson 02 measured best on its spatial task (and, in our runs, the one with which a
# flow head learns to read the caption soonest).
ROPE = "mrope_fast_width"


def model_config(
    data: AnyToAnyData,
    loss_weights: Mapping[str, float] | None = None,
    profile: Profile | None = None,
    image_head: str = "linear",
    audio_head: str = "linear",
    seed: int = 0,
    **overrides,
) -> OmniLMConfig:
    """The :class:`~omni_edu.model.omni_lm.OmniLMConfig` of :func:`build_model` (seeds
    the initial weights too); ``overrides`` are further fields of the config."""
    profile = profile or data.profile
    for name, kind in (("image", image_head), ("audio", audio_head)):
        if (kind in DISCRETE_KINDS) != (name in data.tokenizers):
            raise ValueError(
                f"{name}_head={kind!r} but the data gives {name} as "
                f"{'code ids' if name in data.tokenizers else 'features'}: build the data "
                f"with a {name}_tokenizer exactly when the head is 'codes'."
            )
    torch.manual_seed(seed)
    settings = {
        "rope": ROPE,
        "image_head": image_head,
        "audio_head": audio_head,
        "image_scale": _head_scale(data, "image"),
        "audio_scale": _head_scale(data, "audio"),
        "projector_overrides": {
            "image_dim": data.image_dim,
            "audio_dim": data.audio_dim,
            "image_vocab_size": data.vocab_size("image"),
            "audio_vocab_size": data.vocab_size("audio"),
        },
    }
    if loss_weights is not None:
        settings["loss_weights"] = dict(loss_weights)
    settings.update(overrides)
    return OmniLMConfig.from_profile(
        data.tokenizer.vocab_size, data.frames_per_token, profile, **settings
    )


def loss_fn(model: OmniLM, packed: PackedBatch) -> dict[str, Tensor]:
    """The Trainer's loss: the weighted total under ``"loss"``, and each modality's loss."""
    losses = model.loss(packed)
    return {"loss": losses.pop("total"), **losses}


def stage_trainer(
    model: OmniLM,
    data: AnyToAnyData,
    mix: Mapping[str, float],
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int | None = None,
    progress: bool = True,
    eval_fn: Callable[[OmniLM], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    ema: EMA | None = None,
) -> Trainer:
    """A :class:`~omni_edu.train.Trainer` for one stage: ``steps`` updates on batches drawn
    by ``mix``, with its own warm-up and cosine schedule. ``trainer.fit(until=k)`` stops
    at step ``k`` (to look at the model) and a later ``fit()`` carries on exactly.
    ``eval_fn`` (run every ``eval_every`` steps and at the end) records a learning curve;
    ``ema`` (an :class:`~omni_edu.train.EMA` of ``model``) is moved by every update."""
    config = TrainConfig.from_profile(
        data.profile, steps=steps, lr=lr, seed=seed, eval_every=eval_every, progress=progress
    )
    batches = data.batches(mix, batch_size or data.profile.batch_size, seed=seed)
    return Trainer(model, loss_fn, batches, config, eval_fn, ema=ema)


def train_stage(
    model: OmniLM,
    data: AnyToAnyData,
    mix: Mapping[str, float],
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int | None = None,
    progress: bool = True,
    eval_fn: Callable[[OmniLM], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    ema: EMA | None = None,
) -> History:
    """Train ``model`` in place for ``steps`` updates on batches drawn by ``mix``.

    Each stage of a curriculum is one call: its own data mix and learning-rate schedule
    (warm-up, then cosine), the weights carried over from the stage before. With
    ``eval_fn``, the history's ``evals`` hold its metrics every ``eval_every`` steps.
    """
    trainer = stage_trainer(
        model, data, mix, steps, seed, lr, batch_size, progress, eval_fn, eval_every, ema
    )
    return trainer.fit()


@dataclass(frozen=True)
class Stage:
    """One stage of a training curriculum: what it teaches, its data mix, its length."""

    name: str
    mix: dict[str, float]
    steps: int
    teaches: str


def curriculum(base_steps: int) -> list[Stage]:
    """The chapter's four stages, sized from ``base_steps`` (``profile.train_steps``).

    1. modality-specific pretraining: each modality alone (a language model on captions,
       next-patch prediction on pictures, next-frame prediction on sounds);
    2. alignment: paired data, pictures and sounds -> captions (the LLaVA recipe);
    3. unified training: all six directions at once;
    4. instruction-style prompts: questions answered with ``<answer>``, plus a replay of
       the six directions so they are not forgotten.
    """
    every = dict.fromkeys(DIRECTIONS, 1.0)
    return [
        Stage(
            "pretrain",
            dict.fromkeys(UNIMODAL, 1.0),
            round(base_steps * 2 / 3),
            "each modality alone",
        ),
        Stage(
            "align",
            {"image->text": 1.0, "audio->text": 1.0},
            round(base_steps * 2 / 3),
            "pictures and sounds -> captions",
        ),
        Stage("unified", every, 2 * base_steps, "all six directions"),
        Stage(
            "instruct",
            {QUESTION: 3.0, **dict.fromkeys(DIRECTIONS, 0.5)},
            round(base_steps * 2 / 3),
            "questions, with a replay of the directions",
        ),
    ]


@torch.no_grad()
def task_losses(
    model: OmniLM, data: AnyToAnyData, tasks: Sequence[str], n: int = 128
) -> dict[str, float]:
    """Mean loss of the output of each task on the pool's first ``n`` scenes ``{task: loss}``.

    The loss of a direction is its output modality's loss (cross-entropy for text, MSE for
    the linear image/audio heads), so it can be compared across training, not across
    directions of different outputs.
    """
    model.eval()
    result = {}
    for task in tasks:
        t = data.tasks.index(task)
        rows = torch.arange(t * len(data), t * len(data) + min(n, len(data)))
        losses = model.loss(data.pool.select(rows).to(model.text_head.weight.device))
        if task in DIRECTIONS:
            output = DIRECTIONS[task].target
        else:  # a question's answer is text; a single modality predicts itself
            output = "text" if task == QUESTION else task
        result[task] = losses[output].item()
    return result


# ------------------------------------------------------------------------------- generation


@dataclass
class Generations:
    """What a model produced for one direction, with the scenes it was asked about."""

    direction: str
    outputs: list[str] | Tensor  # captions, images (n, 3, H, W) or mels (n, frames, n_mels)
    indices: list[int]


@torch.no_grad()
def generate(
    model: OmniLM,
    data: AnyToAnyData,
    direction: str,
    indices: Sequence[int],
    batch_size: int = 256,
    guidance: float = 1.0,
    **sample_options,
) -> Generations:
    """Run ``direction`` on scenes ``indices`` of ``data``: captions, images or log-mels.

    ``sample_options`` go to the head that writes the output (``steps`` and
    ``temperature`` for a flow head, ``temperature`` for codes and text; greedy text and
    codes by default). ``guidance`` != 1 runs classifier-free guidance against the
    direction's empty prompt (the task token alone, which training shows the model
    whenever a prompt is empty). Pictures and sounds written as code ids are decoded by
    ``data``'s tokenizer. To draw several samples per prompt, repeat its index.
    """
    d = get_direction(direction)
    model.eval()
    indices = list(indices)
    if d.target == "text":
        longest = max(len(data.tokenizer.encode(c)) for c in data.batch.captions)
        options = dict(n_tokens=longest + 1, stop_id=data.tokenizer.eos_id)
    elif d.target == "image":
        options = dict(grid=data.grid)
    else:
        options = dict(n_tokens=data.audio.shape[1])
    if guidance != 1.0:
        options["guidance"] = guidance
    modality = Modality[d.target.upper()]
    chunks = []
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        prompts = [data.document(d.name, i, with_target=False) for i in rows]
        if guidance != 1.0:
            options["uncond_prompts"] = [unconditional_document(d, data.tokenizer)] * len(rows)
        chunks += model.generate(
            prompts, modality, specials=data.specials, **options, **sample_options
        )
    if d.target == "text":
        outputs = [data.tokenizer.decode(x, skip_special=True) for x in chunks]
    else:
        outputs = data.decode(d.target, torch.stack(chunks))
        if d.target == "audio" and "audio" not in data.tokenizers:
            outputs = outputs.clamp(-1, 1)
    return Generations(d.name, outputs, indices)


def unconditional_document(direction: str | Direction, tokenizer: TextTokenizer) -> list[Segment]:
    """The empty prompt of ``direction``: its task token alone (``<draw>``, ``<speak>``).

    It is what an empty caption gives, so a model trained with empty prompts has learned
    it; text->image and audio->image share it, as do text->audio and image->audio."""
    return [text_segment([tokenizer[get_direction(direction).task]], predict=False)]


def score_generations(
    gen: Generations, data: AnyToAnyData, judges: Judges | None, per_scene: bool = False
) -> float | Tensor:
    """Mean attribute accuracy of generated outputs against the scenes they were asked for.

    Captions are parsed (:func:`~omni_edu.data.score_caption`); pictures and sounds are
    read back by the judges (:mod:`omni_edu.judges`). Chance is
    :func:`~omni_edu.judges.chance_level` for single-object scenes. With ``per_scene``,
    the score of every scene ``(n,)`` instead of their mean (for intervals over scenes).
    """
    d = get_direction(gen.direction)
    if d.target == "text":
        scores = torch.tensor(
            [
                score_caption(text, data.batch.scenes[i])
                for text, i in zip(gen.outputs, gen.indices, strict=True)
            ]
        )
    else:
        if judges is None:
            raise ValueError(f"scoring {d.name} needs judges (omni_edu.judges) to read outputs.")
        judge = judges.image if d.target == "image" else judges.audio
        scores = attribute_scores(judge, gen.outputs, data.batch.attributes[gen.indices])
    return scores if per_scene else scores.mean().item()


def score_directions(
    model: OmniLM,
    data: AnyToAnyData,
    judges: Judges,
    n: int = 128,
    directions: Sequence[str] = tuple(DIRECTIONS),
    per_scene: bool = False,
    **sample_options,
) -> dict[str, float] | dict[str, Tensor]:
    """``{direction: mean attribute accuracy}`` on the first ``n`` scenes of ``data``
    (``{direction: (n,) per-scene scores}`` with ``per_scene``)."""
    indices = list(range(min(n, len(data))))
    return {
        d: score_generations(
            generate(model, data, d, indices, **sample_options), data, judges, per_scene
        )
        for d in directions
    }


def draw_samples(
    model: OmniLM,
    data: AnyToAnyData,
    direction: str,
    indices: Sequence[int],
    k: int,
    seed: int = 0,
    **sample_options,
) -> Tensor:
    """``k`` outputs of ``direction`` for each prompt ``indices`` of ``data``: pictures
    ``(n, k, 3, H, W)`` or log-mels ``(n, k, frames, n_mels)``, drawn in one batch with a
    generator seeded by ``seed`` (each repeat of a prompt gets its own noise)."""
    if get_direction(direction).target == "text":
        raise ValueError(f"draw_samples is for pictures and sounds; {direction} writes text.")
    repeated = [i for i in indices for _ in range(k)]
    made = generate(
        model,
        data,
        direction,
        repeated,
        generator=torch.Generator().manual_seed(seed),
        **sample_options,
    ).outputs
    return made.unflatten(0, (len(indices), k))


def sample_scores(
    model: OmniLM,
    data: AnyToAnyData,
    judges: Judges,
    direction: str,
    indices: Sequence[int],
    k: int = 8,
    seed: int = 0,
    **sample_options,
) -> dict[str, Metric]:
    """The sample metrics of :mod:`omni_edu.judges.metrics` (fidelity, validity,
    coverage with its reference, ghost mass, precision, recall) of ``k`` outputs per
    prompt ``indices`` of ``direction``, against what each prompt fixes."""
    samples = draw_samples(model, data, direction, indices, k, seed, **sample_options)
    judge = judges.image if get_direction(direction).target == "image" else judges.audio
    attributes = data.batch.attributes[list(indices), 0]
    fixed = data.fixed(direction)[list(indices)]
    return sample_metrics(judge, samples, attributes, fixed, data.world, seed)


@torch.no_grad()
def text_log_likelihood(model: OmniLM, packed: PackedBatch) -> Tensor:
    """Log-probability ``(batch,)`` the model gives each row's *trained* text tokens.

    Sums ``log p(token | everything before it)`` over the positions whose next token is
    trained text (``predict=True`` segments and the markers around them): for a question
    document, the answer's words and the ``<eos>`` that ends it. Scoring every option of
    a multiple-choice question this way turns a generative model into a chooser.
    """
    model.eval()
    packed = packed.to(model.text_head.weight.device)
    hidden = model(packed)
    here = packed.loss_mask(Modality.TEXT)
    logp = torch.log_softmax(model.text_head(hidden[here]).float(), dim=-1)
    picked = logp.gather(1, packed.text_targets[here][:, None])[:, 0]
    rows = here.nonzero()[:, 0]
    return torch.zeros(packed.batch_size, device=picked.device).index_add_(0, rows, picked).cpu()


@torch.no_grad()
def answer_accuracy(model: OmniLM, data: AnyToAnyData, n: int = 128) -> float:
    """Fraction of ``data``'s questions (first ``n``) answered exactly right."""
    model.eval()
    indices = range(min(n, len(data)))
    prompts = [data.document(QUESTION, i, with_target=False) for i in indices]
    ids = model.generate(
        prompts, Modality.TEXT, n_tokens=3, stop_id=data.tokenizer.eos_id, specials=data.specials
    )
    answers = [data.tokenizer.decode(x, skip_special=True) for x in ids]
    return sum(
        a == data.batch.questions[i].answer for a, i in zip(answers, indices, strict=True)
    ) / len(answers)


def answer_chance(questions: Sequence[Question]) -> float:
    """Expected accuracy of picking one of each question's options at random."""
    return sum(1 / len(q.options) for q in questions) / len(questions)


# ------------------------------------------------------------------------------- capstone

# What the capstone's inputs leave free in training: each attribute of a caption with
# probability 0.3 (a quarter of the captions still name all four), one caption in ten
# empty (classifier-free guidance's unconditional branch), three pictures in ten grey
# (colour free) and three sounds in ten untimed (position free).
CAPSTONE_PROMPTS = PromptSpec.uniform(0.3, p_empty=0.1, p_grey=0.3, p_untimed=0.3)
# Held-out prompts of lesson 06: "full" fixes everything (the control), "open" leaves each
# attribute of a caption free with probability 0.5, and every picture grey and every
# sound untimed.
TEST_PROMPTS = {"full": PromptSpec(), "open": PromptSpec.uniform(0.5, p_grey=1.0, p_untimed=1.0)}


@dataclass(frozen=True)
class CapstoneRecipe:
    """How the course's any-to-any model is made: data, heads, budget, curriculum.

    ``image_head`` / ``audio_head``: the output heads, chosen per profile by measurement
    (:data:`CAPSTONE_HEADS`; lesson 06 measures the candidates again in every run).
    ``base_steps`` sizes the stages: unified training on all six directions for
    ``2 * base_steps`` updates, then instruction-style questions with a replay of the
    directions for ``2/3 * base_steps`` (:func:`curriculum`). ``prompts``: what the
    training inputs leave free.
    """

    scenes: int
    test_scenes: int
    base_steps: int
    batch_size: int
    image_head: str = "linear"
    audio_head: str = "linear"
    question_modality: str = "image"
    seed: int = 0
    prompts: PromptSpec = CAPSTONE_PROMPTS

    @property
    def stages(self) -> list[Stage]:
        """The stages the capstone trains: unified, then instruct."""
        by_name = {s.name: s for s in curriculum(self.base_steps)}
        return [by_name["unified"], by_name["instruct"]]

    @property
    def model_settings(self) -> dict:
        """OmniLM config fields the heads need (:data:`FLOW_HEAD` for flow heads, and for
        lesson 04b's flow-trained span heads)."""
        flow_trained = {"flow", "dit", "transfusion"}
        return dict(FLOW_HEAD) if flow_trained & {self.image_head, self.audio_head} else {}


# The capstone's output heads (pictures, sounds) per profile, chosen by lesson 06's rule
# (fidelity on full prompts, validity and coverage on open ones) from its candidates trained
# with this recipe; lesson 06 measures them again in every run and says whether the rule
# still picks these. Measured in the ci profile on a 2-core CPU (2026-12-06); the cpu and
# gpu profiles follow ci's choice until a run there says otherwise (lesson 06 reports it).
CAPSTONE_HEADS = {"ci": ("flow", "flow"), "cpu": ("flow", "flow"), "gpu": ("flow", "flow")}
# Base steps of the capstone per profile (unified training gets twice as many). Measured
# with flow heads on a loaded 2-core CPU (2026-12-06): in ci, 300 base steps left the
# generating directions at 0.49 attribute accuracy and 600 reached 0.72-0.80 over two seeds
# (benchmarks/flow_ablation.py, "half the updates" against "recipe"); in cpu, 300 gave
# 0.48-0.69 on full prompts and 400 gave 0.68-0.74, in 16 minutes of training under load.
CAPSTONE_BASE_STEPS = {"ci": 600, "cpu": 400}


def capstone_recipe(profile: Profile | str | None = None) -> CapstoneRecipe:
    """The recipe for a profile: its heads (:data:`CAPSTONE_HEADS`) and its budget
    (:data:`CAPSTONE_BASE_STEPS` documents of 32, or the gpu profile's own sizes)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    large = profile.name == "gpu"
    image_head, audio_head = CAPSTONE_HEADS[profile.name]
    base = profile.train_steps if large else CAPSTONE_BASE_STEPS[profile.name]
    return CapstoneRecipe(
        scenes=profile.budget(min(profile.n_train // 2, 4096), dry=64),
        test_scenes=profile.budget(profile.n_eval // 2, dry=16),
        base_steps=profile.budget(base, dry=3),
        batch_size=profile.batch_size if large else 32,
        image_head=image_head,
        audio_head=audio_head,
    )


def capstone_data(
    recipe: CapstoneRecipe,
    profile: Profile | str | None = None,
    test_prompts: PromptSpec | None = None,
    heads: tuple[str, str] | None = None,
) -> tuple[AnyToAnyData, AnyToAnyData]:
    """The training pool and the test scenes of the capstone: single-object OmniWorld
    scenes with canonical captions ("a small red circle at the top left"), so a tiny
    model can learn all six directions in minutes on a CPU. Training prompts follow
    ``recipe.prompts``; test prompts ``test_prompts`` (default: fully specified).
    ``heads``: build the pools for other heads than the recipe's (a candidate's)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    tokenizers = _tokenizers_for(heads or (recipe.image_head, recipe.audio_head), profile)

    def world(split: str) -> OmniWorld:
        return OmniWorld(split, seed=0, n_objects=1, caption_style="canonical", profile=profile)

    q = recipe.question_modality
    train = AnyToAnyData(
        world("train"), recipe.scenes, question_modality=q, prompts=recipe.prompts, **tokenizers
    )
    tasks = (*DIRECTIONS, QUESTION)
    test = AnyToAnyData(
        world("test"),
        recipe.test_scenes,
        tasks,
        question_modality=q,
        prompts=test_prompts,
        **tokenizers,
    )
    return train, test


def _tokenizers_for(heads: tuple[str, str], profile: Profile) -> dict[str, nn.Module]:
    """Lesson 03's tokenizers for the modalities written as codes."""
    out = {}
    if heads[0] in DISCRETE_KINDS:
        from omni_edu.tokenizers import image_tokenizer

        out["image_tokenizer"] = image_tokenizer(profile).model
    if heads[1] in DISCRETE_KINDS:
        from omni_edu.tokenizers import audio_tokenizer

        out["audio_tokenizer"] = audio_tokenizer(profile).model
    return out


def recipe_model(data: AnyToAnyData, recipe: CapstoneRecipe) -> OmniLM:
    """A fresh OmniLM with the recipe's heads, sized by the profile, its loss weights
    measured on ``data`` (:func:`balanced_loss_weights`)."""
    heads = (recipe.image_head, recipe.audio_head)
    weights = balanced_loss_weights(data, *heads, **recipe.model_settings)
    return build_model(data, recipe.seed, weights, None, *heads, **recipe.model_settings)


def train_recipe(
    model: OmniLM, data: AnyToAnyData, recipe: CapstoneRecipe, progress: bool = True
) -> dict[str, list[float]]:
    """Train ``model`` in place through the recipe's stages; returns each stage's losses."""
    losses = {}
    for stage in recipe.stages:
        history = train_stage(
            model,
            data,
            stage.mix,
            stage.steps,
            recipe.seed,
            batch_size=recipe.batch_size,
            progress=progress,
        )
        losses[stage.name] = history.losses["loss"]
    return losses


def capstone(profile: Profile | str | None = None, retrain: bool = False, verbose: bool = True):
    """The any-to-any model of lesson 06, from the course cache or trained by its recipe.

    Returns a :class:`~omni_edu.course_cache.CachedPart`: ``model`` is the trained
    :class:`~omni_edu.model.omni_lm.OmniLM` (on the CPU when loaded), ``extra`` holds the
    recipe's training losses per stage and the loss weights it trained with. Training
    shows a progress bar per stage; on a 2-core CPU in the ``ci`` profile it takes about
    two minutes. The loss weights are measured when the model trains, not when it loads:
    they decide how it learns, not its shape.
    """
    from dataclasses import asdict

    from omni_edu.course_cache import load_or_train

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    recipe = capstone_recipe(profile)
    data, _ = capstone_data(recipe, profile)
    heads = (recipe.image_head, recipe.audio_head)
    config = model_config(data, None, profile, *heads, recipe.seed, **recipe.model_settings)

    def build() -> OmniLM:
        torch.manual_seed(recipe.seed)
        return OmniLM(config)

    def train(model: OmniLM) -> dict:
        weights = balanced_loss_weights(data, *heads, **recipe.model_settings)
        model.config.loss_weights = weights
        return {"losses": train_recipe(model, data, recipe), "loss_weights": weights}

    settings = {"recipe": asdict(recipe), "model": asdict(config), "version": 2}
    part = load_or_train("capstone", build, train, settings, profile, retrain, verbose)
    part.model.config.loss_weights = dict(part.extra["loss_weights"])
    return part


# ------------------------------------------------------------------------------- gallery


def gallery_figure(
    generations: Mapping[str, Mapping[str, Generations]],
    data: AnyToAnyData,
    n: int = 2,
    title: str = "One model, six directions: input | generated outputs",
):
    """Inputs and outputs side by side: one row per direction, ``n`` examples per row.

    ``generations`` maps a model's label (for example ``"linear head"``, ``"flow head"``)
    to its ``{direction: Generations}``; each example takes one panel for the input and
    one per model, so the models' outputs for the same prompt stand next to each other.
    Pictures show as pictures, sounds as log-mel spectrograms (time across, pitch up),
    captions as text.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from omni_edu.viz.omniworld import show_mel
    from omni_edu.viz.plots import detached

    labels = list(generations)
    rows = list(next(iter(generations.values())))
    per_example = 1 + len(labels)
    fig, axes = plt.subplots(
        len(rows),
        n * per_example,
        figsize=(1.9 * n * per_example, 1.95 * len(rows)),
        squeeze=False,
        layout="constrained",
    )

    def draw(ax, modality: str, value, title: str) -> None:
        if modality == "image":
            ax.imshow(value.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        elif modality == "audio":
            show_mel(value, data.world.mel_config, ax=ax, title=title)
            ax.set_xlabel("")
            ax.set_ylabel("")
        else:
            ax.text(0.5, 0.5, textwrap.fill(value, 16), ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])

    for r, name in enumerate(rows):
        d = get_direction(name)
        first = generations[labels[0]][name]
        for k in range(min(n, len(first.indices))):
            i = first.indices[k]
            source = {
                "text": data.batch.captions[i],
                "image": data.batch.images[i],
                "audio": data.batch.mels[i],
            }[d.source]
            column = k * per_example
            draw(axes[r, column], d.source, source, "input")
            for m, label in enumerate(labels):
                output = generations[label][name].outputs[k]
                draw(axes[r, column + 1 + m], d.target, output, label)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(title)
    return detached(fig)
