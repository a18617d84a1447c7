"""Tests of the decoder: caching, causality, masks, RoPE / M-RoPE, errors, learning.

(tests/test_decoder_reference.py checks it against its equations, read from a checkpoint.)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.model.rope import apply_rope, rope_angles, rope_cos_sin, rope_frequencies
from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache, decoder_mask

ATOL = 1e-5


def small_config(**overrides) -> DecoderConfig:
    sizes = {"d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 64}
    return DecoderConfig(**{**sizes, **overrides})


def make_decoder(seed: int = 0, **overrides) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(small_config(**overrides)).eval()


def mrope_positions(batch: int, text: int, grid: int) -> torch.Tensor:
    """(3, batch, seq): ``text`` text tokens, then a ``grid x grid`` image, then text again.

    Text tokens have equal (t, h, w); image patches share one time step and vary in
    height and width, as Qwen2-VL lays them out.
    """
    t = torch.arange(text)
    rows = [torch.stack([t, t, t])]
    hh, ww = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows.append(
        torch.stack([torch.full((grid * grid,), text), text + hh.flatten(), text + ww.flatten()])
    )
    after = text + grid + torch.arange(text)
    rows.append(torch.stack([after, after, after]))
    return torch.cat(rows, dim=1).unsqueeze(1).expand(3, batch, -1).contiguous()


def causal(seq: int) -> torch.Tensor:
    return torch.ones(seq, seq, dtype=torch.bool).tril()


# --------------------------------------------------------------------------- cache


@pytest.mark.parametrize("n_kv_heads", [4, 2])
@pytest.mark.parametrize("kind", ["1d", "mrope"])
def test_cached_decoding_matches_full_forward(kind: str, n_kv_heads: int) -> None:
    decoder = make_decoder(n_kv_heads=n_kv_heads)
    positions = mrope_positions(2, text=3, grid=2) if kind == "mrope" else None
    seq = 10
    x = torch.randn(2, seq, 32)
    with torch.no_grad():
        full = decoder(x, positions)
        cache = KVCache(decoder.config, batch_size=2, max_len=16)
        # Prefill 4 tokens, then one at a time, then a chunk of 3: all must agree.
        outs, start = [], 0
        for size in (4, 1, 1, 1, 3):
            pos = None if positions is None else positions[..., start : start + size]
            outs.append(decoder(x[:, start : start + size], pos, cache=cache))
            start += size
    assert cache.length == seq
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=ATOL, rtol=0)


def test_cache_with_explicit_mask_accepts_square_or_new_rows() -> None:
    decoder = make_decoder()
    seq = 9
    x = torch.randn(1, seq, 32)
    # A prefix-LM mask: the first 4 tokens (say, an image) see each other both ways.
    mask = causal(seq)
    mask[:4, :4] = True
    mask = mask.unsqueeze(0)
    with torch.no_grad():
        full = decoder(x, attn_mask=mask)
        for use_square in (True, False):
            cache = KVCache(decoder.config, batch_size=1, max_len=seq)
            outs = [decoder(x[:, :4], attn_mask=mask[:, :4, :4], cache=cache)]
            for i in range(4, seq):
                rows = mask[:, : i + 1, : i + 1] if use_square else mask[:, i : i + 1, : i + 1]
                outs.append(decoder(x[:, i : i + 1], attn_mask=rows, cache=cache))
            torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=ATOL, rtol=0)


def test_cache_reset_and_gqa_memory() -> None:
    config = small_config(n_kv_heads=1)
    cache = KVCache(config, batch_size=3, max_len=8)
    # Keys and values for 2 layers, 3 sequences, 1 kv head, 8 slots, head_dim 8.
    assert cache.nbytes == 2 * 2 * 3 * 1 * 8 * 8 * 4
    decoder = make_decoder(n_kv_heads=1)
    with torch.no_grad():
        first = decoder(torch.ones(3, 2, 32), cache=cache)
        cache.reset()
        again = decoder(torch.ones(3, 2, 32), cache=cache)
    torch.testing.assert_close(first, again)


def test_each_block_returns_its_cache_view_grown_by_the_new_tokens() -> None:
    decoder = make_decoder(n_kv_heads=2)
    cache = KVCache(decoder.config, batch_size=2, max_len=8)
    x = torch.randn(2, 3, 32)
    cos, sin = decoder.rope_cos_sin(torch.arange(3).expand(2, 3))
    view = cache[0]
    with torch.no_grad():
        out, grown, weights = decoder.blocks[0](x, cos=cos, sin=sin, cache=view)
        plain, no_cache, _ = decoder.blocks[0](x, cos=cos, sin=sin)
    assert (view.length, grown.length, weights, no_cache) == (0, 3, None, None)
    assert grown.k.shape == grown.v.shape == (2, 2, 3, 8)  # (batch, kv heads, tokens, head_dim)
    assert grown.k_store is view.k_store  # written in place: no copy of the past per step
    torch.testing.assert_close(out, plain)  # with nothing cached, the same as no cache
    with torch.no_grad():
        decoder(x, cache=cache)  # the decoder puts every block's grown view back
    assert [cache[i].length for i in range(2)] == [3, 3] and cache.length == 3
    with pytest.raises(TypeError):
        decoder.blocks[0](x, cos, sin)  # keyword arguments after x


def test_decoder_mask_is_none_only_for_plain_causal_attention_without_a_past() -> None:
    assert decoder_mask(None, 5, 0, torch.device("cpu")) is None  # SDPA's is_causal
    assert decoder_mask(None, 2, 3, torch.device("cpu")).tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    square = causal(5).unsqueeze(0)  # (batch, 5, 5): the last 2 rows are the new tokens'
    new_rows = square[:, 3:]
    for attn_mask in (square, new_rows):
        assert torch.equal(decoder_mask(attn_mask, 2, 3, torch.device("cpu")), new_rows[:, None])


# --------------------------------------------------------------------------- causality


@settings(max_examples=25, deadline=None)
@given(
    seq=st.integers(2, 12),
    data=st.data(),
    mrope=st.booleans(),
)
def test_changing_a_future_token_never_changes_the_past(seq: int, data, mrope: bool) -> None:
    decoder = make_decoder()
    cut = data.draw(st.integers(1, seq - 1), label="cut")
    shape = (3, 1, seq) if mrope else (1, seq)
    # Any integer positions, not just 0..seq-1: causality comes from the mask alone.
    positions = torch.tensor(
        data.draw(st.lists(st.integers(0, 100), min_size=seq * shape[0], max_size=seq * shape[0]))
    ).view(shape)
    torch.manual_seed(seq)
    x = torch.randn(1, seq, 32)
    changed = x.clone()
    changed[:, cut:] = torch.randn(1, seq - cut, 32)
    with torch.no_grad():
        before, after = decoder(x, positions), decoder(changed, positions)
    torch.testing.assert_close(before[:, :cut], after[:, :cut], atol=ATOL, rtol=0)
    assert not torch.allclose(before[:, cut:], after[:, cut:])


@settings(max_examples=25, deadline=None)
@given(seq=st.integers(2, 10), data=st.data())
def test_a_token_reaches_another_only_where_the_mask_allows(seq: int, data) -> None:
    """One layer, any mask: changing token j changes the output of query i only if the
    mask lets i attend to j (the diagonal is always allowed, as pack's masks do)."""
    decoder = make_decoder(n_layers=1)
    allowed = data.draw(st.lists(st.booleans(), min_size=seq * seq, max_size=seq * seq))
    mask = torch.tensor(allowed).view(1, seq, seq) | torch.eye(seq, dtype=torch.bool)
    j = data.draw(st.integers(0, seq - 1), label="changed token")
    x = torch.randn(1, seq, 32)
    changed = x.clone()
    changed[:, j] += 1.0
    with torch.no_grad():
        before, after = decoder(x, attn_mask=mask), decoder(changed, attn_mask=mask)
    blind = ~mask[0, :, j]  # the queries that may not look at token j
    torch.testing.assert_close(before[0, blind], after[0, blind], atol=ATOL, rtol=0)
    assert not torch.allclose(before[0, j], after[0, j])


def test_explicit_causal_mask_equals_no_mask() -> None:
    decoder = make_decoder()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        implicit = decoder(x)
        for mask in (causal(7), causal(7).expand(2, 7, 7), causal(7).expand(2, 1, 7, 7)):
            torch.testing.assert_close(decoder(x, attn_mask=mask), implicit, atol=ATOL, rtol=0)


def test_bool_mask_true_means_may_attend() -> None:
    # One layer, so token 2 can reach token 5 only through the mask entry (5, 2).
    decoder = make_decoder(n_layers=1)
    x = torch.randn(1, 6, 32)
    mask = causal(6)
    mask[5, 2] = False  # the last token may not look at token 2
    changed = x.clone()
    changed[:, 2] += 1.0
    with torch.no_grad():
        a, b = decoder(x, attn_mask=mask), decoder(changed, attn_mask=mask)
    torch.testing.assert_close(a[:, 5], b[:, 5], atol=ATOL, rtol=0)
    assert not torch.allclose(a[:, 3], b[:, 3])  # token 3 may look, and does notice


# --------------------------------------------------------------------------- attention path


def test_attention_weights_path_matches_sdpa() -> None:
    decoder = make_decoder(n_kv_heads=2)
    x = torch.randn(2, 8, 32)
    bidirectional_prefix = causal(8)
    bidirectional_prefix[:3, :3] = True
    with torch.no_grad():
        for mask in (None, bidirectional_prefix):
            fast = decoder(x, attn_mask=mask)
            slow, weights = decoder(x, attn_mask=mask, return_attention=True)
            torch.testing.assert_close(slow, fast, atol=ATOL, rtol=0)
            assert len(weights) == 2
            for w in weights:
                assert w.shape == (2, 4, 8, 8)
                torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 8))
                allowed = causal(8) if mask is None else mask
                assert (w[..., ~allowed] == 0).all()  # above the diagonal: exactly zero


def test_fully_masked_row_gives_zeros_not_nan() -> None:
    # A padding token that may attend nowhere must not poison the batch with NaNs.
    decoder = make_decoder()
    x = torch.randn(1, 5, 32)
    mask = causal(5)
    mask[4] = False
    with torch.no_grad():
        fast = decoder(x, attn_mask=mask)
        slow, weights = decoder(x, attn_mask=mask, return_attention=True)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(slow, fast, atol=ATOL, rtol=0)
    assert (weights[0][0, :, 4] == 0).all()


def test_attention_weights_with_cache_cover_all_keys() -> None:
    decoder = make_decoder()
    cache = KVCache(decoder.config, batch_size=1, max_len=8)
    x = torch.randn(1, 6, 32)
    with torch.no_grad():
        _, full = decoder(x, return_attention=True)
        decoder(x[:, :5], cache=cache)
        _, step = decoder(x[:, 5:], cache=cache, return_attention=True)
    assert step[0].shape == (1, 4, 1, 6)
    torch.testing.assert_close(step[1], full[1][:, :, 5:], atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- RoPE


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(-200, 200))
def test_rope_score_depends_only_on_relative_offset(m: int, n: int, shift: int) -> None:
    torch.manual_seed(0)
    head_dim = 16
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)
    inv_freq = rope_frequencies(head_dim)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope_cos_sin(rope_angles(torch.tensor([[pq]]), inv_freq))
        ck, sk = rope_cos_sin(rope_angles(torch.tensor([[pk]]), inv_freq))
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    shifted = (m + shift, n + shift)
    torch.testing.assert_close(score(m, n), score(*shifted), atol=1e-3, rtol=1e-4)


def test_rope_keeps_vector_length_and_position_zero_is_identity() -> None:
    x = torch.randn(2, 5, 4, 16)  # (batch, seq, heads, head_dim)
    cos, sin = rope_cos_sin(rope_angles(torch.arange(5).expand(2, 5) * 37, rope_frequencies(16)))
    rotated = apply_rope(x, cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    cos0, sin0 = rope_cos_sin(
        rope_angles(torch.zeros(2, 5, dtype=torch.long), rope_frequencies(16))
    )
    torch.testing.assert_close(apply_rope(x, cos0, sin0), x)


def test_real_arithmetic_rope_equals_a_complex_multiplication() -> None:
    # Pair (a, b) read as a + ib, turned by angle t: (a + ib) * e^(it).
    x = torch.randn(2, 5, 3, 16)
    angles = rope_angles(torch.randint(0, 50, (2, 5)), rope_frequencies(16))
    cos, sin = rope_cos_sin(angles)
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(cos), angles[:, :, None]))
    torch.testing.assert_close(apply_rope(x, cos, sin), expected.flatten(-2))


def test_mrope_with_equal_rows_equals_1d_rope() -> None:
    decoder = make_decoder()
    positions = torch.tensor([[0, 1, 2, 5, 9, 10], [3, 4, 5, 6, 7, 8]])
    three = positions.expand(3, 2, 6)
    inv_freq = rope_frequencies(8)
    assert torch.equal(rope_angles(three, inv_freq, (2, 1, 1)), rope_angles(positions, inv_freq))
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        assert torch.equal(decoder(x, three), decoder(x, positions))


def test_mrope_sections_follow_their_own_axis() -> None:
    inv_freq = rope_frequencies(16)  # 8 pairs
    sections = (2, 3, 3)
    base = torch.tensor([[[4]], [[4]], [[4]]])
    moved_h = torch.tensor([[[4]], [[9]], [[4]]])
    moved_w = torch.tensor([[[4]], [[4]], [[9]]])
    a = rope_angles(base, inv_freq, sections)[0, 0]
    changed_h = rope_angles(moved_h, inv_freq, sections)[0, 0] != a
    changed_w = rope_angles(moved_w, inv_freq, sections)[0, 0] != a
    assert changed_h.tolist() == [False, False, True, True, True, False, False, False]
    assert changed_w.tolist() == [False, False, False, False, False, True, True, True]


# --------------------------------------------------------------------------- config / errors


def test_config_defaults_and_profile() -> None:
    config = DecoderConfig.from_profile("ci", n_layers=1)
    assert (config.d_model, config.n_layers, config.n_heads) == (64, 1, 4)
    assert config.n_kv_heads == 4
    assert config.mlp_hidden == 168  # 8/3 * 64 = 170.7, rounded to a multiple of 8
    assert sum(config.mrope_sections) == config.head_dim // 2
    assert DecoderConfig.from_profile("ci", d_model=128).mlp_hidden == 344
    with pytest.raises(ValueError, match="Unknown DecoderConfig field"):
        DecoderConfig.from_profile("ci", width=3)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        DecoderConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        DecoderConfig(d_model=32, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="mrope_sections"):
        DecoderConfig(d_model=32, n_heads=4, mrope_sections=(1, 1, 1))


def test_scaled_residual_init() -> None:
    decoder = Decoder(DecoderConfig(d_model=64, n_layers=8, n_heads=4))
    block = decoder.blocks[0]
    assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.002
    assert abs(block.mlp.down.weight.std().item() - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)


def test_errors_name_expected_and_received_shapes() -> None:
    decoder = make_decoder()
    with pytest.raises(ValueError, match=r"\(batch, seq, d_model=32\); got \(2, 5, 16\)"):
        decoder(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="forget the batch dimension"):
        decoder(torch.randn(5, 32))
    with pytest.raises(ValueError, match="token ids"):
        decoder(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(3, 2, 5\) to match x.*got \(2, 4\)"):
        decoder(torch.randn(2, 5, 32), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="boolean"):
        decoder(torch.randn(1, 5, 32), attn_mask=causal(5).float())
    with pytest.raises(ValueError, match=r"attn_mask should be \(batch, 5, 5\).*got \(1, 4, 4\)"):
        decoder(torch.randn(1, 5, 32), attn_mask=causal(4).unsqueeze(0))
    cache = KVCache(decoder.config, batch_size=1, max_len=4)
    with pytest.raises(ValueError, match="exceed the KVCache's max_len=4"):
        decoder(torch.randn(1, 5, 32), cache=cache)
    with pytest.raises(ValueError, match="batch_size=1"):
        decoder(torch.randn(2, 1, 32), cache=cache)


# --------------------------------------------------------------------------- learning


def test_tiny_decoder_learns_to_copy() -> None:
    """Second half of each sequence repeats the first: only attention can solve it."""
    torch.manual_seed(0)
    vocab, half, batch = 8, 6, 32
    config = DecoderConfig(d_model=32, n_layers=2, n_heads=4, max_seq_len=2 * half)
    decoder = Decoder(config)
    embed = torch.nn.Embedding(vocab, config.d_model)
    head = torch.nn.Linear(config.d_model, vocab, bias=False)
    params = [*decoder.parameters(), *embed.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    first = torch.randint(vocab, (batch, half))
    ids = torch.cat([first, first], dim=1)
    for _ in range(60):
        logits = head(decoder(embed(ids[:, :-1])))
        # Score only the copied half, where the answer is knowable.
        loss = F.cross_entropy(logits[:, half - 1 :].flatten(0, 1), ids[:, half:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"copy loss stayed at {loss.item():.3f}"
