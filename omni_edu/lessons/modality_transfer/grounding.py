"""Lesson 06b: the data of the grounding test - words whose meaning only sounds and
pictures carry, and the text questions that use them.

Scenes hold one or two objects of different shapes, so a text question can name an object
by its shape ("what colour is the circle", "where is the box"); with two, the caption
must be searched for the right one. Some words are **grounded only**: one colour synonym
per colour (``crimson`` for red) and the row words ``upper`` / ``lower``. They never appear
in a training question's caption. Every model reads them in the same captions elsewhere -
documents that pair a caption with a sound or a picture (text -> sound, sound -> text,
text -> picture, picture -> text) - and the arms differ only in *whose* sound or picture
that is:

* **paired**: the scene's own, so "crimson" sits next to the pitch and the hue of red, and
  "upper" next to a tone early in the clip (position is *when* an object sounds) and an
  object in the picture's top row;
* **shuffled**: another scene's (a fixed derangement): the same tokens, the same number
  of documents, the pairing broken - the extra data without the grounding.

Questions teach two words per colour (the canonical one and one taught synonym:
``red``, ``scarlet``), so a model learns to *map* a colour word to its answer rather than
copy it. The test asks text questions whose captions use the grounded words: ``a small
crimson circle at the upper left`` / ``what colour is the circle`` -> ``red``. Copying the
word is wrong; only a model that has tied ``crimson`` to red somewhere can answer. The
same questions with taught words are the controls: they show whether a model learned the
task at all.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.data import OmniBatch, OmniWorld, PromptSpec, Question
from omni_edu.data.scene import COLOURS, POSITIONS, Scene, SceneObject
from omni_edu.modalities import Modality, TextTokenizer
from omni_edu.model.interleave import Segment, SpecialTokens, text_segment
from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import Profile

# Words only media documents use (never a training question's caption).
GROUNDED_COLOUR = {
    "red": "crimson",
    "yellow": "golden",
    "green": "emerald",
    "cyan": "teal",
    "blue": "navy",
    "purple": "violet",
}
GROUNDED_ROW = {"top": "upper", "bottom": "lower"}
GROUNDED_WORDS = (*GROUNDED_COLOUR.values(), *GROUNDED_ROW.values())
# The synonym per colour that questions teach besides the canonical word.
TAUGHT_COLOUR = {
    "red": "scarlet",
    "yellow": "lemon",
    "green": "lime",
    "cyan": "turquoise",
    "blue": "azure",
    "purple": "lilac",
}
KINDS = ("colour", "where")  # what a question asks: an object's colour, or its cell
PAIRINGS = ("paired", "shuffled")
SOUND_TASKS = ("text->audio", "audio->text")
PICTURE_TASKS = ("text->image", "image->text")
MEDIA_TASKS = (*SOUND_TASKS, *PICTURE_TASKS)
# How captions choose their words: "taught" (the words questions use: canonical or taught
# colour words, canonical rows), "any" (grounded words too), "grounded" (colour only).
WORDINGS = ("taught", "any")


def describe(obj: SceneObject, colour_word: str, row_word: str) -> str:
    """``"a small crimson circle at the upper left"``: the object in the given words."""
    _, column = obj.position.split()
    return f"a {obj.size} {colour_word} {obj.shape} at the {row_word} {column}"


def question(obj: SceneObject, kind: str) -> Question:
    """``what colour is the circle`` -> ``red``, or ``where is the circle`` -> ``top left``."""
    if kind == "colour":
        return Question(f"what colour is the {obj.shape}", obj.colour, COLOURS, "attribute", "text")
    if kind == "where":
        return Question(f"where is the {obj.shape}", obj.position, POSITIONS, "attribute", "text")
    raise ValueError(f"kind should be one of {KINDS}; got {kind!r}.")


def _colour_word(obj: SceneObject, style: str, rng: random.Random) -> str:
    if style == "taught":
        style = rng.choice(("canonical", "taught synonym"))
    elif style == "any":  # the grounded word half the time: what stage B is for
        style = rng.choice(("canonical", "taught synonym", "grounded", "grounded"))
    return {
        "canonical": obj.colour,
        "taught synonym": TAUGHT_COLOUR[obj.colour],
        "grounded": GROUNDED_COLOUR[obj.colour],
    }[style]


def _row_word(obj: SceneObject, style: str, rng: random.Random) -> str:
    row = obj.position.split()[0]
    if style == "any":
        style = rng.choice(("canonical", "grounded"))
    return GROUNDED_ROW[row] if style == "grounded" else row


def caption_of(
    scene: Scene,
    colour: str,
    row: str,
    rng: random.Random,
    grounded_colour: int | None = None,
) -> str:
    """A caption of ``scene``, objects in a random order, with colour words in style
    ``colour`` ("taught", "any", "grounded") and row words in style ``row`` ("canonical",
    "any", "grounded"); object ``grounded_colour`` (an index) takes its grounded colour
    word whatever the style."""
    parts = []
    for k, obj in enumerate(scene.objects):
        style = "grounded" if grounded_colour == k else colour
        parts.append(describe(obj, _colour_word(obj, style, rng), _row_word(obj, row, rng)))
    rng.shuffle(parts)
    return " and ".join(parts)


class GroundingWorld(OmniWorld):
    """OmniWorld scenes of ``n_objects`` (default one or two) objects of different shapes,
    so that a question can name an object by its shape alone ("the circle")."""

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        profile: Profile | None = None,
        n_objects: int | tuple[int, int] = (1, 2),
    ) -> None:
        super().__init__(split, seed, profile, n_objects=n_objects, caption_style="canonical")

    def sample(self, n: int, seed: int | None = None, prompts: PromptSpec | None = None):
        drawn: OmniBatch = super().sample(3 * n + 16, seed, prompts)
        if drawn.attributes.shape[1] < 2:
            return drawn[:n]
        shapes, present = drawn.attributes[:, :, 0], drawn.mask
        distinct = torch.tensor(
            [len(set(s[p].tolist())) == int(p.sum()) for s, p in zip(shapes, present, strict=True)]
        )
        keep = distinct.nonzero()[:, 0][:n]
        if len(keep) < n:  # pragma: no cover - three draws per scene leave plenty
            raise RuntimeError(f"only {len(keep)} of {3 * n + 16} scenes had distinct shapes.")
        return drawn[keep]


def qa_document(
    tokenizer: TextTokenizer, q: Question, caption: str, answer: bool = True
) -> list[Segment]:
    """``<answer> caption question <sep>`` read, then the answer trained (or the prompt
    alone); an empty caption makes a blind question."""
    return a2a.question_document(tokenizer, q, caption, "text", answer)


def _derangement(n: int, g: torch.Generator) -> Tensor:
    """A permutation of ``range(n)`` that moves every index."""
    order = torch.randperm(n, generator=g)
    out = torch.empty(n, dtype=torch.long)
    out[order] = order.roll(int(torch.randint(1, n, (1,), generator=g)))
    return out


class GroundingData(a2a.AnyToAnyData):
    """A pool for the grounding test: text questions, and captions with sounds and pictures.

    Args:
        world: a :class:`GroundingWorld`.
        n: scenes.
        sound, picture: ``"paired"`` or ``"shuffled"``: whose sound (picture) a caption
            document carries, the scene's own or another scene's.
        wording: the captions of the media documents: ``"taught"`` (the words questions
            use) or ``"any"`` (grounded words too: half of the colour and row words).
        seed: the pool's draw of scenes, questions and words.
        blind: questions without their caption (a blind baseline's training data).

    Tasks: ``"question"`` (caption + question -> answer; the caption uses taught words),
    ``"text"`` (a media caption alone) and :data:`MEDIA_TASKS`.
    """

    def __init__(
        self,
        world: OmniWorld,
        n: int,
        sound: str = "paired",
        picture: str = "paired",
        wording: str = "any",
        seed: int = 0,
        blind: bool = False,
    ) -> None:
        for name, value in (("sound", sound), ("picture", picture)):
            if value not in PAIRINGS:
                raise ValueError(f"{name} should be one of {PAIRINGS}; got {value!r}.")
        if wording not in WORDINGS:
            raise ValueError(f"wording should be one of {WORDINGS}; got {wording!r}.")
        tasks = (a2a.QUESTION, "text", *MEDIA_TASKS)
        super().__init__(world, n, tasks=tasks, seed=seed, question_modality="text")
        rng = random.Random(seed)
        scenes = self.batch.scenes
        self.questions = [question(rng.choice(s.objects), rng.choice(KINDS)) for s in scenes]
        self.qa_captions = [caption_of(s, "taught", "canonical", rng) for s in scenes]
        rows = "any" if wording == "any" else "canonical"
        self.media_captions = [caption_of(s, wording, rows, rng) for s in scenes]
        self.blind = blind
        self.pairing = {"sound": sound, "picture": picture}
        g = torch.Generator().manual_seed(seed + 7)
        self.partner = {
            "audio": _derangement(len(self), g) if sound == "shuffled" else torch.arange(n),
            "image": _derangement(len(self), g) if picture == "shuffled" else torch.arange(n),
        }

    def document(self, task: str, i: int, with_target: bool = True) -> list[Segment]:
        if task == a2a.QUESTION:
            caption = "" if self.blind else self.qa_captions[i]
            return qa_document(self.tokenizer, self.questions[i], caption, with_target)
        if task == "text":
            return [text_segment(self.tokenizer.encode(self.media_captions[i]))]
        d = a2a.get_direction(task)
        media = d.target if d.source == "text" else d.source
        j = int(self.partner[media][i])
        item = self.patches[j] if media == "image" else self.audio[j]
        if d.source == "text":
            return a2a.make_document(
                d, self.tokenizer, self.media_captions[i], item if with_target else None
            )
        return a2a.make_document(
            d, self.tokenizer, item, self.media_captions[i] if with_target else None
        )

    def majority_answers(self) -> dict[str, str]:
        """The commonest training answer per kind of question: a blind rule's answers."""
        by_kind: dict[str, Counter] = {kind: Counter() for kind in KINDS}
        for q in self.questions:
            by_kind[_kind(q)][q.answer] += 1
        return {kind: counts.most_common(1)[0][0] for kind, counts in by_kind.items() if counts}


def _kind(q: Question) -> str:
    return "colour" if q.text.startswith("what colour") else "where"


@dataclass
class TestSet:
    """Held-out text questions: prompt documents with their captions, the same without
    (what a blind model is asked), and the answers."""

    name: str
    kind: str  # "colour" or "where"
    words: str  # "grounded" or "taught"
    objects: int  # objects per scene
    prompts: list[list[Segment]]
    blind_prompts: list[list[Segment]]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.answers)


def test_sets(
    profile: Profile | None, n: int, objects: Sequence[int] = (1, 2), seed: int = 1
) -> dict[str, TestSet]:
    """Held-out questions, ``n`` per set: for scenes of each number of ``objects``, colour
    and where questions whose captions use the grounded words (the asked object's colour
    word; every row word) and the same with taught words (the controls). Names read
    ``"grounded colour, 1 object"``."""
    tokenizer = TextTokenizer()
    out = {}
    for count in objects:
        world = GroundingWorld("test", seed=seed, profile=profile, n_objects=count)
        scenes = world.sample(n, seed=seed).scenes
        for kind in KINDS:
            for words in ("grounded", "taught"):
                rng = random.Random(f"{seed}-{count}-{kind}-{words}")
                prompts, blinds, answers = [], [], []
                for scene in scenes:
                    k = rng.randrange(len(scene))
                    q = question(scene.objects[k], kind)
                    ground = words == "grounded"
                    text = caption_of(
                        scene,
                        "taught",
                        "grounded" if ground and kind == "where" else "canonical",
                        rng,
                        grounded_colour=k if ground and kind == "colour" else None,
                    )
                    prompts.append(qa_document(tokenizer, q, text, answer=False))
                    blinds.append(qa_document(tokenizer, q, "", answer=False))
                    answers.append(q.answer)
                name = f"{words} {kind}, {count} object{'s' * (count > 1)}"
                out[name] = TestSet(name, kind, words, count, prompts, blinds, answers)
    return out


@torch.no_grad()
def answers_of(
    model: OmniLM, test: TestSet, blind: bool = False, batch_size: int = 512
) -> list[str]:
    """The model's greedy answer (at most three words) to every question of ``test``
    (asked without the captions when ``blind``)."""
    tokenizer = TextTokenizer()
    specials = SpecialTokens.from_vocab(tokenizer.ids)
    prompts = test.blind_prompts if blind else test.prompts
    model.eval()
    out = []
    for start in range(0, len(test), batch_size):
        ids = model.generate(
            prompts[start : start + batch_size],
            Modality.TEXT,
            n_tokens=3,
            stop_id=tokenizer.eos_id,
            specials=specials,
        )
        out += [tokenizer.decode(x, skip_special=True) for x in ids]
    return out
