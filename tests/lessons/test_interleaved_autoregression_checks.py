"""Lesson 02's core-build checks: plausible wrong decoder blocks and cached steps.

Each class below is a block a learner might write, differing from a right one in one way.
``tests/test_checks.py`` puts them in its table (one test per mistake: each is rejected);
the tests here pin down what the check says about some, and that the learner's blocks
train and decode with a cache inside OmniLM.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu import grading
from omni_edu.data.documents import InterleavedCorpus
from omni_edu.lessons.interleaved_autoregression.checks import (
    check_cached_step,
    check_decoder_block,
)
from omni_edu.lessons.interleaved_autoregression.core_build import omnilm_with_blocks
from omni_edu.modalities import Modality
from omni_edu.model.rope import apply_rope
from omni_edu.train import fit, model_loss


class AttentionWritten(nn.Module):
    """A right attention written out by hand: explicit softmax, its own causal mask."""

    def __init__(self, config) -> None:
        super().__init__()
        self.heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def split(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3 * self.heads, self.head_dim).split(self.heads, dim=2)
        return q, k, v

    def rotate(self, q, k, v, cos, sin):
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def store(self, k, v, cache):
        if cache is None:
            return k, v, None
        cache = cache.append(k, v)
        return cache.k, cache.v, cache

    def weights(self, q, k, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is None:
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        return scores.masked_fill(~mask, float("-inf")).softmax(-1)

    def merge(self, y):
        b, h, t, d = y.shape
        return y.transpose(1, 2).reshape(b, t, h * d)

    def forward(self, x, cos, sin, mask=None, cache=None):
        q, k, v = self.rotate(*self.split(x), cos, sin)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        k, v, cache = self.store(k, v, cache)
        return self.proj(self.merge(self.weights(q, k, mask) @ v)), cache


class MLPWritten(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.up = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class BlockWritten(nn.Module):
    """A right block: pre-norm attention and MLP, each added to the residual stream."""

    attention = AttentionWritten
    mlp_class = MLPWritten

    def __init__(self, config) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = self.attention(config)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = self.mlp_class(config)

    def forward(self, x, *, cos, sin, mask=None, cache=None, return_attention=False):
        a, cache = self.attn(self.attn_norm(x), cos, sin, mask, cache)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), cache, None


# --- mistakes of the block (no cache) ------------------------------------------------------


class PostNorm(BlockWritten):
    # Mistake: the original transformer's order, norm after each residual sum.
    def forward(self, x, *, cos, sin, mask=None, cache=None, return_attention=False):
        a, cache = self.attn(x, cos, sin, mask, cache)
        x = self.attn_norm(x + a)
        return self.mlp_norm(x + self.mlp(x)), cache, None


class NoAttentionResidual(BlockWritten):
    # Mistake: the attention's output replaces x instead of being added to it.
    def forward(self, x, *, cos, sin, mask=None, cache=None, return_attention=False):
        x, cache = self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.mlp(self.mlp_norm(x)), cache, None


class NoScaleAttention(AttentionWritten):
    def weights(self, q, k, mask):
        # Mistake: scores without the 1 / sqrt(head_dim) scale.
        return super().weights(q * math.sqrt(self.head_dim), k, mask)


class NoScale(BlockWritten):
    attention = NoScaleAttention


class RopeOnValuesAttention(AttentionWritten):
    def rotate(self, q, k, v, cos, sin):
        # Mistake: the values turned too, and the keys not.
        return apply_rope(q, cos, sin), k, apply_rope(v, cos, sin)


class RopeOnValues(BlockWritten):
    attention = RopeOnValuesAttention


class AlwaysCausalAttention(AttentionWritten):
    def weights(self, q, k, mask):
        # Mistake: the mask it is given is ignored; always the causal triangle.
        return super().weights(q, k, None)


class AlwaysCausal(BlockWritten):
    attention = AlwaysCausalAttention


class HeadsMergedWithoutTranspose(AttentionWritten):
    def merge(self, y):
        # Mistake: (batch, heads, seq, dim) reshaped straight to (batch, seq, heads * dim).
        b, h, t, d = y.shape
        return y.reshape(b, t, h * d)


class HeadsMixedUp(BlockWritten):
    attention = HeadsMergedWithoutTranspose


class GeluMLP(MLPWritten):
    def forward(self, x):
        # Mistake: a GELU gate instead of SiLU (SwiGLU's swish).
        return self.down(F.gelu(self.gate(x)) * self.up(x))


class WrongGate(BlockWritten):
    mlp_class = GeluMLP


class OneNormForBoth(BlockWritten):
    # Mistake: one RMSNorm shared by both branches (the reference has two).
    def __init__(self, config) -> None:
        super().__init__(config)
        del self.mlp_norm

    def forward(self, x, *, cos, sin, mask=None, cache=None, return_attention=False):
        a, cache = self.attn(self.attn_norm(x), cos, sin, mask, cache)
        x = x + a
        return x + self.mlp(self.attn_norm(x)), cache, None


BLOCK_MISTAKES = (
    PostNorm,
    NoAttentionResidual,
    NoScale,
    RopeOnValues,
    AlwaysCausal,
    HeadsMixedUp,
    WrongGate,
    OneNormForBoth,
)


# --- mistakes of the cached step --------------------------------------------------------------


class ForgetsToStoreAttention(AttentionWritten):
    def store(self, k, v, cache):
        # Mistake: attends over the past and the new keys but returns the cache unchanged.
        if cache is None:
            return k, v, None
        return torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2), cache


class ForgetsToStore(BlockWritten):
    attention = ForgetsToStoreAttention


class StoresUnrotatedKeysAttention(AttentionWritten):
    def forward(self, x, cos, sin, mask=None, cache=None):
        # Mistake: the keys go into the cache before they are turned by RoPE.
        q, k, v = (y.transpose(1, 2) for y in self.split(x))
        if cache is not None:
            cache = cache.append(k, v)
            k, v = cache.k, cache.v
        q = apply_rope(q.transpose(1, 2), cos, sin).transpose(1, 2)
        if cache is None:
            k = apply_rope(k.transpose(1, 2), cos, sin).transpose(1, 2)
        return self.proj(self.merge(self.weights(q, k, mask) @ v)), cache


class StoresUnrotatedKeys(BlockWritten):
    attention = StoresUnrotatedKeysAttention


class CausalFlagWithAPastAttention(AttentionWritten):
    def forward(self, x, cos, sin, mask=None, cache=None):
        # Mistake: SDPA's is_causal=True for every call, the mask ignored: with a past, its
        # triangle sits top-left, so the new token sees only the first keys.
        q, k, v = self.rotate(*self.split(x), cos, sin)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        k, v, cache = self.store(k, v, cache)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(self.merge(y)), cache


class CausalFlagWithAPast(BlockWritten):
    attention = CausalFlagWithAPastAttention


class OnlyTheNewTokensAttention(AttentionWritten):
    def store(self, k, v, cache):
        # Mistake: stores the new keys but attends only to them, not to the past.
        if cache is None:
            return k, v, None
        return k, v, cache.append(k, v)

    def weights(self, q, k, mask):
        return super().weights(q, k, None if mask is None else mask[..., -k.shape[2] :])


class OnlyTheNewTokens(BlockWritten):
    attention = OnlyTheNewTokensAttention


class KeysAndValuesSwappedAttention(AttentionWritten):
    def store(self, k, v, cache):
        # Mistake: the cache's k holds the values and its v the keys (read back the same way).
        if cache is None:
            return k, v, None
        cache = cache.append(v, k)
        return cache.v, cache.k, cache


class KeysAndValuesSwapped(BlockWritten):
    attention = KeysAndValuesSwappedAttention


class OverwritesThePastAttention(AttentionWritten):
    def store(self, k, v, cache):
        # Mistake: each call writes its keys at the start of the storage, over the past.
        if cache is None:
            return k, v, None
        cache = replace(cache, length=0).append(k, v)
        return cache.k, cache.v, cache


class OverwritesThePast(BlockWritten):
    attention = OverwritesThePastAttention


# The two that lose the past end in a shape error at the step (the learner's own line).
STEP_MAY_ERROR = (ForgetsToStore, OverwritesThePast)
STEP_MISTAKES = (
    ForgetsToStore,
    StoresUnrotatedKeys,
    CausalFlagWithAPast,
    OnlyTheNewTokens,
    KeysAndValuesSwapped,
    OverwritesThePast,
)


def test_a_block_written_by_hand_passes_both_checks():
    assert check_decoder_block(BlockWritten).passed
    assert check_cached_step(BlockWritten).passed


def test_what_the_checks_say(monkeypatch):
    monkeypatch.setenv("OMNI_STRICT_CHECKS", "0")
    assert "mlp_norm" in str(check_decoder_block(OneNormForBoth))  # the weights' names
    masked = check_decoder_block(AlwaysCausal)
    assert "two-way span" in str(masked)  # the case with an explicit mask fails
    assert check_decoder_block(ForgetsToStore).passed  # without a cache it is right...
    forgot = check_cached_step(ForgetsToStore)  # ...with one, the step finds no past keys
    assert forgot.status == grading.ERROR and "test_interleaved_autoregression_checks" in str(
        forgot
    )
    assert "cached keys" in str(check_cached_step(KeysAndValuesSwapped))
    assert "prefill output" in str(check_cached_step(StoresUnrotatedKeys))


def test_the_learners_blocks_train_and_decode_with_a_cache_inside_omnilm():
    corpus = InterleavedCorpus(32, seed=0)
    factory, note = grading.learner_module_or_reference(
        check_cached_step(BlockWritten), BlockWritten, None
    )
    assert factory is BlockWritten and "your own" in note
    torch.manual_seed(0)
    model = omnilm_with_blocks(factory, corpus.model_config())
    assert all(isinstance(b, BlockWritten) for b in model.decoder.blocks)
    history = fit(model, model_loss, corpus.batches(8), 20, progress=False)
    assert history.losses["loss"][-1] < history.losses["loss"][0]
    prompts = [corpus.document(i, ("image", "audio")) for i in range(2)]
    cached, plain = (
        model.generate(prompts, Modality.TEXT, n_tokens=5, specials=corpus.specials, use_cache=u)
        for u in (True, False)
    )
    assert all(torch.equal(a, b) for a, b in zip(cached, plain, strict=True))
