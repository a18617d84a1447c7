"""What each way of writing a picture costs: to train, and to draw one picture.

Measured, not modelled: one training step's FLOPs under PyTorch's FLOP counter, and one
call of :meth:`OmniLM.generate <omni_edu.model.omni_lm.OmniLM.generate>` watched from
outside - how many times the decoder runs (one after another: each pass needs the one
before), how many tokens it reads in all, how many times the head's network runs, the
FLOPs and the wall time, per picture. The ways differ most in decoder passes:

* autoregressive heads (regression, per-token flow, codes): one pass per token;
* a DiT head: one pass per picture (the prompt), then ``steps`` passes of the small head;
* whole-image diffusion and masked codes: the prompt, then ``steps`` passes over the span.

Lesson 04b races them; lesson 08 sets the same passes against the roofline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts import any_to_any as a2a


def training_flops(model: OmniLM, data: a2a.AnyToAnyData, direction: str, batch_size: int) -> float:
    """FLOPs of one training step (forward and backward) of ``model`` on a batch of
    ``direction`` from ``data``, counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (matrix products and attention; elementwise work is left out, as in FLOP counts
    generally). The optimizer's update is not included."""
    batch = data.batches({direction: 1.0}, batch_size, seed=0)(0).to(_device(model))
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class SamplingCost:
    """What drawing pictures cost, per picture (pictures drawn side by side in one batch).

    Attributes:
        decoder_passes: decoder calls one after another (the prompt's included).
        decoder_tokens: tokens the decoder read over all its passes, per picture.
        head_passes: calls of the output head's network (a flow head's MLP for every
            Euler step of every token, a DiT's blocks once per step, a read-out once per
            pass), one after another.
        flops: FLOPs per picture (matrix products and attention).
        ms: wall time per picture, in milliseconds (the best of the timed repeats).
        pictures: how many pictures the batch drew.
    """

    decoder_passes: int
    decoder_tokens: float
    head_passes: int
    flops: float
    ms: float
    pictures: int

    def row(self) -> dict[str, float]:
        """The numbers for a table: passes, tokens, head calls, MFLOPs and ms per picture."""
        return {
            "decoder passes": self.decoder_passes,
            "decoder tokens / picture": self.decoder_tokens,
            "head passes": self.head_passes,
            "MFLOPs / picture": self.flops / 1e6,
            "ms / picture": self.ms,
        }


def sampling_cost(
    model: OmniLM,
    data: a2a.AnyToAnyData,
    direction: str,
    indices: Sequence[int],
    repeats: int = 3,
    **sample_options,
) -> SamplingCost:
    """Draw ``direction``'s output for prompts ``indices`` of ``data`` in one batch with
    :func:`omni_edu.parts.any_to_any.generate` (``sample_options`` as there: ``steps``,
    ``temperature``...) and measure it: decoder passes and tokens, head passes and FLOPs
    by counting one call, wall time as the best of ``repeats`` calls, all per picture."""
    if repeats < 1 or not indices:
        raise ValueError(f"sampling_cost needs repeats >= 1 and prompts; got {repeats}, {indices}")
    target = a2a.get_direction(direction).target
    head = model.image_head if target == "image" else model.audio_head
    seen = {"passes": 0, "tokens": 0}

    def count_pass(module, args):
        seen["passes"] += 1
        seen["tokens"] += args[0].shape[0] * args[0].shape[1]  # (batch, seq, d_model)

    calls: dict[str, int] = {}

    def count_head(name: str):
        def hook(module, args):
            calls[name] = calls.get(name, 0) + 1

        return hook

    handles = [model.decoder.register_forward_pre_hook(count_pass)]
    handles += [
        child.register_forward_pre_hook(count_head(name))
        for name, child in head.named_children()
        if not isinstance(child, torch.nn.ModuleList)
    ]
    generator = torch.Generator().manual_seed(0)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            a2a.generate(model, data, direction, indices, generator=generator, **sample_options)
    finally:
        for handle in handles:
            handle.remove()
    rows = len(indices) * (2 if sample_options.get("guidance", 1.0) != 1.0 else 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a2a.generate(model, data, direction, indices, generator=generator, **sample_options)
        best = min(best, time.perf_counter() - start)
    n = len(indices)
    return SamplingCost(
        decoder_passes=seen["passes"],
        decoder_tokens=seen["tokens"] / rows,
        head_passes=max(calls.values(), default=0),
        flops=float(counter.get_total_flops()) / n,
        ms=1e3 * best / n,
        pictures=n,
    )


def _device(model: OmniLM) -> torch.device:
    return next(model.parameters()).device
