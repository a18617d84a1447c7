"""Checks for lesson 06's exercise: the prompt format of every direction.

The check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.any_to_any import DIRECTIONS, make_document
from omni_edu.grading import Case, CheckResult, Hints, check_function
from omni_edu.modalities import TextTokenizer

MAKE_DOCUMENT = Hints(
    "make_document",
    nudge="A training document is three parts in order: the task (its token, plus the "
    "caption when the input is text), the input, and the output. Only the output is "
    "trained (predict=True).",
    failed="Check each segment's modality, contents and predict flag: the task and the input "
    "have predict=False, the output predict=True.",
    on={
        "length": "One segment for the task (+ caption), one for the input when it is an "
        "image or a sound, one for the output when a target is given.",
    },
    recipe="Start with a text segment holding the task token (plus the caption's ids when "
    "the input is text), predict=False; then the image or audio input with "
    "predict=False; then, if a target is given, the output with predict=True. "
    "Segments compare by modality, contents, grid and predict flag.",
)


def _cases() -> list[Case]:
    tokenizer = TextTokenizer()
    g = torch.Generator().manual_seed(0)
    inputs = {
        "text": "a small red circle at the top left",
        "image": torch.rand(4, 48, generator=g),  # a 2x2 grid of 4x4 RGB patches
        "audio": torch.rand(3, 64, generator=g),  # 3 audio tokens
    }
    outputs = {
        "text": "a large blue square at the bottom right",
        "image": torch.rand(4, 48, generator=g),
        "audio": torch.rand(3, 64, generator=g),
    }
    cases = []
    for name, d in DIRECTIONS.items():
        cases.append(
            Case(
                (name, tokenizer, inputs[d.source], outputs[d.target]),
                label=f"{name}, a training example (prompt and output)",
            )
        )
    prompt = "Without a target, stop after the input: the prompt is what the model continues."
    cases.append(
        Case(
            ("text->image", tokenizer, inputs["text"]),
            label="text->image, the prompt alone",
            hint=prompt,
        )
    )
    cases.append(
        Case(
            ("audio->text", tokenizer, inputs["audio"]),
            label="audio->text, the prompt alone",
            hint=prompt,
        )
    )
    return cases


def check_make_document(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(direction, tokenizer, source, target=None)`` lay out every
    direction as [task token (+ caption), input, output] with only the output trained?"""
    return check_function(
        "make_document",
        learner_fn,
        make_document,
        _cases(),
        hints=MAKE_DOCUMENT,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
