"""What the heads that write a whole span at once share (lesson 04b).

A per-token head (:mod:`~omni_edu.model.heads.flow`, :mod:`~omni_edu.model.heads.output`)
writes a picture one patch at a time: one decoder pass per patch. A *span head* writes
all the patches of a picture together, denoising them jointly over a few steps:

* the DiT head (:mod:`~omni_edu.model.heads.dit`): a small transformer over the patches,
  conditioned on the decoder's state before the picture - one decoder pass per picture;
* whole-image diffusion (:mod:`~omni_edu.model.heads.transfusion`): the decoder itself
  denoises the picture's span, which attends both ways - one decoder pass per step;
* masked discrete diffusion (:mod:`~omni_edu.model.heads.masked`): the decoder fills in
  masked code ids of the span, the most confident first - one decoder pass per step.

The two continuous ones train with the same loss, flow matching over a whole span with
one time per span (:func:`span_flow_loss`), and sample with the same Euler loop
(:func:`euler_sample`). A span is ``(n, L, dim)``: ``n`` pictures of ``L`` tokens.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from omni_edu.modalities import Modality
from omni_edu.model.heads.flow import shift_time

if TYPE_CHECKING:
    from omni_edu.model.interleave import PackedBatch

# denoiser(x_t (n, L, dim), t (n,)) -> velocity (n, L, dim): every token of a span at once
SpanDenoiser = Callable[[Tensor, Tensor], Tensor]


def span_flow_loss(denoiser: SpanDenoiser, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """Rectified-flow loss of whole spans: every token of a span at the same time ``t``.

    x, noise: ``(n, L, dim)`` (``n`` spans of ``L`` tokens); t: ``(n,)`` in ``[0, 1]``, one
    time per span. Each span is put on its straight path ``x_t = (1 - t) * noise + t * x``
    and the denoiser, which sees the whole noised span at once, is asked for the velocity
    of every token, ``x - noise``; returns the mean squared error (a 0-d tensor).
    """
    t_span = t[:, None, None]  # (n, 1, 1): one time for every token and number of a span
    x_t = (1 - t_span) * noise + t_span * x
    return F.mse_loss(denoiser(x_t, t), x - noise)


def training_times(
    n: int, sampling: str, shift: float, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` training times in [0, 1]: uniform or logit-normal, then moved towards the noise
    by ``shift`` (:func:`~omni_edu.model.heads.flow.shift_time`), as the per-token flow head
    draws them."""
    if sampling == "logit_normal":
        t = torch.sigmoid(torch.randn(n, generator=generator))
    else:
        t = torch.rand(n, generator=generator)
    return shift_time(t, shift)


def time_grid(steps: int, shift: float) -> list[float]:
    """The ``steps + 1`` times an Euler sampler visits, from 0 (noise) to 1 (data), spaced
    evenly and then shifted towards the noise like the training times."""
    if steps < 1:
        raise ValueError(f"steps should be >= 1; got {steps}.")
    return shift_time(torch.linspace(0, 1, steps + 1, dtype=torch.float64), shift).tolist()


def euler_sample(
    velocity: SpanDenoiser,
    shape: tuple[int, int, int],
    steps: int,
    shift: float,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Spans ``shape`` = ``(n, L, dim)`` drawn by following ``velocity`` from noise
    (``t = 0``) to data (``t = 1``) in ``steps`` Euler steps, every token of a span moved
    together. ``temperature`` scales the starting noise (0: start from its centre)."""
    if temperature < 0:
        raise ValueError(f"temperature should be >= 0 (0 = no noise); got {temperature}.")
    x = temperature * torch.randn(shape, generator=generator).to(device)
    grid = time_grid(steps, shift)
    for t, t_next in itertools.pairwise(grid):
        x = x + (t_next - t) * velocity(x, torch.full((shape[0],), t, device=x.device))
    return x


def guided_rows(out: Tensor, n_rows: int, guidance: float) -> Tensor:
    """Classifier-free guidance across a batch whose rows ``n_rows:`` are the unconditional
    twins of rows ``:n_rows``: ``uncond + guidance * (cond - uncond)``, ``(n_rows, ...)``;
    just the first ``n_rows`` when the batch holds no twins."""
    if out.shape[0] == n_rows:
        return out
    cond, uncond = out[:n_rows], out[n_rows:]
    return uncond + guidance * (cond - uncond)


def sincos_positions(grid: tuple[int, int], width: int) -> Tensor:
    """Fixed 2-D sine-cosine position features ``(rows * cols, width)`` of a patch grid in
    row-major order (DiT's): half the features encode the row, half the column.
    ``width`` must be a multiple of 4."""
    if width % 4:
        raise ValueError(f"width should be a multiple of 4 for 2-D positions; got {width}.")
    rows, cols = grid
    quarter = width // 4
    freqs = torch.exp(-math.log(10_000) * torch.arange(quarter) / quarter)
    r = torch.arange(rows).repeat_interleave(cols).float()[:, None] * freqs
    c = torch.arange(cols).repeat(rows).float()[:, None] * freqs
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=-1)


@dataclass
class SpanState:
    """What a head that denoises inside the decoder put into the spans it writes, and what
    it must predict there (see :meth:`~omni_edu.model.omni_lm.OmniLM.loss`).

    ``contents``: the corrupted spans the decoder reads, ``(n, L, dim)`` features or
    ``(n, L)`` code ids (for a DiT, the clean spans: the decoder reads placeholders);
    ``target``: the velocity ``(n, L, dim)`` or the code ids ``(n, L)`` to predict (``None``
    when sampling); ``t``: each span's time ``(n,)`` (whole-image diffusion); ``masked``:
    ``(n, L)`` bool, the hidden codes (masked codes); ``grid``: the spans' ``(rows, cols)``.
    """

    contents: Tensor
    target: Tensor | None = None
    t: Tensor | None = None
    masked: Tensor | None = None
    grid: tuple[int, int] | None = None


@dataclass(frozen=True)
class WrittenSpans:
    """Where the spans of one modality that a batch trains sit: ``rows`` ``(m,)`` and
    ``cols`` ``(m, L)``, so that ``x[spans.index]`` gathers them as ``(m, L, ...)``; each is
    a ``grid`` of ``(rows, cols)`` tokens (a sound: ``(1, L)``)."""

    rows: Tensor
    cols: Tensor
    grid: tuple[int, int]

    @property
    def index(self) -> tuple[Tensor, Tensor]:
        return self.rows[:, None], self.cols


def written_spans(packed: PackedBatch, modality: Modality) -> WrittenSpans | None:
    """The trained (``predict=True``) spans of ``modality`` in ``packed``, or ``None`` when
    it has none. A span head writes spans of one grid, so they must all be as long."""
    found = [
        (row, span)
        for row, spans in enumerate(packed.spans)
        for span in spans
        if span.modality == modality and span.segment >= 0 and span.predict
    ]
    if not found:
        return None
    lengths = sorted({span.length for _, span in found})
    if len(lengths) > 1:
        raise ValueError(
            f"a span head writes {modality.name} spans of one length; this batch has "
            f"lengths {lengths}."
        )
    length = lengths[0]
    device = packed.modality.device
    starts = torch.tensor([span.start for _, span in found], device=device)
    return WrittenSpans(
        rows=torch.tensor([row for row, _ in found], device=device),
        cols=starts[:, None] + torch.arange(length, device=device),
        grid=found[0][1].grid or (1, length),
    )


def both_ways_within(mask: Tensor, here: Tensor) -> Tensor:
    """``mask`` ``(B, T, T)`` with every run of consecutive positions ``here`` ``(B, T)``
    (one picture's span) attending both ways inside itself; nothing else changes."""
    starts = here & ~F.pad(here[:, :-1], (1, 0), value=False)  # first position of each run
    run = starts.cumsum(dim=1)
    same = here[:, :, None] & here[:, None, :] & (run[:, :, None] == run[:, None, :])
    return mask | same
