"""Checks for lesson 09's exercises: the circular-evaluation scorer and a blind probe.

The references live in :mod:`omni_edu.lessons.evaluation.benchmark` (``circular_correct``,
``blind_accuracy``); the answerers below are tiny stand-ins whose behaviour is known
exactly, so a learner's function can be compared with the reference on every case. Every check takes
``show_recipe=True`` (show the full recipe now) and ``time_limit`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from omni_edu.grading import Case, CheckResult, Hints, check_function
from omni_edu.lessons.evaluation.benchmark import MCItem, blind_accuracy, circular_correct

CIRCULAR_CORRECT = Hints(
    "circular_correct",
    nudge="Ask the same question once per rotation of its options (the right answer moves "
    "with its option) and count the item right only if every rotation is answered right.",
    failed="Make one version of the item per rotation, move answer_index with its option, "
    "and require ALL versions right.",
    recipe="Make n versions of the item (n = number of options), version s with options "
    "rotated left by s: options[s:] + options[:s]. The answer moves with its option to "
    "(answer_index - s) % n. Ask the answerer about all of them (choose(answerer, items) "
    "gives the picked indices) and return True only if every pick is right.",
)

BLIND_ACCURACY = Hints(
    "blind_accuracy",
    nudge="Hide everything a model could see - the picture AND the sound of every item - "
    "and score its answers to what is left (the question and the options).",
    failed="Blank both inputs of every item with zeros, then score the picks against answer_index.",
    recipe="Blank both inputs of every item: replace image and mel by zeros "
    "(dataclasses.replace(item, image=torch.zeros_like(item.image), mel=...)). Then "
    "choose(answerer, blanked) gives the picks; return the share that equals answer_index.",
)


def _item(options: Sequence[str], answer_index: int, ability: str = "attribute") -> MCItem:
    """An item whose picture encodes its answer's *text* (so rotating it keeps it right)."""
    image = torch.zeros(3, 4, 4)
    mel = torch.zeros(8, 4)
    return MCItem("what colour is it", tuple(options), answer_index, ability, "image", image, mel)


def _seen_answer(item: MCItem) -> str | None:
    """The answer text a stand-in model reads from the item's picture or sound, if any.

    Pictures carry the answer as (index of the answer's first letter + 1) in pixel 0;
    sounds carry it in frame 0 the same way. Blank inputs carry nothing.
    """
    for signal in (item.image.flatten()[0], item.mel.flatten()[0]):
        if signal > 0:
            letter = chr(ord("a") + int(signal) - 1)
            return next((o for o in item.options if o.startswith(letter)), None)
    return None


def oracle(items: Sequence[MCItem]) -> list[int]:
    """Knows every answer (cheats by reading ``answer_index``): always right."""
    return [it.answer_index for it in items]


def always_a(items: Sequence[MCItem]) -> list[int]:
    """The letter-A shortcut."""
    return [0] * len(items)


def likes_red(items: Sequence[MCItem]) -> list[list[float]]:
    """Scores "red" highest wherever it is, then prefers earlier letters: right exactly
    when the answer is "red", whatever the order."""
    return [
        [(2.0 if o == "red" else 0.0) - 0.1 * i for i, o in enumerate(it.options)] for it in items
    ]


def right_unless_last(items: Sequence[MCItem]) -> list[int]:
    """Right unless the answer sits in the last slot, where it answers A instead."""
    return [0 if it.answer_index == len(it.options) - 1 else it.answer_index for it in items]


def notices_input(items: Sequence[MCItem]) -> list[int]:
    """Answers the last option whenever its picture or sound holds anything but zeros (it
    notices that *something* is there), else option A: blanks that are not zeros show."""
    return [len(it.options) - 1 if bool(it.image.any() or it.mel.any()) else 0 for it in items]


def looker(items: Sequence[MCItem]) -> list[int]:
    """Answers from the picture or sound when it can, else falls back to option A."""
    chosen = []
    for it in items:
        seen = _seen_answer(it)
        chosen.append(it.options.index(seen) if seen in it.options else 0)
    return chosen


def check_circular_correct(
    learner_fn: Callable[[Callable, MCItem], bool],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(answerer, item)`` ask every rotation and require all of them right?"""
    colours = ("red", "green", "blue", "cyan")
    moves = "The answer moves with its option: in rotation s it sits at (answer_index - s) % n."
    every = "One wrong rotation makes the item wrong: require all rotations right, not any."
    cases = [
        Case((oracle, _item(colours, 2)), label="a model that is always right"),
        Case(
            (always_a, _item(colours, 0)),
            label="always-A on an item whose answer is A",
            hint=moves,
        ),
        Case((always_a, _item(("yes", "no"), 0)), label="always-A on a yes/no item", hint=moves),
        Case((likes_red, _item(colours, 0)), label="a model that finds 'red' anywhere; answer red"),
        Case(
            (likes_red, _item(("blue", "red", "cyan"), 1)), label="'red' in the middle, 3 options"
        ),
        Case((likes_red, _item(colours, 3)), label="a model that finds 'red'; answer cyan"),
        Case((right_unless_last, _item(colours, 1)), label="right in 3 of 4 rotations", hint=every),
        Case(
            (right_unless_last, _item(("yes", "no"), 1)),
            label="right in 1 of 2 rotations",
            hint=every,
        ),
    ]
    return check_function(
        "circular_correct",
        learner_fn,
        circular_correct,
        cases,
        hints=CIRCULAR_CORRECT,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def _cued_items() -> list[MCItem]:
    """Items whose picture or sound shows the answer; the answer is A in 3 of 8."""
    items = []
    options = ("apple", "banana", "cherry", "date")
    for i, answer in enumerate([0, 2, 0, 1, 3, 0, 2, 1]):
        item = _item(options, answer)
        code = float(ord(options[answer][0]) - ord("a") + 1)
        if i % 2:  # a question about the sound: only the sound carries the answer
            mel = item.mel.clone()
            mel[0, 0] = code
            items.append(
                MCItem(item.question, options, answer, "counting", "audio", item.image, mel)
            )
        else:
            image = item.image.clone()
            image[0, 0, 0] = code
            items.append(
                MCItem(item.question, options, answer, "attribute", "image", image, item.mel)
            )
    return items


def check_blind_accuracy(
    learner_fn: Callable[[Callable, Sequence[MCItem]], float],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(answerer, items)`` score the answerer with picture *and* sound blanked?"""
    items = _cued_items()
    both = "Blank the sound (mel) as well as the picture: half of these questions are about it."
    cases = [
        Case(
            (looker, items),
            label="a model that looks (and picks A when it cannot see)",
            hint=both,
        ),
        Case((looker, items[:4]), label="the same model on the first 4 items", hint=both),
        Case((oracle, items), label="a model that knows every answer (no inputs needed)"),
        Case((always_a, items[1::2]), label="always-A on the sound questions"),
        Case(
            (notices_input, items),
            label="a model that reacts to any non-zero input (blank must mean zeros)",
            hint="Blank means zeros (torch.zeros_like): ones or noise are still an input a "
            "model can react to.",
        ),
    ]
    return check_function(
        "blind_accuracy",
        learner_fn,
        blind_accuracy,
        cases,
        hints=BLIND_ACCURACY,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


__all__ = [
    "always_a",
    "check_blind_accuracy",
    "check_circular_correct",
    "likes_red",
    "looker",
    "notices_input",
    "oracle",
    "right_unless_last",
]
