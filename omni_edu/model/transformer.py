"""The decoder: a small Llama/Qwen-style transformer over omni-token embeddings.

In reading order (rotary positions live in :mod:`omni_edu.model.rope`, the KV cache in
:mod:`omni_edu.model.kv_cache`):

1. :class:`DecoderConfig` - the sizes, with ``from_profile`` to ask the active profile.
2. :class:`RMSNorm` - normalise by the root-mean-square, no mean subtraction, no bias.
3. :func:`causal_mask` and :func:`decoder_mask` - the one attention mask of a forward pass.
4. :class:`Attention` - fused QKV projection, rotary positions, optional grouped-query
   attention (GQA), ``scaled_dot_product_attention``, or an explicit path
   (:func:`attention_with_weights`) that also returns the weights for the attention
   explorer.
5. :class:`MLP` (SwiGLU) and the pre-norm :class:`Block`.
6. :class:`Decoder` - a stack of blocks plus a final norm. It takes *embeddings*
   ``(batch, seq, d_model)`` (the omni-token projector makes them), not token ids, and
   returns hidden states ``(batch, seq, d_model)``; the output heads live elsewhere.

Conventions (shared with :mod:`omni_edu.model.interleave`): attention masks are boolean,
``True`` = may attend, shaped ``(batch, seq, seq)`` or anything that broadcasts to
``(batch, heads, q, k)``; ``attn_mask=None`` means plain causal attention.

Using the cache from a generation loop::

    cache = KVCache(config, batch_size=1, max_len=128, device=x.device)
    hidden = decoder(prompt_embeddings, prompt_positions, cache=cache)   # prefill
    for _ in range(steps):
        x_new = embed(next_token_from(hidden[:, -1]))                     # (batch, 1, d)
        hidden = decoder(x_new, next_positions, cache=cache)              # one new row

Inside, block ``i`` reads its own view ``cache[i]`` and returns it grown by the new
tokens, as in nanoVLM: ``x, cache[i], _ = block(x, cos=cos, sin=sin, mask=mask,
cache=cache[i])``. Each call attends from its new tokens (the *query rows*) to every
cached key plus the new ones. With ``attn_mask=None`` the new rows are causal among
themselves and see the whole past. An explicit mask may be given either as the new rows
only, ``(batch, q_new, past + q_new)``, or as the full square mask of the whole sequence so
far, ``(batch, past + q_new, past + q_new)``, of which the last ``q_new`` rows are used.
``positions`` are the absolute positions of the new tokens; leave them out to get 1-D
positions ``past, past + 1, ...``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.kv_cache import BlockCache, KVCache
from omni_edu.model.rope import (
    apply_rope,
    default_mrope_sections,
    rope_angles,
    rope_cos_sin,
    rope_frequencies,
)
from omni_edu.model.weights import count_parameters, init_weights
from omni_edu.profiles import Profile, check_overrides, get_profile


def swiglu_hidden_size(d_model: int, multiple_of: int = 8) -> int:
    """Hidden width of a SwiGLU MLP with about the parameters of a ``4 * d_model`` MLP.

    A classic MLP has ``2 * d * 4d = 8 d^2`` weights; SwiGLU has three matrices of
    ``d * h``, so ``h = 8d/3`` keeps the count. We round to a multiple of ``multiple_of``
    because matrix kernels like round sizes.
    """
    return multiple_of * round(8 * d_model / 3 / multiple_of)


@dataclass
class DecoderConfig:
    """Sizes of the decoder. ``None`` fields get sensible defaults from the others."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # fewer than n_heads = grouped-query attention
    mlp_hidden: int | None = None  # SwiGLU width; default ~8/3 * d_model
    max_seq_len: int = 512
    rope_base: float = 10000.0
    # How many of the head_dim // 2 frequency pairs follow (time, height, width).
    mrope_sections: tuple[int, int, int] | None = None
    norm_eps: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) should be divisible by n_heads ({self.n_heads}) "
                "so that every head gets the same width."
            )
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(
                f"n_heads ({self.n_heads}) should be a multiple of n_kv_heads "
                f"({self.n_kv_heads}): in grouped-query attention each key/value head "
                "serves an equal group of query heads."
            )
        if self.head_dim % 2 != 0:
            raise ValueError(
                f"head_dim = d_model / n_heads should be even for rotary embeddings "
                f"(they rotate pairs of numbers); got {self.head_dim}."
            )
        if self.mlp_hidden is None:
            self.mlp_hidden = swiglu_hidden_size(self.d_model)
        if self.mrope_sections is None:
            self.mrope_sections = default_mrope_sections(self.head_dim)
        self.mrope_sections = tuple(self.mrope_sections)
        if len(self.mrope_sections) != 3 or sum(self.mrope_sections) != self.head_dim // 2:
            raise ValueError(
                f"mrope_sections should be 3 numbers (time, height, width) adding up to "
                f"head_dim // 2 = {self.head_dim // 2}; got {self.mrope_sections}."
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides) -> DecoderConfig:
        """The decoder sizes of a profile (the active one by default), with overrides.

        >>> DecoderConfig.from_profile("ci", n_layers=1).n_layers
        1
        """
        if not isinstance(profile, Profile):
            profile = get_profile(profile)
        check_overrides(cls, overrides)
        base = cls(d_model=profile.d_model, n_layers=profile.n_layers, n_heads=profile.n_heads)
        # Re-run __post_init__ so derived defaults follow the overridden sizes.
        derived = {"n_kv_heads": None, "mlp_hidden": None, "mrope_sections": None}
        return replace(base, **{**derived, **overrides})


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain.

    Cheaper than LayerNorm (no mean, no bias) and just as good in practice (Llama, Qwen).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., dim) -> (..., dim)``."""
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


# ----------------------------------------------------------------------------- masks


def causal_mask(q_len: int, past: int = 0, device: torch.device | str | None = None) -> Tensor:
    """Causal ``(q_len, past + q_len)`` mask for new tokens that follow ``past`` cached ones.

    Query row ``i`` is token ``past + i``: it may attend to every key up to itself.
    """
    rows = torch.arange(past, past + q_len, device=device).unsqueeze(1)
    return torch.arange(past + q_len, device=device) <= rows


def decoder_mask(
    attn_mask: Tensor | None, q_len: int, past: int, device: torch.device
) -> Tensor | None:
    """The mask every layer of one forward pass uses: a bool mask that broadcasts to
    ``(batch, heads, q_len, past + q_len)``, True = may attend, or ``None`` for plain causal
    attention over ``q_len`` tokens (no past), which lets the attention kernel skip the
    upper triangle (half the work).

    ``attn_mask`` may be ``(q, k)``, ``(batch, q, k)`` or ``(batch, heads | 1, q, k)``; a
    square mask of the whole sequence ``(..., k, k)`` is cut down to its last ``q_len``
    rows (the new tokens when decoding with a cache). ``None`` = causal.
    """
    k_len = past + q_len
    if attn_mask is None:
        # SDPA's is_causal aligns its triangle to the top-left: right only without a past.
        return None if past == 0 else causal_mask(q_len, past, device)
    if attn_mask.dtype != torch.bool:
        raise ValueError(
            f"attn_mask should be a boolean tensor (True = may attend); got {attn_mask.dtype}. "
            "Convert with mask.bool() or build it with comparisons."
        )
    shape = attn_mask.shape
    if attn_mask.dim() not in (2, 3, 4) or shape[-1] != k_len or shape[-2] not in (q_len, k_len):
        raise ValueError(
            f"attn_mask should be (batch, {q_len}, {k_len}) (queries x keys) or broadcast "
            f"to (batch, heads, {q_len}, {k_len}); got {tuple(shape)}."
        )
    if attn_mask.dim() == 3:
        attn_mask = attn_mask.unsqueeze(1)  # (batch, 1, q, k): the same mask for every head
    return attn_mask[..., -q_len:, :]  # the new tokens' rows (all, or a square's last)


# ----------------------------------------------------------------------------- layers


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and optional grouped-query heads.

    One fused matrix projects to queries, keys and values (one matmul instead of three),
    and no projection has a bias (modern decoders drop them: they add parameters and
    memory traffic, not quality).
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        qkv_dim = (config.n_heads + 2 * config.n_kv_heads) * config.head_dim
        self.qkv = nn.Linear(config.d_model, qkv_dim, bias=False)
        self.proj = nn.Linear(config.n_heads * config.head_dim, config.d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        *,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None = None,
        cache: BlockCache | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, BlockCache | None, Tensor | None]:
        """Attend from every position of ``x`` to the keys its mask allows.

        Args:
            x: ``(batch, seq, d_model)``, already normalised.
            cos, sin: ``(batch, seq, 1, head_dim // 2)`` rotary tables of these positions.
            mask: bool, broadcasting to ``(batch, heads, seq, past + seq)``, True = may
                attend (see :func:`decoder_mask`); ``None`` = causal.
            cache: this block's keys and values of earlier tokens, if any.
            return_attention: use the explicit path and also return the weights.

        Returns:
            ``out (batch, seq, d_model)``, the cache grown by this call's keys and values
            (``None`` without a cache), and the weights ``(batch, heads, seq, past + seq)``
            with ``return_attention`` (else ``None``).
        """
        batch, seq, _ = x.shape
        qkv = self.qkv(x).view(batch, seq, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        qk, v = qkv.split([self.n_heads + self.n_kv_heads, self.n_kv_heads], dim=2)
        qk = apply_rope(qk, cos, sin)  # queries and keys turn by the same angles: one call
        # (batch, seq, heads, head_dim) -> (batch, heads, seq, head_dim)
        q, k = qk.transpose(1, 2).split([self.n_heads, self.n_kv_heads], dim=1)
        v = v.transpose(1, 2)
        if cache is not None:
            cache = cache.append(k, v)  # this call's keys and values join the past ones
            k, v = cache.k.to(q.dtype), cache.v.to(q.dtype)
        if self.n_kv_heads != self.n_heads:
            # GQA: each key/value head serves n_heads / n_kv_heads query heads.
            groups = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)

        dropout = self.dropout if self.training else 0.0
        if return_attention:
            y, weights = attention_with_weights(q, k, v, mask, dropout)
        else:
            is_causal = mask is None  # the kernel skips the masked triangle itself
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout
            )
            weights = None
        y = y.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim)
        return self.proj(y), cache, weights


def attention_with_weights(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``softmax(q k^T / sqrt(d)) v`` written out, keeping the weights to look at.

    ``q`` ``(batch, heads, q_len, d)``, ``k`` and ``v`` ``(batch, heads, k_len, d)``, ``mask``
    as for :class:`Attention` (``None`` = causal). Returns ``(out (batch, heads, q_len, d),
    weights (batch, heads, q_len, k_len))``; ``out`` equals the fast path's.
    """
    q_len, k_len = q.shape[2], k.shape[2]
    if mask is None:
        mask = causal_mask(q_len, k_len - q_len, q.device)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    # A row that may attend nowhere (padding) gives 0/0 = NaN; SDPA returns zeros.
    weights = weights.masked_fill(~mask, 0.0)
    if dropout > 0:
        weights = F.dropout(weights, dropout)
    return weights @ v, weights


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``.

    The gate lets each hidden unit switch its own "up" signal on or off smoothly; it beats
    a plain GELU MLP at equal parameters (Shazeer 2020).
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.up = nn.Linear(config.d_model, config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, seq, d_model) -> (batch, seq, d_model)``."""
        return self.down(F.silu(self.gate(x)) * self.up(x))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Checkpoints saved before issue 21 stack gate over up in one matrix, gate_up (one
        # matmul cut in two, whose backward pass then stitched the two gradients together:
        # ~2% of a training step on a CPU). Split it, so that they keep loading.
        stacked = state_dict.pop(prefix + "gate_up.weight", None)
        if stacked is not None:
            state_dict[prefix + "gate.weight"], state_dict[prefix + "up.weight"] = stacked.chunk(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Normalising the *input* of each branch leaves the residual stream untouched, so
    gradients flow straight from the loss to the first layer (stable without warm-up
    tricks, unlike the original post-norm transformer).
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        *,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None = None,
        cache: BlockCache | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, BlockCache | None, Tensor | None]:
        """``(batch, seq, d_model) -> (same, this block's cache, attention weights)``.

        The arguments are :class:`Attention`'s; the cache and the weights are ``None``
        when not asked for.
        """
        a, cache, weights = self.attn(
            self.attn_norm(x),
            cos=cos,
            sin=sin,
            mask=mask,
            cache=cache,
            return_attention=return_attention,
        )
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x, cache, weights


class Decoder(nn.Module):
    """A stack of :class:`Block` s and a final :class:`RMSNorm`.

    Input: embeddings ``(batch, seq, d_model)`` (from the omni-token projector), positions
    (1-D ``(batch, seq)`` or M-RoPE ``(3, batch, seq)``), an optional boolean mask and an
    optional :class:`KVCache`. Output: hidden states ``(batch, seq, d_model)`` for the
    heads. See the module docstring for how masks combine with the cache.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        # A buffer, not a parameter: moves with .to(device) but is never trained.
        self.register_buffer(
            "inv_freq", rope_frequencies(config.head_dim, config.rope_base), persistent=False
        )
        self.apply(init_weights)
        # Scaled residual init (GPT-2): each block adds two branches to the residual
        # stream, so shrink their output projections by sqrt(2 * n_layers) to keep the
        # stream's variance the same whatever the depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    def num_parameters(self) -> int:
        """Trainable parameters (the decoder has no embedding table: it takes vectors)."""
        return count_parameters(self, trainable_only=True)

    def rope_cos_sin(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotary tables ``(batch, seq, 1, head_dim // 2)`` for 1-D or M-RoPE positions."""
        angles = rope_angles(positions, self.inv_freq, self.config.mrope_sections)
        return rope_cos_sin(angles)

    def forward(
        self,
        x: Tensor,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
        cache: KVCache | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Run the decoder.

        Args:
            x: input embeddings ``(batch, seq, d_model)``.
            positions: ``(batch, seq)`` or ``(3, batch, seq)`` absolute positions of
                these tokens; ``None`` = ``past, past + 1, ...`` (past = cached tokens).
            attn_mask: boolean, True = may attend, ``(batch, seq, past + seq)`` or the
                full square ``(batch, past + seq, past + seq)``, or anything that
                broadcasts to ``(batch, heads, seq, past + seq)``. ``None`` = causal.
            cache: a :class:`KVCache` to read earlier keys/values from and append to.
            return_attention: also return each layer's attention weights
                ``(batch, heads, seq, past + seq)``, computed explicitly (slower; the
                outputs equal the fast path's).

        Returns:
            hidden ``(batch, seq, d_model)``, or ``(hidden, [weights per layer])``.
        """
        batch, seq = self._check_input(x)
        past = self._check_cache(cache, batch, seq)
        if positions is None:
            positions = torch.arange(past, past + seq, device=x.device).expand(batch, seq)
        self._check_positions(positions, batch, seq)

        cos, sin = self.rope_cos_sin(positions)  # shared by every layer...
        mask = decoder_mask(attn_mask, seq, past, x.device)  # ...and so is the mask
        caches = [None] * len(self.blocks) if cache is None else cache
        attentions = []
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x, caches[i], weights = block(
                x, cos=cos, sin=sin, mask=mask, cache=caches[i], return_attention=return_attention
            )
            attentions.append(weights)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def _check_input(self, x: Tensor) -> tuple[int, int]:
        d = self.config.d_model
        if not torch.is_floating_point(x):
            raise ValueError(
                f"x should be float input embeddings (batch, seq, {d}); got a {x.dtype} "
                f"tensor of shape {tuple(x.shape)}. Did you pass token ids? The decoder "
                "takes embeddings: embed the ids first (the projector does)."
            )
        if x.dim() != 3:
            hint = " Did you forget the batch dimension? (x.unsqueeze(0))" if x.dim() == 2 else ""
            raise ValueError(
                f"x should be input embeddings (batch, seq, {d}); got {tuple(x.shape)}.{hint}"
            )
        if x.shape[-1] != d:
            raise ValueError(
                f"x should be (batch, seq, d_model={d}); got {tuple(x.shape)}: the last "
                f"dimension is {x.shape[-1]}, but this decoder was built with d_model={d}."
            )
        return x.shape[0], x.shape[1]

    def _check_cache(self, cache: KVCache | None, batch: int, seq: int) -> int:
        """Tokens already in ``cache`` (0 without one), after checking the new ones fit."""
        if cache is None:
            if seq > self.config.max_seq_len:
                raise ValueError(
                    f"0 cached + {seq} new tokens exceed max_seq_len={self.config.max_seq_len}. "
                    "Use a shorter sequence or a larger limit."
                )
            return 0
        if cache.batch_size != batch:
            raise ValueError(
                f"the KVCache was made for batch_size={cache.batch_size}; got x with batch {batch}."
            )
        if cache.length + seq > cache.max_len:
            raise ValueError(
                f"{cache.length} cached + {seq} new tokens exceed the KVCache's "
                f"max_len={cache.max_len}. Use a shorter sequence or a larger limit."
            )
        return cache.length

    @staticmethod
    def _check_positions(positions: Tensor, batch: int, seq: int) -> None:
        if positions.shape == (batch, seq) or positions.shape == (3, batch, seq):
            return
        raise ValueError(
            f"positions should be 1-D ({batch}, {seq}) or M-RoPE (3, {batch}, {seq}) to "
            f"match x of (batch={batch}, seq={seq}); got {tuple(positions.shape)}."
        )
