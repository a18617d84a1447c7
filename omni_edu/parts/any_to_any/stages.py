"""Training in stages: one stage is a data mix and a number of steps (:func:`train_stage`).

:func:`curriculum` is the chapter's four stages; :func:`task_losses` measures each task's
output loss along the way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts.any_to_any.directions import DIRECTIONS, QUESTION, UNIMODAL
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.train import EMA, History, TrainConfig, Trainer, model_loss


def train_stage(
    model: OmniLM,
    data: AnyToAnyData,
    mix: Mapping[str, float],
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int | None = None,
    progress: bool = True,
    eval_fn: Callable[[OmniLM], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    ema: EMA | None = None,
) -> History:
    """Train ``model`` in place for ``steps`` updates on batches drawn by ``mix``.

    Each stage of a curriculum is one call: its own data mix and learning-rate schedule
    (warm-up, then cosine), the weights carried over from the stage before. ``eval_fn``
    (run every ``eval_every`` steps and at the end) records a learning curve in the
    history's ``evals``; ``ema`` (an :class:`~omni_edu.train.EMA` of ``model``) is moved by
    every update.
    """
    config = TrainConfig.from_profile(
        data.profile, steps=steps, lr=lr, seed=seed, eval_every=eval_every, progress=progress
    )
    batches = data.batches(mix, batch_size or data.profile.batch_size, seed=seed)
    return Trainer(model, model_loss, batches, config, eval_fn, ema=ema).fit()


@dataclass(frozen=True)
class Stage:
    """One stage of a training curriculum: what it teaches, its data mix, its length."""

    name: str
    mix: dict[str, float]
    steps: int
    teaches: str


def curriculum(base_steps: int) -> list[Stage]:
    """The chapter's four stages, sized from ``base_steps`` (``profile.train_steps``).

    1. modality-specific pretraining: each modality alone (a language model on captions,
       next-patch prediction on pictures, next-frame prediction on sounds);
    2. alignment: paired data, pictures and sounds -> captions (the LLaVA recipe);
    3. unified training: all six directions at once;
    4. instruction-style prompts: questions answered with ``<answer>``, plus a replay of
       the six directions so they are not forgotten.
    """
    every = dict.fromkeys(DIRECTIONS, 1.0)
    return [
        Stage(
            "pretrain",
            dict.fromkeys(UNIMODAL, 1.0),
            round(base_steps * 2 / 3),
            "each modality alone",
        ),
        Stage(
            "align",
            {"image->text": 1.0, "audio->text": 1.0},
            round(base_steps * 2 / 3),
            "pictures and sounds -> captions",
        ),
        Stage("unified", every, 2 * base_steps, "all six directions"),
        Stage(
            "instruct",
            {QUESTION: 3.0, **dict.fromkeys(DIRECTIONS, 0.5)},
            round(base_steps * 2 / 3),
            "questions, with a replay of the directions",
        ),
    ]


@torch.no_grad()
def task_losses(
    model: OmniLM, data: AnyToAnyData, tasks: Sequence[str], n: int = 128
) -> dict[str, float]:
    """Mean loss of the output of each task on the pool's first ``n`` scenes ``{task: loss}``.

    The loss of a direction is its output modality's loss (cross-entropy for text, MSE for
    the linear image/audio heads), so it can be compared across training, not across
    directions of different outputs.
    """
    model.eval()
    result = {}
    for task in tasks:
        t = data.tasks.index(task)
        rows = torch.arange(t * len(data), t * len(data) + min(n, len(data)))
        losses = model.loss(data.pool.select(rows).to(model.text_head.weight.device))
        if task in DIRECTIONS:
            output = DIRECTIONS[task].target
        else:  # a question's answer is text; a single modality predicts itself
            output = "text" if task == QUESTION else task
        result[task] = losses[output].item()
    return result
