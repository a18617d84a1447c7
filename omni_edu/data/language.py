"""OmniWorld's words: captions, a caption parser, and question/answer pairs.

Captions come from templates with synonyms ("a small red circle at the top left",
"i see a tiny crimson ring in the upper left corner"), so a model must learn meaning,
not strings. :func:`parse_caption` maps any caption (or a model's attempt at one) back
to attributes, which is how generated captions are scored. Everything is lower case
with no punctuation, so a word-level tokenizer covers it exactly (:func:`vocabulary`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from omni_edu.data.scene import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    row_col,
)

# The first synonym of each value is its canonical word.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {
        "circle": ("circle", "disc", "ring"),
        "square": ("square", "box", "block"),
        "triangle": ("triangle", "wedge", "pyramid"),
        "cross": ("cross", "plus"),
    },
    "colour": {
        "red": ("red", "crimson", "scarlet"),
        "yellow": ("yellow", "golden", "lemon"),
        "green": ("green", "emerald", "lime"),
        "cyan": ("cyan", "teal", "turquoise"),
        "blue": ("blue", "navy", "azure"),
        "purple": ("purple", "violet", "lilac"),
    },
    "size": {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")},
}
VERTICAL = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
HORIZONTAL = {"left": ("left",), "right": ("right",)}
WHERE_TEMPLATES = ("at the {v} {h}", "in the {v} {h} corner", "on the {v} {h}")
CAPTION_TEMPLATES = (
    "{objects}",
    "there is {objects}",
    "i see {objects}",
    "the scene has {objects}",
)
NUMBERS = ("zero", "one", "two", "three", "four")
# Nouns for an object whose shape a prompt leaves free ("a small red shape"); the first is
# the canonical one. "something" stands alone or before one adjective ("something red").
FREE_SHAPE_WORDS = ("shape", "thing")
SOMETHING = "something"

ABILITIES = ("attribute", "counting", "spatial", "matching")
QUESTION_MODALITIES = ("image", "audio", "image+audio")
_IN_MODALITY = {"image": "in the picture", "audio": "in the sound"}
RELATIONS = ("left of", "right of", "above", "below")

_WORD_TO_VALUE = {
    word: (attribute, value)
    for attribute, table in SYNONYMS.items()
    for value, words in table.items()
    for word in words
}
_WORD_TO_ROW = {w: v for v, words in VERTICAL.items() for w in words}
_WORD_TO_COL = {w: v for v, words in HORIZONTAL.items() for w in words}
_FREE_NOUNS = frozenset((*FREE_SHAPE_WORDS, SOMETHING))


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: the form captions are compared in."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _where(position: str, rng: random.Random | None) -> str:
    v, h = position.split()
    if rng is None:
        return WHERE_TEMPLATES[0].format(v=v, h=h)
    return rng.choice(WHERE_TEMPLATES).format(v=rng.choice(VERTICAL[v]), h=h)


def _word(attribute: str, value: str, rng: random.Random | None) -> str:
    words = SYNONYMS[attribute][value]
    return words[0] if rng is None else rng.choice(words)


def describe_object(
    obj: SceneObject, rng: random.Random | None = None, named: Sequence[bool] | None = None
) -> str:
    """ "a small red circle at the top left" (canonical words when ``rng`` is None).

    named: four bools in the order of ``ATTRIBUTES`` (shape, colour, size, position); an
    attribute marked False is left out, for a prompt that leaves it free: "a small
    circle", "something red at the top left", "a shape". Default: name all four.
    """
    said = dict(zip(ATTRIBUTES, (True,) * 4 if named is None else named, strict=True))
    adjectives = [_word(a, getattr(obj, a), rng) for a in ("size", "colour") if said[a]]
    if said["shape"]:
        phrase = f"a {' '.join([*adjectives, _word('shape', obj.shape, rng)])}"
    elif rng is not None and len(adjectives) <= 1 and rng.random() < 1 / 3:
        phrase = " ".join([SOMETHING, *adjectives])
    else:
        noun = FREE_SHAPE_WORDS[0] if rng is None else rng.choice(FREE_SHAPE_WORDS)
        phrase = f"a {' '.join([*adjectives, noun])}"
    return f"{phrase} {_where(obj.position, rng)}" if said["position"] else phrase


def caption(
    scene: Scene,
    rng: random.Random | None = None,
    named: Sequence[Sequence[bool]] | None = None,
) -> str:
    """A caption of ``scene``: random template and synonyms from ``rng``, or the
    canonical caption (first template, first synonyms, reading order) when ``rng`` is None.

    named: per object of ``scene`` (in its order), which attributes to name (see
    :func:`describe_object`); default all of them.
    """
    if named is not None and len(named) != len(scene):
        raise ValueError(f"named should have one row per object ({len(scene)}); got {len(named)}")
    rows = [None] * len(scene) if named is None else list(named)
    objects = list(zip(scene.objects, rows, strict=True))
    if rng is not None:
        rng.shuffle(objects)
    listed = " and ".join(describe_object(o, rng, row) for o, row in objects)
    template = CAPTION_TEMPLATES[0] if rng is None else rng.choice(CAPTION_TEMPLATES)
    return template.format(objects=listed)


def parse_caption(text: str) -> list[dict[str, str | None]]:
    """Read the objects a caption describes, in the order it mentions them.

    Returns one dict per object with keys shape, colour, size, position; a value is
    None where the caption does not say. Objects are separated by "and"; a part that
    names no attribute is an object only when it says so ("a shape", "something").
    Works on any text, so it can score a model's caption however wrong it is.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_caption expects a str; got {type(text).__name__}")
    objects = []
    for chunk in normalise(text).split(" and "):
        found: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
        row = col = None
        for word in chunk.split():
            if word in _WORD_TO_VALUE:
                attribute, value = _WORD_TO_VALUE[word]
                found[attribute] = found[attribute] or value
            row = row or _WORD_TO_ROW.get(word)
            col = col or _WORD_TO_COL.get(word)
        if row and col:
            found["position"] = f"{row} {col}"
        nouns = _FREE_NOUNS.intersection(chunk.split())
        if nouns or any(v is not None for v in found.values()):
            objects.append(found)
    return objects


def score_caption(text: str, scene: Scene) -> float:
    """Fraction of the scene's (object, attribute) facts a caption gets right, in [0, 1].

    Objects are matched by position when the caption gives one, else in order.
    Describing extra objects costs as much as missing ones.
    """
    parsed = parse_caption(text)
    by_position = {o.position: o for o in scene.objects}
    unmatched = [o for o in scene.objects]
    correct = 0
    for found in parsed:
        target = by_position.get(found["position"] or "")
        if target not in unmatched:
            target = unmatched[0] if unmatched else None
        if target is None:
            continue
        unmatched.remove(target)
        correct += sum(found[a] == getattr(target, a) for a in ATTRIBUTES)
    return correct / (len(ATTRIBUTES) * max(len(scene.objects), len(parsed)))


@dataclass(frozen=True)
class Question:
    """A multiple-choice question about one scene.

    ``modality`` says what the model is shown: the scene's "image", its "audio", or
    both ("image+audio", for matching a sound to a picture). ``options`` contains
    ``answer`` once, at ``answer_index``.
    """

    text: str
    answer: str
    options: tuple[str, ...]
    ability: str
    modality: str

    @property
    def answer_index(self) -> int:
        return self.options.index(self.answer)


def _matches(obj: SceneObject, keys: Sequence[str], other: SceneObject) -> bool:
    return all(getattr(obj, k) == getattr(other, k) for k in keys)


def refer(obj: SceneObject, scene: Scene, avoid: str | None = None) -> str | None:
    """The shortest phrase that picks out ``obj`` in ``scene`` without using attribute
    ``avoid``: "circle", "red object", "big red circle", "object at the top left".
    None when no such phrase exists (two identical objects, asked where they are)."""
    choices = [
        ("shape",),
        ("colour",),
        ("colour", "shape"),
        ("size", "shape"),
        ("size", "colour"),
        ("size", "colour", "shape"),
        ("position",),
    ]
    for keys in choices:
        if avoid in keys or sum(_matches(obj, keys, o) for o in scene.objects) != 1:
            continue
        if keys == ("position",):
            return f"object at the {obj.position}"
        words = [getattr(obj, k) for k in ("size", "colour") if k in keys]
        return " ".join([*words, obj.shape if "shape" in keys else "object"])
    return None


def _options(answer: str, pool: Sequence[str], rng: random.Random, n: int = 4) -> tuple[str, ...]:
    others = [p for p in dict.fromkeys(pool) if p != answer]
    options = [answer, *rng.sample(others, min(n - 1, len(others)))]
    rng.shuffle(options)
    return tuple(options)


def _relation_holds(a: SceneObject, relation: str, b: SceneObject) -> bool:
    (ra, ca), (rb, cb) = row_col(a.position), row_col(b.position)
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


def ask(
    scene: Scene,
    rng: random.Random,
    ability: str | None = None,
    modality: str | None = None,
) -> Question:
    """A random question about ``scene`` that can be answered from one modality.

    ability: "attribute", "counting" or "spatial" (needs two or more objects);
    None picks one the scene supports. modality: "image" or "audio" (None: random).
    Matching questions need a second scene; see ``OmniWorld.matching``.
    """
    if ability is None:
        ability = rng.choice(ABILITIES[:3] if len(scene) > 1 else ABILITIES[:2])
    if ability not in ABILITIES[:3]:
        raise ValueError(
            f"ability should be one of {ABILITIES[:3]} (matching questions come from "
            f"OmniWorld.matching); got {ability!r}"
        )
    if ability == "spatial" and len(scene) < 2:
        raise ValueError("spatial questions need a scene with at least 2 objects; got 1")
    modality = modality or rng.choice(QUESTION_MODALITIES[:2])
    if modality not in _IN_MODALITY:
        raise ValueError(f"modality should be 'image' or 'audio'; got {modality!r}")
    where = _IN_MODALITY[modality]

    if ability == "attribute":
        pairs = [(a, o) for a in ATTRIBUTES for o in scene.objects if refer(o, scene, a)]
        attribute, obj = rng.choice(pairs)
        ref = refer(obj, scene, avoid=attribute)
        text = (
            f"where is the {ref} {where}"
            if attribute == "position"
            else f"what {attribute} is the {ref} {where}"
        )
        answer = getattr(obj, attribute)
        pool = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}
        return Question(text, answer, _options(answer, pool[attribute], rng), ability, modality)

    if ability == "counting":
        kind = rng.choice(("all", "colour", "shape", "size"))
        if kind == "all":
            text, count = f"how many objects are there {where}", len(scene)
        else:
            # Mostly a value the scene has; sometimes any value, so "zero" is an answer too.
            if rng.random() < 0.75:
                value = getattr(rng.choice(scene.objects), kind)
            else:
                value = rng.choice({"colour": COLOURS, "shape": SHAPES, "size": SIZES}[kind])
            count = sum(getattr(o, kind) == value for o in scene.objects)
            text = f"how many {value} objects are there {where}"
        answer = NUMBERS[count]
        return Question(text, answer, _options(answer, NUMBERS, rng), ability, modality)

    a, b = rng.sample(scene.objects, 2)
    holding = [r for r in RELATIONS if _relation_holds(a, r, b)]
    relation = rng.choice(holding)
    ref_a, ref_b = refer(a, scene), refer(b, scene)
    if rng.random() < 0.5:  # yes/no, half of them with a relation that does not hold
        if rng.random() < 0.5:
            relation = rng.choice([r for r in RELATIONS if r not in holding])
        text = f"is the {ref_a} {relation} the {ref_b} {where}"
        answer = "yes" if _relation_holds(a, relation, b) else "no"
        return Question(text, answer, _options(answer, ("yes", "no"), rng), ability, modality)
    # "what is <relation> the b": only asked when exactly one object qualifies
    qualifying = [o for o in scene.objects if o != b and _relation_holds(o, relation, b)]
    if len(qualifying) != 1:
        return ask(scene, rng, "spatial", modality)
    answer = f"{a.colour} {a.shape}"
    pool = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    near = [f"{o.colour} {o.shape}" for o in scene.objects if o != a]
    options = _options(answer, near + rng.sample(pool, 6), rng)
    return Question(f"what is {relation} the {ref_b} {where}", answer, options, ability, modality)


MATCH_QUESTION = "does the sound match the picture"


def vocabulary() -> list[str]:
    """Every word a caption, question or answer of OmniWorld can contain, sorted."""
    words = set(_WORD_TO_VALUE) | set(_WORD_TO_ROW) | set(_WORD_TO_COL) | _FREE_NOUNS
    templates = [*WHERE_TEMPLATES, *CAPTION_TEMPLATES, *_IN_MODALITY.values(), *RELATIONS]
    templates += [
        "a and what is the where how many objects are there does the sound match the picture",
        "object at yes no",
        *NUMBERS,
        *SHAPES,
        *COLOURS,
        *SIZES,
        *POSITIONS,
        *ATTRIBUTES,
    ]
    for template in templates:
        words.update(w for w in re.findall(r"[a-z]+", template) if w not in ("v", "h"))
    return sorted(words)
