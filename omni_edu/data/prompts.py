"""Prompts that leave something to choose: captions that name only some attributes,
pictures without their colour, sounds without their timing.

A caption names every attribute of its scene, so a picture given its caption is nearly
one picture, and a regression head's mean is already the best answer. A prompt that
names less ("a small circle", "something red at the top left", or nothing at all) has a
*distribution* of right answers, which is what a sampling head is for::

    spec = PromptSpec(p_free={"colour": 0.5, "position": 0.5}, p_empty=0.1, p_grey=0.5)
    batch = world.sample(256, seed=0, prompts=spec)
    batch.prompts.texts[0]                 # e.g. "a small circle"
    batch.prompts.fixed["text"]            # (256, max_objects, 4) bool: what the words fix
    conditional_distributions("train", batch.attributes[:, 0], batch.prompts.fixed["text"][:, 0])

What "free" means in each source modality:

* **text**: the attribute's word is left out, independently per object and attribute
  with probability ``p_free[attribute]``; an *empty* prompt (probability ``p_empty``) has
  no words at all and fixes nothing (classifier-free guidance's unconditional branch).
* **image**: with probability ``p_grey`` the prompt picture draws its objects in
  achromatic grey (same shape, size, position, jitter and pixel noise): colour is free.
* **audio**: with probability ``p_untimed`` the prompt sound holds each tone across the
  whole clip instead of its position's time slot (same timbre, pitch, loudness): position
  is free.

Free attributes follow the data's own conditional distribution, which
:func:`conditional_distributions` gives and :func:`sample_conditional` draws from: every
single object that agrees with the fixed attributes and the split's shape-colour pairs
is equally likely, because OmniWorld draws pairs, sizes and cells uniformly and
independently.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

import torch
from torch import Tensor

from omni_edu.data.language import caption
from omni_edu.data.scene import (
    ATTRIBUTES,
    COLOUR,
    COLOURS,
    POSITION,
    SHAPES,
    SPLITS,
    VALUES,
    Scene,
    allowed_pairs,
    value_index,
)

PROMPT_MODALITIES = ("text", "image", "audio")


@dataclass(frozen=True)
class PromptSpec:
    """How often prompts leave something free (all zero, the default: every prompt is the
    scene's own caption, picture and sound, fully specified: the control).

    p_free: ``{attribute: probability}`` that a text prompt leaves that attribute of an
    object unnamed (attributes not given: 0). p_empty: share of text prompts with no words.
    p_grey: share of prompt pictures drawn without colour. p_untimed: share of prompt
    sounds without a timing cue.
    """

    p_free: Mapping[str, float] = field(default_factory=dict)
    p_empty: float = 0.0
    p_grey: float = 0.0
    p_untimed: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.p_free) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(f"p_free keys should come from {ATTRIBUTES}; got {unknown}")
        p_free = {a: float(self.p_free.get(a, 0.0)) for a in ATTRIBUTES}
        named = {f"p_free[{a!r}]": p for a, p in p_free.items()}
        named |= {n: getattr(self, n) for n in ("p_empty", "p_grey", "p_untimed")}
        for name, p in named.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError(f"{name} should be a probability in [0, 1]; got {p!r}")
        object.__setattr__(self, "p_free", p_free)

    @classmethod
    def uniform(
        cls, p_free: float, p_empty: float = 0.0, p_grey: float = 0.0, p_untimed: float = 0.0
    ) -> PromptSpec:
        """Every attribute left free with the same probability ``p_free``."""
        return cls(dict.fromkeys(ATTRIBUTES, p_free), p_empty, p_grey, p_untimed)

    @property
    def fully_specified(self) -> bool:
        """True when every prompt fixes everything (the control)."""
        return not any([*self.p_free.values(), self.p_empty, self.p_grey, self.p_untimed])


@dataclass
class Prompts:
    """The prompts of a batch, one per scene, in each source modality.

    texts: ``n`` strings ("" for an empty prompt). images ``(n, 3, H, W)`` in [0, 1];
    waveforms ``(n, samples)``; mels ``(n, frames, n_mels)``. fixed: ``{"text" | "image"
    | "audio": (n, max_objects, 4) bool}``, True where that prompt fixes that attribute
    of that object (False for absent objects). spec: the :class:`PromptSpec` drawn from.
    """

    texts: list[str]
    images: Tensor
    waveforms: Tensor
    mels: Tensor
    fixed: dict[str, Tensor]
    spec: PromptSpec

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, picked: Tensor) -> Prompts:
        """The prompts of rows ``picked`` (an int64 index tensor)."""
        listed = picked.tolist()
        return replace(
            self,
            texts=[self.texts[i] for i in listed],
            images=self.images[picked],
            waveforms=self.waveforms[picked],
            mels=self.mels[picked],
            fixed={m: f[picked] for m, f in self.fixed.items()},
        )

    def to(self, device: torch.device | str) -> Prompts:
        """The same prompts with their tensors on ``device``."""
        return replace(
            self,
            images=self.images.to(device),
            waveforms=self.waveforms.to(device),
            mels=self.mels.to(device),
            fixed={m: f.to(device) for m, f in self.fixed.items()},
        )


def make_prompts(
    spec: PromptSpec,
    attributes: Tensor,
    mask: Tensor,
    scenes: Sequence[Scene],
    captions: Sequence[str],
    media: tuple[Tensor, Tensor, Tensor],
    redraw: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]],
    log_mel: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    varied: bool,
) -> Prompts:
    """The prompts of one batch (``OmniWorld.sample(..., prompts=spec)`` calls this).

    attributes ``(n, m, 4)`` and mask ``(n, m)`` describe the scenes; ``media`` are their
    images, waveforms and mels; ``redraw`` = (picture with ``grey (n,)`` scenes greyed,
    sound with ``untimed (n,)`` scenes held), both with the batch's own random draws.
    Only ``generator`` is consumed here, after the batch, so asking for prompts never
    changes the batch itself.
    """
    n = len(mask)
    present = mask[..., None].expand(-1, -1, len(ATTRIBUTES))
    p_free = torch.tensor([spec.p_free[a] for a in ATTRIBUTES])
    named = torch.rand(present.shape, generator=generator) >= p_free
    empty = torch.rand(n, generator=generator) < spec.p_empty
    grey = torch.rand(n, generator=generator) < spec.p_grey
    untimed = torch.rand(n, generator=generator) < spec.p_untimed
    rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))

    text_fixed = present & named & ~empty[:, None, None]
    image_fixed, audio_fixed = present.clone(), present.clone()
    image_fixed[grey, :, COLOUR] = False
    audio_fixed[untimed, :, POSITION] = False

    texts = []
    for i, (scene, words) in enumerate(zip(scenes, captions, strict=True)):
        rows = text_fixed[i, : len(scene)]
        if empty[i]:
            texts.append("")
        elif rows.all():  # fully specified: the scene's own caption, word for word
            texts.append(words)
        else:
            texts.append(caption(scene, rng if varied else None, rows.tolist()))

    images, waveforms, mels = media
    if grey.any():
        images = torch.where(grey[:, None, None, None], redraw[0](grey), images)
    if untimed.any():
        waveforms = torch.where(untimed[:, None], redraw[1](untimed), waveforms)
        mels = mels.clone()
        mels[untimed] = log_mel(waveforms[untimed])
    fixed = {"text": text_fixed, "image": image_fixed, "audio": audio_fixed}
    return Prompts(texts, images, waveforms, mels, fixed, spec)


# --- the data's own distribution of what a prompt leaves free ------------------------


@cache
def _objects() -> Tensor:
    """Every single object: ``(192, 4)`` int64 rows (shape, colour, size, position)."""
    return torch.cartesian_prod(*(torch.arange(len(VALUES[a])) for a in ATTRIBUTES))


@cache
def _allowed(split: str) -> Tensor:
    """Which of :func:`_objects` the split draws: ``(192,)`` bool."""
    pairs = allowed_pairs(split)
    table = torch.zeros(len(SHAPES), len(COLOURS), dtype=torch.bool)
    table[pairs[:, 0], pairs[:, 1]] = True
    objects = _objects()
    return table[objects[:, 0], objects[:, 1]]


def single_prompts(attributes: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor]:
    """``(n, 4)`` attributes and fixed mask (on the CPU, checked) from ``(n, 4)`` or
    single-object ``(n, 1, 4)``."""
    attributes, fixed = attributes.cpu(), fixed.cpu()
    if attributes.dim() == 3 and attributes.shape[1] == 1:
        attributes = attributes[:, 0]
    if fixed.dim() == 3 and fixed.shape[1] == 1:
        fixed = fixed[:, 0]
    if attributes.dim() != 2 or attributes.shape[1] != len(ATTRIBUTES):
        raise ValueError(
            f"attributes should be (n, 4) or (n, 1, 4), one object per prompt; got "
            f"{tuple(attributes.shape)}"
        )
    if fixed.shape != attributes.shape or fixed.dtype != torch.bool:
        raise ValueError(
            f"fixed should be a bool tensor shaped like attributes {tuple(attributes.shape)}; "
            f"got {fixed.dtype} {tuple(fixed.shape)}"
        )
    limits = torch.tensor([len(VALUES[a]) for a in ATTRIBUTES])
    if ((attributes < 0) | (attributes >= limits)).any():
        raise ValueError("attributes hold an index out of range (or -1, an absent object)")
    return attributes.long(), fixed


def _consistent(split: str, attributes: Tensor, fixed: Tensor) -> Tensor:
    """``(n, 192)`` bool: the objects of ``split`` that agree with each prompt."""
    if split not in SPLITS:
        raise ValueError(f"split should be one of {SPLITS}; got {split!r}")
    attributes, fixed = single_prompts(attributes, fixed)
    agree = (_objects()[None] == attributes[:, None]) | ~fixed[:, None]
    consistent = agree.all(dim=-1) & _allowed(split)[None]
    empty = ~consistent.any(dim=1)
    if empty.any():
        i = int(empty.nonzero()[0])
        said = {
            a: VALUES[a][int(v)]
            for a, v, f in zip(ATTRIBUTES, attributes[i], fixed[i], strict=True)
            if f
        }
        raise ValueError(f"no object of split {split!r} fits prompt {i} ({said})")
    return consistent


def conditional_distributions(split: str, attributes: Tensor, fixed: Tensor) -> dict[str, Tensor]:
    """The data's distribution of each attribute given what each prompt fixes.

    attributes: ``(n, 4)`` (or ``(n, 1, 4)``) a scene of each prompt; fixed: the same
    shape, bool. Returns ``{attribute: (n, n_values)}`` probabilities over
    ``VALUES[attribute]``: uniform over the single objects of ``split`` (its allowed
    shape-colour pairs) that agree with the fixed attributes. A fixed attribute gets all
    its mass on its value.
    """
    consistent = _consistent(split, attributes, fixed).float()
    total = consistent.sum(dim=1, keepdim=True)
    objects = _objects()
    # Count first, divide last: the counts are exact, so uniform rows come out exact.
    return {
        a: consistent @ torch.nn.functional.one_hot(objects[:, k], len(VALUES[a])).float() / total
        for k, a in enumerate(ATTRIBUTES)
    }


def conditional_distribution(
    split: str, fixed_values: Mapping[str, str | int], attribute: str
) -> Tensor:
    """The data's distribution of ``attribute`` given ``fixed_values``, one prompt.

    fixed_values: ``{attribute: value name or index}`` for what the prompt fixes, e.g.
    ``{"shape": "circle"}``. Returns ``(n_values,)`` probabilities over
    ``VALUES[attribute]``. ``conditional_distribution("train", {"shape": "circle"},
    "colour")`` is uniform over the five colours a training circle can have.
    """
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute should be one of {ATTRIBUTES}; got {attribute!r}")
    unknown = sorted(set(fixed_values) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"fixed_values keys should come from {ATTRIBUTES}; got {unknown}")
    row = torch.zeros(1, len(ATTRIBUTES), dtype=torch.long)
    fixed = torch.zeros(1, len(ATTRIBUTES), dtype=torch.bool)
    for k, a in enumerate(ATTRIBUTES):
        if a in fixed_values:
            value = fixed_values[a]
            row[0, k] = value_index(a, value) if isinstance(value, str) else int(value)
            fixed[0, k] = True
    return conditional_distributions(split, row, fixed)[attribute][0]


def sample_conditional(
    split: str, attributes: Tensor, fixed: Tensor, k: int, generator: torch.Generator
) -> Tensor:
    """``k`` single objects per prompt drawn from the data's conditional distribution.

    attributes, fixed: ``(n, 4)`` (or ``(n, 1, 4)``). Returns ``(n, k, 4)`` int64; the
    fixed columns repeat the prompt's values, the free ones are drawn (with replacement).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k should be a positive int (samples per prompt); got {k!r}")
    consistent = _consistent(split, attributes, fixed).float()
    picked = torch.multinomial(consistent, k, replacement=True, generator=generator)
    return _objects()[picked]
