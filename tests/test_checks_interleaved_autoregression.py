"""Lesson 02's checks pass the references, wait on stubs and reject plausible mistakes."""

import math

import torch
import torch.nn.functional as F

from omni_edu import grading
from omni_edu.lessons.interleaved_autoregression.checks import (
    apply_rope,
    attention_mask,
    check_apply_rope,
    check_attention_mask,
    check_kv_cache_step,
    decode_with_cache,
)


def stub(*args, **kwargs):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


# ----------------------------------------------------------------------------- the mask


def mask_all_minus_one_is_a_span(real, span_ids=None):
    # Plausible mistake: every token with span id -1 counts as one big bidirectional span.
    seq = real.shape[1]
    idx = torch.arange(seq)
    mask = (idx[None, :] <= idx[:, None]) & real[:, None, :] & real[:, :, None]
    if span_ids is not None:
        mask = mask | (span_ids[:, :, None] == span_ids[:, None, :])
    return mask | (torch.eye(seq, dtype=torch.bool) & ~real[:, :, None])


def mask_sees_the_future(real, span_ids=None):
    # Plausible mistake: the triangle the wrong way round (key >= query).
    seq = real.shape[1]
    idx = torch.arange(seq)
    mask = (idx[None, :] >= idx[:, None]) & real[:, None, :] & real[:, :, None]
    if span_ids is not None:
        same = (span_ids[:, :, None] == span_ids[:, None, :]) & (span_ids[:, :, None] >= 0)
        mask = mask | same
    return mask | (torch.eye(seq, dtype=torch.bool) & ~real[:, :, None])


def test_mask_check_passes_the_reference():
    assert check_attention_mask(attention_mask).passed


def test_mask_check_on_a_stub_is_not_implemented():
    assert check_attention_mask(stub).status == grading.NOT_IMPLEMENTED


def test_mask_check_rejects_plausible_mistakes():
    with grading.lenient():
        assert check_attention_mask(mask_all_minus_one_is_a_span).status == grading.FAILED
        assert check_attention_mask(mask_sees_the_future).status == grading.FAILED


def mask_assumes_padding_at_the_end(real, span_ids=None):
    # Plausible mistake: the real tokens of a row are taken to be its first real.sum().
    first_n = torch.arange(real.shape[1])[None, :] < real.sum(dim=1, keepdim=True)
    return attention_mask(first_n, span_ids)


def test_mask_check_rejects_a_mask_that_assumes_padding_at_the_end():
    with grading.lenient():
        assert check_attention_mask(mask_assumes_padding_at_the_end).status == grading.FAILED


# ----------------------------------------------------------------------------- RoPE


def rope_turns_backwards(x, cos, sin):
    # Plausible mistake: the signs of sin swapped, i.e. a rotation by -angle.
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos + b * sin, -a * sin + b * cos], dim=-1).flatten(-2)


def rope_halves_concatenated(x, cos, sin):
    # Plausible mistake: right rotation, but the halves are concatenated, not interleaved.
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def test_rope_check_passes_the_reference():
    assert check_apply_rope(apply_rope).passed


def test_rope_check_on_a_stub_is_not_implemented():
    assert check_apply_rope(stub).status == grading.NOT_IMPLEMENTED


def test_rope_check_rejects_plausible_mistakes():
    with grading.lenient():
        assert check_apply_rope(rope_turns_backwards).status == grading.FAILED
        assert check_apply_rope(rope_halves_concatenated).status == grading.FAILED


def test_reference_rope_keeps_scores_relative():
    """The property the lesson relies on: q.k after RoPE depends on p - s only."""
    from omni_edu.model.transformer import rope_angles, rope_cos_sin, rope_frequencies

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 16, generator=g)
    inv_freq = rope_frequencies(16)

    def rotated(v, position):
        cos, sin = rope_cos_sin(rope_angles(torch.tensor([[position]]), inv_freq))
        return apply_rope(v, cos, sin)

    near = (rotated(q, 7) * rotated(k, 4)).sum()
    shifted = (rotated(q, 27) * rotated(k, 24)).sum()
    assert torch.allclose(near, shifted, atol=1e-5)


# ----------------------------------------------------------------------------- KV cache


def kv_step(q, k, v, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    weights = (q @ k_cache.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return weights @ v_cache, k_cache, v_cache


def kv_step_causal_flag(q, k, v, k_cache, v_cache):
    # Plausible mistake: is_causal=True with a single query keeps only the first key.
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, is_causal=True)
    return out, k_cache, v_cache


def kv_step_no_scale(q, k, v, k_cache, v_cache):
    # Plausible mistake: forgetting the 1/sqrt(head_dim) temperature.
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    return (q @ k_cache.transpose(-2, -1)).softmax(dim=-1) @ v_cache, k_cache, v_cache


def kv_step_forgets_to_store(q, k, v, k_cache, v_cache):
    # Plausible mistake: attends correctly but hands back the old caches.
    out, _, _ = kv_step(q, k, v, k_cache, v_cache)
    return out, k_cache, v_cache


def test_kv_check_passes_a_correct_step():
    assert check_kv_cache_step(kv_step).passed


def test_kv_check_on_a_stub_is_not_implemented():
    assert check_kv_cache_step(stub).status == grading.NOT_IMPLEMENTED


def test_kv_check_rejects_plausible_mistakes():
    with grading.lenient():
        for wrong in (kv_step_causal_flag, kv_step_no_scale, kv_step_forgets_to_store):
            assert check_kv_cache_step(wrong).status == grading.FAILED, wrong.__name__


def test_decode_with_cache_matches_the_decoder_with_its_kv_cache():
    """The package's Decoder, fed one token at a time through its KVCache, equals one
    full causal pass: the behaviour the exercise's step reproduces inside a layer."""
    from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache

    torch.manual_seed(0)
    decoder = Decoder(DecoderConfig(d_model=32, n_layers=2, n_heads=4)).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        full = decoder(x)
        cache = KVCache(decoder.config, batch_size=2, max_len=7)
        steps = [decoder(x[:, t : t + 1], cache=cache) for t in range(7)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    out, k_cache, _ = decode_with_cache(kv_step, *torch.randn(3, 1, 2, 5, 4))
    assert out.shape == (1, 2, 5, 4) and k_cache.shape == (1, 2, 5, 4)


def kv_step_returns_only_out(q, k, v, k_cache, v_cache):
    # Plausible mistake: returns the attention output but not the grown caches.
    out, _, _ = kv_step(q, k, v, k_cache, v_cache)
    return out


def kv_step_appends_on_the_wrong_axis(q, k, v, k_cache, v_cache):
    k_cache = torch.cat([k_cache, k], dim=3)  # the learner's own line raises here
    return kv_step(q, k, v, k_cache, v_cache)


def test_kv_check_names_the_bad_return_value_not_the_wrapper():
    with grading.lenient():
        result = check_kv_cache_step(kv_step_returns_only_out)
    text = str(result)
    assert result.status == grading.FAILED
    assert "(out, k_cache, v_cache)" in text and "returned a tensor" in text
    assert "step_fn(" not in text and "interleaved_autoregression.py" not in text


def test_kv_check_shows_the_learners_own_line_when_it_raises():
    with grading.lenient():
        result = check_kv_cache_step(kv_step_appends_on_the_wrong_axis)
    text = str(result)
    assert result.status == grading.ERROR
    assert "test_checks_interleaved_autoregression.py" in text
    assert "k_cache = torch.cat([k_cache, k], dim=3)" in text


def test_the_left_padding_case_gets_its_own_hint():
    grading.reset_attempts()
    with grading.lenient():
        result = check_attention_mask(mask_assumes_padding_at_the_end)
    assert "START of a row" in result.first_failure().label
    assert "anywhere in a row" in result.hint
    grading.reset_attempts()
