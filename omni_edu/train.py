"""The Trainer: one small, readable training loop that every lesson reuses.

A lesson supplies three things and the Trainer does the rest:

* ``model`` - any ``nn.Module``;
* ``loss_fn(model, batch) -> {"loss": total, "text": ..., "image": ...}`` - the entry
  ``"loss"`` is back-propagated, every other entry is only logged (per-modality losses);
  OmniLM computes exactly that itself, so it trains with :func:`model_loss`;
* ``batches`` - a callable ``step -> batch`` (best: resuming is then exact) or an iterable
  (a list, a DataLoader; it is restarted when it runs out).

The loop is the standard recipe for small transformers: AdamW with weight decay on weight
matrices only, linear warm-up then cosine decay of the learning rate, gradient clipping,
mixed precision on GPUs, a progress bar, an optional live loss plot, evaluation every
``eval_every`` steps, and checkpoints that resume a run exactly.

Steps are counted from 0: "step s" is measured with the weights after ``s`` updates, so
the training loss at step 0 and an evaluation at step 0 describe the untrained model.

Longer than 500 lines on purpose: this is the course's one training loop, and a learner
reads it top to bottom in the order it runs (config, schedule, history, checkpoints that
resume exactly, the loop, ``fit``); split across files, the loop would lose that order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from omni_edu.model.weights import count_parameters
from omni_edu.profiles import Profile, amp_dtype, autocast, get_device, get_profile, seed_everything
from omni_edu.viz.live import LivePlot

LossFn = Callable[[nn.Module, Any], Mapping[str, Any]]
EvalFn = Callable[[nn.Module], Mapping[str, float]]


def model_loss(model: nn.Module, batch: Any) -> Mapping[str, Any]:
    """The ``loss_fn`` of a model that computes its own losses: ``model.loss(batch)``.

    :meth:`OmniLM.loss <omni_edu.model.omni_lm.OmniLM.loss>` returns what the Trainer reads:
    the weighted total under ``"loss"`` and each modality's loss beside it (logged). The call
    goes through the model, so a subclass that writes its own ``loss`` (lesson 06's
    exercise) trains with it.
    """
    return model.loss(batch)


@dataclass
class TrainConfig:
    """Everything that decides how a run trains (the model has its own config)."""

    steps: int = 150  # optimizer updates in the whole run
    lr: float = 3e-3  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int | float = 0.05  # an int counts steps; a float in [0, 1) is a fraction
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float | None = 1.0  # max global gradient norm; None switches clipping off
    eval_every: int = 0  # run eval_fn every this many steps (0: only at the end)
    log_every: int = 10  # move losses from the device into History every this many steps
    seed: int = 0
    device: str | None = None  # None: the active profile's device
    use_autocast: bool = True  # bf16/fp16 autocast on GPUs; a no-op on CPUs
    live_plot: bool = False  # redraw a loss plot in the notebook while training
    progress: bool = True  # show a tqdm progress bar
    desc: str = "training"  # the progress bar's label

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps should be at least 1; got {self.steps}.")
        if self.lr <= 0:
            raise ValueError(f"lr should be positive; got {self.lr}.")
        if isinstance(self.warmup_steps, float) and not 0.0 <= self.warmup_steps < 1.0:
            raise ValueError(
                f"warmup_steps as a float is a fraction of steps and should be in [0, 1); "
                f"got {self.warmup_steps}. Pass an int to give a number of steps."
            )
        if isinstance(self.warmup_steps, int) and not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"warmup_steps should be in [0, steps={self.steps}); got {self.warmup_steps}."
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio should be in [0, 1]; got {self.min_lr_ratio}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip should be positive or None; got {self.grad_clip}.")
        if self.eval_every < 0 or self.log_every < 1:
            raise ValueError(
                f"eval_every should be >= 0 and log_every >= 1; "
                f"got eval_every={self.eval_every}, log_every={self.log_every}."
            )
        self.betas = tuple(self.betas)  # a checkpoint may hand back a list

    @property
    def n_warmup(self) -> int:
        """Warm-up length in steps."""
        if isinstance(self.warmup_steps, float):
            return int(self.warmup_steps * self.steps)
        return self.warmup_steps

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides: Any) -> TrainConfig:
        """A config sized by a profile (default: the active one); ``overrides`` win.

        ``TrainConfig.from_profile(steps=2 * get_profile().train_steps, lr=1e-3)``
        """
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid: {sorted(names)}.")
        steps = overrides.get("steps", profile.train_steps)
        settings: dict[str, Any] = {
            "steps": steps,
            "eval_every": max(1, steps // 5),
            "log_every": max(1, min(10, steps // 20)),
            "device": str(get_device(profile)),
        }
        settings.update(overrides)
        return cls(**settings)


# What every Trainer in this process has done so far: optimizer steps, seconds inside
# fit(), and an estimate of the training FLOPs (6 x trainable parameters x tokens per step;
# for a transformer that is the standard count, for a CNN probe an underestimate). A lesson
# runner reads it at the end of a notebook to report model FLOPs utilisation (MFU).
_RUN_STATS = {"steps": 0, "seconds": 0.0, "flops": 0.0}


def run_stats() -> dict[str, float]:
    """``{"steps", "seconds", "flops"}`` of all training in this process so far."""
    return dict(_RUN_STATS)


def batch_tokens(batch: Any) -> int:
    """Tokens one training batch holds, for the FLOP estimate of :func:`run_stats`.

    A packed batch of documents counts its real (non-padding) tokens; a tensor of token
    ids ``(batch, seq)`` counts them all; any other tensor, tuple or dict counts the rows
    of its first tensor (one "token" per example).
    """
    if isinstance(batch, torch.Tensor):
        if batch.dim() >= 2 and not torch.is_floating_point(batch):
            return batch.numel()  # token ids: every entry is a token
        return batch.shape[0] if batch.dim() else 1
    real = getattr(batch, "real", None)  # a PackedBatch: True on real tokens
    if isinstance(real, torch.Tensor):
        return int(real.sum())
    items = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(items, (list, tuple)) or isinstance(batch, Mapping):
        for item in items:
            if isinstance(item, torch.Tensor):
                return batch_tokens(item)
    return 1


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate for the update at ``step`` (0-based): linear warm-up, then cosine.

    Warm-up climbs from ``lr / n_warmup`` at step 0 to ``lr`` at step ``n_warmup - 1``;
    the cosine then falls from ``lr`` at step ``n_warmup`` to ``lr * min_lr_ratio`` at the
    last step, ``steps - 1``. Warm-up matters because Adam's early variance estimates are
    poor: full-size steps on them can throw a fresh transformer into a bad region.
    """
    warmup, peak = config.n_warmup, config.lr
    floor = peak * config.min_lr_ratio
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_steps = config.steps - 1 - warmup
    if decay_steps <= 0:
        return peak
    progress = min(1.0, (step - warmup) / decay_steps)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a non-decayed group.

    Only weight matrices are decayed: norm gains and biases set a scale or an offset (not
    a feature detector worth keeping small), and embedding rows of rare tokens get few
    gradients, so decay would just shrink them towards zero between visits.
    """
    embedding_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:  # frozen (e.g. a late-fusion encoder): not optimized at all
            continue
        if p.ndim >= 2 and id(p) not in embedding_params:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside ``batch`` (dicts, lists, tuples, dataclasses) to ``device``."""
    if isinstance(batch, torch.Tensor) or (hasattr(batch, "to") and callable(batch.to)):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)((k, move_to(v, device)) for k, v in batch.items())
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(move_to(v, device) for v in batch)
    if isinstance(batch, tuple):  # a namedtuple
        return type(batch)(*(move_to(v, device) for v in batch))
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {
            f.name: move_to(getattr(batch, f.name), device) for f in dataclasses.fields(batch)
        }
        return dataclasses.replace(batch, **changes)
    return batch


@dataclass
class History:
    """What happened during training, as plain Python lists (easy to plot, save, compare).

    ``losses[key][i]`` is the training loss ``key`` at ``steps[i]`` (NaN where ``loss_fn``
    did not return that key); ``evals[name][j]`` is an evaluation metric at
    ``eval_steps[j]``. ``time_s`` is wall-clock seconds of training so far.
    """

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    time_s: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)

    def record_step(
        self, step: int, losses: Mapping[str, float], lr: float, grad_norm: float, time_s: float
    ) -> None:
        """Append one training step; keys not seen before are back-filled with NaN."""
        _append_aligned(self.losses, len(self.steps), losses)
        self.steps.append(int(step))
        self.lr.append(float(lr))
        self.grad_norm.append(float(grad_norm))
        self.time_s.append(float(time_s))

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append one evaluation."""
        _append_aligned(self.evals, len(self.eval_steps), metrics)
        self.eval_steps.append(int(step))

    def final(self, key: str = "loss", window: int = 10) -> float:
        """Mean of the last ``window`` logged values of training loss ``key`` (less noisy)."""
        if key not in self.losses:
            raise ValueError(f"no training loss {key!r}; logged keys: {sorted(self.losses)}.")
        tail = np.asarray(self.losses[key][-window:], dtype=np.float64)
        return float(np.nanmean(tail)) if len(tail) else float("nan")

    def plot(
        self,
        keys: Iterable[str] | None = None,
        log_y: bool = False,
        smooth: float = 0.0,
        title: str = "Training run",
    ) -> Figure:
        """Training losses per key (and evaluation metrics in a second panel, if any).

        Returns the figure detached from pyplot: end the cell with the call, or ``display``
        it.
        """
        import matplotlib.pyplot as plt

        from omni_edu.viz.plots import detached, plot_loss_curves

        keys = list(self.losses) if keys is None else list(keys)
        missing = [k for k in keys if k not in self.losses]
        if missing:
            raise ValueError(f"no training loss {missing}; logged keys: {sorted(self.losses)}.")
        panels = 2 if self.evals else 1
        fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 3.8), squeeze=False)
        plot_loss_curves(
            self.steps,
            {k: self.losses[k] for k in keys},
            title="training loss",
            log_y=log_y,
            smooth=smooth,
            ax=axes[0, 0],
        )
        if self.evals:
            ax = axes[0, 1]
            for name, values in self.evals.items():
                ax.plot(self.eval_steps, values, marker="o", label=name)
            if log_y:
                ax.set_yscale("log")
            ax.set_title("evaluation")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("metric (as returned by eval_fn)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        return detached(fig)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (safe for ``torch.save`` with ``weights_only`` and JSON)."""
        return {
            f.name: (
                {k: list(v) for k, v in getattr(self, f.name).items()}
                if isinstance(getattr(self, f.name), dict)
                else list(getattr(self, f.name))
            )
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def _append_aligned(
    table: dict[str, list[float]], length: int, values: Mapping[str, float]
) -> None:
    """Append ``values`` as a new row of ``table``, keeping every column ``length + 1`` long."""
    for key in values:
        table.setdefault(key, [float("nan")] * length)
    for key, column in table.items():
        column.append(float(values.get(key, float("nan"))))


def _plain(value: Any, where: str) -> None:
    """Raise if ``value`` would not load with ``torch.load(..., weights_only=True)``."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _plain(k, f"{where} key")
            _plain(v, f"{where}[{k!r}]")
        return
    hint = " Use dataclasses.asdict(...) first." if dataclasses.is_dataclass(value) else ""
    raise ValueError(
        f"checkpoint entry {where} is a {type(value).__name__}; only tensors, numbers, "
        f"strings, None and lists/dicts of them can be loaded safely (weights_only=True).{hint}"
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    **extra: Any,
) -> Path:
    """Save model and optimizer state dicts, the step and ``extra`` plain values to ``path``.

    Only state dicts and plain types are stored, so :func:`load_checkpoint` can use
    ``torch.load(..., weights_only=True)``, which never runs code from the file.
    """
    _plain(extra, "extra")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load ``path`` into ``model`` (and ``optimizer``); return ``{"step": ..., **extra}``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(
                f"{path} holds no optimizer state (it was saved without one), so it cannot "
                "resume training. Load the weights alone with load_checkpoint(path, model)."
            )
        optimizer.load_state_dict(state["optimizer"])
    return {"step": state["step"], **state["extra"]}


def _rng_state() -> dict[str, Any]:
    """Every global random generator's state, as tensors and plain lists."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "python": [version, list(py_state), py_gauss],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


class EMA:
    """An exponential moving average of a model's trainable weights.

    Generative heads are sampled from averaged weights (DDPM, MAR, DiT all do): the last
    update of a noisy loss moves the weights a little at random, and a sampler run many
    times per token amplifies that jitter; the average of the last few hundred updates
    sits nearer the centre of where training was heading. ``decay`` sets the window
    (about ``1 / (1 - decay)`` updates); early on the effective decay is
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run is not
    dominated by its random initial weights.

    >>> ema = EMA(model, decay=0.99)
    >>> Trainer(model, loss_fn, batches, config, ema=ema).fit()
    >>> ema.copy_to(model)   # sample from the averaged weights
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay should be in (0, 1); got {decay}.")
        self.decay = decay
        self.updates = 0
        self.shadow = {
            name: p.detach().float().clone()
            for name, p in model.named_parameters()
            if p.requires_grad
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                shadow = self.shadow[name]
                if shadow.device != p.device:
                    self.shadow[name] = shadow = shadow.to(p.device)
                shadow.lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s trainable weights with the average."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name].to(p.device, p.dtype))


def _grad_scaler(enabled: bool) -> Any:
    """fp16 needs loss scaling (small gradients underflow to zero); bf16 and fp32 do not."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


class Trainer:
    """Train ``model`` on ``batches`` by minimising ``loss_fn(model, batch)["loss"]``.

    >>> trainer = Trainer(model, loss_fn, batches, TrainConfig.from_profile(), eval_fn)
    >>> history = trainer.fit()
    >>> history.plot();

    The constructor seeds every random generator with ``config.seed`` (build the model
    before, under your own seed), moves the model to ``config.device`` and builds AdamW.
    With ``ema`` (an :class:`EMA` of the model), every update also moves the average.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Callable[[int], Any] | Iterable[Any],
        config: TrainConfig | None = None,
        eval_fn: EvalFn | None = None,
        ema: EMA | None = None,
    ) -> None:
        self.config = config if config is not None else TrainConfig.from_profile()
        self.ema = ema
        cfg = self.config
        self.device = torch.device(cfg.device) if cfg.device else get_device()
        seed_everything(cfg.seed)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.batches = batches
        self._batch_iter: Any = None
        groups = param_groups(model, cfg.weight_decay)
        if not groups:
            raise ValueError("model has no trainable parameters (all have requires_grad=False).")
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            fused=True if self.device.type == "cuda" else None,  # one kernel for all params
        )
        self._amp = amp_dtype(self.device) if cfg.use_autocast else None
        self.scaler = _grad_scaler(enabled=self._amp == torch.float16)
        self.history = History()
        self.step = 0
        self._elapsed_s = 0.0
        self._warned_nan = False

    # ----------------------------------------------------------------------------- batches
    def next_batch(self, step: int) -> Any:
        """The batch for ``step``, on the trainer's device."""
        if callable(self.batches):
            batch = self.batches(step)
        else:
            if self._batch_iter is None:
                self._batch_iter = iter(self.batches)
            try:
                batch = next(self._batch_iter)
            except StopIteration:
                self._batch_iter = iter(self.batches)  # next epoch
                try:
                    batch = next(self._batch_iter)
                except StopIteration:
                    raise ValueError(
                        f"batches ran out at step {step}. A generator can only be read once: "
                        "pass a list, a DataLoader, or a function step -> batch."
                    ) from None
        return move_to(batch, self.device)

    # --------------------------------------------------------------------------- one update
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device) if self._amp is not None else contextlib.nullcontext()

    def _losses(self, out: Any) -> dict[str, torch.Tensor]:
        if isinstance(out, torch.Tensor) or not isinstance(out, Mapping) or "loss" not in out:
            raise ValueError(
                "loss_fn should return a dict with the loss to minimise under 'loss', e.g. "
                f"{{'loss': total, 'text': text_loss}}; got {type(out).__name__}"
                + (f" with keys {sorted(out)}" if isinstance(out, Mapping) else "")
                + ". Wrap a single loss as {'loss': loss}."
            )
        loss = out["loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"out['loss'] should be a scalar tensor; got {shape}. Did you forget .mean()?"
            )
        if not loss.requires_grad:
            raise ValueError(
                "out['loss'] does not require grad, so nothing can learn from it. "
                "Was it computed under torch.no_grad() or with .item()/.detach()?"
            )
        return {
            k: v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            for k, v in out.items()
        }

    def train_step(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One update on ``batch`` at the optimizer's current learning rate.

        Returns the detached losses and the global gradient norm *before* clipping
        (a spike there is the first sign of an unstable run). The clipped gradients stay
        in ``p.grad`` until the next step.
        """
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.loss_fn(self.model, batch)
        losses = self._losses(out)
        self.scaler.scale(out["loss"]).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return losses, grad_norm.detach()

    # ---------------------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` with the model in eval mode and gradients off."""
        if self.eval_fn is None:
            raise ValueError("this Trainer has no eval_fn; pass eval_fn=... to Trainer(...).")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.eval_fn(self.model)
        finally:
            self.model.train(was_training)
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"eval_fn should return a dict like {{'accuracy': 0.9}}; got "
                f"{type(metrics).__name__}."
            )
        return {k: float(v) for k, v in metrics.items()}

    def _should_eval(self, step: int) -> bool:
        every = self.config.eval_every
        return self.eval_fn is not None and every > 0 and step % every == 0

    # ------------------------------------------------------------------------------- the loop
    def fit(self, until: int | None = None) -> History:
        """Train from the current step up to ``until`` (default: ``config.steps``).

        ``fit(until=50)`` then ``fit()`` trains exactly like one ``fit()``. Evaluations
        run at every multiple of ``eval_every`` (step 0 included: the untrained baseline)
        and after the last step.
        """
        cfg = self.config
        until = cfg.steps if until is None else until
        if not self.step <= until <= cfg.steps:
            raise ValueError(
                f"until should be between the current step {self.step} and config.steps="
                f"{cfg.steps}; got {until}. For a longer run, raise config.steps."
            )
        self.model.train()
        live = LivePlot() if cfg.live_plot else None
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=cfg.desc,
            unit="step",
            disable=not cfg.progress,
        )
        pending: list[tuple[int, dict[str, torch.Tensor], torch.Tensor, float, float]] = []
        start = time.perf_counter() - self._elapsed_s
        fit_start, first_step = time.perf_counter(), self.step
        n_params = count_parameters(self.model, trainable_only=True)
        postfix: dict[str, float] = {}
        try:
            for step in range(self.step, until):
                if self._should_eval(step):
                    postfix.update(self._run_eval(step))
                lr = lr_at(step, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.next_batch(step)
                losses, grad_norm = self.train_step(batch)
                _RUN_STATS["flops"] += 6.0 * n_params * batch_tokens(batch)
                self.step = step + 1
                pending.append((step, losses, grad_norm, lr, time.perf_counter() - start))
                if self.step % cfg.log_every == 0 or self.step == until:
                    # Reading a loss forces the CPU to wait for the GPU, so do it in batches.
                    postfix["loss"] = self._flush(pending)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
                    if live is not None:
                        live.update(self.history.steps, self.history.losses)
                bar.update(1)
            if (
                self.step == cfg.steps
                and self.eval_fn is not None
                and (not self.history.eval_steps or self.history.eval_steps[-1] != cfg.steps)
            ):
                postfix.update(self._run_eval(cfg.steps))
                bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})
        finally:
            self._flush(pending)
            self._elapsed_s = time.perf_counter() - start
            _RUN_STATS["steps"] += self.step - first_step
            _RUN_STATS["seconds"] += time.perf_counter() - fit_start
            bar.close()
        if live is not None:
            live.update(self.history.steps, self.history.losses, force=True)
        return self.history

    def _run_eval(self, step: int) -> dict[str, float]:
        metrics = self.evaluate()
        self.history.record_eval(step, metrics)
        return {f"eval {k}": v for k, v in metrics.items()}

    def _flush(self, pending: list) -> float:
        """Move pending per-step tensors into History; return the last total loss."""
        last = float("nan")
        for step, losses, grad_norm, lr, t in pending:
            values = {k: v.item() for k, v in losses.items()}
            last = values["loss"]
            if not math.isfinite(last) and not self._warned_nan:
                self._warned_nan = True
                warnings.warn(
                    f"the loss is {last} at step {step}: training diverged. Try a smaller lr "
                    f"(now {lr:.2g}) or a smaller grad_clip.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self.history.record_step(step, values, lr, grad_norm.item(), t)
        pending.clear()
        return last

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Save everything needed to resume exactly: weights, optimizer, step, RNGs, history."""
        return save_checkpoint(
            path,
            self.model,
            self.optimizer,
            self.step,
            config=asdict(self.config),
            history=self.history.to_dict(),
            rng=_rng_state(),
            scaler=self.scaler.state_dict(),
            elapsed_s=self._elapsed_s,
        )

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a :meth:`save_checkpoint` file; :meth:`fit` then continues the run.

        The trainer keeps its own config, so a run can be resumed with, say, more steps.
        """
        state = load_checkpoint(path, self.model, self.optimizer)
        if "history" not in state or "rng" not in state:
            raise ValueError(
                f"{path} was not written by Trainer.save_checkpoint, so it cannot resume a run. "
                "To load only the weights, use omni_edu.train.load_checkpoint(path, model)."
            )
        self.step = state["step"]
        self.history = History.from_dict(state["history"])
        self._elapsed_s = state["elapsed_s"]
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], Any] | Iterable[Any],
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
    desc: str = "training",
    progress: bool = True,
    **overrides: Any,
) -> History:
    """Train a small part - a probe, a judge, a tokenizer, a toy head - with the Trainer.

    The one training loop of the course is :class:`Trainer`; this is its short form for
    the small networks that measure or serve the main model. Defaults suit them: plain
    Adam (no weight decay, Adam's usual betas), a constant learning rate after a 5 %
    warm-up, no clipping, no evaluation, on the active profile's device. ``overrides``
    go to :class:`TrainConfig` (for example ``weight_decay=0.01`` or ``min_lr_ratio=0.1``
    for a cosine decay). The model is left in eval mode; the returned history holds every
    logged loss.
    """
    settings: dict[str, Any] = {
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "weight_decay": 0.0,
        "betas": (0.9, 0.999),
        "warmup_steps": 0.05,
        "min_lr_ratio": 1.0,
        "grad_clip": None,
        "eval_every": 0,
        "log_every": 1,
        "progress": progress,
        "desc": desc,
    }
    settings.update(overrides)
    trainer = Trainer(model, loss_fn, batches, TrainConfig.from_profile(**settings))
    history = trainer.fit()
    model.eval()
    return history
