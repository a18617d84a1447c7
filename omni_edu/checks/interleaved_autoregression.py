"""Checks for lesson 02's exercises: the interleaved attention mask, RoPE, a KV-cache step.

The references are the course's own implementations in
:mod:`omni_edu.model.interleave` and :mod:`omni_edu.model.transformer`; the KV-cache step
is checked against full causal attention over the whole sequence, the result that a
cache must reproduce.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from omni_edu.grading import Case, CheckResult, check_function, check_property, compare
from omni_edu.model.interleave import attention_mask
from omni_edu.model.transformer import (
    apply_rope,
    default_mrope_sections,
    rope_angles,
    rope_cos_sin,
    rope_frequencies,
)

__all__ = [
    "apply_rope",
    "attention_mask",
    "check_apply_rope",
    "check_attention_mask",
    "check_kv_cache_step",
    "decode_with_cache",
]


def _mask_cases() -> list[Case]:
    real_2x6 = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    spans = torch.tensor([[-1, 0, 0, 0, -1, -1], [-1, -1, 1, 1, 1, -1]])
    # text, [image x3], text, [audio x2], text; a second row with padding at the end
    real_2x8 = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    spans_2x8 = torch.tensor([[-1, 0, 0, 0, -1, 1, 1, -1], [-1, 2, 2, -1, -1, -1, -1, -1]])
    return [
        Case((torch.ones(1, 5, dtype=torch.bool),), label="one row of 5 real tokens, no spans"),
        Case((real_2x6,), label="two rows, the second padded at the end, no spans"),
        Case((torch.ones(2, 6, dtype=torch.bool), spans), label="two rows with one span each"),
        Case((real_2x8, spans_2x8), label="two spans in a row, padding in the other"),
    ]


def check_attention_mask(learner_fn: Callable) -> CheckResult:
    """Does ``learner_fn(real, span_ids=None)`` build the interleaved attention mask?

    Expected: ``(B, T, T)`` bool, True = query (row) may attend to key (column); causal;
    never a padding key; a padding query sees only itself; tokens of one span (same
    ``span_ids`` >= 0) see each other both ways.
    """
    return check_function(
        "attention_mask",
        learner_fn,
        attention_mask,
        _mask_cases(),
        hint="Start from the causal rule key <= query (a lower triangle, torch.arange with "
        "[None, :] and [:, None]), keep only real queries and real keys, OR in 'same span "
        "and span id >= 0' (the -1 of ordinary tokens is not a span), and finally let "
        "each padding query see itself (torch.eye) so no row of the softmax is empty.",
    )


def _rope_case(positions: torch.Tensor, head_dim: int, heads: int, label: str, seed: int) -> Case:
    batch, seq = positions.shape[-2:]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq, heads, head_dim, generator=g)
    sections = default_mrope_sections(head_dim) if positions.dim() == 3 else None
    angles = rope_angles(positions, rope_frequencies(head_dim), sections)
    cos, sin = rope_cos_sin(angles)
    return Case((x, cos, sin), label=label)


def _rope_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    patch = torch.arange(6)[None]  # a 2x3 image starting at position 3: (time, row, col)
    mrope = torch.stack([torch.full((1, 6), 3), 3 + patch // 3, 3 + patch % 3])
    return [
        _rope_case(torch.zeros(1, 3, dtype=torch.long), 8, 2, "position 0 everywhere (no turn)", 1),
        _rope_case(torch.arange(5)[None], 8, 2, "positions 0..4, head_dim 8, 2 heads", 2),
        _rope_case(torch.randint(0, 50, (2, 4), generator=g), 16, 3, "random positions", 3),
        _rope_case(mrope, 16, 2, "M-RoPE positions of a 2x3 image", 4),
    ]


def check_apply_rope(learner_fn: Callable) -> CheckResult:
    """Does ``learner_fn(x, cos, sin)`` rotate each pair of ``x`` by its angle?

    ``x`` is ``(batch, seq, heads, head_dim)``; ``cos``/``sin`` are
    ``(batch, seq, 1, head_dim // 2)``; pair ``i`` is dimensions ``(2i, 2i + 1)``.
    """
    return check_function(
        "apply_rope",
        learner_fn,
        apply_rope,
        _rope_cases(),
        hint="Pair i is (x[..., 2i], x[..., 2i+1]): take a = x[..., 0::2] and b = x[..., 1::2]. "
        "Rotating by angle t gives (a cos t - b sin t, a sin t + b cos t); put the two halves "
        "back side by side with torch.stack(..., dim=-1).flatten(-2).",
        atol=1e-5,
    )


def decode_with_cache(
    step_fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feed a sequence to ``step_fn`` one token at a time, starting from empty caches.

    ``q, k, v``: ``(batch, heads, seq, head_dim)``. Returns the outputs of every step,
    concatenated ``(batch, heads, seq, head_dim)``, and the final key and value caches.
    """
    batch, heads, seq, dim = q.shape
    k_cache, v_cache = q.new_zeros(batch, heads, 0, dim), q.new_zeros(batch, heads, 0, dim)
    outs = []
    for t in range(seq):
        now = slice(t, t + 1)
        out, k_cache, v_cache = step_fn(q[:, :, now], k[:, :, now], v[:, :, now], k_cache, v_cache)
        outs.append(out)
    return torch.cat(outs, dim=2), k_cache, v_cache


def _kv_cases() -> list[Case]:
    cases = []
    for i, (batch, heads, seq, dim) in enumerate([(1, 1, 3, 4), (2, 2, 6, 8), (1, 4, 9, 16)]):
        g = torch.Generator().manual_seed(10 + i)
        qkv = [torch.randn(batch, heads, seq, dim, generator=g) for _ in range(3)]
        cases.append(
            Case(tuple(qkv), label=f"{seq} tokens, batch {batch}, {heads} heads, dim {dim}")
        )
    return cases


def check_kv_cache_step(learner_fn: Callable) -> CheckResult:
    """Does decoding one token at a time with ``learner_fn`` equal full causal attention?

    ``learner_fn(q_new, k_new, v_new, k_cache, v_cache) -> (out, k_cache, v_cache)`` takes
    the newest token's ``(batch, heads, 1, head_dim)`` query, key and value and the caches
    ``(batch, heads, past, head_dim)``, and returns its attention output
    ``(batch, heads, 1, head_dim)`` and the caches grown to ``past + 1``.
    """

    def prop(case: Case, got: tuple) -> str | None:
        q, k, v = case.args
        out, k_cache, v_cache = got
        full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        for name, expected, yours in (("key cache", k, k_cache), ("value cache", v, v_cache)):
            why = compare(expected, yours)
            if why:
                return f"after the last step the {name} should hold every token's entry: {why}"
        why = compare(full, out, atol=1e-5)
        if why:
            return f"step-by-step outputs differ from full causal attention: {why}"
        return None

    return check_property(
        "kv_cache_step",
        lambda q, k, v: decode_with_cache(learner_fn, q, k, v),
        _kv_cases(),
        prop,
        hint="Append first (torch.cat on dim=2, the sequence axis), then attend from the one "
        "new query to every key in the cache: softmax(q @ k.transpose(-2, -1) / sqrt(head_dim)) "
        "@ v. No causal mask is needed: nothing in the cache lies in the future. (SDPA's "
        "is_causal=True would be wrong here: with one query it keeps only the first key.)",
    )
