"""Checks for lesson 05's exercises: the media-visibility mask (Flamingo's rule: a text token
reads only the most recent media item before it) and the core build, the whole gated
cross-attention layer (checked with the reference's weights loaded into the learner's)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from omni_edu.grading import Case, CheckResult, Hints, check_function, check_module
from omni_edu.model.cross_attention import GatedCrossAttention, media_visibility_mask
from omni_edu.model.transformer import DecoderConfig

__all__ = [
    "GatedCrossAttention",
    "check_gated_cross_attention",
    "check_media_visibility_mask",
    "media_visibility_mask",
]


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


# ---------------------------------------------------------------------------------------
# The core build: the whole gated cross-attention layer, reference weights loaded
# ---------------------------------------------------------------------------------------

LAYER_CONFIG = DecoderConfig(d_model=16, n_heads=2)  # two heads, so merging them matters


def trained_looking(layer: GatedCrossAttention, seed: int = 0) -> GatedCrossAttention:
    """``layer`` with weights that look trained: every matrix redrawn from a seeded normal,
    norm gains away from one, both gates open (a fresh layer's closed gates would hide
    every mistake behind them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            if p.dim() == 2:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        layer.attn_norm.weight.copy_(0.5 + torch.rand(layer.attn_norm.weight.shape, generator=g))
        layer.mlp_norm.weight.copy_(0.5 + torch.rand(layer.mlp_norm.weight.shape, generator=g))
        layer.attn_gate.fill_(0.8)
        layer.mlp_gate.fill_(-0.6)
    return layer


def _reference_layer(config: DecoderConfig) -> GatedCrossAttention:
    return trained_looking(GatedCrossAttention(config))


_reference_layer.__name__ = "GatedCrossAttention"

FRESH = "a new layer's change to x (0: both gates start closed)"


def _layer_forward(module: nn.Module, x: Tensor, media: Tensor, visible: Tensor) -> dict:
    """The layer's output with the reference's weights, and what a *new* layer of the same
    class does to ``x`` (nothing: Flamingo's gates start at zero)."""
    fresh = type(module)(LAYER_CONFIG)
    return {"output": module(x, media, visible), FRESH: fresh(x, media, visible) - x}


def _layer_case(text_positions, media_positions, media_items) -> Callable:
    """Inputs ``(x, media, visible)`` for one layout; ``visible`` by Flamingo's rule."""
    text_positions, media_positions = torch.tensor(text_positions), torch.tensor(media_positions)
    media_items = torch.tensor(media_items)

    def make(g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        (batch, n_text), n_media, d = text_positions.shape, media_positions.shape[1], 16
        visible = media_visibility_mask(text_positions, media_positions, media_items)
        x = 2 * torch.randn(batch, n_text, d, generator=g)
        return x, torch.randn(batch, n_media, d, generator=g), visible

    return make


LAYER_CASES = {
    "<bos> | a sound (3 tokens) | text | a picture (4 patches) | 2 text tokens, 2 examples": (
        _layer_case([[0, 4, 9, 10]] * 2, [[1, 2, 3, 5, 6, 7, 8]] * 2, [[0, 0, 0, 1, 1, 1, 1]] * 2)
    ),
    "three items with text between them; the last text token reads only the third": (
        _layer_case([[2, 5, 9]], [[0, 1, 3, 4, 6, 7, 8]], [[0, 0, 1, 1, 2, 2, 2]])
    ),
    "a padding slot (position -1) in the first example": _layer_case(
        [[0, 4, 6], [3, 8, 9]], [[1, 2, -1, 5], [4, 5, 6, 7]], [[0, 0, 0, 1], [0, 0, 1, 1]]
    ),
    "batch 3, 5 text tokens, 9 media tokens in 3 items": _layer_case(
        [[0, 3, 7, 12, 13]] * 3,
        [[1, 2, 4, 5, 6, 8, 9, 10, 11]] * 3,
        [[0, 0, 1, 1, 1, 2, 2, 2, 2]] * 3,
    ),
}

GATED_CROSS_ATTENTION = Hints(
    "GatedCrossAttention",
    nudge="Two classes. CrossAttention: queries from the text x, keys and values from the "
    "media, config.n_heads heads of config.head_dim, each text token reading only the media "
    "its row of visible allows, and exactly zero for a token that may read nothing. "
    "GatedCrossAttention: a gated residual cross-attention of the normalised x, then a gated "
    "residual MLP of the normalised result; tanh of each gate scales its branch, and both "
    "gates start at zero.",
    failed="Go through the layer in order: norm, cross-attention (queries from text; keys, "
    "then values, from one kv projection of the media; the mask; heads merged back; proj), "
    "tanh(attn_gate), the residual; then norm, MLP, tanh(mlp_gate), the residual on the "
    "updated x. If only the new layer's change differs: a new layer must return x unchanged.",
    on={
        "weights": "Name the parts as the spec does - attn_norm, xattn (with q, kv, proj, "
        "no biases), attn_gate of shape (1,), mlp_norm, mlp (the course's MLP), mlp_gate - so "
        "that the reference's weights load into yours.",
        "shape": "Return (batch, n_text, d): one vector per text token. Split d into "
        "(n_heads, head_dim) for the attention and merge the heads back afterwards.",
    },
    recipe="CrossAttention.__init__: self.q = nn.Linear(d, d, bias=False); self.kv = "
    "nn.Linear(d, 2 * d, bias=False); self.proj = nn.Linear(d, d, bias=False). forward: q = "
    "self.q(x).view(b, n_text, h, hd).transpose(1, 2); k, v = self.kv(media).view(b, n_media, "
    "2, h, hd).unbind(2), each .transpose(1, 2); sees = visible.any(-1, keepdim=True); y = "
    "F.scaled_dot_product_attention(q, k, v, attn_mask=(visible | ~sees).unsqueeze(1)); "
    "return self.proj(y.transpose(1, 2).reshape(b, n_text, d)) * sees. "
    "GatedCrossAttention.__init__: attn_norm = RMSNorm(d, config.norm_eps), xattn = "
    "CrossAttention(config), attn_gate = nn.Parameter(torch.zeros(1)), the same three for "
    "the MLP (MLP(config)). forward: x = x + torch.tanh(self.attn_gate) * "
    "self.xattn(self.attn_norm(x), media, visible); return x + torch.tanh(self.mlp_gate) * "
    "self.mlp(self.mlp_norm(x)).",
)


def check_gated_cross_attention(
    learner_cls: Callable[[DecoderConfig], nn.Module],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """``learner_cls(config)``: Flamingo's gated cross-attention layer, ``forward(x, media,
    visible) -> (batch, n_text, d)``. The reference's weights (redrawn to look trained, gates
    open) are loaded into it; outputs and gradients must match on four layouts, and a new
    layer of the learner's class must return its input unchanged."""
    return check_module(
        learner_cls,
        _reference_layer,
        LAYER_CONFIG,
        LAYER_CASES,
        forward=_layer_forward,
        hints=GATED_CROSS_ATTENTION,
        name="GatedCrossAttention",
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
