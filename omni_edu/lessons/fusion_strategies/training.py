"""Training and scoring one fusion variant on a task, through the course's
:class:`~omni_edu.train.Trainer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.fusion import (
    FusionBatch,
    FusionModel,
)
from omni_edu.profiles import Profile
from omni_edu.train import History, TrainConfig, Trainer

# ----------------------------------------------------------------------------- training


def classification_loss(model: nn.Module, batch: FusionBatch) -> dict[str, Tensor]:
    """The Trainer's ``loss_fn``: cross-entropy of the answer."""
    return {"loss": F.cross_entropy(model(batch), batch.labels)}


def accuracy(model: FusionModel, data: FusionBatch, batch_size: int = 256) -> float:
    """Fraction of ``data`` answered correctly (the model is put in eval mode and back)."""
    return (predict(model, data, batch_size) == data.labels).float().mean().item()


@torch.no_grad()
def predict(model: FusionModel, data: FusionBatch, batch_size: int = 256) -> Tensor:
    """The class ``model`` answers for each example of ``data``: ``(len(data),)`` int64."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    answers = [
        model(data[start : start + batch_size].to(device)).argmax(-1).cpu()
        for start in range(0, len(data), batch_size)
    ]
    model.train(was_training)
    return torch.cat(answers)


def train_variant(
    model: FusionModel,
    train: FusionBatch,
    test: FusionBatch,
    steps: int | None = None,
    evals: int = 6,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
    *,
    profile: Profile,
    **overrides,
) -> History:
    """Train ``model`` on ``train`` and record test accuracy ``evals`` times along the way.

    Batches are drawn by step from a fixed shuffle, so two variants see the same data in
    the same order. Returns the :class:`~omni_edu.train.History` (``evals["accuracy"]``
    against ``eval_steps``). ``profile`` sets the default steps and batch size and the
    training recipe (its caller resolved it once).
    """
    steps = steps or profile.train_steps
    size = batch_size or profile.batch_size
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))

    def batches(step: int) -> FusionBatch:
        start = (step * size) % (len(train) - size + 1)
        return train[order[start : start + size]]

    config = TrainConfig.from_profile(
        profile,
        steps=steps,
        eval_every=max(1, steps // evals),
        seed=seed,
        progress=progress,
        **overrides,
    )
    trainer = Trainer(
        model, classification_loss, batches, config, lambda m: {"accuracy": accuracy(m, test)}
    )
    return trainer.fit()
