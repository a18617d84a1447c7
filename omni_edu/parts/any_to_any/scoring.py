"""Generating every direction and scoring what comes out.

:func:`generate` runs a direction on a pool's scenes; captions are parsed and pictures and
sounds are read back by the judges of :mod:`omni_edu.parts.judges`
(:func:`score_directions`); :func:`sample_scores` draws several samples per prompt for the
sample metrics; :func:`text_log_likelihood` and :func:`answer_accuracy` score answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from omni_edu.data import Question, score_caption
from omni_edu.modalities import Modality
from omni_edu.model.interleave import PackedBatch
from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts.any_to_any.directions import (
    DIRECTIONS,
    QUESTION,
    get_direction,
    unconditional_document,
)
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.parts.judges import Judges, attribute_scores
from omni_edu.parts.judges.metrics import Metric, sample_metrics


@dataclass
class Generations:
    """What a model produced for one direction, with the scenes it was asked about."""

    direction: str
    outputs: list[str] | Tensor  # captions, images (n, 3, H, W) or mels (n, frames, n_mels)
    indices: list[int]


@torch.no_grad()
def generate(
    model: OmniLM,
    data: AnyToAnyData,
    direction: str,
    indices: Sequence[int],
    batch_size: int = 256,
    guidance: float = 1.0,
    **sample_options,
) -> Generations:
    """Run ``direction`` on scenes ``indices`` of ``data``: captions, images or log-mels.

    ``sample_options`` go to the head that writes the output (``steps`` and
    ``temperature`` for a flow head, ``temperature`` for codes and text; greedy text and
    codes by default). ``guidance`` != 1 runs classifier-free guidance against the
    direction's empty prompt (the task token alone, which training shows the model
    whenever a prompt is empty). Pictures and sounds written as code ids are decoded by
    ``data``'s tokenizer. To draw several samples per prompt, repeat its index.
    """
    d = get_direction(direction)
    model.eval()
    indices = list(indices)
    if d.target == "text":
        longest = max(len(data.tokenizer.encode(c)) for c in data.batch.captions)
        options = dict(n_tokens=longest + 1, stop_id=data.tokenizer.eos_id)
    elif d.target == "image":
        options = dict(grid=data.grid)
    else:
        options = dict(n_tokens=data.audio.shape[1])
    if guidance != 1.0:
        options["guidance"] = guidance
    modality = Modality[d.target.upper()]
    chunks = []
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        prompts = [data.document(d.name, i, with_target=False) for i in rows]
        if guidance != 1.0:
            options["uncond_prompts"] = [unconditional_document(d, data.tokenizer)] * len(rows)
        chunks += model.generate(
            prompts, modality, specials=data.specials, **options, **sample_options
        )
    if d.target == "text":
        outputs = [data.tokenizer.decode(x, skip_special=True) for x in chunks]
    else:
        outputs = data.decode(d.target, torch.stack(chunks))
        if d.target == "audio" and "audio" not in data.tokenizers:
            outputs = outputs.clamp(-1, 1)
    return Generations(d.name, outputs, indices)


def score_generations(
    gen: Generations, data: AnyToAnyData, judges: Judges | None, per_scene: bool = False
) -> float | Tensor:
    """Mean attribute accuracy of generated outputs against the scenes they were asked for.

    Captions are parsed (:func:`~omni_edu.data.score_caption`); pictures and sounds are
    read back by the judges (:mod:`omni_edu.parts.judges`). Chance is
    :func:`~omni_edu.parts.judges.chance_level` for single-object scenes. With ``per_scene``,
    the score of every scene ``(n,)`` instead of their mean (for intervals over scenes).
    """
    d = get_direction(gen.direction)
    if d.target == "text":
        scores = torch.tensor(
            [
                score_caption(text, data.batch.scenes[i])
                for text, i in zip(gen.outputs, gen.indices, strict=True)
            ]
        )
    else:
        if judges is None:
            raise ValueError(
                f"scoring {d.name} needs judges (omni_edu.parts.judges) to read outputs."
            )
        judge = judges.image if d.target == "image" else judges.audio
        scores = attribute_scores(judge, gen.outputs, data.batch.attributes[gen.indices])
    return scores if per_scene else scores.mean().item()


def score_directions(
    model: OmniLM,
    data: AnyToAnyData,
    judges: Judges,
    n: int = 128,
    directions: Sequence[str] = tuple(DIRECTIONS),
    per_scene: bool = False,
    **sample_options,
) -> dict[str, float] | dict[str, Tensor]:
    """``{direction: mean attribute accuracy}`` on the first ``n`` scenes of ``data``
    (``{direction: (n,) per-scene scores}`` with ``per_scene``)."""
    indices = list(range(min(n, len(data))))
    return {
        d: score_generations(
            generate(model, data, d, indices, **sample_options), data, judges, per_scene
        )
        for d in directions
    }


def draw_samples(
    model: OmniLM,
    data: AnyToAnyData,
    direction: str,
    indices: Sequence[int],
    k: int,
    seed: int = 0,
    **sample_options,
) -> Tensor:
    """``k`` outputs of ``direction`` for each prompt ``indices`` of ``data``: pictures
    ``(n, k, 3, H, W)`` or log-mels ``(n, k, frames, n_mels)``, drawn in one batch with a
    generator seeded by ``seed`` (each repeat of a prompt gets its own noise)."""
    if get_direction(direction).target == "text":
        raise ValueError(f"draw_samples is for pictures and sounds; {direction} writes text.")
    repeated = [i for i in indices for _ in range(k)]
    made = generate(
        model,
        data,
        direction,
        repeated,
        generator=torch.Generator().manual_seed(seed),
        **sample_options,
    ).outputs
    return made.unflatten(0, (len(indices), k))


def sample_scores(
    model: OmniLM,
    data: AnyToAnyData,
    judges: Judges,
    direction: str,
    indices: Sequence[int],
    k: int = 8,
    seed: int = 0,
    **sample_options,
) -> dict[str, Metric]:
    """The sample metrics of :mod:`omni_edu.parts.judges.metrics` (fidelity, validity,
    coverage with its reference, ghost mass, precision, recall) of ``k`` outputs per
    prompt ``indices`` of ``direction``, against what each prompt fixes."""
    samples = draw_samples(model, data, direction, indices, k, seed, **sample_options)
    judge = judges.image if get_direction(direction).target == "image" else judges.audio
    attributes = data.batch.attributes[list(indices), 0]
    fixed = data.fixed(direction)[list(indices)]
    return sample_metrics(judge, samples, attributes, fixed, data.world, seed)


@torch.no_grad()
def text_log_likelihood(model: OmniLM, packed: PackedBatch) -> Tensor:
    """Log-probability ``(batch,)`` the model gives each row's *trained* text tokens.

    Sums ``log p(token | everything before it)`` over the positions whose next token is
    trained text (``predict=True`` segments and the markers around them): for a question
    document, the answer's words and the ``<eos>`` that ends it. Scoring every option of
    a multiple-choice question this way turns a generative model into a chooser.
    """
    model.eval()
    packed = packed.to(model.text_head.weight.device)
    hidden = model(packed)
    here = packed.loss_mask(Modality.TEXT)
    logp = torch.log_softmax(model.text_head(hidden[here]).float(), dim=-1)
    picked = logp.gather(1, packed.text_targets[here][:, None])[:, 0]
    rows = here.nonzero()[:, 0]
    return torch.zeros(packed.batch_size, device=picked.device).index_add_(0, rows, picked).cpu()


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


def answer_blind(train: Sequence[Question], test: Sequence[Question]) -> float:
    """Accuracy of a blind rule on ``test``: each question gets the commonest answer that the
    same question text had in ``train`` (the commonest of its ability for a text never seen).

    The measured baseline of :func:`answer_accuracy`, which writes its answer freely: a
    uniform guess among the options is the baseline of a multiple-choice score, not of this
    one, and questions whose answers are lopsided ("how many circles?" is mostly "one") let
    a rule that never sees the picture score far above it.
    """
    if not train or not test:
        raise ValueError(
            f"answer_blind needs training and test questions; got {len(train)} and {len(test)}."
        )
    by_text: dict[str, Counter] = defaultdict(Counter)
    by_ability: dict[str, Counter] = defaultdict(Counter)
    for q in train:
        by_text[q.text][q.answer] += 1
        by_ability[q.ability][q.answer] += 1

    def guess(q: Question) -> str | None:
        counts = by_text.get(q.text) or by_ability.get(q.ability)
        return counts.most_common(1)[0][0] if counts else None

    return sum(guess(q) == q.answer for q in test) / len(test)
