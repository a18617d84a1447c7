"""The decoder against its equations, written out plainly and read from a checkpoint.

:func:`reference_decoder` computes what the decoder should compute from a state dict, by
the parameter names the course's checkpoints hold (``blocks.{i}.attn.qkv.weight``...): no
cache, no fused kernels, RoPE as a complex multiplication, attention as an explicit
softmax. The decoder must load such a state dict as it is and agree with it, with and
without masks, 1-D or M-RoPE positions, grouped-query heads and a KV cache fed in chunks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache

D_MODEL, N_HEADS, N_LAYERS = 32, 4, 2
BLOCK_PARAMETERS = (  # by their names in a checkpoint of the course cache
    "attn_norm.weight",
    "attn.qkv.weight",
    "attn.proj.weight",
    "mlp_norm.weight",
    "mlp.gate_up.weight",
    "mlp.down.weight",
)


def checkpoint_shapes(config: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a decoder checkpoint as the course cache holds them
    (saved before issue 21: gate and up stacked in one ``gate_up`` matrix, gate first)."""
    d, h, hd = config.d_model, config.mlp_hidden, config.head_dim
    block = {
        "attn_norm.weight": (d,),
        "attn.qkv.weight": ((config.n_heads + 2 * config.n_kv_heads) * hd, d),
        "attn.proj.weight": (d, config.n_heads * hd),
        "mlp_norm.weight": (d,),
        "mlp.gate_up.weight": (2 * h, d),
        "mlp.down.weight": (d, h),
    }
    shapes = {f"blocks.{i}.{n}": s for i in range(config.n_layers) for n, s in block.items()}
    return {**shapes, "norm.weight": (d,)}


def random_state(config: DecoderConfig, seed: int) -> dict[str, torch.Tensor]:
    """A checkpoint of random weights (larger than the init, so that every term counts)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in checkpoint_shapes(config).items():
        noise = 0.3 * torch.randn(shape, generator=g)
        state[name] = noise + 1.0 if name.endswith("norm.weight") else noise  # gains near 1
    return state


def reference_decoder(
    state: dict[str, torch.Tensor],
    config: DecoderConfig,
    x: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Hidden states ``(batch, seq, d)`` from embeddings ``x``, positions ``(3, batch, seq)``
    (time, height, width) and a boolean mask ``(batch, seq, seq)``, True = may attend."""
    batch, seq, _ = x.shape
    hd, nh, nkv = config.head_dim, config.n_heads, config.n_kv_heads
    inv_freq = config.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    # Pair i turns with the coordinate of its M-RoPE section: time, height, then width.
    axis = torch.repeat_interleave(torch.arange(3), torch.tensor(config.mrope_sections))
    angles = positions[axis].permute(1, 2, 0).double() * inv_freq  # (batch, seq, pairs)
    turn = torch.polar(torch.ones_like(angles), angles)[:, :, None]  # e^(i angle)

    def rope(v: torch.Tensor) -> torch.Tensor:  # (batch, seq, heads, hd): pairs (2i, 2i + 1)
        pairs = torch.view_as_complex(v.double().unflatten(-1, (-1, 2)).contiguous())
        return torch.view_as_real(pairs * turn).flatten(-2).float()

    def rms_norm(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + config.norm_eps) * weight

    for i in range(config.n_layers):
        w = {name: state[f"blocks.{i}.{name}"] for name in BLOCK_PARAMETERS}
        h = rms_norm(x, w["attn_norm.weight"])
        q, k, v = (h @ w["attn.qkv.weight"].T).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        q, k = rope(q.view(batch, seq, nh, hd)), rope(k.view(batch, seq, nkv, hd))
        k = k.repeat_interleave(nh // nkv, dim=2)  # each key/value head serves a group
        v = v.view(batch, seq, nkv, hd).repeat_interleave(nh // nkv, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        weights = scores.masked_fill(~mask[:, None], -math.inf).softmax(dim=-1)
        y = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, seq, nh * hd)
        x = x + y @ w["attn.proj.weight"].T
        gate, up = (rms_norm(x, w["mlp_norm.weight"]) @ w["mlp.gate_up.weight"].T).chunk(2, -1)
        x = x + (F.silu(gate) * up) @ w["mlp.down.weight"].T
    return rms_norm(x, state["norm.weight"])


@st.composite
def cases(draw):
    """A config, its random weights, inputs, positions (1-D or M-RoPE) and a mask."""
    n_kv_heads = draw(st.sampled_from([4, 2, 1]), label="n_kv_heads")
    config = DecoderConfig(
        d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, n_kv_heads=n_kv_heads
    )
    seed = draw(st.integers(0, 2**16), label="seed")
    batch, seq = draw(st.integers(1, 2), label="batch"), draw(st.integers(1, 9), label="seq")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq, D_MODEL, generator=g)
    if draw(st.booleans(), label="mrope"):
        positions = torch.randint(0, 30, (3, batch, seq), generator=g)
    else:
        positions = torch.randint(0, 30, (batch, seq), generator=g)
    mask = None
    if draw(st.booleans(), label="explicit mask"):
        # Any mask with the diagonal allowed (every query sees at least itself).
        mask = (torch.rand(batch, seq, seq, generator=g) < 0.6) | torch.eye(seq, dtype=torch.bool)
    return config, random_state(config, seed), x, positions, mask


def reference_of(config, state, x, positions, mask):
    batch, seq, _ = x.shape
    full = positions if positions.dim() == 3 else positions.expand(3, batch, seq)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril().expand(batch, seq, seq)
    return reference_decoder(state, config, x, full, causal if mask is None else mask)


def test_checkpoints_of_both_formats_load_and_agree() -> None:
    config = DecoderConfig(d_model=D_MODEL, n_layers=3, n_heads=N_HEADS, n_kv_heads=2)
    old_format = random_state(config, seed=0)
    decoder = Decoder(config)
    decoder.load_state_dict(old_format, strict=True)  # gate_up is split into gate and up
    mlp = decoder.blocks[1].mlp
    stacked = old_format["blocks.1.mlp.gate_up.weight"]
    assert torch.equal(torch.cat([mlp.gate.weight, mlp.up.weight]), stacked)
    again = Decoder(config)
    again.load_state_dict(decoder.state_dict(), strict=True)  # today's format
    x = torch.randn(2, 5, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(again(x), decoder(x), atol=0, rtol=0)


@settings(max_examples=30, deadline=None)
@given(cases())
def test_the_decoder_computes_its_equations(case) -> None:
    config, state, x, positions, mask = case
    decoder = Decoder(config).eval()
    decoder.load_state_dict(state, strict=True)  # a course-cache checkpoint loads as it is
    expected = reference_of(config, state, x, positions, mask)
    with torch.no_grad():
        torch.testing.assert_close(decoder(x, positions, mask), expected, atol=1e-4, rtol=1e-4)
        hidden, weights = decoder(x, positions, mask, return_attention=True)
    torch.testing.assert_close(hidden, expected, atol=1e-4, rtol=1e-4)
    allowed = torch.ones(x.shape[1], x.shape[1]).tril().bool() if mask is None else mask
    for w in weights:  # the explorer's weights: rows sum to one, nothing where masked
        assert (w.masked_select(~allowed.expand_as(w[:, 0]).unsqueeze(1)) == 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))


@settings(max_examples=30, deadline=None)
@given(cases(), st.data())
def test_decoding_through_the_cache_in_any_chunks_computes_the_same(case, data) -> None:
    config, state, x, positions, mask = case
    batch, seq, _ = x.shape
    if mask is not None:  # a token cannot see keys that arrive in a later call: hide them
        mask = mask & torch.ones(seq, seq, dtype=torch.bool).tril()
    decoder = Decoder(config).eval()
    decoder.load_state_dict(state)
    expected = reference_of(config, state, x, positions, mask)
    cache = KVCache(config, batch, max_len=seq)
    outs, start = [], 0
    with torch.no_grad():
        while start < seq:
            size = data.draw(st.integers(1, seq - start), label="chunk")
            cols = slice(start, start + size)
            rows = None if mask is None else mask[:, cols, : start + size]
            outs.append(decoder(x[:, cols], positions[..., cols], rows, cache=cache))
            start += size
    assert cache.length == seq and all(cache[i].length == seq for i in range(config.n_layers))
    torch.testing.assert_close(torch.cat(outs, dim=1), expected, atol=1e-4, rtol=1e-4)
