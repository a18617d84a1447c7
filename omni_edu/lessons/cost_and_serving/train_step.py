"""Lesson 08's core-build exercise: one update of the course's Trainer, written by the learner.

The learner writes a class with the interface of :class:`ReferenceTrainStep`:
``TrainStep(model, loss_fn, config, scaler)`` builds AdamW over two parameter groups,
``learning_rate(step)`` gives the schedule, ``train_step(batch, step)`` makes one update and
returns the loss and the gradient norm before clipping. :class:`ReferenceTrainStep` *is* the
course's :class:`~omni_edu.train.Trainer` (its :meth:`~omni_edu.train.Trainer.train_step`,
:func:`~omni_edu.train.lr_at` and :func:`~omni_edu.train.param_groups`), so the check
(:func:`omni_edu.lessons.cost_and_serving.checks.check_train_step`) compares the learner's
updates with the Trainer's own on a small model with the same seed (:func:`run_steps`).
:func:`caption_run` then trains a small OmniLM on OmniWorld captions with any such class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from omni_edu.profiles import Profile, get_profile
from omni_edu.train import TrainConfig, Trainer, lr_at, model_loss

LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]


class ReferenceTrainStep:
    """The course's own update, behind the exercise's interface.

    ``ReferenceTrainStep(model, loss_fn, config, scaler)``: ``model`` an ``nn.Module``,
    ``loss_fn(model, batch)`` a dict with the scalar ``"loss"``, ``config`` a
    :class:`~omni_edu.train.TrainConfig`, ``scaler`` a ``torch.amp.GradScaler`` (disabled
    for fp32 and bf16; enabled for fp16, where it multiplies the loss before backward).
    ``optimizer`` is the Trainer's AdamW; ``learning_rate(step)`` is
    :func:`~omni_edu.train.lr_at`; ``train_step(batch, step)`` sets that step's learning
    rate and calls :meth:`Trainer.train_step`, returning ``(loss, grad_norm)``: the loss
    (a detached scalar tensor) and the global norm of the true gradients before clipping.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, config: TrainConfig, scaler: Any) -> None:
        self.config = config
        quiet = dataclasses.replace(config, progress=False, live_plot=False)
        self._trainer = Trainer(model, loss_fn, [], quiet)
        self._trainer.scaler = scaler
        self.optimizer = self._trainer.optimizer

    def learning_rate(self, step: int) -> float:
        return lr_at(step, self.config)

    def train_step(self, batch: Any, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        losses, grad_norm = self._trainer.train_step(batch)
        return losses["loss"], grad_norm


# --- the small model and data the check trains --------------------------------------------

VOCAB = 11  # token ids of the check's toy sequences


class TinyLM(nn.Module):
    """A next-token model with every kind of parameter a real one has: an embedding, weight
    matrices, biases and a LayerNorm's gain and shift (so weight decay has groups to get
    wrong)."""

    def __init__(self, d: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.up = nn.Linear(d, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids (batch, seq)`` -> logits ``(batch, seq, VOCAB)``."""
        return self.out(F.gelu(self.norm(self.up(self.embed(ids)))))


def tiny_loss(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token cross-entropy of ``batch (batch, seq)`` token ids."""
    logits = model(batch[:, :-1])
    return {"loss": F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))}


def run_steps(
    step_class: Callable[..., Any],
    settings: Mapping[str, Any],
    n_steps: int,
    loss_scale: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a :class:`TinyLM` ``n_steps`` updates with ``step_class`` and record everything.

    ``settings``: :class:`~omni_edu.train.TrainConfig` fields (``steps`` is the schedule's
    length, at least ``n_steps``). ``loss_scale``: a ``GradScaler`` enabled with that
    initial scale (what fp16 training uses; it doubles every 2 steps), or ``None`` for a
    disabled one. Returns the learning rate of every step of the schedule, the loss and
    the gradient norm before clipping of each update, and the parameters after the first
    and the last update: the same seed gives the same model and batches to any class.
    """
    config = TrainConfig(**settings, progress=False, device="cpu", use_autocast=False)
    torch.manual_seed(seed)
    model = TinyLM()
    batches = torch.randint(
        0, VOCAB, (n_steps, 4, 7), generator=torch.Generator().manual_seed(seed)
    )
    if loss_scale:
        scaler = torch.amp.GradScaler("cpu", init_scale=loss_scale, growth_interval=2)
    else:
        scaler = torch.amp.GradScaler("cpu", enabled=False)
    stepper = step_class(model, tiny_loss, config, scaler)
    record: dict[str, Any] = {
        "learning rate at each step": [float(stepper.learning_rate(s)) for s in range(config.steps)]
    }
    losses, norms = [], []
    for s in range(n_steps):
        loss, norm = stepper.train_step(batches[s], s)
        losses.append(float(loss))
        norms.append(float(norm))
        if s == 0:
            first = {n: p.detach().clone() for n, p in model.named_parameters()}
    record["loss at each update"] = losses
    record["gradient norm before clipping, at each update"] = norms
    record["parameters after the first update"] = first
    record["parameters after the last update"] = {
        n: p.detach().clone() for n, p in model.named_parameters()
    }
    return record


# --- the learner's step inside OmniLM -----------------------------------------------------


def caption_run(
    step_class: Callable[..., Any],
    steps: int,
    profile: Profile | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train a small OmniLM on OmniWorld captions for ``steps`` updates with ``step_class``.

    The model is the profile's decoder width with 2 layers, the batches 32 captions
    (packed, as every lesson packs documents), the schedule 10 % warm-up then a cosine.
    Returns the training loss of every update (nats per word).
    """
    from omni_edu.data import OmniWorld
    from omni_edu.modalities import TextTokenizer
    from omni_edu.model.interleave import pack, text_segment
    from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
    from omni_edu.model.projector import ProjectorConfig
    from omni_edu.model.transformer import DecoderConfig

    profile = profile or get_profile()
    tokenizer = TextTokenizer()
    captions = OmniWorld("train", seed=seed, profile=profile).sample(32 * min(steps, 16)).captions
    docs = [[text_segment(tokenizer.encode(c, bos=True, eos=True))] for c in captions]
    batches = [pack(docs[k : k + 32]) for k in range(0, len(docs), 32)]
    torch.manual_seed(seed)
    d = profile.d_model
    model = OmniLM(
        OmniLMConfig(
            projector=ProjectorConfig(d_model=d, vocab_size=tokenizer.vocab_size),
            decoder=DecoderConfig(d_model=d, n_layers=2, n_heads=profile.n_heads),
        )
    )

    config = TrainConfig(steps=steps, lr=3e-3, warmup_steps=0.1, device="cpu", progress=False)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    stepper = step_class(model, model_loss, config, scaler)
    model.train()
    losses = []
    for s in tqdm(range(steps), desc="training with your step", disable=not progress):
        loss, _ = stepper.train_step(batches[s % len(batches)], s)
        losses.append(float(loss))
    return losses
