"""Lesson 08's core-build exercise, one update of the Trainer: a right answer written
without the Trainer, and the plausible mistakes its check must reject (a test per mistake;
tests/test_checks.py holds the row)."""

import math

import numpy as np
import pytest
import torch

from omni_edu import grading
from omni_edu.lessons.cost_and_serving.checks import TrainStep, check_train_step
from omni_edu.lessons.cost_and_serving.train_step import ReferenceTrainStep, caption_run

# --- the core-build exercise: one update of the Trainer --------------------------------------


class WrittenStep:
    """A learner's right answer, written without the Trainer (as the solutions notebook's)."""

    def __init__(self, model, loss_fn, config, scaler):
        self.model, self.loss_fn, self.config, self.scaler = model, loss_fn, config, scaler
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        decay = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in embeddings]
        rest = [p for p in model.parameters() if p.ndim < 2 or id(p) in embeddings]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=config.betas,
        )

    def learning_rate(self, step):
        cfg, warmup = self.config, self.config.n_warmup
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        floor, span = cfg.lr * cfg.min_lr_ratio, cfg.steps - 1 - warmup
        if span <= 0:
            return cfg.lr
        return floor + 0.5 * (1 + math.cos(math.pi * (step - warmup) / span)) * (cfg.lr - floor)

    def clip(self):
        limit = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)

    def train_step(self, batch, step):
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model, batch)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = self.clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), norm


class ClipsAfterTheStep(WrittenStep):
    """Plausible mistake: clips once the optimizer has already used the raw gradients."""

    def train_step(self, batch, step):
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model, batch)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        self.scaler.step(self.optimizer)
        norm = self.clip()
        self.scaler.update()
        return loss.detach(), norm


class NoZeroGrad(WrittenStep):
    """Plausible mistake: never clears the gradients, so each update adds the last ones."""

    def train_step(self, batch, step):
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        loss = self.loss_fn(self.model, batch)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = self.clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), norm


class WarmupOffByOne(WrittenStep):
    """Plausible mistake: the warm-up starts at 0 (lr * step / warmup), a step behind."""

    def learning_rate(self, step):
        warmup = self.config.n_warmup
        if step < warmup:
            return self.config.lr * step / warmup
        return super().learning_rate(step)


class DecaysBiasesToo(WrittenStep):
    """Plausible mistake: one group, so biases, norm gains and embeddings decay too."""

    def __init__(self, model, loss_fn, config, scaler):
        super().__init__(model, loss_fn, config, scaler)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )


class ClipsScaledGradients(WrittenStep):
    """Plausible mistake: measures and clips the gradients while still multiplied by the
    loss scale (no unscale_ first; scaler.step unscales them afterwards)."""

    def train_step(self, batch, step):
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model, batch)["loss"]
        self.scaler.scale(loss).backward()
        norm = self.clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), norm


class NormAfterClipping(WrittenStep):
    """Plausible mistake: returns the norm of the clipped gradients, not the one before."""

    def clip(self):
        super().clip()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class CosineToZero(WrittenStep):
    """Plausible mistake: the cosine ends at 0 instead of lr * min_lr_ratio."""

    def learning_rate(self, step):
        cfg, warmup = self.config, self.config.n_warmup
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        span = max(1, cfg.steps - 1 - warmup)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / span)) * cfg.lr


class NeverSetsTheRate(WrittenStep):
    """Plausible mistake: computes the schedule but never gives it to the optimizer."""

    def train_step(self, batch, step):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model, batch)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = self.clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), norm


class IgnoresFractionalWarmup(WrittenStep):
    """Plausible mistake: reads config.warmup_steps as a count even when it is a fraction."""

    def learning_rate(self, step):
        cfg = self.config
        warmup = int(cfg.warmup_steps) if isinstance(cfg.warmup_steps, int) else 0
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        floor, span = cfg.lr * cfg.min_lr_ratio, cfg.steps - 1 - warmup
        return floor + 0.5 * (1 + math.cos(math.pi * (step - warmup) / span)) * (cfg.lr - floor)


TRAIN_STEP_MISTAKES = (
    ClipsAfterTheStep,
    NoZeroGrad,
    WarmupOffByOne,
    DecaysBiasesToo,
    ClipsScaledGradients,
    NormAfterClipping,
    CosineToZero,
    NeverSetsTheRate,
    IgnoresFractionalWarmup,
)


def test_the_trainer_step_check_passes_the_trainer_and_a_written_step():
    assert check_train_step(TrainStep).passed
    assert check_train_step(WrittenStep).passed


@pytest.mark.parametrize("wrong", TRAIN_STEP_MISTAKES, ids=lambda c: c.__name__)
def test_the_trainer_step_check_rejects_a_plausible_mistake(wrong):
    with grading.lenient():
        assert check_train_step(wrong).status == grading.FAILED


def test_the_trainer_step_stub_is_not_implemented():
    class Stub:
        def __init__(self, model, loss_fn, config, scaler):
            raise NotImplementedError(grading.STUB_MESSAGE)

    assert check_train_step(Stub).status == grading.NOT_IMPLEMENTED


def test_the_scaled_case_gets_the_unscale_hint():
    with grading.lenient():
        result = check_train_step(ClipsScaledGradients)
    assert "unscale_" in str(result)


def test_a_learners_step_trains_omnilm_like_the_trainer():
    ours = caption_run(ReferenceTrainStep, steps=12, progress=False)
    theirs = caption_run(WrittenStep, steps=12, progress=False)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4)
    assert ours[-1] < ours[0] - 0.5  # it learns
