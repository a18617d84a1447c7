"""Lesson 05's two OmniWorld tasks, tight and loose, laid out for every fusion variant.

The two tasks pull in opposite directions:

* ``"match"`` (**tight** coupling): one object in the picture, one sound. Does the sound
  match the picture? Half the sounds are a near miss: the same object heard with another
  colour's pitch. Neither modality alone says anything; the answer needs the hue seen in
  the picture compared with the pitch heard in the sound.
* ``"colour"`` (**loose** coupling): what colour is the object? The picture shows it and
  the sound's pitch tells it too; either modality alone is enough.

Both tasks are about the same attribute, so they differ only in how tightly the two
modalities must be combined. (``FusionTask.mismatch`` can make the near misses change
other attributes too: shape <-> timbre, size <-> loudness, position <-> timing. Measured
on the ``ci`` model, one seed, before the layout had markers between picture and sound:
with colour and shape mismatches no variant left chance within 1000 steps, so the lesson
keeps colour.)

Every example is laid out the same way, one interleaved order for all variants::

    <bos> <boi> | image patches | <eoi> <boa> | audio tokens | <eoa> question words <answer>

and the class is read from the hidden state of ``<answer>``. The markers between the
picture and the sound matter to cross-attention fusion under Flamingo's rule (a text
token reads only the most recent media item before it): ``<eoi>`` and ``<boa>`` read the
picture, the question reads the sound, and the picture reaches ``<answer>`` only through
the markers' hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.data import (
    ATTRIBUTES,
    COLOUR,
    COLOURS,
    SPLITS,
    allowed_pairs,
    n_values,
    render_images,
    sample_attributes,
    synthesize_audio,
)
from omni_edu.modalities import MelConfig, TextTokenizer, frame_audio, log_mel, patchify
from omni_edu.model.fusion import (
    FusionBatch,
    FusionConfig,
)
from omni_edu.profiles import Profile, get_profile

FRAMES_PER_TOKEN = 4  # log-mel frames per audio token: 1/16 s of sound


@dataclass(frozen=True)
class FusionTask:
    """One classification task over (picture, sound, question)."""

    name: str
    coupling: str  # "tight" or "loose"
    question: str
    classes: tuple[str, ...]
    description: str
    mismatch: tuple[str, ...] = ()  # "match": the attributes a near miss may change


TASKS: dict[str, FusionTask] = {
    "match": FusionTask(
        "match",
        "tight",
        "does the sound match the picture",
        ("no", "yes"),
        "one object; the sound matches it or is heard with another colour's pitch",
        mismatch=("colour",),
    ),
    "colour": FusionTask(
        "colour",
        "loose",
        "what colour is the object",
        COLOURS,
        "one object; its colour is both seen (hue) and heard (pitch)",
    ),
}


def get_task(name: str) -> FusionTask:
    if name not in TASKS:
        raise ValueError(f"task should be one of {sorted(TASKS)}; got {name!r}.")
    return TASKS[name]


def near_misses(
    attributes: Tensor,
    change: Tensor,
    which: tuple[str, ...],
    split: str,
    generator: torch.Generator,
) -> Tensor:
    """A copy of one-object ``attributes (n, 1, 4)`` in which the rows where ``change``
    is True have one attribute from ``which`` set to another value (a near miss). The
    new shape-colour pair stays inside ``split``'s allowed pairs."""
    out = attributes.clone()
    allowed = {tuple(p) for p in allowed_pairs(split).tolist()}
    columns = [ATTRIBUTES.index(a) for a in which]
    picks = torch.randint(2**31, (len(out),), generator=generator).tolist()
    for row in change.nonzero().flatten().tolist():
        obj = out[row, 0].tolist()
        options = []
        for column in columns:
            for value in range(n_values(ATTRIBUTES[column])):
                new = [*obj[:column], value, *obj[column + 1 :]]
                if value != obj[column] and (new[0], new[1]) in allowed:
                    options.append(new)
        out[row, 0] = torch.tensor(options[picks[row] % len(options)])
    return out


def make_fusion_data(
    task: str,
    n: int,
    split: str = "train",
    seed: int = 0,
    profile: Profile | None = None,
    tokenizer: TextTokenizer | None = None,
) -> FusionBatch:
    """``n`` examples of ``task`` as a :class:`FusionBatch` (deterministic in ``seed``).

    The layout is ``<bos> <boi> | image | <eoi> <boa> | audio | <eoa> question <answer>``;
    positions number that order 0, 1, 2, ...
    """
    spec = get_task(task)
    profile = profile or get_profile()
    tokenizer = tokenizer or TextTokenizer()
    generator = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
    attributes, mask = sample_attributes(n, (1, 1), split, generator)
    if task == "match":
        labels = (torch.rand(n, generator=generator) < 0.5).long()
        heard = near_misses(attributes, labels == 0, spec.mismatch, split, generator)
    else:
        labels, heard = attributes[:, 0, COLOUR], attributes
    images = render_images(attributes, mask, profile.image_size, generator)
    waveforms = synthesize_audio(heard, mask, profile.sample_rate, profile.audio_seconds, generator)
    mels = log_mel(waveforms, MelConfig.from_profile(profile))
    image = patchify(images, profile.patch_size)
    # Log-mels put silence at -1. Most frames of a clip are silent, so that constant would
    # dominate every audio token and bury the tone; shifted, silence is 0 like an empty
    # patch. (Measured: an audio-only colour probe went from chance to 100 % in 50 steps.)
    audio = frame_audio(mels + 1.0, FRAMES_PER_TOKEN)
    question = [*tokenizer.encode(spec.question), tokenizer["<answer>"]]
    n_image, n_audio = image.shape[1], audio.shape[1]
    # <bos> <boi> = 0, 1 | image | <eoi> <boa> | audio | <eoa> question <answer>
    image_start = 2
    audio_start = image_start + n_image + 2
    after = audio_start + n_audio
    text_ids = [
        tokenizer.bos_id,
        tokenizer["<boi>"],
        tokenizer["<eoi>"],
        tokenizer["<boa>"],
        tokenizer["<eoa>"],
        *question,
    ]
    text_positions = [
        0,
        1,
        audio_start - 2,
        audio_start - 1,
        *range(after, after + 1 + len(question)),
    ]

    def rows(values: list[int] | Tensor) -> Tensor:
        return torch.as_tensor(values).expand(n, -1).contiguous()

    return FusionBatch(
        text_ids=rows(text_ids),
        text_positions=rows(text_positions),
        image=image,
        image_positions=rows(torch.arange(image_start, image_start + n_image)),
        audio=audio,
        audio_positions=rows(torch.arange(audio_start, after)),
        labels=labels,
    )


def task_config(task: str, profile: Profile | None = None, **overrides) -> FusionConfig:
    """The :class:`FusionConfig` for ``task`` under ``profile``: vocabulary, widths, classes."""
    profile = profile or get_profile()
    sizes = dict(
        vocab_size=TextTokenizer().vocab_size,
        audio_dim=FRAMES_PER_TOKEN * profile.n_mels,
        n_classes=len(get_task(task).classes),
    )
    return FusionConfig.from_profile(profile, **{**sizes, **overrides})
