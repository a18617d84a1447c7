"""The span heads of lesson 04b: a DiT head, whole-image diffusion in the decoder, masked
discrete diffusion over code ids - alone and inside OmniLM."""

import itertools
import math

import pytest
import torch

from omni_edu.modalities import Modality
from omni_edu.model.heads.dit import DiTConfig, DiTHead
from omni_edu.model.heads.flow import FlowHeadConfig
from omni_edu.model.heads.masked import (
    MaskedCodeHead,
    mask_ratio,
    masked_after,
    training_mask,
    unmask_by_confidence,
)
from omni_edu.model.heads.output import HEAD_KINDS, SPAN_KINDS, build_head
from omni_edu.model.heads.span import (
    both_ways_within,
    euler_sample,
    span_flow_loss,
    time_grid,
    written_spans,
)
from omni_edu.model.interleave import (
    SpecialTokens,
    image_segment,
    pack,
    text_segment,
)
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import DecoderConfig

IMAGE_DIM, VOCAB, CODES, GRID = 6, 12, 5, (2, 3)
SPECIALS = SpecialTokens(bos=1, eos=2, boi=3, eoi=4)


def tiny_model(head: str, seed: int = 0, **overrides) -> OmniLM:
    torch.manual_seed(seed)
    config = OmniLMConfig(
        projector=ProjectorConfig(
            d_model=16,
            vocab_size=VOCAB,
            image_dim=IMAGE_DIM,
            audio_dim=4,
            image_vocab_size=CODES if head in ("codes", "masked_codes") else 0,
        ),
        decoder=DecoderConfig(d_model=16, n_layers=2, n_heads=2),
        image_head=head,
        head_width=16 if head == "dit" else None,
        head_depth=1 if head == "dit" else 2,
        **overrides,
    )
    return OmniLM(config).eval()


def prompts(n: int, seed: int = 0) -> list[list]:
    g = torch.Generator().manual_seed(seed)
    return [
        [text_segment(torch.randint(5, VOCAB, (3,), generator=g), predict=False)] for _ in range(n)
    ]


def documents(head: str, n: int, seed: int = 0) -> list[list]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for prompt in prompts(n, seed):
        if head in ("codes", "masked_codes"):
            picture = torch.randint(CODES, (6,), generator=g)
        else:
            picture = torch.rand(6, IMAGE_DIM, generator=g)
        out.append([*prompt, image_segment(picture, GRID), text_segment([7])])
    return out


def packed(head: str, n: int = 4, seed: int = 0):
    return pack(documents(head, n, seed), specials=SPECIALS, image_dim=IMAGE_DIM, audio_dim=4)


# ----------------------------------------------------------------------- the pieces


def test_span_kinds_are_head_kinds_and_build():
    flow = FlowHeadConfig(token_dim=IMAGE_DIM, cond_dim=16, width=16, depth=1)
    assert set(SPAN_KINDS) <= set(HEAD_KINDS)
    for kind in SPAN_KINDS:
        head = build_head(kind, 16, IMAGE_DIM, CODES, flow)
        assert head.writes_span and head.discrete == (kind == "masked_codes")
        assert head.in_decoder == (kind != "dit")
    with pytest.raises(ValueError, match="vocab_size"):
        build_head("masked_codes", 16, IMAGE_DIM, 0, flow)


def test_span_flow_loss_uses_one_time_per_span():
    x, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    seen = {}

    def denoiser(x_t, tt):
        seen["x_t"], seen["t"] = x_t, tt
        return torch.zeros_like(x_t)

    loss = span_flow_loss(denoiser, x, noise, t)
    torch.testing.assert_close(seen["x_t"][0], noise[0])  # t = 0: pure noise
    torch.testing.assert_close(seen["x_t"][2], x[2])  # t = 1: the data
    torch.testing.assert_close(seen["x_t"][1], 0.5 * (x[1] + noise[1]))
    torch.testing.assert_close(loss, (x - noise).pow(2).mean())


def test_euler_sample_follows_a_constant_velocity_exactly():
    target = torch.randn(2, 3, 4)
    out = euler_sample(lambda x, t: target - 0 * x, (2, 3, 4), steps=5, shift=3.0, temperature=0)
    torch.testing.assert_close(out, target)  # from 0, one unit of time at that velocity
    grid = time_grid(4, 3.0)
    assert grid[0] == 0 and grid[-1] == 1 and all(a < b for a, b in itertools.pairwise(grid))


def test_dit_head_shapes_and_zero_start():
    config = DiTConfig(token_dim=IMAGE_DIM, cond_dim=10, width=16, depth=2, n_heads=4)
    head = DiTHead(config)
    cond, x = torch.randn(3, 6, 10), torch.rand(3, 6, IMAGE_DIM)
    v = head.velocity(x, torch.rand(3), cond, GRID)
    assert v.shape == (3, 6, IMAGE_DIM)
    assert head.loss(x, cond, GRID).dim() == 0
    g = torch.Generator().manual_seed(0)
    assert head.sample(cond, GRID, steps=3, generator=g).shape == (3, 6, IMAGE_DIM)
    with pytest.raises(ValueError, match="grid"):
        head.velocity(x, torch.rand(3), cond, (2, 2))
    with pytest.raises(ValueError, match="one decoder state per patch"):
        head.loss(x, cond[:, 0], GRID)
    with pytest.raises(ValueError, match="multiple of 4"):
        DiTConfig(token_dim=2, cond_dim=2, width=18, n_heads=2)


def test_dit_head_denoises_patches_jointly():
    head = DiTHead(DiTConfig(token_dim=IMAGE_DIM, cond_dim=10, width=16, depth=1))
    for p in head.parameters():  # leave adaLN-Zero's identity start: let attention act
        torch.nn.init.normal_(p, std=0.3)
    x, cond, t = torch.rand(1, 6, IMAGE_DIM), torch.randn(1, 6, 10), torch.rand(1)
    changed = x.clone()
    changed[0, -1] += 1.0
    v, w = head.velocity(x, t, cond, GRID), head.velocity(changed, t, cond, GRID)
    assert not torch.allclose(v[0, 0], w[0, 0])  # the first patch saw the last one


def test_mask_schedule_reaches_zero_and_reveals_one_a_step():
    assert mask_ratio(torch.tensor(0.0)) == 1 and mask_ratio(torch.tensor(1.0)) < 1e-6
    for length in (1, 6, 16):
        for steps in (1, 2, 5, 16, 40):
            counts = [length] + [masked_after(s, steps, length) for s in range(1, steps + 1)]
            assert counts[-1] == 0
            assert all(b < a or a == 0 for a, b in itertools.pairwise(counts))
    assert masked_after(1, 8, 16) == math.floor(16 * math.cos(math.pi / 16))


def test_training_mask_hides_at_least_one_code_per_span():
    masked = training_mask(500, 16, torch.Generator().manual_seed(0))
    counts = masked.sum(1).float()
    assert masked.shape == (500, 16) and counts.min() >= 1
    # cos(pi/2 u) of a uniform u has mean 2/pi: spans lose about 64% of their codes
    assert abs(counts.mean().item() / 16 - 2 / math.pi) < 0.05


def test_unmask_by_confidence_reveals_the_surest_and_keeps_what_is_revealed():
    codes = torch.tensor([[9, 0, 0, 0], [0, 0, 0, 0]])
    masked = torch.tensor([[False, True, True, True], [True, True, True, True]])
    sampled = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    confidence = torch.tensor([[0.99, 0.2, 0.9, 0.5], [0.1, 0.8, 0.3, 0.7]])
    new, still = unmask_by_confidence(codes, masked, sampled, confidence, n_masked=1)
    assert new.tolist() == [[9, 0, 3, 4], [0, 6, 7, 8]]
    assert still.tolist() == [[False, True, False, False], [True, False, False, False]]


def test_masked_sampler_unmasks_every_position_within_k_steps():
    head = MaskedCodeHead(8, CODES)
    for steps in (1, 3, 6, 20):
        calls = []

        def logits_of(codes, masked, calls=calls):
            calls.append(int(masked.sum(1).max()))
            return torch.randn(
                *codes.shape, CODES, generator=torch.Generator().manual_seed(len(calls))
            )

        out = head.sample(
            logits_of, (3, 6), steps=steps, generator=torch.Generator().manual_seed(0)
        )
        assert out.shape == (3, 6) and ((out >= 0) & (out < CODES)).all()
        assert len(calls) <= steps and calls[0] == 6
        assert calls == sorted(calls, reverse=True)


def test_both_ways_within_opens_each_run_only():
    here = torch.tensor([[False, True, True, False, True]])
    causal = torch.ones(5, 5).tril().bool()[None]
    mask = both_ways_within(causal, here)[0]
    assert mask[1, 2] and not mask[1, 4] and not mask[0, 1] and not mask[3, 4]
    assert mask[4, 1]  # causal as before: a later run still reads an earlier one


def test_written_spans_find_the_trained_pictures():
    batch = packed("dit", n=3)
    spans = written_spans(batch, Modality.IMAGE)
    assert spans.grid == GRID and spans.cols.shape == (3, 6)
    assert (batch.modality[spans.index] == Modality.IMAGE).all()
    assert written_spans(batch, Modality.AUDIO) is None


# ------------------------------------------------------------------ inside OmniLM


@pytest.mark.parametrize("head", SPAN_KINDS)
def test_loss_has_the_text_and_the_span_terms(head):
    model = tiny_model(head).train()
    losses = model.loss(packed(head))
    assert set(losses) == {"text", "image", "loss"} and losses["image"] > 0
    losses["loss"].backward()
    grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("head", ["transfusion", "masked_codes"])
def test_noised_patches_never_leak_into_text_before_them(head):
    model = tiny_model(head)
    batch = packed(head, n=2)
    spans = written_spans(batch, Modality.IMAGE)
    start = int(spans.cols[0, 0])
    a = model.corrupt_spans(batch, torch.Generator().manual_seed(0))
    b = model.corrupt_spans(batch, torch.Generator().manual_seed(1))
    ha, hb = model(batch, corrupted=a), model(batch, corrupted=b)
    torch.testing.assert_close(ha[:, :start], hb[:, :start])  # the prompt never sees them
    assert not torch.allclose(ha[:, start], hb[:, start])
    # inside the span attention runs both ways: the first patch reads the last one
    mask = model.attention_mask(batch)
    assert mask[0, start, start + 5] and not mask[0, start - 1, start]


@pytest.mark.parametrize("head", SPAN_KINDS)
def test_generate_shapes_seed_and_cache(head):
    model = tiny_model(head)
    asked = prompts(3)
    run = lambda cache, seed: model.generate(
        asked,
        Modality.IMAGE,
        grid=GRID,
        specials=SPECIALS,
        use_cache=cache,
        steps=4,
        generator=torch.Generator().manual_seed(seed),
    )
    cached, again, recomputed, other = run(True, 0), run(True, 0), run(False, 0), run(True, 1)
    shape = (6,) if head == "masked_codes" else (6, IMAGE_DIM)
    assert [x.shape for x in cached] == [shape] * 3
    for a, b, c in zip(cached, again, recomputed, strict=True):
        torch.testing.assert_close(a, b)  # same seed, same samples
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)  # cache = recomputation
    assert any(not torch.equal(a, b) for a, b in zip(cached, other, strict=True))


@pytest.mark.parametrize("head", SPAN_KINDS)
def test_guidance_runs_beside_the_empty_prompt(head):
    model = tiny_model(head)
    empty = [[text_segment([5], predict=False)]] * 2
    options = dict(
        grid=GRID, specials=SPECIALS, steps=2, generator=torch.Generator().manual_seed(0)
    )
    out = model.generate(prompts(2), Modality.IMAGE, guidance=2.0, uncond_prompts=empty, **options)
    assert len(out) == 2
    if model.image_head.in_decoder:
        with pytest.raises(ValueError, match="uncond_prompts"):
            model.generate(prompts(2), Modality.IMAGE, guidance=2.0, **options)


def test_transfusion_learns_a_picture_from_its_word():
    """Two words, two pictures: after training, whole-image diffusion draws the right one."""
    torch.manual_seed(0)
    model = tiny_model("transfusion", flow_time_shift=3.0).train()
    pictures = torch.stack([torch.full((6, IMAGE_DIM), 0.1), torch.full((6, IMAGE_DIM), 0.9)])
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def batch(words):
        docs = [
            [text_segment([5 + w], predict=False), image_segment(pictures[w], GRID)] for w in words
        ]
        return pack(docs, specials=SPECIALS, image_dim=IMAGE_DIM, audio_dim=4)

    for _ in range(150):
        loss = model.loss(batch(torch.randint(2, (16,), generator=g).tolist()))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    asked = [[text_segment([5 + w], predict=False)] for w in (0, 1)]
    drawn = model.generate(
        asked, Modality.IMAGE, grid=GRID, specials=SPECIALS, steps=8, generator=g
    )
    means = [float(x.mean()) for x in drawn]
    assert means[0] < 0.4 < 0.6 < means[1], means
