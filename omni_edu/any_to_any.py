"""Any-to-any: one OmniLM, every direction, chosen by the prompt (lesson 06).

The same weights caption a picture, transcribe a sound, draw a caption, speak a caption,
and turn a picture into a sound or a sound into a picture. What to do is written in the
prompt: a *task token* that names the output, then the input, then the output::

    <bos> <caption> <boi> image <eoi> a small red circle at the top left <eos>   image->text
    <bos> <draw> a small red circle at the top left <boi> image <eoi> <eos>      text->image
    <bos> <speak> <boi> image <eoi> <boa> audio <eoa> <eos>                      image->audio

Only the output is trained (the task token and the input are ``predict=False``), so the
model learns to *answer* prompts, not to write them.

This module holds the pieces lesson 06 measures with:

* :data:`DIRECTIONS` and :func:`make_document` - the prompt format of every direction;
* :class:`AnyToAnyData` - a pool of OmniWorld scenes as model-ready pieces, laid out as
  documents of any task and packed once, so a training batch is a cheap row selection;
* :func:`train_stage` - one stage of a curriculum (a data mix and a number of steps);
* :class:`Judges` and :func:`score_directions` - per-direction attribute accuracy: captions
  are parsed, generated pictures and sounds are read back by classifiers trained on
  real OmniWorld data;
* :func:`transfer_experiment` - the cross-modal transfer claim check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from omni_edu.data import ATTRIBUTES, VALUES, OmniBatch, OmniWorld, Question, score_caption
from omni_edu.evaluate_images import (
    AttributeClassifier,
    attribute_accuracy,
    chance_accuracy,
    train_attribute_classifier,
)
from omni_edu.modalities import (
    Modality,
    TextTokenizer,
    frame_audio,
    patch_grid,
    patchify,
    unframe_audio,
    unpatchify,
)
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
from omni_edu.profiles import Profile
from omni_edu.train import History, TrainConfig, Trainer


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

    Attributes: ``batch`` (the :class:`~omni_edu.data.OmniBatch`), ``patches``
    ``(n, n_patches, image_dim)``, ``audio`` ``(n, n_tokens, audio_dim)``, ``tokenizer``,
    ``specials``.
    """

    def __init__(
        self,
        world: OmniWorld,
        n: int,
        tasks: Sequence[str] = TASKS,
        frames_per_token: int = 4,
        seed: int = 0,
        question_modality: str = "image",
    ) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks should come from {TASKS}; got {unknown}.")
        self.world = world
        self.profile = world.profile
        self.frames_per_token = frames_per_token
        self.question_modality = question_modality
        self.tokenizer = TextTokenizer()
        self.specials = SpecialTokens.from_vocab(self.tokenizer.ids)
        self.batch: OmniBatch = world.sample(n, seed=seed)
        size, patch = self.profile.image_size, self.profile.patch_size
        self.grid = patch_grid(size, size, patch)
        self.patches = patchify(self.batch.images, patch)
        self.audio = frame_audio(self.batch.mels, frames_per_token)
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

    def item(self, modality: str, i: int) -> str | Tensor:
        """Scene ``i`` in one modality: its caption, patches or audio frames."""
        if modality == "text":
            return self.batch.captions[i]
        return self.patches[i] if modality == "image" else self.audio[i]

    def document(self, task: str, i: int, with_target: bool = True) -> list[Segment]:
        """Scene ``i`` laid out for ``task`` (a direction, a single modality or a question)."""
        if task in DIRECTIONS:
            d = DIRECTIONS[task]
            target = self.item(d.target, i) if with_target else None
            return make_document(d, self.tokenizer, self.item(d.source, i), target)
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
        ``i``. Batches are row selections of this pool (see :func:`pack_alike`)."""
        if self._pool is None:
            docs = [self.document(t, i) for t in self.tasks for i in range(len(self))]
            self._pool = pack_alike(docs, self.pack)
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


def _layout(document: Sequence[Segment]) -> tuple:
    return tuple((s.modality, len(s), s.grid, s.predict) for s in document)


def pack_alike(
    documents: Sequence[Sequence[Segment]],
    pack_fn: Callable[[Sequence[Sequence[Segment]]], PackedBatch] = pack,
) -> PackedBatch:
    """The same batch as ``pack_fn(documents)``, fast when many documents share a layout.

    :func:`~omni_edu.model.interleave.pack` walks every token in Python (about as slow as
    a training step of the tiny model per batch). Documents of one task usually differ only
    in their contents (same segments, same lengths), and then everything else - positions,
    masks, which positions are trained - is the same. So each layout is packed once and
    the contents of the others are copied into its rows; next-token targets are the
    contents shifted by one where the template trains a prediction.
    """
    groups: dict[tuple, list[int]] = {}
    for i, doc in enumerate(documents):
        groups.setdefault(_layout(doc), []).append(i)
    templates = pack_fn([documents[rows[0]] for rows in groups.values()])
    order = torch.tensor([t for t, rows in enumerate(groups.values()) for _ in rows])
    batch = templates.select(order)
    batch.text_ids, batch.image, batch.audio = (
        batch.text_ids.clone(),
        batch.image.clone(),
        batch.audio.clone(),
    )
    row = 0
    for t, rows in enumerate(groups.values()):
        where = slice(row, row + len(rows))
        for span in templates.spans[t]:
            if span.segment < 0:
                continue  # an inserted marker: the same in every document
            cols = slice(span.start, span.stop)
            stacked = torch.stack([documents[i][span.segment].data for i in rows])
            field = {Modality.TEXT: batch.text_ids, Modality.IMAGE: batch.image}.get(
                span.modality, batch.audio
            )
            field[where, cols] = stacked
        row += len(rows)

    def shifted(x: Tensor) -> Tensor:  # x[:, i] <- x[:, i + 1]
        return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)

    target = batch.target_modality
    batch.text_targets = torch.where(
        target == Modality.TEXT, shifted(batch.text_ids), batch.text_targets
    )
    for name, modality in (("image", Modality.IMAGE), ("audio", Modality.AUDIO)):
        here = (target == modality)[..., None]
        setattr(batch, f"{name}_targets", torch.where(here, shifted(getattr(batch, name)), 0.0))
    # Back to the documents' own order.
    return batch.select(torch.argsort(torch.tensor([i for rows in groups.values() for i in rows])))


# ------------------------------------------------------------------------------- training


def balanced_loss_weights(data: AnyToAnyData) -> dict[str, float]:
    """Loss weights that put every modality on the same scale: 1 / variance of its features.

    Cross-entropy of text starts near log(vocab) and ends near 0.1-1, but the mean squared
    error of an image patch or an audio frame is at most its variance across the data
    (what predicting the average gives), here a few hundredths. Summed with equal weights,
    text dominates the gradient. Dividing each MSE by its variance makes "predict the
    average" cost 1 in every modality.
    """
    return {
        "text": 1.0,
        "image": round(1.0 / data.patches.var(dim=0).mean().item(), 1),
        "audio": round(1.0 / data.audio.var(dim=0).mean().item(), 1),
    }


def build_model(
    data: AnyToAnyData,
    seed: int = 0,
    loss_weights: Mapping[str, float] | None = None,
    profile: Profile | None = None,
) -> OmniLM:
    """A fresh OmniLM sized by the profile for ``data``'s vocabulary and audio tokens."""
    profile = profile or data.profile
    torch.manual_seed(seed)
    overrides = {} if loss_weights is None else {"loss_weights": dict(loss_weights)}
    config = OmniLMConfig.from_profile(
        data.tokenizer.vocab_size, data.frames_per_token, profile, **overrides
    )
    return OmniLM(config)


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
) -> Trainer:
    """A :class:`~omni_edu.train.Trainer` for one stage: ``steps`` updates on batches drawn
    by ``mix``, with its own warm-up and cosine schedule. ``trainer.fit(until=k)`` stops
    at step ``k`` (to look at the model) and a later ``fit()`` carries on exactly."""
    config = TrainConfig.from_profile(
        data.profile, steps=steps, lr=lr, seed=seed, eval_every=0, progress=progress
    )
    batches = data.batches(mix, batch_size or data.profile.batch_size, seed=seed)
    return Trainer(model, loss_fn, batches, config)


def train_stage(
    model: OmniLM,
    data: AnyToAnyData,
    mix: Mapping[str, float],
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place for ``steps`` updates on batches drawn by ``mix``.

    Each stage of a curriculum is one call: its own data mix and learning-rate schedule
    (warm-up, then cosine), the weights carried over from the stage before.
    """
    return stage_trainer(model, data, mix, steps, seed, lr, batch_size, progress).fit()


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


# ------------------------------------------------------------------------------- judges


class AudioAttributeClassifier(nn.Module):
    """Log-mel ``(batch, frames, n_mels)`` -> logits for each attribute of its one object.

    A small 1-D convolution over time (mel bands are its channels): pitch (colour) and
    timbre (shape) live across bands, loudness (size) in the level, position in *when*
    the tone sounds, which the pooled time axis (4 slots) keeps.
    """

    def __init__(self, n_mels: int, channels: int = 48, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
            nn.Linear(4 * channels, hidden),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({a: nn.Linear(hidden, len(VALUES[a])) for a in ATTRIBUTES})

    def forward(self, mels: Tensor) -> dict[str, Tensor]:
        """Logits ``{attribute: (batch, n_values)}``."""
        if mels.dim() != 3:
            raise ValueError(f"mels should be (batch, frames, n_mels); got {tuple(mels.shape)}.")
        h = self.features(mels.transpose(1, 2))
        return {a: head(h) for a, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, mels: Tensor) -> Tensor:
        """Predicted attributes ``(batch, 4)`` int64, columns (shape, colour, size, position)."""
        logits = self(mels)
        return torch.stack([logits[a].argmax(-1) for a in ATTRIBUTES], dim=1)


def train_audio_classifier(
    mels: Tensor,
    attributes: Tensor,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> AudioAttributeClassifier:
    """Fit an :class:`AudioAttributeClassifier` on real sounds ``(n, frames, n_mels)``.

    attributes: ``(n, 1, 4)`` or ``(n, 4)`` of single-object scenes.
    """
    if attributes.dim() == 3:
        attributes = attributes[:, 0]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = AudioAttributeClassifier(mels.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="sound classifier", disable=not progress, leave=False):
        pick = torch.randint(len(mels), (batch_size,), generator=g)
        logits = model(mels[pick])
        loss = sum(
            F.cross_entropy(logits[a], attributes[pick, k]) for k, a in enumerate(ATTRIBUTES)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@dataclass
class Judges:
    """Classifiers trained on real OmniWorld data that read generated pictures and sounds."""

    image: AttributeClassifier
    audio: AudioAttributeClassifier


def train_judges(world: OmniWorld, n: int = 1024, steps: int = 200, seed: int = 0) -> Judges:
    """Train both judges on ``n`` fresh single-object scenes of ``world``."""
    if world.n_objects != (1, 1):
        raise ValueError(f"the judges read one object per scene; got n_objects={world.n_objects}.")
    real = world.sample(n, seed=10_000 + seed)
    image = train_attribute_classifier(real.images, real.attributes, steps=steps, seed=seed)
    audio = train_audio_classifier(real.mels, real.attributes, steps=steps, seed=seed)
    return Judges(image, audio)


def audio_accuracy(
    classifier: AudioAttributeClassifier, mels: Tensor, attributes: Tensor
) -> dict[str, float]:
    """Per-attribute accuracy of the sound judge on ``mels``, plus ``mean`` and ``all``."""
    if attributes.dim() == 3:
        attributes = attributes[:, 0]
    right = classifier.predict(mels) == attributes
    result = {a: right[:, k].float().mean().item() for k, a in enumerate(ATTRIBUTES)}
    result["mean"] = right.float().mean().item()
    result["all"] = right.all(dim=1).float().mean().item()
    return result


def chance_level() -> float:
    """Mean attribute accuracy of uniform guessing (1/4, 1/6, 1/2, 1/4 averaged): 0.29."""
    return chance_accuracy()["mean"]


# ------------------------------------------------------------------------------- generation


@dataclass
class Generations:
    """What a model produced for one direction, with the scenes it was asked about."""

    direction: str
    outputs: list[str] | Tensor  # captions, images (n, 3, H, W) or mels (n, frames, n_mels)
    indices: list[int]


@torch.no_grad()
def generate(
    model: OmniLM, data: AnyToAnyData, direction: str, indices: Sequence[int]
) -> Generations:
    """Run ``direction`` on scenes ``indices`` of ``data``: captions, images or log-mels."""
    d = get_direction(direction)
    model.eval()
    prompts = [data.document(d.name, i, with_target=False) for i in indices]
    common = {"specials": data.specials}
    if d.target == "text":
        longest = max(len(data.tokenizer.encode(c)) for c in data.batch.captions)
        ids = model.generate(
            prompts, Modality.TEXT, n_tokens=longest + 1, stop_id=data.tokenizer.eos_id, **common
        )
        outputs = [data.tokenizer.decode(x, skip_special=True) for x in ids]
    elif d.target == "image":
        patches = torch.stack(model.generate(prompts, Modality.IMAGE, grid=data.grid, **common))
        size = data.profile.image_size
        outputs = unpatchify(patches, data.profile.patch_size, size, size).clamp(0, 1)
    else:
        n_tokens = data.audio.shape[1]
        frames = torch.stack(model.generate(prompts, Modality.AUDIO, n_tokens=n_tokens, **common))
        outputs = unframe_audio(frames, data.frames_per_token).clamp(-1, 1)
    return Generations(d.name, outputs, list(indices))


def score_generations(gen: Generations, data: AnyToAnyData, judges: Judges | None) -> float:
    """Mean attribute accuracy of generated outputs against the scenes they were asked for.

    Captions are parsed (:func:`~omni_edu.data.score_caption`); pictures and sounds are
    read back by the judges. Chance is :func:`chance_level` for single-object scenes.
    """
    d = get_direction(gen.direction)
    if d.target == "text":
        scores = [
            score_caption(text, data.batch.scenes[i])
            for text, i in zip(gen.outputs, gen.indices, strict=True)
        ]
        return sum(scores) / len(scores)
    if judges is None:
        raise ValueError(f"scoring {d.name} needs judges (train_judges) to read its outputs.")
    attributes = data.batch.attributes[gen.indices]
    if d.target == "image":
        return attribute_accuracy(judges.image, gen.outputs, attributes)["mean"]
    return audio_accuracy(judges.audio, gen.outputs, attributes)["mean"]


def score_directions(
    model: OmniLM,
    data: AnyToAnyData,
    judges: Judges,
    n: int = 128,
    directions: Sequence[str] = tuple(DIRECTIONS),
) -> dict[str, float]:
    """``{direction: mean attribute accuracy}`` on the first ``n`` scenes of ``data``."""
    indices = list(range(min(n, len(data))))
    return {
        d: score_generations(generate(model, data, d, indices), data, judges) for d in directions
    }


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


# ------------------------------------------------------------------------------- transfer


@dataclass
class TransferResult:
    """Text-question accuracy per seed, trained on text alone and with shared-concept media."""

    text_only: list[float]
    with_media: list[float]

    @property
    def differences(self) -> list[float]:
        return [b - a for a, b in zip(self.text_only, self.with_media, strict=True)]

    @property
    def effect(self) -> float:
        """Mean (with media - text only) over seeds, in accuracy points (fraction)."""
        return sum(self.differences) / len(self.differences)

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`effect` over paired seeds (0 for a single seed)."""
        diffs = self.differences
        if len(diffs) < 2:
            return 0.0
        mean = self.effect
        return math.sqrt(sum((x - mean) ** 2 for x in diffs) / (len(diffs) - 1) / len(diffs))


TEXT_ONLY_MIX = {QUESTION: 0.5, "text": 0.5}
WITH_AUDIO_MIX = {QUESTION: 0.5, "audio->text": 0.5}


def transfer_experiment(
    data: AnyToAnyData,
    test_data: AnyToAnyData,
    seeds: Sequence[int],
    steps: int,
    media_mix: Mapping[str, float] = WITH_AUDIO_MIX,
    batch_size: int | None = None,
    progress: bool = True,
) -> TransferResult:
    """Does training on sounds of the same concepts help answer *text* questions?

    ``data`` must pack ``QUESTION`` (about the caption: ``question_modality="text"``),
    ``"text"`` and the tasks of ``media_mix``. Both arms train from the same seed for the
    same steps on the same question rows (the batches draw identical task slots and
    scenes); the other half of each batch is the scene's caption, alone in the text-only
    arm and after its sound (transcription) in the other. So both arms read the same
    words, and the only difference is whether the sound came with them.
    Returns text-question accuracy on ``test_data`` for each seed and arm.
    ``batch_size`` defaults to the profile's.
    """
    text_only, with_media = [], []
    bar = tqdm(total=2 * len(seeds), desc="transfer runs", disable=not progress)
    for seed in seeds:
        for mix, results in ((TEXT_ONLY_MIX, text_only), (media_mix, with_media)):
            model = build_model(data, seed=seed)
            train_stage(model, data, mix, steps, seed=seed, batch_size=batch_size, progress=False)
            results.append(answer_accuracy(model, test_data, n=len(test_data)))
            bar.update(1)
    bar.close()
    return TransferResult(text_only, with_media)


# ------------------------------------------------------------------------------- gallery


def gallery_figure(generations: Mapping[str, Generations], data: AnyToAnyData, n: int = 3):
    """Inputs and outputs side by side: one row per direction, ``n`` examples per row.

    Each example takes two panels, the input then the output: pictures as pictures, sounds
    as log-mel spectrograms (time across, pitch up), captions as text.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from omni_edu.viz.omniworld import show_mel

    rows = list(generations)
    fig, axes = plt.subplots(len(rows), 2 * n, figsize=(4.0 * n, 1.9 * len(rows)), squeeze=False)

    def draw(ax, modality: str, value, title: str) -> None:
        if modality == "image":
            ax.imshow(value.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        elif modality == "audio":
            show_mel(value, data.world.mel_config, ax=ax, title=title)
            ax.set_xlabel("")
            ax.set_ylabel("")
        else:
            ax.text(0.5, 0.5, textwrap.fill(value, 16), ha="center", va="center", fontsize=8)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    for r, name in enumerate(rows):
        gen, d = generations[name], get_direction(name)
        for k in range(min(n, len(gen.indices))):
            i = gen.indices[k]
            source = {
                "text": data.batch.captions[i],
                "image": data.batch.images[i],
                "audio": data.batch.mels[i],
            }[d.source]
            draw(axes[r, 2 * k], d.source, source, f"input ({d.source})")
            draw(axes[r, 2 * k + 1], d.target, gen.outputs[k], f"output ({d.target})")
        axes[r, 0].set_ylabel(name, fontsize=10)
    fig.suptitle("One model, six directions: input | generated output")
    fig.tight_layout()
    return fig
