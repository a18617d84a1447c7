"""Lesson 02's core builds: a decoder block of the learner's own, and a cached step with it.

The learner writes the decoder's pre-norm :class:`~omni_edu.model.transformer.Block` as a
module of their own (attention with RoPE and the mask, the SwiGLU MLP, two RMSNorms, the
residuals), then extends its attention with a KV cache. This module holds what the two
checks in :mod:`~omni_edu.lessons.interleaved_autoregression.checks` run (the reference
with redrawn weights, the input cases, a prefill and a decoding step through a block), and
:func:`omnilm_with_blocks`, which puts the learner's blocks into an OmniLM to train.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from omni_edu.grading import Hints, LearnerMistake, summarize
from omni_edu.model.kv_cache import BlockCache
from omni_edu.model.layout import attention_mask
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.transformer import (
    Block,
    DecoderConfig,
    causal_mask,
    rope_angles,
    rope_cos_sin,
    rope_frequencies,
)

# The decoder the block checks build both modules from: two heads of width 8.
BLOCK_CONFIG = DecoderConfig(d_model=16, n_layers=1, n_heads=2, mlp_hidden=24)

DECODER_BLOCK = Hints(
    "Block",
    nudge="A pre-norm block: normalise x, attend (queries, keys and values from one matrix; "
    "queries and keys turned by the rotary angles; the mask decides which keys a query "
    "sees), add the result to x; normalise again, run the SwiGLU MLP, add it to x.",
    failed="Compare step by step with the spec: the norm before each branch (not after the "
    "sum), each branch added to the residual stream, the scale 1/sqrt(head_dim), RoPE on "
    "queries and keys only, the mask used as given (None: causal), heads merged back in "
    "order.",
    on={
        "weights": "Name the parts as the spec does - attn_norm, attn.qkv, attn.proj, "
        "mlp_norm, mlp.gate, mlp.up, mlp.down - without biases, so that the reference's "
        "weights load into yours.",
        "gradient": "The outputs match but a gradient does not: look for a .detach() or a "
        "part that forward never uses.",
        "shape": "The block returns x of the shape it got, (batch, seq, d_model): merge the "
        "heads back with a transpose before the reshape.",
    },
    recipe="attn_norm = nn.RMSNorm(d, eps=norm_eps); attn.qkv = nn.Linear(d, 3 * d, "
    "bias=False); attn.proj = nn.Linear(d, d, bias=False); mlp_norm likewise; mlp.gate and "
    "mlp.up = nn.Linear(d, mlp_hidden, bias=False), mlp.down = nn.Linear(mlp_hidden, d, "
    "bias=False). Attention: q, k, v = qkv(h).view(b, t, 3 * heads, head_dim).split(heads, "
    "dim=2); q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin); move heads before "
    "the sequence (.transpose(1, 2)); with a cache: cache = cache.append(k, v) and attend to "
    "cache.k, cache.v; y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, "
    "is_causal=mask is None); proj(y.transpose(1, 2).reshape(b, t, d)). Block: a, cache = "
    "attn(attn_norm(x)...); x = x + a; x = x + mlp.down(F.silu(mlp.gate(m)) * mlp.up(m)) "
    "with m = mlp_norm(x); return x, cache, None.",
)

CACHED_STEP = Hints(
    "cached decoding step",
    nudge="Given a cache, your block's attention appends this call's keys and values "
    "(after RoPE) with cache.append(k, v), attends from the new queries to every key the "
    "grown cache holds, and returns the grown cache as the block's second output.",
    failed="Check the order: RoPE first, then append to the cache, then attend to "
    "cache.k and cache.v (the past and the new tokens), with the mask the decoder gives "
    "(for a new token after a past it is not None: never is_causal then).",
    on={
        "values": "Do the new queries see the whole cache (past and new keys), and does the "
        "cache hold the keys after rotation, keys in k and values in v?",
    },
    recipe="In the attention: q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin); move "
    "heads before the sequence; if cache is not None: cache = cache.append(k, v); k, v = "
    "cache.k, cache.v. Then y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, "
    "is_causal=mask is None), and the block returns (x, cache, None).",
)


def reference_block(config: DecoderConfig) -> Block:
    """The package's :class:`~omni_edu.model.transformer.Block`, every weight redrawn (the
    norms' gains near 1, the matrices at the scale of a trained block), so that no term
    hides behind a zero or a one."""
    block = Block(config)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape))
            else:
                p.normal_(0, 0.3)
    return block.eval()


def _tables(positions: torch.Tensor, config: DecoderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables ``(batch, seq, 1, head_dim // 2)`` of 1-D or M-RoPE positions."""
    inv_freq = rope_frequencies(config.head_dim, config.rope_base)
    return rope_cos_sin(rope_angles(positions, inv_freq, config.mrope_sections))


def _block_case(batch: int, seq: int, kind: str) -> Callable[[torch.Generator], tuple]:
    c = BLOCK_CONFIG

    def make(g: torch.Generator) -> tuple:
        x = torch.randn(batch, seq, c.d_model, generator=g)
        positions = torch.arange(seq).expand(batch, seq)
        mask = None
        if kind == "interleaved":
            # the second document is two tokens shorter (padding at the end), positions 1-3
            # of the first are a two-way span (a picture seen both ways)
            real = torch.ones(batch, seq, dtype=torch.bool)
            real[1, -2:] = False
            spans = torch.full((batch, seq), -1)
            spans[0, 1:4] = 0
            mask = attention_mask(real, spans).unsqueeze(1)  # (batch, 1, seq, seq)
        if kind == "mrope":
            grid = torch.stack([torch.zeros(seq), torch.arange(seq) // 2, torch.arange(seq) % 2])
            positions = grid.long()[:, None, :].expand(3, batch, seq)
        cos, sin = _tables(positions, c)
        return x, cos, sin, mask

    return make


BLOCK_CASES = {
    "causal, 1-D positions (mask None)": _block_case(2, 5, "causal"),
    "one token": _block_case(1, 1, "causal"),
    "padded batch with a two-way span (an explicit mask)": _block_case(2, 7, "interleaved"),
    "M-RoPE positions (time, height, width)": _block_case(1, 6, "mrope"),
}


def block_forward(block: nn.Module, x, cos, sin, mask) -> torch.Tensor:
    out = block(x, cos=cos, sin=sin, mask=mask)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise LearnerMistake(
            "the block should return a tuple (x, cache, attention weights or None), as the "
            f"package's does; it returned {summarize(out)}",
            kind="return",
        )
    return out[0]


def _step_case(batch: int, prompt: int, new: int) -> Callable[[torch.Generator], tuple]:
    c = BLOCK_CONFIG

    def make(g: torch.Generator) -> tuple:
        x = torch.randn(batch, prompt + new, c.d_model, generator=g)
        cos, sin = _tables(torch.arange(prompt + new).expand(batch, -1), c)
        return x[:, :prompt], x[:, prompt:], cos, sin

    return make


STEP_CASES = {
    "a 4-token prompt, then 1 new token": _step_case(1, 4, 1),
    "a batch of 2: a 6-token prompt, then 1 new token": _step_case(2, 6, 1),
    "a 3-token prompt, then 2 new tokens at once": _step_case(1, 3, 2),
}


def cached_pass(block: nn.Module, prompt, new, cos, sin) -> dict[str, torch.Tensor]:
    """A prefill and one decoding step through ``block`` with a KV cache.

    The prompt ``(batch, p, d)`` goes in with an empty :class:`BlockCache` and no mask
    (causal); then the new tokens ``(batch, n, d)`` with the cache the block returned and
    the causal mask of new rows after ``p`` cached tokens, as the decoder gives it.
    Returns both outputs and the cache's keys and values after the step.
    """
    c = BLOCK_CONFIG
    batch, p, n = prompt.shape[0], prompt.shape[1], new.shape[1]
    store = torch.zeros(batch, c.n_kv_heads, p + n, c.head_dim)
    cache = BlockCache(store, store.clone())
    outputs = {}
    for name, x, rows, mask in (
        ("prefill output", prompt, slice(0, p), None),
        ("step output", new, slice(p, p + n), causal_mask(n, p)),
    ):
        returned = block(x, cos=cos[:, rows], sin=sin[:, rows], mask=mask, cache=cache)
        if not isinstance(returned, (tuple, list)) or len(returned) != 3:
            raise LearnerMistake(
                "the block should return a tuple (x, cache, attention weights or None); it "
                f"returned {summarize(returned)}",
                kind="return",
            )
        outputs[name], cache = returned[0], returned[1]
        if not isinstance(cache, BlockCache):
            raise LearnerMistake(
                f"given a cache, the block should return the grown BlockCache (what "
                f"cache.append(k, v) returns) as its second output; it returned "
                f"{summarize(cache)}",
                kind="cache",
            )
        # The next call writes into its own copy of the storage: the one the prefill read
        # stays as it was, so gradients flow back through both calls.
        cache = BlockCache(cache.k_store.clone(), cache.v_store.clone(), cache.length)
    outputs["cached keys"], outputs["cached values"] = cache.k, cache.v
    return outputs


def omnilm_with_blocks(
    factory: Callable[[DecoderConfig], nn.Module], config: OmniLMConfig
) -> OmniLM:
    """An OmniLM whose decoder blocks are ``factory(config.decoder)``, one per layer.

    Each block starts from the package's initial weights for that layer (loaded by name, as
    the check did), so the learner's blocks and the course's train from the same start.
    """
    model = OmniLM(config)
    blocks = []
    for own in model.decoder.blocks:
        block = factory(config.decoder)
        block.load_state_dict(own.state_dict())
        blocks.append(block)
    model.decoder.blocks = nn.ModuleList(blocks)
    return model
