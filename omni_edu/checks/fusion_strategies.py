"""Checks for lesson 05's exercises: the media-visibility mask and the gated cross-attention
layer of Flamingo-style fusion."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from omni_edu.grading import Case, CheckResult, check_function
from omni_edu.model.fusion import GatedCrossAttention, media_visibility_mask
from omni_edu.model.transformer import DecoderConfig

__all__ = [
    "check_gated_cross_attention",
    "check_media_visibility_mask",
    "gated_cross_attention",
    "media_visibility_mask",
]


def gated_cross_attention(
    layer: GatedCrossAttention, x: Tensor, media: Tensor, visible: Tensor
) -> Tensor:
    """The reference: one gated cross-attention layer applied to ``x (batch, n_text, d)``."""
    return layer(x, media, visible)


def check_media_visibility_mask(learner_fn: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """Does ``learner_fn(text_positions, media_positions)`` show each text token exactly the
    media tokens placed before it, and never padding (position -1)?"""
    g = torch.Generator().manual_seed(0)
    shuffled = torch.randperm(12, generator=g)
    cases = [
        Case(
            (torch.tensor([[0, 5, 6]]), torch.tensor([[1, 2, 3, 4]])),
            label="text <bos> | 4 media tokens | 2 text tokens",
        ),
        Case(
            (torch.tensor([[2, 5, 9]]), torch.tensor([[0, 1, 3, 4, 6, 7, 8]])),
            label="media and text interleaved: image, text, sound, text, image, text",
        ),
        Case(
            (torch.tensor([[4, 8], [1, 9]]), torch.tensor([[0, 5, -1], [2, 3, 4]])),
            label="two examples; the first has a padding media slot (position -1)",
        ),
        Case(
            (shuffled[:4].sort().values[None], shuffled[4:].sort().values[None]),
            label="random layout of 4 text and 8 media tokens",
        ),
    ]
    return check_function(
        "media_visibility_mask",
        learner_fn,
        media_visibility_mask,
        cases,
        hint="Compare every (text, media) pair at once by broadcasting: give the media "
        "positions a text axis and the text positions a media axis (None indexing). Then "
        "make sure no text token can see a padding slot (position -1).",
    )


def _layer(gate: float, seed: int) -> GatedCrossAttention:
    torch.manual_seed(seed)
    layer = GatedCrossAttention(DecoderConfig(d_model=16, n_heads=2))
    with torch.no_grad():
        layer.attn_gate.fill_(gate)
        layer.mlp_gate.fill_(-gate / 2)
        # Norm gains away from one, so that forgetting a norm shows.
        layer.attn_norm.weight.uniform_(0.5, 1.5)
        layer.mlp_norm.weight.uniform_(0.5, 1.5)
    return layer


def check_gated_cross_attention(
    learner_fn: Callable[[GatedCrossAttention, Tensor, Tensor, Tensor], Tensor],
) -> CheckResult:
    """Does ``learner_fn(layer, x, media, visible)`` compute Flamingo's gated layer
    ``x + tanh(a) * xattn(norm(x), media)``, then ``+ tanh(b) * mlp(norm(.))``?"""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, generator=g) * 3
    media = torch.randn(2, 5, 16, generator=g)
    visible = media_visibility_mask(
        torch.tensor([[0, 6, 7, 9], [3, 6, 8, 9]]), torch.tensor([[1, 2, 3, 4, 5]] * 2)
    )
    cases = [
        Case((_layer(0.0, 0), x, media, visible), label="a fresh layer (gates at 0)"),
        Case((_layer(0.8, 1), x, media, visible), label="gates opened: attn 0.8, mlp -0.4"),
        Case((_layer(2.5, 2), x, media, visible), label="gates wide open: attn 2.5, mlp -1.25"),
    ]
    return check_function(
        "gated_cross_attention",
        learner_fn,
        gated_cross_attention,
        cases,
        hint="Two residual updates, each scaled by torch.tanh of its own gate: first "
        "layer.xattn(layer.attn_norm(x), media, visible) with layer.attn_gate, then "
        "layer.mlp(layer.mlp_norm(x)) with layer.mlp_gate, on the already updated x.",
    )
