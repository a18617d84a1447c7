"""Lesson 05's core build, the gated cross-attention layer: a right answer written another
way, and the plausible wrong layers its check must reject. Each mistake is the written
layer with one thing changed. ``tests/test_checks.py`` runs them in its table, one test per
mistake (``LAYER_RIGHT``, ``LAYER_MISTAKES``, ``LAYER_MAY_ERROR``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from omni_edu.model.transformer import MLP, RMSNorm


class CrossAttentionWritten(nn.Module):
    """Cross-attention written out: einsum scores, an explicit softmax, masked rows zeroed."""

    def __init__(self, config) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.d_model // config.n_heads
        d = config.d_model
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def heads(self, t):
        return t.view(*t.shape[:2], self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x, media):
        k, v = self.kv(media).chunk(2, dim=-1)
        return k, v

    def scores(self, q, k, visible):
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        return scores.masked_fill(~visible[:, None], float("-inf"))

    def attend(self, scores, visible):
        sees = visible.any(-1)[:, None, :, None]
        weights = torch.softmax(scores.masked_fill(~sees, 0.0), dim=-1)
        return torch.where(sees, weights, 0.0)

    def forward(self, x, media, visible):
        k, v = self.keys_values(x, media)
        q, k, v = self.heads(self.q(x)), self.heads(k), self.heads(v)
        y = self.attend(self.scores(q, k, visible), visible) @ v
        return self.proj(y.transpose(1, 2).reshape(x.shape))


class LayerWritten(nn.Module):
    """A right answer: the gated layer around the written-out cross-attention."""

    cross_attention = CrossAttentionWritten

    def __init__(self, config) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.xattn = self.cross_attention(config)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)
        self.mlp_gate = nn.Parameter(torch.zeros(1))

    def attention_branch(self, x, media, visible):
        return torch.tanh(self.attn_gate) * self.xattn(self.attn_norm(x), media, visible)

    def mlp_branch(self, x):
        return torch.tanh(self.mlp_gate) * self.mlp(self.mlp_norm(x))

    def forward(self, x, media, visible):
        x = x + self.attention_branch(x, media, visible)
        return x + self.mlp_branch(x)


# ---------------------------------------------------------------------------------------
# Plausible mistakes in the gated layer
# ---------------------------------------------------------------------------------------


class RawGates(LayerWritten):
    # Plausible mistake: scales each branch by its raw gate instead of tanh(gate).
    def attention_branch(self, x, media, visible):
        return self.attn_gate * self.xattn(self.attn_norm(x), media, visible)

    def mlp_branch(self, x):
        return self.mlp_gate * self.mlp(self.mlp_norm(x))


class GatesStartOpen(LayerWritten):
    # Plausible mistake: gates initialised to one, so a new layer changes the language model.
    def __init__(self, config) -> None:
        super().__init__(config)
        with torch.no_grad():
            self.attn_gate.fill_(1.0)
            self.mlp_gate.fill_(1.0)


class NoResidual(LayerWritten):
    # Plausible mistake: returns the gated branches without adding them to x.
    def forward(self, x, media, visible):
        x = self.attention_branch(x, media, visible)
        return x + self.mlp_branch(x)


class ParallelBranches(LayerWritten):
    # Plausible mistake: the MLP reads the input x, not the x the cross-attention updated.
    def forward(self, x, media, visible):
        return x + self.attention_branch(x, media, visible) + self.mlp_branch(x)


class NoAttentionNorm(LayerWritten):
    # Plausible mistake: cross-attention from the raw residual stream (no pre-norm).
    def attention_branch(self, x, media, visible):
        return torch.tanh(self.attn_gate) * self.xattn(x, media, visible)


class UngatedMLP(LayerWritten):
    # Plausible mistake: only the cross-attention is gated; a new layer is not the identity.
    def mlp_branch(self, x):
        return self.mlp(self.mlp_norm(x))


# ---------------------------------------------------------------------------------------
# Plausible mistakes in the cross-attention inside it
# ---------------------------------------------------------------------------------------


def with_cross_attention(cls: type) -> type:
    """The written layer with ``cls`` as its cross-attention (named after the mistake)."""
    return type(
        cls.__name__.removesuffix("Attention") + "Layer", (LayerWritten,), {"cross_attention": cls}
    )


class AllMediaAttention(CrossAttentionWritten):
    # Plausible mistake: ignores the mask, so every text token reads every media token -
    # earlier items and media placed after it.
    def scores(self, q, k, visible):
        return q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)


class EmptyRowsReadEverythingAttention(CrossAttentionWritten):
    # Plausible mistake: a text token with no media before it (<bos>) is not zeroed; its
    # softmax over nothing is made finite by reading every media token, later ones included.
    def attend(self, scores, visible):
        sees = visible.any(-1)[:, None, :, None]
        return torch.softmax(scores.masked_fill(~sees, 0.0), dim=-1)


class ZeroedScoresAttention(CrossAttentionWritten):
    # Plausible mistake: masks by zeroing the hidden scores (not -inf), so hidden media
    # still get weight exp(0) in the softmax.
    def scores(self, q, k, visible):
        return q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) * visible[:, None]


class KeysValuesFromTextAttention(CrossAttentionWritten):
    # Plausible mistake: keys and values from the text x, as in self-attention (the mask,
    # text x media, then no longer fits the scores, text x text).
    def keys_values(self, x, media):
        return self.kv(x).chunk(2, dim=-1)


class ValuesThenKeysAttention(CrossAttentionWritten):
    # Plausible mistake: kv's output read as (values, keys) instead of (keys, values).
    def keys_values(self, x, media):
        v, k = self.kv(media).chunk(2, dim=-1)
        return k, v


class OneHeadAttention(CrossAttentionWritten):
    # Plausible mistake: one head of width d instead of n_heads heads of head_dim.
    def heads(self, t):
        return t[:, None]

    def scores(self, q, k, visible):
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim * self.n_heads)
        return scores.masked_fill(~visible[:, None], float("-inf"))


class UnscaledScoresAttention(CrossAttentionWritten):
    # Plausible mistake: scores q.k without dividing by sqrt(head_dim).
    def scores(self, q, k, visible):
        return (q @ k.transpose(-1, -2)).masked_fill(~visible[:, None], float("-inf"))


LAYER_RIGHT = (LayerWritten,)
LAYER_MISTAKES = (
    RawGates,
    GatesStartOpen,
    NoResidual,
    ParallelBranches,
    NoAttentionNorm,
    UngatedMLP,
    *(
        with_cross_attention(cls)
        for cls in (
            AllMediaAttention,
            EmptyRowsReadEverythingAttention,
            ZeroedScoresAttention,
            KeysValuesFromTextAttention,
            ValuesThenKeysAttention,
            OneHeadAttention,
            UnscaledScoresAttention,
        )
    ),
)


# Mistakes that may end in an error rather than a wrong number (a mask that does not fit).
LAYER_MAY_ERROR = tuple(m for m in LAYER_MISTAKES if m.__name__ == "KeysValuesFromTextLayer")
