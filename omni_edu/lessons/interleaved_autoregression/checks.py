"""Checks for lesson 02's exercises: the interleaved attention mask, RoPE, a KV-cache step,
and two core builds: a decoder block, and one cached decoding step with it.

The references are the course's own implementations in
:mod:`omni_edu.model.interleave` and :mod:`omni_edu.model.transformer`; the KV-cache step
is checked against full causal attention over the whole sequence, the result that a
cache must reproduce. The block is checked with :func:`~omni_edu.grading.check_module`: the
package's :class:`~omni_edu.model.transformer.Block` weights are loaded into the learner's
module, and outputs and gradients compared. Every check takes ``show_recipe=True`` (show
the full recipe now) and ``time_limit`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.grading import (
    Case,
    CheckResult,
    Difference,
    Hints,
    LearnerMistake,
    check_function,
    check_module,
    check_property,
    compare,
    summarize,
)
from omni_edu.lessons.interleaved_autoregression.core_build import (
    BLOCK_CASES,
    BLOCK_CONFIG,
    CACHED_STEP,
    DECODER_BLOCK,
    STEP_CASES,
    block_forward,
    cached_pass,
    reference_block,
)
from omni_edu.model.interleave import attention_mask
from omni_edu.model.transformer import (
    DecoderConfig,
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
    "check_cached_step",
    "check_decoder_block",
    "check_kv_cache_step",
    "decode_with_cache",
]

ATTENTION_MASK = Hints(
    "attention_mask",
    nudge="Build the (B, T, T) mask from simple rules combined with & and |: causal order "
    "(key position <= query position), real tokens only, both ways inside a span. Start "
    "with the causal triangle, made from torch.arange.",
    failed="Check the rules one at a time: causal (key <= query), real queries and keys "
    "only, same span id >= 0 both ways, and each padding query sees itself.",
    on={
        "shape": "Return (B, T, T): one T x T mask per row of the batch. Broadcast the (B, T) "
        "inputs with [:, None, :] for keys (columns) and [:, :, None] for queries (rows).",
        "dtype": "Return a bool tensor (True = may attend): combine masks with & and |.",
    },
    recipe="Start from the causal rule key <= query (a lower triangle, torch.arange with "
    "[None, :] and [:, None]), keep only real queries and real keys, OR in 'same span "
    "and span id >= 0' (the -1 of ordinary tokens is not a span), and finally let "
    "each padding query see itself (torch.eye) so no row of the softmax is empty.",
)

APPLY_ROPE = Hints(
    "apply_rope",
    nudge="Split x into its pairs, a = x[..., 0::2] and b = x[..., 1::2], turn each pair "
    "(a, b) by its angle using cos and sin, and put the pairs back where they came from.",
    failed="Check the signs of the rotation, (a cos - b sin, a sin + b cos), and that each "
    "pair goes back to its own two places (interleaved), not halves side by side.",
    on={
        "shape": "cos and sin are (batch, seq, 1, head_dim // 2) and broadcast over heads "
        "against a and b. Interleave the two rotated halves back with "
        "torch.stack(..., dim=-1).flatten(-2), which gives head_dim again.",
    },
    recipe="Pair i is (x[..., 2i], x[..., 2i+1]): take a = x[..., 0::2] and b = x[..., 1::2]. "
    "Rotating by angle t gives (a cos t - b sin t, a sin t + b cos t); put the two halves "
    "back side by side with torch.stack(..., dim=-1).flatten(-2).",
)

KV_CACHE_STEP = Hints(
    "kv_cache_step",
    nudge="Two steps: grow both caches by the new token's key and value (the sequence axis "
    "is dim=2), then let the one new query attend to every key now in the cache.",
    failed="Scale the scores by 1/sqrt(head_dim) and use no causal mask: the cache holds "
    "only the past and the present, so the new query may see all of it.",
    on={
        "cache": "Append the new key and value at the end of the sequence axis: "
        "torch.cat([k_cache, k_new], dim=2), and return the grown caches.",
        "return": "Return three things, (out, k_cache, v_cache): the new token's output "
        "(batch, heads, 1, head_dim) and both caches grown by one token.",
    },
    recipe="Append first (torch.cat on dim=2, the sequence axis), then attend from the one "
    "new query to every key in the cache: softmax(q @ k.transpose(-2, -1) / sqrt(head_dim)) "
    "@ v. No causal mask is needed: nothing in the cache lies in the future. (SDPA's "
    "is_causal=True would be wrong here: with one query it keeps only the first key.)",
)


def _mask_cases() -> list[Case]:
    real_2x6 = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    spans = torch.tensor([[-1, 0, 0, 0, -1, -1], [-1, -1, 1, 1, 1, -1]])
    # text, [image x3], text, [audio x2], text; a second row with padding at the end
    real_2x8 = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    spans_2x8 = torch.tensor([[-1, 0, 0, 0, -1, 1, 1, -1], [-1, 2, 2, -1, -1, -1, -1, -1]])
    # Left padding (as batched generation uses): the padding comes first in a row.
    real_left = torch.tensor([[False, False] + [True] * 5, [True] * 7])
    spans_left = torch.tensor([[-1, -1, -1, 0, 0, -1, -1], [-1, -1, 1, 1, 1, -1, -1]])
    span_hint = (
        "Only tokens with the same span id >= 0 see each other both ways; -1 marks ordinary "
        "tokens, which are not one big span."
    )
    pad_hint = (
        "Padding keys are never seen; a padding query sees only itself (torch.eye), so that "
        "no row of the softmax is empty."
    )
    left_hint = (
        "Padding can sit anywhere in a row, also at its start: take which tokens are real from "
        "real itself (real[:, None, :] for keys, real[:, :, None] for queries), not from the "
        "number of real tokens."
    )
    return [
        Case((torch.ones(1, 5, dtype=torch.bool),), label="one row of 5 real tokens, no spans"),
        Case((real_2x6,), label="two rows, the second padded at the end, no spans", hint=pad_hint),
        Case(
            (torch.ones(2, 6, dtype=torch.bool), spans),
            label="two rows with one span each",
            hint=span_hint,
        ),
        Case((real_2x8, spans_2x8), label="two spans in a row, padding in the other"),
        Case(
            (real_left, spans_left),
            label="padding at the START of a row (left padding), a span in each row",
            hint=left_hint,
        ),
    ]


def check_attention_mask(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
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
        hints=ATTENTION_MASK,
        show_recipe=show_recipe,
        time_limit=time_limit,
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


def check_apply_rope(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(x, cos, sin)`` rotate each pair of ``x`` by its angle?

    ``x`` is ``(batch, seq, heads, head_dim)``; ``cos``/``sin`` are
    ``(batch, seq, 1, head_dim // 2)``; pair ``i`` is dimensions ``(2i, 2i + 1)``.
    """
    return check_function(
        "apply_rope",
        learner_fn,
        apply_rope,
        _rope_cases(),
        atol=1e-5,
        hints=APPLY_ROPE,
        show_recipe=show_recipe,
        time_limit=time_limit,
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
        returned = step_fn(q[:, :, now], k[:, :, now], v[:, :, now], k_cache, v_cache)
        out, k_cache, v_cache = _step_outputs(returned, (batch, heads, t + 1, dim))
        outs.append(out)
    return torch.cat(outs, dim=2), k_cache, v_cache


def _step_outputs(returned, cache_shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """``(out, k_cache, v_cache)`` from one step, or a :class:`LearnerMistake` saying what
    the step returned instead (so the message is about the learner's value, not this code)."""
    if not isinstance(returned, (tuple, list)) or len(returned) != 3:
        kind = f"a {type(returned).__name__}"
        if isinstance(returned, (tuple, list)):
            kind += f" of {len(returned)} items"
        elif isinstance(returned, torch.Tensor):
            kind = f"a tensor of shape {tuple(returned.shape)}"
        raise LearnerMistake(
            f"kv_cache_step should return a tuple (out, k_cache, v_cache); it returned {kind}"
        )
    batch, heads, past, dim = cache_shape
    wanted = {
        "out": (batch, heads, 1, dim),
        "k_cache": cache_shape,
        "v_cache": cache_shape,
    }
    for (name, shape), value in zip(wanted.items(), returned, strict=True):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = (
                f"shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else summarize(value)
            )
            raise LearnerMistake(
                f"at step {past - 1} (with {past - 1} earlier tokens in the cache) {name} should "
                f"be a tensor of shape {shape}; your kv_cache_step returned {got}",
                kind="return" if name == "out" else "cache",
            )
    return tuple(returned)


def _kv_cases() -> list[Case]:
    cases = []
    for i, (batch, heads, seq, dim) in enumerate([(1, 1, 3, 4), (2, 2, 6, 8), (1, 4, 9, 16)]):
        g = torch.Generator().manual_seed(10 + i)
        qkv = [torch.randn(batch, heads, seq, dim, generator=g) for _ in range(3)]
        cases.append(
            Case(tuple(qkv), label=f"{seq} tokens, batch {batch}, {heads} heads, dim {dim}")
        )
    return cases


def check_kv_cache_step(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
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
                return Difference(
                    f"after the last step the {name} should hold every token's entry: {why}",
                    "cache",
                )
        why = compare(full, out, atol=1e-5)
        if why:
            return Difference(
                f"step-by-step outputs differ from full causal attention: {why}", why.kind
            )
        return None

    return check_property(
        "kv_cache_step",
        learner_fn,
        _kv_cases(),
        prop,
        call=decode_with_cache,
        hints=KV_CACHE_STEP,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ----------------------------------------------------------------------------- core builds
# The cases, the reference and the pass with a cache live in core_build.py.


def check_decoder_block(
    learner: Callable[[DecoderConfig], nn.Module],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner(config)`` build the decoder's pre-norm block?

    The package's :class:`~omni_edu.model.transformer.Block` (weights redrawn) is loaded into
    the learner's module by name; ``block(x, cos=..., sin=..., mask=...)[0]`` and the
    gradients of every weight and of ``x`` are compared, with 1-D and M-RoPE positions, a
    causal pass (``mask=None``) and an explicit mask with padding and a two-way span.
    """
    return check_module(
        learner,
        reference_block,
        BLOCK_CONFIG,
        BLOCK_CASES,
        forward=block_forward,
        name="Block",
        hints=DECODER_BLOCK,
        input_grads=(0,),
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def check_cached_step(
    learner: Callable[[DecoderConfig], nn.Module],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does the learner's block decode with a KV cache as the package's does?

    :func:`cached_pass`: a prompt with an empty cache, then new tokens after it; the
    outputs of both calls, the keys and values the cache holds afterwards, and the
    gradients with respect to both inputs are compared with the package's
    :class:`~omni_edu.model.transformer.Block` (weights redrawn and loaded into the
    learner's module).
    """
    return check_module(
        learner,
        reference_block,
        BLOCK_CONFIG,
        STEP_CASES,
        forward=cached_pass,
        name="cached decoding step",
        hints=CACHED_STEP,
        input_grads=(0, 1),
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
