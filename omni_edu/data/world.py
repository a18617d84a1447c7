"""OmniWorld: one scene, three modalities, generated in batches.

Example::

    world = OmniWorld("train", seed=0, n_objects=(1, 2))
    batch = world.sample(64)      # the next 64 samples of the train stream
    batch.images.shape            # (64, 3, H, W); also .waveforms, .mels, .captions, ...
    show_sample(batch[0])         # picture, spectrogram, caption (omni_edu.viz.omniworld)
    world.sample(64, seed=0, prompts=PromptSpec.uniform(0.5))  # + prompts that leave
                                  # attributes free (batch.prompts; see omni_edu.data.prompts)

A world is a deterministic stream: the same split, seed and sequence of ``sample``
calls always gives the same data (``sample(n, seed=s)`` gives a fixed batch instead).
"train" and "test" share one distribution but not their random streams; "heldout"
uses only the shape-colour pairs that "train" never shows.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch

from omni_edu.data.language import MATCH_QUESTION, Question, ask, caption
from omni_edu.data.prompts import Prompts, PromptSpec, make_prompts, sample_conditional
from omni_edu.data.render import render_images
from omni_edu.data.scene import (
    ATTRIBUTES,
    MAX_OBJECTS,
    SPLITS,
    VALUES,
    Scene,
    allowed_pairs,
    sample_attributes,
    scenes_to_tensor,
    tensor_to_scenes,
)
from omni_edu.data.sound import synthesize_audio
from omni_edu.modalities.audio import MelConfig, log_mel
from omni_edu.profiles import Profile, get_profile


@dataclass
class OmniSample:
    """One sample, for looking at (:func:`omni_edu.viz.omniworld.show_sample`) and listening
    to (:func:`omni_edu.viz.omniworld.play`). The world does not draw itself: ``data``
    never imports ``viz``."""

    image: torch.Tensor  # (3, H, W)
    waveform: torch.Tensor  # (samples,)
    mel: torch.Tensor  # (frames, n_mels)
    caption: str
    scene: Scene
    question: Question | None
    sample_rate: int
    mel_config: MelConfig = field(repr=False)


@dataclass
class OmniBatch:
    """A batch of OmniWorld samples.

    images ``(n, 3, H, W)`` in [0, 1]; waveforms ``(n, samples)`` in [-1, 1];
    mels ``(n, frames, n_mels)``; attributes ``(n, max_objects, 4)`` int64 with columns
    (shape, colour, size, position) and -1 for absent objects; mask ``(n, max_objects)``
    True where an object exists. ``captions``, ``scenes`` and ``questions`` are lists
    of length n. ``prompts`` (:class:`~omni_edu.data.prompts.Prompts`, or None unless
    asked for) holds each scene's prompt in text, picture and sound, and what each fixes.
    Index with an int for an :class:`OmniSample`, with a slice or index tensor for a
    smaller batch (its prompts come along).
    """

    images: torch.Tensor
    waveforms: torch.Tensor
    mels: torch.Tensor
    attributes: torch.Tensor
    mask: torch.Tensor
    captions: list[str]
    scenes: list[Scene]
    questions: list[Question]
    sample_rate: int
    mel_config: MelConfig = field(repr=False)
    prompts: Prompts | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor) and index.dim() == 0:
            index = int(index)
        if not isinstance(index, (slice, list, tuple, torch.Tensor)):
            index = operator.index(index)  # ints, numpy ints
            return OmniSample(
                self.images[index],
                self.waveforms[index],
                self.mels[index],
                self.captions[index],
                self.scenes[index],
                self.questions[index],
                self.sample_rate,
                self.mel_config,
            )
        picked = torch.arange(len(self))[index]
        listed = picked.tolist()
        return replace(
            self,
            **{f: getattr(self, f)[picked] for f in _TENSOR_FIELDS},
            captions=[self.captions[i] for i in listed],
            scenes=[self.scenes[i] for i in listed],
            questions=[self.questions[i] for i in listed],
            prompts=None if self.prompts is None else self.prompts.select(picked),
        )

    def to(self, device: torch.device | str) -> OmniBatch:
        """The same batch with its tensors on ``device``."""
        prompts = None if self.prompts is None else self.prompts.to(device)
        moved = {f: getattr(self, f).to(device) for f in _TENSOR_FIELDS}
        return replace(self, **moved, prompts=prompts)

    @property
    def n_objects(self) -> torch.Tensor:
        """Objects per scene: ``(n,)`` int64."""
        return self.mask.sum(dim=1)

    def attribute(self, name: str) -> torch.Tensor:
        """One attribute of every object: ``(n, max_objects)`` int64, -1 where absent.
        For single-object worlds ``batch.attribute("colour")[:, 0]`` are probe labels."""
        if name not in ATTRIBUTES:
            raise ValueError(f"attribute should be one of {ATTRIBUTES}; got {name!r}")
        return self.attributes[..., ATTRIBUTES.index(name)]


_TENSOR_FIELDS = ("images", "waveforms", "mels", "attributes", "mask")


@dataclass
class MatchBatch:
    """Pictures paired with sounds that match them or not (a cross-modal task).

    images ``(n, 3, H, W)`` show ``image_attributes``; waveforms/mels ``(n, samples)`` /
    ``(n, frames, n_mels)`` sound ``audio_attributes``; ``match (n,)`` bool says whether
    the sound belongs to the picture; ``questions`` ask exactly that.
    """

    images: torch.Tensor
    waveforms: torch.Tensor
    mels: torch.Tensor
    image_attributes: torch.Tensor
    image_mask: torch.Tensor
    audio_attributes: torch.Tensor
    audio_mask: torch.Tensor
    match: torch.Tensor
    questions: list[Question]
    sample_rate: int
    mel_config: MelConfig = field(repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> MatchBatch:
        """The same batch with its tensors on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def _check_count(n: int, what: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{what} should be a positive int (how many samples); got {n!r}")


class OmniWorld:
    """A stream of OmniWorld samples.

    split: "train", "test" or "heldout". seed: any non-negative int. profile: sizes
    (image_size, sample_rate, audio_seconds, n_mels); default the active profile.
    n_objects: objects per scene, an int or an inclusive range ``(low, high)`` within
    1..4; tensors are padded to ``high`` objects. caption_style: "varied" (random
    templates and synonyms) or "canonical" ("a small red circle at the top left"; easier
    for the smallest models).
    """

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        profile: Profile | None = None,
        n_objects: int | tuple[int, int] = 1,
        caption_style: str = "varied",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split should be one of {SPLITS}; got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed should be a non-negative int; got {seed!r}")
        counts = (n_objects, n_objects) if isinstance(n_objects, int) else n_objects
        if (
            not isinstance(counts, (tuple, list))
            or len(counts) != 2
            or not all(isinstance(c, int) for c in counts)
            or not (1 <= counts[0] <= counts[1] <= MAX_OBJECTS)
        ):
            raise ValueError(
                f"n_objects should be an int or a range (low, high) with "
                f"1 <= low <= high <= {MAX_OBJECTS}; got {n_objects!r}"
            )
        if caption_style not in ("varied", "canonical"):
            raise ValueError(
                f"caption_style should be 'varied' (random templates and synonyms) or "
                f"'canonical' (one fixed wording); got {caption_style!r}"
            )
        self.split = split
        self.seed = seed
        self.profile = profile or get_profile()
        self.n_objects = (counts[0], counts[1])
        self.caption_style = caption_style
        self.mel_config = MelConfig.from_profile(self.profile)
        self.image_size = self.profile.image_size
        self.sample_rate = self.profile.sample_rate
        self.n_samples = round(self.profile.sample_rate * self.profile.audio_seconds)
        self._generator = torch.Generator().manual_seed(self._stream_seed(0))

    def __repr__(self) -> str:
        return (
            f"OmniWorld(split={self.split!r}, seed={self.seed}, profile={self.profile.name!r}, "
            f"n_objects={self.n_objects}, caption_style={self.caption_style!r})"
        )

    @property
    def max_objects(self) -> int:
        return self.n_objects[1]

    def _stream_seed(self, offset: int) -> int:
        # Distinct seeds for each (split, world seed, batch seed), so splits never share noise.
        return (self.seed * 1_000_003 + offset) * len(SPLITS) + SPLITS.index(self.split)

    def _generator_for(self, seed: int | None) -> torch.Generator:
        if seed is None:
            return self._generator
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed should be a non-negative int or None; got {seed!r}")
        return torch.Generator().manual_seed(self._stream_seed(seed + 1))

    def sample(
        self, n: int, seed: int | None = None, prompts: PromptSpec | None = None
    ) -> OmniBatch:
        """``n`` new samples. Without ``seed`` they continue the world's stream; with a
        seed they are a fixed batch (the same every time).

        prompts: a :class:`~omni_edu.data.prompts.PromptSpec` fills ``batch.prompts``
        with prompts that may leave attributes free. The batch itself is the same with or
        without them; the prompts are drawn after it from the same generator (so, without
        a seed, the *next* batch of the stream depends on whether prompts were asked for).
        """
        _check_count(n)
        generator = self._generator_for(seed)
        attributes, mask = sample_attributes(n, self.n_objects, self.split, generator)
        return self.render(attributes, mask, generator=generator, prompts=prompts)

    def sample_given(
        self, attributes: torch.Tensor, fixed: torch.Tensor, k: int, seed: int = 0
    ) -> OmniBatch:
        """``k`` real single-object samples per prompt, its free attributes drawn from the
        data's conditional distribution (this world's split) and its fixed ones kept.

        attributes, fixed: ``(n, 4)`` or ``(n, 1, 4)``, a scene of each prompt and what
        the prompt fixes. Returns a batch of ``n * k`` samples, prompt-major (row
        ``i * k + j`` is sample j of prompt i): what a perfect sampler would draw.
        """
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed should be a non-negative int; got {seed!r}")
        # A stream of its own, far from those of sample(): these are reference draws.
        generator = torch.Generator().manual_seed(2**40 + self._stream_seed(seed))
        drawn = sample_conditional(self.split, attributes, fixed, k, generator).flatten(0, 1)
        mask = torch.ones(len(drawn), 1, dtype=torch.bool)
        return self.render(drawn[:, None], mask, generator=generator)

    def render(
        self,
        scenes: Sequence[Scene] | torch.Tensor,
        mask: torch.Tensor | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        prompts: PromptSpec | None = None,
    ) -> OmniBatch:
        """Samples of chosen scenes: a list of :class:`Scene`, or ``attributes (n, k, 4)``
        with its ``mask (n, k)``. No split check: draw anything you like. ``prompts``:
        as in :meth:`sample`."""
        if isinstance(scenes, torch.Tensor):
            if mask is None:
                raise ValueError("render(attributes, mask): the mask is missing")
            attributes = scenes
        else:
            _check_count(len(scenes), "len(scenes)")
            attributes, mask = scenes_to_tensor(scenes)
        if prompts is not None and not isinstance(prompts, PromptSpec):
            raise TypeError(f"prompts should be a PromptSpec or None; got {type(prompts).__name__}")
        generator = generator or torch.Generator().manual_seed(self._stream_seed(seed + 1))
        # Prompt pictures and sounds are the same scenes redrawn with the same random draws
        # (jitter, noise, detuning), so remember where each draw started.
        image_state = generator.get_state()
        images = render_images(attributes, mask, self.image_size, generator)
        audio_state = generator.get_state()
        waveforms = synthesize_audio(
            attributes, mask, self.sample_rate, self.profile.audio_seconds, generator
        )
        scene_list = tensor_to_scenes(attributes, mask)
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        varied = self.caption_style == "varied"
        batch = OmniBatch(
            images=images,
            waveforms=waveforms,
            mels=log_mel(waveforms, self.mel_config),
            attributes=attributes,
            mask=mask,
            captions=[caption(s, rng if varied else None) for s in scene_list],
            scenes=scene_list,
            questions=[ask(s, rng) for s in scene_list],
            sample_rate=self.sample_rate,
            mel_config=self.mel_config,
        )
        if prompts is None:
            return batch

        # The random draws do not depend on the mask, so masking the other scenes out
        # redraws only the scenes that change, with their own draws.
        def grey_picture(grey: torch.Tensor) -> torch.Tensor:
            again = torch.Generator().set_state(image_state)
            only = mask & grey[:, None]
            return render_images(attributes, only, self.image_size, again, grey=grey)

        def untimed_sound(untimed: torch.Tensor) -> torch.Tensor:
            again = torch.Generator().set_state(audio_state)
            only, seconds = mask & untimed[:, None], self.profile.audio_seconds
            return synthesize_audio(attributes, only, self.sample_rate, seconds, again, untimed)

        batch.prompts = make_prompts(
            prompts,
            attributes,
            mask,
            scene_list,
            batch.captions,
            (batch.images, batch.waveforms, batch.mels),
            (grey_picture, untimed_sound),
            lambda w: log_mel(w, self.mel_config),
            generator,
            varied,
        )
        return batch

    def matching(
        self,
        n: int,
        seed: int | None = None,
        p_match: float = 0.5,
        sound: str = "scene",
    ) -> MatchBatch:
        """Pictures with sounds that match them or not, for cross-modal matching and fusion.

        sound="scene": the sound is the whole scene (match) or the scene with one
        attribute of one object changed (mismatch: a near miss, so both must be examined).
        sound="object": the sound is a single object, one of those pictured (match) or an
        object that is not in the picture, one attribute away from a pictured one.
        Changed objects stay inside the split's shape-colour pairs.
        """
        _check_count(n)
        if sound not in ("scene", "object"):
            raise ValueError(f"sound should be 'scene' or 'object'; got {sound!r}")
        if not 0.0 <= p_match <= 1.0:
            raise ValueError(f"p_match should be a probability in [0, 1]; got {p_match}")
        generator = self._generator_for(seed)
        attributes, mask = sample_attributes(n, self.n_objects, self.split, generator)
        match = torch.rand(n, generator=generator) < p_match
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        allowed = {tuple(p) for p in allowed_pairs(self.split).tolist()}
        heard, heard_mask = [], []
        for rows, present, same in zip(
            attributes.tolist(), mask.tolist(), match.tolist(), strict=True
        ):
            objects = [r for r, p in zip(rows, present, strict=True) if p]
            if sound == "object":
                chosen = rng.choice(objects)
                objects = [chosen if same else _near_miss(chosen, objects, allowed, rng)]
            elif not same:
                i = rng.randrange(len(objects))
                objects[i] = _near_miss(objects[i], objects, allowed, rng)
            objects.sort(key=lambda r: r[3])
            pad = self.max_objects - len(objects)
            heard.append(objects + [[-1] * 4] * pad)
            heard_mask.append([True] * len(objects) + [False] * pad)
        audio_attributes, audio_mask = torch.tensor(heard), torch.tensor(heard_mask)
        images = render_images(attributes, mask, self.image_size, generator)
        waveforms = synthesize_audio(
            audio_attributes, audio_mask, self.sample_rate, self.profile.audio_seconds, generator
        )
        questions = [
            Question(
                MATCH_QUESTION,
                "yes" if m else "no",
                tuple(rng.sample(["yes", "no"], 2)),
                "matching",
                "image+audio",
            )
            for m in match.tolist()
        ]
        return MatchBatch(
            images=images,
            waveforms=waveforms,
            mels=log_mel(waveforms, self.mel_config),
            image_attributes=attributes,
            image_mask=mask,
            audio_attributes=audio_attributes,
            audio_mask=audio_mask,
            match=match,
            questions=questions,
            sample_rate=self.sample_rate,
            mel_config=self.mel_config,
        )


def _near_miss(
    obj: list[int], scene: list[list[int]], allowed: set[tuple[int, int]], rng: random.Random
) -> list[int]:
    """A copy of ``obj`` with one attribute changed, not equal to any object of ``scene``,
    keeping its shape-colour pair in ``allowed`` and its cell free (or its own)."""
    taken = {r[3] for r in scene} - {obj[3]}
    candidates = []
    for column, attribute in enumerate(ATTRIBUTES):
        for value in range(len(VALUES[attribute])):
            new = list(obj)
            new[column] = value
            if new != obj and new not in scene and (new[0], new[1]) in allowed:
                if new[3] == obj[3] or new[3] not in taken:
                    candidates.append(new)
    return rng.choice(candidates)
