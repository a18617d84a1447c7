"""What a practitioner weighs besides accuracy when choosing a fusion strategy: forward FLOPs
per example (:func:`count_flops`, counted from the shapes of every matmul), training memory
(:func:`training_memory`: weights, gradients, optimizer state and the activations kept for
the backward pass; :func:`frozen_memory` for the freezing recipes) and inference latency
(:func:`inference_latency`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from omni_edu.cost import time_call
from omni_edu.lessons.fusion_strategies.tasks import (
    make_fusion_data,
    task_config,
)
from omni_edu.lessons.fusion_strategies.training import classification_loss
from omni_edu.model.fusion import (
    MEDIA,
    CrossAttention,
    FusionBatch,
    FusionModel,
    build_fusion_model,
)
from omni_edu.model.transformer import Attention
from omni_edu.profiles import Profile, get_device, get_profile
from omni_edu.report import Power

# ----------------------------------------------------------------------------- FLOPs


def count_flops(model: FusionModel, batch: FusionBatch) -> float:
    """Forward FLOPs per example, counted from the shapes each layer sees.

    A linear layer costs ``2 * in * out`` per token (a multiply and an add per weight);
    attention costs ``4 * q * k * d`` (scores ``q k^T`` and the weighted sum of values).
    We count the full ``q x k`` square even where a causal mask makes half of it unused:
    that is what most kernels compute. Norms, softmax and the like are left out (a few
    percent). The backward pass costs about twice the forward.
    """
    total = 0

    def linear(module: nn.Linear, inputs: tuple, _out: Tensor) -> None:
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += 2 * rows * module.in_features * module.out_features

    def self_attention(module: Attention, inputs: tuple, _out: tuple) -> None:
        nonlocal total
        b, seq, _ = inputs[0].shape
        total += 4 * b * seq * seq * module.n_heads * module.head_dim

    def cross_attention(module: CrossAttention, inputs: tuple, _out: Tensor) -> None:
        nonlocal total
        (b, n_text, _), n_media = inputs[0].shape, inputs[1].shape[1]
        total += 4 * b * n_text * n_media * module.n_heads * module.head_dim

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(self_attention))
        elif isinstance(m, CrossAttention):
            hooks.append(m.register_forward_hook(cross_attention))
    try:
        with torch.no_grad():
            model(batch.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total / len(batch)


# ----------------------------------------------------------------------------- memory


@dataclass
class MemoryReport:
    """Bytes a training step needs, by kind. ``total`` is their sum.

    ``activations`` are the tensors autograd keeps from the forward pass for the backward
    pass (measured); ``gradients`` and ``optimizer`` (AdamW: two moments) exist only for
    trainable parameters. ``device_peak`` is the CUDA allocator's peak during one step
    (``None`` on a CPU).
    """

    weights: int
    gradients: int
    optimizer: int
    activations: int
    device_peak: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_mib(self) -> dict[str, float]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["total"] = self.total
        return {k: round(v / 2**20, 3) for k, v in row.items() if v is not None}


@contextlib.contextmanager
def saved_activation_bytes(exclude: Iterable[Tensor] = ()):
    """Count the bytes autograd saves for backward inside the block.

    Yields a dict whose ``"bytes"`` grows as tensors are saved. Each storage is counted
    once (views share storage); tensors in ``exclude`` (the parameters: they exist
    anyway) are left out. Works on any device, unlike ``torch.cuda.max_memory_allocated``.
    """
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    counter = {"bytes": 0}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            counter["bytes"] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield counter


def training_memory(model: FusionModel, batch: FusionBatch) -> MemoryReport:
    """Measure the memory of one training step of ``model`` on ``batch``.

    Weights, gradients and AdamW's two moments are counted from the parameters (only
    trainable ones get gradients and moments); activations are measured with autograd's
    saved-tensor hooks during a real forward and backward pass. On CUDA the allocator's
    peak is reported as well.
    """
    device = next(model.parameters()).device
    # Own copies: a slice of a bigger dataset shares its storage, which would be counted.
    batch = FusionBatch(**{f.name: getattr(batch, f.name).clone() for f in fields(batch)})
    batch = batch.to(device)
    bytes_of = [(p.numel() * p.element_size(), p.requires_grad) for p in model.parameters()]
    weights = sum(b for b, _ in bytes_of)
    trainable = sum(b for b, t in bytes_of if t)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    model.train()
    with saved_activation_bytes(exclude=model.parameters()) as saved:
        loss = classification_loss(model, batch)["loss"]
    loss.backward()
    model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return MemoryReport(weights, trainable, 2 * trainable, saved["bytes"], peak)


# ----------------------------------------------------------------------------- latency


def inference_latency(model: FusionModel, batch: FusionBatch, repeats: int = 5) -> float:
    """Median milliseconds per example of a forward pass over ``batch`` (eval mode)."""
    was_training = model.training
    model.eval()
    batch = batch.to(next(model.parameters()).device)
    with torch.no_grad():
        seconds = time_call(lambda: model(batch), repeats=repeats, warmup=1)
    model.train(was_training)
    return 1000 * seconds / len(batch)


# The chapter's recipe and the LLaVA-style encoder-only freeze: label -> (variant, config).
FREEZE_RECIPES: dict[str, tuple[str, dict[str, object]]] = {
    "cross-attention, encoders + language model frozen": (
        "cross",
        {"frozen_encoders": MEDIA, "frozen_decoder": True},
    ),
    "late fusion, image encoder frozen": ("late", {"frozen_encoders": ("image",)}),
}


def frozen_memory(
    batch_sizes: tuple[int, ...] = (1, 16, 64),
    task: str = "colour",
    profile: Profile | None = None,
    recipes: dict[str, tuple[str, dict[str, object]]] | None = None,
    device: torch.device | str | None = None,
    sizes: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """Training memory of each freezing recipe against the same model trained end to end.

    One row per (recipe, batch size): the bytes of one training step (weights, gradients,
    AdamW moments, saved activations) end to end and frozen, the saving in percent of
    end to end, and where the frozen step's memory goes. Weights do not change; the
    saving is the gradients, moments and activations the frozen parts no longer need.
    ``device``: where to measure (default: the profile's). ``sizes``: FusionConfig fields
    that differ from the profile's (the lesson's model sizes for the profile).
    """
    profile = profile or get_profile()
    recipes = recipes or FREEZE_RECIPES
    device = device or get_device(profile)
    data = make_fusion_data(task, max(batch_sizes), "train", profile=profile)
    rows = []
    for label, (kind, frozen) in recipes.items():
        for size in batch_sizes:
            reports = {}
            for name, overrides in (("end to end", {}), ("frozen", frozen)):
                torch.manual_seed(0)
                config = task_config(task, profile, **{**(sizes or {}), **overrides})
                model = build_fusion_model(kind, config)
                reports[name] = training_memory(model.to(device), data[:size])
                trainable = model.num_parameters(trainable_only=True)
            full, cut = reports["end to end"], reports["frozen"]
            rows.append(
                {
                    "recipe": label,
                    "batch": size,
                    "end to end (MiB)": round(full.total / 2**20, 3),
                    "frozen (MiB)": round(cut.total / 2**20, 3),
                    "saving (%)": round(100 * (1 - cut.total / full.total), 1),
                    "trainable params": trainable,
                    "weights (MiB)": round(cut.weights / 2**20, 3),
                    "grads + AdamW (MiB)": round((cut.gradients + cut.optimizer) / 2**20, 3),
                    "activations (MiB)": round(cut.activations / 2**20, 3),
                }
            )
    return rows


def percent_range(values: list[float]) -> str:
    """``"41-57 %"`` (or ``"45 %"`` when they round alike): the range of some savings."""
    low, high = round(min(values)), round(max(values))
    return f"{low} %" if low == high else f"{low}-{high} %"


# What the memory check can see: bytes are counted exactly (no noise, no seeds), and the
# savings are printed to 0.1 percentage point.
MEMORY_POWER = Power(0.1, "percentage points (bytes counted exactly; savings rounded to 0.1)")
