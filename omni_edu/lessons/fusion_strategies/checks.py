"""Checks for lesson 05's exercises: the media-visibility mask (Flamingo's rule: a text token
reads only the most recent media item before it) and the gated cross-attention layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from omni_edu.grading import Case, CheckResult, Hints, check_function
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


PADDING_HINT = (
    "Position -1 is padding: it comes 'before' every text token, but no text token may read "
    "it, and it must not count as the most recent media token either."
)

MEDIA_VISIBILITY_MASK = Hints(
    "media_visibility_mask",
    nudge="For every (text token, media token) pair ask three things: did the media token "
    "come before the text token, is it a real token (not padding), and does it belong to "
    "the most recent media item before that text token? Answer all pairs at once by "
    "broadcasting over (batch, n_text, n_media).",
    failed="Flamingo's rule: among the real media tokens before a text token, find the "
    "latest one; the text token reads exactly the tokens of that one's item, and nothing "
    "when no media came before it.",
    on={
        "shape": "Return (batch, n_text, n_media): a row per text token (the queries), a "
        "column per media token (the keys).",
        "dtype": "Return a boolean mask: comparisons give booleans; combine them with &.",
    },
    recipe="before = (media_positions[:, None, :] < text_positions[:, :, None]) & "
    "(media_positions >= 0)[:, None, :]; latest = torch.where(before, "
    "media_positions[:, None, :], -1).argmax(-1); latest_item = media_items.gather(1, "
    "latest); return before & (media_items[:, None, :] == latest_item[:, :, None]).",
)


def check_media_visibility_mask(
    learner_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(text_positions, media_positions, media_items)`` follow Flamingo's
    rule: each text token sees exactly the tokens of the most recent media item placed
    before it, nothing when no media came before it, and never padding (position -1)?"""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(14, generator=g)
    text, media = order[:4].sort().values, order[4:].sort().values
    cases = [
        Case(
            (torch.tensor([[0, 5, 6]]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0] * 4])),
            label="<bos> | one image of 4 patches | 2 text tokens",
            hint="The <bos> token comes before the image: it reads nothing (an all-False row).",
        ),
        Case(
            (
                torch.tensor([[2, 5, 9]]),
                torch.tensor([[0, 1, 3, 4, 6, 7, 8]]),
                torch.tensor([[0, 0, 1, 1, 2, 2, 2]]),
            ),
            label="image, text, sound, text, image, text: three items",
            hint="Only the most recent item: the last text token reads the second image, not "
            "the sound or the first image, although all three came before it.",
        ),
        Case(
            (
                torch.tensor([[0, 7, 8]]),
                torch.tensor([[1, 2, 3, 4, 5, 6]]),
                torch.tensor([[0] * 3 + [1] * 3]),
            ),
            label="an image then a sound with no text between: two items side by side",
            hint="Items, not runs of positions: the text after the sound reads only the sound, "
            "even though the image ends right where the sound begins.",
        ),
        Case(
            (
                torch.tensor([[0, 4], [3, 9]]),
                torch.tensor([[1, 2, -1], [5, 6, 7]]),
                torch.tensor([[0, 0, 0], [0, 0, 1]]),
            ),
            label="two examples; the first has a padding slot (position -1) in item 0",
            hint=PADDING_HINT,
        ),
        Case(
            (torch.tensor([[0, 6]]), torch.tensor([[-1, 3, 4]]), torch.tensor([[1, 1, 1]])),
            label="padding before everything: the first text token has no media before it",
            hint=PADDING_HINT,
        ),
        Case(
            (text[None], media[None], torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 2]])),
            label="a random layout of 4 text tokens and 3 media items",
        ),
    ]
    return check_function(
        "media_visibility_mask",
        learner_fn,
        media_visibility_mask,
        cases,
        hints=MEDIA_VISIBILITY_MASK,
        show_recipe=show_recipe,
        time_limit=time_limit,
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
        torch.tensor([[0, 6, 7, 9], [3, 6, 8, 9]]),
        torch.tensor([[1, 2, 3, 4, 5]] * 2),
        torch.tensor([[0, 0, 0, 1, 1]] * 2),  # an image of 3 patches, a sound of 2 tokens
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
