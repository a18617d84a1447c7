"""Tests of the generation loop: cached = uncached, sampling rules, a trained model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from omni_edu.model.generate import generate, measure_decode_speed, sample_token, text_step
from omni_edu.model.transformer import Decoder, DecoderConfig

D, VOCAB = 32, 11


def tiny_model(seed: int = 0) -> tuple[Decoder, nn.Embedding, nn.Linear]:
    torch.manual_seed(seed)
    decoder = Decoder(DecoderConfig(d_model=D, n_layers=2, n_heads=4, max_seq_len=64)).eval()
    embed = nn.Embedding(VOCAB, D)
    head = nn.Linear(D, VOCAB, bias=False)
    # Larger head weights than a fresh init so that random logits are far from ties.
    nn.init.normal_(head.weight, std=3.0)
    return decoder, embed, head


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_equals_uncached_token_for_token(temperature: float) -> None:
    decoder, embed, head = tiny_model()
    prompt = embed(torch.randint(VOCAB, (3, 5)))
    tokens = {}
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(1)
        step = text_step(embed, head, temperature=temperature, generator=generator)
        tokens[use_cache] = generate(decoder, prompt, step, n_steps=12, use_cache=use_cache)
    assert tokens[True].shape == (3, 12)
    assert torch.equal(tokens[True], tokens[False])


def test_cached_equals_uncached_with_mrope_positions_and_a_mask() -> None:
    decoder, embed, head = tiny_model()
    prompt_len, n = 6, 5
    total = prompt_len + n
    t = torch.arange(total)
    positions = torch.stack([t, t, t]).unsqueeze(1).clone()
    positions[1:, 0, 1:5] = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]]) + 1  # a 2x2 image
    mask = torch.ones(total, total, dtype=torch.bool).tril()
    mask[1:5, 1:5] = True  # the image's patches see each other both ways
    prompt = embed(torch.randint(VOCAB, (1, prompt_len)))
    step = text_step(embed, head)
    kwargs = {"positions": positions, "attn_mask": mask.unsqueeze(0)}
    cached = generate(decoder, prompt, step, n, use_cache=True, **kwargs)
    uncached = generate(decoder, prompt, step, n, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


def test_continuous_outputs_through_a_callback() -> None:
    # An image/audio head plugs in the same way: hidden -> (next embedding, output).
    decoder, _, _ = tiny_model()
    to_patch, from_patch = nn.Linear(D, 6), nn.Linear(6, D)

    def next_patch(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch = to_patch(hidden)
        return from_patch(patch), patch

    prompt = torch.randn(2, 4, D)
    cached = generate(decoder, prompt, next_patch, n_steps=7, use_cache=True)
    uncached = generate(decoder, prompt, next_patch, n_steps=7, use_cache=False)
    assert cached.shape == (2, 7, 6)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)


def test_generation_continues_a_learned_pattern() -> None:
    """Train on counting mod VOCAB; generation must keep counting from any start."""
    decoder, embed, head = tiny_model()
    decoder.train()
    params = [*decoder.parameters(), *embed.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    starts = torch.arange(VOCAB).repeat(3).unsqueeze(1)
    ids = (starts + torch.arange(16)) % VOCAB  # (33, 16): 3, 4, 5, ... wrapping at VOCAB
    for _ in range(40):
        logits = head(decoder(embed(ids[:, :-1])))
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    decoder.eval()
    prompt_ids = torch.tensor([[2, 3, 4], [7, 8, 9]])
    out = generate(decoder, embed(prompt_ids), text_step(embed, head), n_steps=8)
    expected = (prompt_ids[:, -1:] + 1 + torch.arange(8)) % VOCAB
    assert torch.equal(out, expected), f"loss {loss.item():.3f}; got {out.tolist()}"


# --------------------------------------------------------------------------- sampling


def test_greedy_and_top_1_pick_the_most_likely_token() -> None:
    logits = torch.randn(5, 20)
    best = logits.argmax(-1)
    assert torch.equal(sample_token(logits), best)
    assert torch.equal(sample_token(logits, temperature=5.0, top_k=1), best)


@settings(max_examples=20, deadline=None)
@given(top_k=st.integers(1, 10), temperature=st.floats(0.1, 5.0), seed=st.integers(0, 1000))
def test_top_k_only_ever_samples_among_the_k_best(
    top_k: int, temperature: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, 10, generator=generator)
    ids = sample_token(logits, temperature, top_k, generator)
    rank = (logits > logits.gather(1, ids[:, None])).sum(-1)  # 0 = the best token
    assert (rank < top_k).all()


def test_temperature_follows_the_softmax() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(20000, 3)
    for temperature in (0.5, 2.0):
        ids = sample_token(logits, temperature, generator=generator)
        freq = torch.bincount(ids, minlength=3).float() / len(ids)
        expected = (logits[0] / temperature).softmax(-1)
        torch.testing.assert_close(freq, expected, atol=0.02, rtol=0)


def test_decode_speed_report() -> None:
    decoder, _, _ = tiny_model()
    report = measure_decode_speed(decoder, prompt_len=4, n_steps=6, repeats=1)
    assert report["same_tokens"] == 1.0
    assert report["speedup"] == pytest.approx(report["uncached_s"] / report["cached_s"])
    assert report["cached_tokens_per_s"] == pytest.approx(6 / report["cached_s"])


def test_errors_are_clear() -> None:
    decoder, embed, head = tiny_model()
    step = text_step(embed, head)
    with pytest.raises(ValueError, match=r"\(batch, prompt_len, 32\); got \(2, 5\)"):
        generate(decoder, torch.zeros(2, 5), step, 3)
    with pytest.raises(ValueError, match="n_steps should be at least 1"):
        generate(decoder, torch.zeros(1, 2, D), step, 0)
    with pytest.raises(ValueError, match=r"\(batch, 5\).*got \(1, 4\)"):
        generate(decoder, torch.zeros(1, 2, D), step, 3, positions=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="max_seq_len=64"):
        generate(decoder, torch.zeros(1, 60, D), step, 10)
    with pytest.raises(ValueError, match="temperature"):
        sample_token(torch.zeros(1, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        sample_token(torch.zeros(1, 3), temperature=1.0, top_k=0)
