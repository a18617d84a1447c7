"""Masked discrete diffusion over a tokenizer's code ids (MaskGIT, Chang et al. 2022;
Show-o, Xie et al. 2024; lesson 04b).

Autoregressive codes (:class:`~omni_edu.model.heads.output.CodeHead`) write a picture's
code ids one at a time, left to right: one decoder pass per code. Masked discrete diffusion
writes them all in a few passes, in any order:

* **training**: each picture's span gets a random share of its codes hidden behind a
  learned ``[MASK]`` embedding, the share drawn from a cosine schedule
  (:func:`mask_ratio` of a uniform draw: most pictures lose most of their codes, a few lose
  only some); the span attends both ways, and the decoder predicts the hidden codes at
  their own positions (cross-entropy over the masked ones only);
* **sampling**: start with every code hidden. At each of ``K`` steps, run the span, draw a
  code for every hidden position, and keep the most confident draws; the rest stay hidden
  for the next step. The schedule says how many stay hidden after each step
  (:func:`masked_after`), reaching none after step ``K``.

The decoder does the work, as in whole-image diffusion; this head adds the ``[MASK]``
embedding and the read-out (tied to the code table, like the autoregressive head's).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.heads.span import SpanState
from omni_edu.model.weights import count_parameters

# logits_of(codes (n, L), masked (n, L) bool) -> logits (n, L, vocab): the decoder over the span
LogitsFn = Callable[[Tensor, Tensor], Tensor]


def mask_ratio(progress: Tensor) -> Tensor:
    """The cosine schedule: the share of a span hidden at ``progress`` in [0, 1],
    ``cos(pi / 2 * progress)`` - all of it at 0, none at 1, and most of the way spent with
    much hidden (MaskGIT's choice, which trains the hard, nearly empty spans often)."""
    return torch.cos(0.5 * math.pi * progress)


def masked_after(step: int, steps: int, length: int) -> int:
    """How many of a span's ``length`` codes are still hidden after decoding step ``step``
    (1..``steps``): ``floor(length * cos(pi / 2 * step / steps))``, but at most
    ``length - step``, so that every step reveals at least one code; 0 after the last."""
    ratio = float(mask_ratio(torch.tensor(step / steps, dtype=torch.float64)))
    return max(0, min(math.floor(length * ratio), length - step))


def training_mask(n: int, length: int, generator: torch.Generator | None = None) -> Tensor:
    """Which codes to hide in ``n`` spans of ``length``: ``(n, length)`` bool. Each span
    hides ``ceil(length * mask_ratio(u))`` codes (at least one), ``u`` uniform, at random
    places."""
    ratio = mask_ratio(torch.rand(n, generator=generator))
    count = (length * ratio).ceil().clamp(min=1)
    rank = torch.rand(n, length, generator=generator).argsort(dim=1).argsort(dim=1)
    return rank < count[:, None]


def unmask_by_confidence(
    codes: Tensor, masked: Tensor, sampled: Tensor, confidence: Tensor, n_masked: int
) -> tuple[Tensor, Tensor]:
    """One decoding step: reveal the most confident draws, keep ``n_masked`` hidden.

    Args:
        codes: ``(n, L)`` code ids so far (anything where hidden).
        masked: ``(n, L)`` bool, True where still hidden.
        sampled: ``(n, L)`` a code drawn for every position.
        confidence: ``(n, L)`` the probability the model gave each draw.
        n_masked: how many positions of each span stay hidden after this step.

    Returns:
        ``(codes, masked)``: in each span the ``n_masked`` hidden positions with the lowest
        confidence stay hidden; every other hidden position takes its draw. Revealed codes
        never change.
    """
    # A revealed code is never hidden again: it counts as infinitely confident.
    score = confidence.masked_fill(~masked, float("inf"))
    rank = score.argsort(dim=1).argsort(dim=1)  # 0 = the least confident position
    still = masked & (rank < n_masked)
    reveal = masked & ~still
    return torch.where(reveal, sampled, codes), still


class MaskedCodeHead(nn.Module):
    """The ``[MASK]`` embedding and the code read-out of masked discrete diffusion.

    ``corrupt(ids)`` hides codes of spans ``(n, L)``; ``embed(h, state)`` puts the mask
    embedding into the decoder's input ``(n, L, d_model)`` where hidden;
    ``span_loss(hidden, state)`` is the cross-entropy of the hidden codes;
    ``sample(logits_of, (n, L))`` decodes in ``steps`` passes.
    """

    discrete = True
    writes_span = True
    in_decoder = True

    def __init__(self, d_model: int, vocab_size: int, sampling_steps: int = 8) -> None:
        super().__init__()
        self.sampling_steps = sampling_steps
        self.proj = nn.Linear(d_model, vocab_size, bias=False)  # OmniLM ties it to the codes
        self.mask_embedding = nn.Parameter(0.02 * torch.randn(d_model))

    def num_parameters(self) -> int:
        return count_parameters(self)

    def corrupt(
        self, ids: Tensor, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> SpanState:
        """Code ids ``(n, L)`` -> a random share hidden (:func:`training_mask`)."""
        masked = training_mask(*ids.shape, generator=generator).to(ids.device)
        return SpanState(contents=ids, target=ids, masked=masked, grid=grid)

    def embed(self, h: Tensor, state: SpanState) -> Tensor:
        """Hidden positions read the ``[MASK]`` embedding instead of their code's."""
        return torch.where(state.masked[..., None], self.mask_embedding.to(h), h)

    def span_loss(self, hidden: Tensor, state: SpanState) -> Tensor:
        """Cross-entropy of the hidden codes, read from the decoder's output there."""
        return F.cross_entropy(self.proj(hidden[state.masked]), state.target[state.masked])

    @torch.no_grad()
    def sample(
        self,
        logits_of: LogitsFn,
        shape: tuple[int, int],
        steps: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        **ignored: object,
    ) -> Tensor:
        """Code ids ``(n, L)`` decoded in ``steps`` passes of ``logits_of`` (the decoder
        over the span). Each hidden position draws a code at ``temperature`` (0: the most
        likely); the draws the model is surest of are revealed first."""
        if temperature < 0:
            raise ValueError(f"temperature should be >= 0 (0 = greedy); got {temperature}.")
        steps = steps or self.sampling_steps
        n, length = shape
        codes = torch.zeros(shape, dtype=torch.long, device=device)
        masked = torch.ones(shape, dtype=torch.bool, device=device)
        for step in range(1, steps + 1):
            if not masked.any():  # more steps than codes: the span is already written
                break
            probs = logits_of(codes, masked).float().softmax(dim=-1)
            if temperature == 0:
                sampled = probs.argmax(dim=-1)
            else:
                tempered = (probs.log() / temperature).softmax(dim=-1).flatten(0, 1).cpu()
                sampled = torch.multinomial(tempered, 1, generator=generator).view(n, length)
                sampled = sampled.to(probs.device)
            confidence = probs.gather(-1, sampled[..., None])[..., 0]
            codes, masked = unmask_by_confidence(
                codes, masked, sampled, confidence, masked_after(step, steps, length)
            )
        return codes
