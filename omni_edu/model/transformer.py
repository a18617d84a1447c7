"""The decoder: a small Llama/Qwen-style transformer over omni-token embeddings.

Everything the lessons need lives in this one file, in reading order:

1. :class:`DecoderConfig` - the sizes, with ``from_profile`` to ask the active profile.
2. :class:`RMSNorm` - normalise by the root-mean-square, no mean subtraction, no bias.
3. Rotary position embeddings - :func:`rope_frequencies`, :func:`rope_angles`,
   :func:`apply_rope`. 1-D positions ``(batch, seq)`` rotate every frequency pair by the
   token's index; multimodal M-RoPE positions ``(3, batch, seq)`` (Qwen2-VL) give each
   section of the frequency pairs its own coordinate: time, height or width.
4. :class:`Attention` - fused QKV projection, optional grouped-query attention (GQA),
   ``scaled_dot_product_attention`` on the fast path and an explicit path that also
   returns the attention weights for the attention explorer.
5. :class:`MLP` (SwiGLU) and the pre-norm :class:`Block`.
6. :class:`KVCache` - keys and values of the tokens seen so far, so generation feeds one
   token at a time.
7. :class:`Decoder` - a stack of blocks plus a final norm. It takes *embeddings*
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

Each call attends from its new tokens (the *query rows*) to every cached key plus the new
ones, then appends the new keys and values to the cache. With ``attn_mask=None`` the new
rows are causal among themselves and see the whole past. An explicit mask may be given
either as the new rows only, ``(batch, q_new, past + q_new)``, or as the full square mask
of the whole sequence so far, ``(batch, past + q_new, past + q_new)``, of which the last
``q_new`` rows are used. ``positions`` are the absolute positions of the new tokens; leave
them out to get 1-D positions ``past, past + 1, ...``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.profiles import Profile, get_profile


def swiglu_hidden_size(d_model: int, multiple_of: int = 8) -> int:
    """Hidden width of a SwiGLU MLP with about the parameters of a ``4 * d_model`` MLP.

    A classic MLP has ``2 * d * 4d = 8 d^2`` weights; SwiGLU has three matrices of
    ``d * h``, so ``h = 8d/3`` keeps the count. We round to a multiple of ``multiple_of``
    because matrix kernels like round sizes.
    """
    return multiple_of * round(8 * d_model / 3 / multiple_of)


def default_mrope_sections(head_dim: int) -> tuple[int, int, int]:
    """Split the ``head_dim // 2`` rotary frequency pairs into (time, height, width).

    Qwen2-VL uses (16, 24, 24) of 64 pairs: a quarter for time and three eighths each for
    height and width. We keep those proportions; time takes whatever rounding leaves.
    """
    pairs = head_dim // 2
    spatial = (3 * pairs) // 8
    return (pairs - 2 * spatial, spatial, spatial)


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
        valid = {f.name for f in fields(cls)}
        unknown = set(overrides) - valid
        if unknown:
            raise ValueError(
                f"Unknown DecoderConfig field(s) {sorted(unknown)}; valid: {sorted(valid)}."
            )
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (..., dim)``."""
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


# ----------------------------------------------------------------------------- rotary


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Angular speed of each of the ``head_dim // 2`` rotary pairs: ``base^(-2i/head_dim)``.

    Fast pairs tell neighbours apart; slow pairs still change over long distances.
    """
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def rope_angles(
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    mrope_sections: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Rotation angle of every frequency pair at every position.

    Args:
        positions: 1-D positions ``(batch, seq)``, or M-RoPE positions ``(3, batch, seq)``
            holding (time, height, width) for each token.
        inv_freq: ``(head_dim // 2,)`` from :func:`rope_frequencies`.
        mrope_sections: for M-RoPE, how many pairs follow time, height and width (in
            that order, lowest pairs = fastest frequencies first).

    Returns:
        angles ``(batch, seq, head_dim // 2)``. With M-RoPE, pair ``i`` in the time
        section turns with the time coordinate, and so on; when all three coordinates
        are equal this is exactly 1-D RoPE.
    """
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., batch, seq, pairs)
    if positions.dim() == 2:
        return angles
    if positions.dim() != 3 or positions.shape[0] != 3:
        raise ValueError(
            "positions should be 1-D (batch, seq) or M-RoPE (3, batch, seq); "
            f"got {tuple(positions.shape)}."
        )
    if mrope_sections is None:
        raise ValueError("M-RoPE positions (3, batch, seq) need mrope_sections.")
    # Take the time angles for the first section, height for the next, width for the last.
    chunks = angles.split(list(mrope_sections), dim=-1)
    return torch.cat([chunk[axis] for axis, chunk in enumerate(chunks)], dim=-1)


def rope_cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, seq, pairs)`` angles -> cos and sin ``(batch, seq, 1, pairs)``.

    Computed once per forward pass and shared by every layer; the axis of size 1
    broadcasts over the heads.
    """
    angles = angles.unsqueeze(2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query or key vectors by their positions' angles.

    Pair ``i`` is dimensions ``(2i, 2i + 1)`` of a head. Read as the complex number
    ``x[2i] + 1j * x[2i + 1]``, rotating it by angle ``a`` is one multiplication by
    ``cos a + 1j * sin a`` - which is also the fastest way to do it in eager PyTorch (one
    kernel instead of the slicing, negating and concatenating of the "rotate half" form).

    Args:
        x: ``(batch, seq, heads, head_dim)``.
        cos, sin: ``(batch, seq, 1, head_dim // 2)`` from :func:`rope_cos_sin`.

    Returns:
        ``x`` rotated, same shape and dtype.
    """
    if torch.compiler.is_compiling():
        # torch.compile cannot generate code for complex numbers (it would fall back to
        # slow kernels); written out in real numbers it fuses into a single kernel.
        return _rotate_pairs(x, cos, sin)
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(st % 2 for st in x.stride()[:-1]):
        x = x.contiguous()  # view_as_complex needs each pair side by side in memory
    # Complex numbers need float32 (under bf16 autocast x is bf16): compute, cast back.
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    rotated = pairs * torch.complex(cos.float(), sin.float())
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


def _rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rope` in real arithmetic: ``(a, b) -> (a cos - b sin, a sin + b cos)``."""
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


# ----------------------------------------------------------------------------- cache


class KVCache:
    """Keys and values of every layer for the tokens processed so far.

    Preallocated for ``max_len`` tokens (default ``config.max_seq_len``) so that each
    decoding step writes in place instead of concatenating. Keys are stored *after*
    rotation, with ``n_kv_heads`` heads (that is where GQA saves memory).

    Args:
        config: the decoder's config.
        batch_size: sequences decoded side by side.
        max_len: most tokens (prompt + generated) the cache can hold.
        device, dtype: where and how to store; inputs of another dtype (for example
            under bf16 autocast) are converted on the way in and out.
    """

    def __init__(
        self,
        config: DecoderConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = config.max_seq_len if max_len is None else max_len
        shape = (config.n_layers, batch_size, config.n_kv_heads, self.max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # tokens already stored (the same for every layer between calls)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        """Memory the cache occupies, in bytes."""
        return self.k.nbytes + self.v.nbytes

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer ``layer``'s new keys/values; return all of them so far.

        ``k, v``: ``(batch, n_kv_heads, new, head_dim)``. Returns
        ``(batch, n_kv_heads, length + new, head_dim)``. :attr:`length` moves on only in
        :meth:`advance`, after every layer has written (the decoder calls it).
        """
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end].to(k.dtype), self.v[layer, :, :, :end].to(v.dtype)

    def advance(self, n: int) -> None:
        """Mark ``n`` more tokens as stored."""
        self.length += n

    def reset(self) -> None:
        """Forget everything (the memory stays allocated for the next sequence)."""
        self.length = 0


# ----------------------------------------------------------------------------- layers


def _as_4d_mask(mask: torch.Tensor, q_len: int, k_len: int) -> torch.Tensor:
    """Check a boolean mask and shape it to broadcast against ``(batch, heads, q, k)``.

    Accepts ``(q, k)``, ``(batch, q, k)`` or ``(batch, heads|1, q, k)``; a square mask of
    the whole sequence ``(..., k, k)`` is cut down to its last ``q`` rows (the new tokens
    when decoding with a cache).
    """
    if mask.dtype != torch.bool:
        raise ValueError(
            f"attn_mask should be a boolean tensor (True = may attend); got {mask.dtype}. "
            "Convert with mask.bool() or build it with comparisons."
        )
    if (
        mask.dim() not in (2, 3, 4)
        or mask.shape[-1] != k_len
        or mask.shape[-2] not in (q_len, k_len)
    ):
        raise ValueError(
            f"attn_mask should be (batch, {q_len}, {k_len}) (queries x keys) or broadcast "
            f"to (batch, heads, {q_len}, {k_len}); got {tuple(mask.shape)}."
        )
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)  # (batch, 1, q, k): the same mask for every head
    if mask.shape[-2] != q_len:
        mask = mask[..., k_len - q_len :, :]  # the square mask's rows of the new tokens
    return mask


def _cached_causal_mask(q_len: int, past: int, device: torch.device) -> torch.Tensor:
    """Causal ``(q, past + q)`` mask for new tokens that follow ``past`` cached ones."""
    rows = torch.arange(past, past + q_len, device=device).unsqueeze(1)
    return torch.arange(past + q_len, device=device) <= rows


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
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from every position of ``x`` to the allowed positions.

        Args:
            x: ``(batch, seq, d_model)``, already normalised.
            cos, sin: ``(batch, seq, 1, head_dim // 2)`` rotary tables of these positions.
            attn_mask: boolean, True = may attend (see :func:`_as_4d_mask`); ``None`` =
                causal.
            cache: if given, keys/values of earlier tokens are read from it and this
                call's are appended (under index ``layer``).
            return_attention: use the explicit path and also return the weights.

        Returns:
            ``(out (batch, seq, d_model), weights (batch, heads, seq, keys) or None)``.
        """
        batch, seq, _ = x.shape
        qkv = self.qkv(x).view(batch, seq, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        qk, v = qkv.split([self.n_heads + self.n_kv_heads, self.n_kv_heads], dim=2)
        qk = apply_rope(qk, cos, sin)  # queries and keys rotate together, in one go
        # (batch, seq, heads, head_dim) -> (batch, heads, seq, head_dim)
        q, k = qk.transpose(1, 2).split([self.n_heads, self.n_kv_heads], dim=1)
        v = v.transpose(1, 2)

        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)
        if self.n_kv_heads != self.n_heads:
            # GQA: each key/value head serves n_heads / n_kv_heads query heads.
            groups = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)

        mask, is_causal = None, False
        if attn_mask is not None:
            mask = _as_4d_mask(attn_mask, seq, past + seq)
        elif past == 0:
            is_causal = seq > 1  # the kernel skips the upper triangle: about half the work
        elif seq > 1:
            # is_causal aligns the triangle to the top-left, wrong when q and k differ in
            # length; spell the offset out instead. (One new token may see everything.)
            mask = _cached_causal_mask(seq, past, x.device)

        weights = None
        if return_attention:
            if is_causal:
                mask = _cached_causal_mask(seq, 0, x.device)
            y, weights = self._explicit_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=is_causal,
                dropout_p=self.dropout if self.training else 0.0,
            )
        y = y.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim)
        return self.proj(y), weights

    def _explicit_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(q k^T / sqrt(d)) v written out, keeping the weights to look at."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if mask is not None:
            # A row that may attend nowhere (padding) gives 0/0 = NaN; SDPA returns zeros.
            weights = weights.masked_fill(~mask, 0.0)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        return weights @ v, weights


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``.

    The gate lets each hidden unit switch its own "up" signal on or off smoothly; it beats
    a plain GELU MLP at equal parameters (Shazeer 2020). Gate and up share one matmul.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, seq, d_model) -> (batch, seq, d_model)``."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


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
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(batch, seq, d_model) -> (same, attention weights or None)``; see Attention."""
        a, weights = self.attn(
            self.attn_norm(x), cos, sin, attn_mask, cache, layer, return_attention
        )
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x, weights


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
        self.apply(self._init_weights)
        # Scaled residual init (GPT-2): each block adds two branches to the residual
        # stream, so shrink their output projections by sqrt(2 * n_layers) to keep the
        # stream's variance the same whatever the depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Trainable parameters (the decoder has no embedding table: it takes vectors)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def rope_cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables ``(batch, seq, 1, head_dim // 2)`` for 1-D or M-RoPE positions."""
        angles = rope_angles(positions, self.inv_freq, self.config.mrope_sections)
        return rope_cos_sin(angles)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
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
        past = 0 if cache is None else cache.length
        if cache is not None and cache.batch_size != batch:
            raise ValueError(
                f"the KVCache was made for batch_size={cache.batch_size}; got x with batch {batch}."
            )
        limit = self.config.max_seq_len if cache is None else cache.max_len
        if past + seq > limit:
            where = "max_seq_len" if cache is None else "the KVCache's max_len"
            raise ValueError(
                f"{past} cached + {seq} new tokens exceed {where}={limit}. "
                "Use a shorter sequence or a larger limit."
            )
        if positions is None:
            positions = torch.arange(past, past + seq, device=x.device).expand(batch, seq)
        self._check_positions(positions, batch, seq)

        cos, sin = self.rope_cos_sin(positions)  # shared by every layer
        x = self.drop(x)
        attentions = []
        for layer, block in enumerate(self.blocks):
            x, weights = block(x, cos, sin, attn_mask, cache, layer, return_attention)
            attentions.append(weights)
        if cache is not None:
            cache.advance(seq)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
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

    @staticmethod
    def _check_positions(positions: torch.Tensor, batch: int, seq: int) -> None:
        if positions.shape == (batch, seq) or positions.shape == (3, batch, seq):
            return
        raise ValueError(
            f"positions should be 1-D ({batch}, {seq}) or M-RoPE (3, {batch}, {seq}) to "
            f"match x of (batch={batch}, seq={seq}); got {tuple(positions.shape)}."
        )
