"""The prompt format of every direction (lesson 06).

A *task token* names the output, then comes the input, then the output; only the output
is trained. :data:`DIRECTIONS` lists the six directions, :func:`make_document` lays out one
example, :func:`question_document` an instruction-style question and
:func:`unconditional_document` the empty prompt of classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from omni_edu.data import Question
from omni_edu.modalities import TextTokenizer
from omni_edu.model.interleave import Segment, audio_segment, image_segment, text_segment


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


def unconditional_document(direction: str | Direction, tokenizer: TextTokenizer) -> list[Segment]:
    """The empty prompt of ``direction``: its task token alone (``<draw>``, ``<speak>``).

    It is what an empty caption gives, so a model trained with empty prompts has learned
    it; text->image and audio->image share it, as do text->audio and image->audio."""
    return [text_segment([tokenizer[get_direction(direction).task]], predict=False)]
