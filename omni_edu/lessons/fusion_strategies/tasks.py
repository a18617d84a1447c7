"""Lesson 05's two OmniWorld tasks, tight and loose, laid out for every fusion variant.

* ``"binding"`` (**tight** coupling): two objects in the picture, of different colours,
  and one sound: one of the two objects, heard at one fixed pitch. *What colour is the
  object in the sound?* The sound says *which* object (its timing gives the object's cell,
  its timbre the shape) but never its colour; the picture shows both colours but not which
  object sounds. A model that sees only the picture can do no better than one of the two
  colours (1/2); the rest needs a lookup from the sound into the picture, token by token.
* ``"colour"`` (**loose** coupling): one object; *what colour is the object?* The picture
  shows it and the sound's pitch tells it too: either modality alone is enough.

The lesson used to test a "does the sound match the picture" task. Each modality alone
carries no information about that answer (the answer is whether the hue seen equals the
pitch heard, an XOR), so every model sat on a plateau at the class split: in ci every arm
scored 0.503 +- 0.009 after 300 steps, and early fusion needed about 650 steps in ci and
1,300 in cpu to leave it (issue 19). The binding task has a first step any model learns
(name a colour in the picture) and a second that needs the two modalities together.

Every example is laid out the same way, one interleaved order for all variants::

    <bos> <boa> | audio tokens | <eoa> <boi> | image patches | <eoi> question words <answer>

and the class is read from the hidden state of ``<answer>``. Under Flamingo's rule (a text
token reads only the most recent media item before it) the question of cross-attention
fusion reads the picture; the sound reaches it only through ``<eoa> <boi>``, the text
between the sound and the picture, which read the sound.

:func:`blind_baselines` measures what a model that ignores one modality (or both) scores on
the same test items, the baselines every arm must leave.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.data import (
    ABSENT,
    COLOUR,
    COLOURS,
    SPLITS,
    allowed_pairs,
    render_images,
    sample_attributes,
    synthesize_audio,
)
from omni_edu.modalities import MelConfig, TextTokenizer, frame_audio, log_mel, patchify
from omni_edu.model.fusion import FusionBatch, FusionConfig
from omni_edu.profiles import Profile, get_profile
from omni_edu.report import majority_baseline

FRAMES_PER_TOKEN = 4  # log-mel frames per audio token: 1/16 s of sound
# The binding task's sounds all play at the pitch of this colour (red: 220 Hz, the lowest),
# so a sound says which object it is, never which colour.
HEARD_PITCH = COLOURS.index("red")


@dataclass(frozen=True)
class FusionTask:
    """One classification task over (sound, picture, question)."""

    name: str
    coupling: str  # "tight" or "loose"
    question: str
    classes: tuple[str, ...]
    description: str
    objects: int  # objects in the picture
    single_share: float = 0.0  # training scenes with one object only (binding)


TASKS: dict[str, FusionTask] = {
    "binding": FusionTask(
        "binding",
        "tight",
        "what colour is the object in the sound",
        COLOURS,
        "two objects of different colours; the sound is one of them, at one fixed pitch",
        objects=2,
        single_share=0.5,
    ),
    "colour": FusionTask(
        "colour",
        "loose",
        "what colour is the object",
        COLOURS,
        "one object; its colour is both seen (hue) and heard (pitch)",
        objects=1,
    ),
}


def get_task(name: str) -> FusionTask:
    if name not in TASKS:
        raise ValueError(f"task should be one of {sorted(TASKS)}; got {name!r}.")
    return TASKS[name]


@dataclass
class Scenes:
    """What a task's examples show, before rendering.

    attributes ``(n, objects, 4)`` (shape, colour, size, position) of the picture's
    objects and mask ``(n, objects)``, which of them are there; heard ``(n, 1, 4)``: the
    object the sound plays, as synthesised (in the binding task its colour is
    :data:`HEARD_PITCH`); labels ``(n,)`` class indices.
    """

    attributes: Tensor
    mask: Tensor
    heard: Tensor
    labels: Tensor


def scene_generator(seed: int, split: str) -> torch.Generator:
    """The generator :func:`make_fusion_data` draws ``split``'s examples from."""
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))


def draw_scenes(task: str, n: int, split: str, generator: torch.Generator) -> Scenes:
    """``n`` scenes of ``task`` (the attributes only; :func:`make_fusion_data` renders them).

    In the binding task the second object's shape-colour pair is drawn from ``split``'s
    pairs whose colour differs from the first object's, and the heard object is either of
    the two with probability 1/2. In the training split a share ``single_share`` of the
    scenes keeps only the first object (then heard): the question is the same, and the
    answer is the colour the picture shows.
    """
    spec = get_task(task)
    attributes, mask = sample_attributes(n, (spec.objects, spec.objects), split, generator)
    if task == "colour":
        return Scenes(attributes, mask, attributes.clone(), attributes[:, 0, COLOUR].clone())
    pairs = allowed_pairs(split)
    # For each first colour, the pairs of another colour; draw one by a uniform number.
    u = torch.rand(n, generator=generator)
    for colour in range(len(COLOURS)):
        rows = attributes[:, 0, COLOUR] == colour
        others = pairs[pairs[:, 1] != colour]
        pick = (u[rows] * len(others)).long().clamp(max=len(others) - 1)
        attributes[rows, 1, :2] = others[pick]
    which = torch.randint(2, (n,), generator=generator)
    single = torch.rand(n, generator=generator) < (spec.single_share if split == "train" else 0)
    which[single] = 0
    mask[single, 1] = False
    attributes[single, 1] = ABSENT
    heard = attributes[torch.arange(n), which].clone()
    labels = heard[:, COLOUR].clone()
    heard[:, COLOUR] = HEARD_PITCH
    return Scenes(attributes, mask, heard[:, None], labels)


def make_fusion_data(
    task: str,
    n: int,
    split: str = "train",
    seed: int = 0,
    profile: Profile | None = None,
    tokenizer: TextTokenizer | None = None,
) -> FusionBatch:
    """``n`` examples of ``task`` as a :class:`FusionBatch` (deterministic in ``seed``).

    The layout is ``<bos> <boa> | audio | <eoa> <boi> | image | <eoi> question <answer>``;
    positions number that order 0, 1, 2, ...
    """
    spec = get_task(task)
    profile = profile or get_profile()
    tokenizer = tokenizer or TextTokenizer()
    generator = scene_generator(seed, split)
    scenes = draw_scenes(task, n, split, generator)
    images = render_images(scenes.attributes, scenes.mask, profile.image_size, generator)
    heard_mask = torch.ones(n, 1, dtype=torch.bool)
    waveforms = synthesize_audio(
        scenes.heard, heard_mask, profile.sample_rate, profile.audio_seconds, generator
    )
    mels = log_mel(waveforms, MelConfig.from_profile(profile))
    image = patchify(images, profile.patch_size)
    # Log-mels put silence at -1. Most frames of a clip are silent, so that constant would
    # dominate every audio token and bury the tone; shifted, silence is 0 like an empty
    # patch. (Measured: an audio-only colour probe went from chance to 100 % in 50 steps.)
    audio = frame_audio(mels + 1.0, FRAMES_PER_TOKEN)
    question = [*tokenizer.encode(spec.question), tokenizer["<answer>"]]
    n_image, n_audio = image.shape[1], audio.shape[1]
    # <bos> <boa> = 0, 1 | audio | <eoa> <boi> | image | <eoi> question <answer>
    audio_start = 2
    image_start = audio_start + n_audio + 2
    after = image_start + n_image
    text_ids = [
        tokenizer.bos_id,
        tokenizer["<boa>"],
        tokenizer["<eoa>"],
        tokenizer["<boi>"],
        tokenizer["<eoi>"],
        *question,
    ]
    text_positions = [
        0,
        1,
        image_start - 2,
        image_start - 1,
        *range(after, after + 1 + len(question)),
    ]

    def rows(values: list[int] | Tensor) -> Tensor:
        return torch.as_tensor(values).expand(n, -1).contiguous()

    return FusionBatch(
        text_ids=rows(text_ids),
        text_positions=rows(text_positions),
        image=image,
        image_positions=rows(torch.arange(image_start, after)),
        audio=audio,
        audio_positions=rows(torch.arange(audio_start, image_start - 2)),
        labels=scenes.labels,
    )


def _keys(values: Tensor) -> list[tuple[int, ...]]:
    return [tuple(row) for row in values.tolist()]


def blind_baselines(
    task: str, n_train: int, n_eval: int, train_seed: int = 0, test_seed: int = 0
) -> dict[str, float]:
    """What models that miss a modality score on ``task``'s test items, scored like the arms.

    Each is a lookup fitted on the training scenes (the commonest answer for what the
    model sees) and scored by exact match on the test scenes that
    ``make_fusion_data(task, n_eval, "test", test_seed)`` renders:

    * ``"majority"``: sees nothing, gives the commonest training answer;
    * ``"sound only"``: sees every attribute the sound carries (the heard object's shape,
      size, position and pitch);
    * ``"picture only"``: sees the colours in the picture (the most a picture says about
      the answer: which object sounds does not depend on the picture).
    """
    train = draw_scenes(task, n_train, "train", scene_generator(train_seed, "train"))
    test = draw_scenes(task, n_eval, "test", scene_generator(test_seed, "test"))

    def lookup(keys_of) -> float:
        return majority_baseline(
            test.labels, keys_of(test), train_answers=train.labels, train_groups=keys_of(train)
        )

    return {
        "majority": majority_baseline(test.labels, train_answers=train.labels),
        "sound only": lookup(lambda s: _keys(s.heard[:, 0])),
        "picture only": lookup(lambda s: _keys(s.attributes[..., COLOUR].sort(dim=1).values)),
    }


def task_config(task: str, profile: Profile | None = None, **overrides) -> FusionConfig:
    """The :class:`FusionConfig` for ``task`` under ``profile``: vocabulary, widths, classes."""
    profile = profile or get_profile()
    sizes = dict(
        vocab_size=TextTokenizer().vocab_size,
        audio_dim=FRAMES_PER_TOKEN * profile.n_mels,
        n_classes=len(get_task(task).classes),
    )
    return FusionConfig.from_profile(profile, **{**sizes, **overrides})
