"""OmniLM: per-modality losses fall on a tiny interleaved task; generation is consistent."""

import dataclasses

import pytest
import torch

from omni_edu.modalities import Modality
from omni_edu.model.interleave import (
    SpecialTokens,
    audio_segment,
    image_segment,
    pack,
    text_segment,
)
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import DecoderConfig

IMAGE_DIM, AUDIO_DIM, VOCAB, N_COLOURS = 12, 6, 12, 4
_g = torch.Generator().manual_seed(0)
IMAGES = torch.rand(N_COLOURS, 4, IMAGE_DIM, generator=_g)  # colour -> its 2x2 patches
SOUNDS = torch.randn(N_COLOURS, 2, AUDIO_DIM, generator=_g)  # colour -> its 2 frames


def word(colour: int) -> int:
    return 7 + colour  # ids 0..6 are left for special tokens


def media(colour: int, modality: Modality):
    if modality == Modality.IMAGE:
        return image_segment(IMAGES[colour], (2, 2))
    return audio_segment(SOUNDS[colour])


def colour_batch(n: int, gen: torch.Generator):
    """Documents "word, picture or sound" or "picture or sound, word" of one colour."""
    docs = []
    for _ in range(n):
        colour = int(torch.randint(N_COLOURS, (1,), generator=gen))
        m = Modality(int(torch.randint(1, 3, (1,), generator=gen)))
        pair = [text_segment([word(colour)]), media(colour, m)]
        docs.append(pair if torch.rand(1, generator=gen) < 0.5 else pair[::-1])
    return pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM)


def tiny_config(**overrides) -> OmniLMConfig:
    return OmniLMConfig(
        projector=ProjectorConfig(
            d_model=32, vocab_size=VOCAB, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM
        ),
        decoder=DecoderConfig(d_model=32, n_layers=1, n_heads=2),
        **overrides,
    )


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = OmniLM(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    history = []
    for _ in range(80):
        losses = model.loss(colour_batch(16, gen))
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    return model.eval(), history


def test_every_modality_loss_falls(trained):
    _, history = trained
    for name in ("text", "image", "audio", "loss"):
        first = sum(h[name] for h in history[:5]) / 5
        last = sum(h[name] for h in history[-5:]) / 5
        assert last < 0.3 * first, (name, first, last)
    # text after a picture or a sound is fully determined: it is learned almost exactly
    assert sum(h["text"] for h in history[-5:]) / 5 < 0.1


def test_greedy_text_names_the_colour_of_a_picture_or_a_sound(trained):
    model, _ = trained
    prompts = [[media(c, m)] for m in (Modality.IMAGE, Modality.AUDIO) for c in range(N_COLOURS)]
    out = model.generate(prompts, Modality.TEXT, n_tokens=1)
    assert [ids.tolist() for ids in out] == [[word(c)] for c in range(N_COLOURS)] * 2


@pytest.mark.parametrize("modality", [Modality.IMAGE, Modality.AUDIO, Modality.TEXT])
def test_generation_equals_teacher_forced_prediction_of_its_own_output(trained, modality):
    """Filling placeholders left to right gives exactly what the model predicts when it
    reads the finished sequence: the placeholders never leaked into earlier tokens."""
    model, _ = trained
    prompts = [[text_segment([word(c)])] for c in range(N_COLOURS)]
    out = model.generate(prompts, modality, n_tokens=3, grid=(2, 2))
    wrap = {
        Modality.TEXT: text_segment,
        Modality.IMAGE: image_segment,
        Modality.AUDIO: audio_segment,
    }
    docs = [[*p, wrap[modality](x)] for p, x in zip(prompts, out, strict=True)]
    packed = pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM)
    n = len(out[0])
    hidden = model(packed)[:, :n]  # position i predicts token i + 1 (the span starts at 1)
    if modality == Modality.TEXT:
        expected = model.text_head(hidden).argmax(-1)
    else:
        expected = model.head(modality).sample(hidden)
    assert torch.allclose(torch.stack(out), expected, atol=1e-5)


@pytest.mark.parametrize("modality", [Modality.IMAGE, Modality.AUDIO, Modality.TEXT])
def test_kv_cache_generation_equals_full_recompute(trained, modality):
    model, _ = trained
    specials = SpecialTokens(bos=1, eos=2, boi=3, eoi=4, boa=5, eoa=6)
    prompts = [  # different lengths and modalities: rows are left-padded
        [text_segment([word(0)])],
        [media(1, Modality.AUDIO), text_segment([word(1), word(2)])],
        [media(2, Modality.IMAGE)],
    ]
    kwargs = dict(n_tokens=3, grid=(2, 2), specials=specials)
    cached = model.generate(prompts, modality, use_cache=True, **kwargs)
    full = model.generate(prompts, modality, use_cache=False, **kwargs)
    for a, b in zip(cached, full, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_generated_image_is_closer_to_its_colour_than_the_mean_image(trained):
    model, _ = trained
    out = model.generate(
        [[text_segment([word(c)])] for c in range(N_COLOURS)], Modality.IMAGE, grid=(2, 2)
    )
    generated = torch.stack(out)
    assert generated.shape == IMAGES.shape
    mean_image = IMAGES.mean(0, keepdim=True)
    assert (generated - IMAGES).pow(2).mean() < (mean_image - IMAGES).pow(2).mean()


def test_generation_with_markers_and_stop_token():
    torch.manual_seed(0)
    model = OmniLM(tiny_config()).eval()
    specials = SpecialTokens(bos=1, eos=2, boi=3, eoi=4)
    prompts = [[text_segment([7, 8])], [image_segment(IMAGES[0], (2, 2))]]
    ids = model.generate(prompts, Modality.TEXT, n_tokens=4, specials=specials)
    stop = int(ids[0][1])  # a token the model does produce
    cut = model.generate(prompts, Modality.TEXT, n_tokens=4, specials=specials, stop_id=stop)
    for full, short in zip(ids, cut, strict=True):
        first_stop = (full == stop).nonzero()
        expected = full[: int(first_stop[0])] if len(first_stop) else full
        assert torch.equal(short, expected)
    with pytest.raises(ValueError, match="bidirectional"):
        model.generate(prompts, Modality.IMAGE, grid=(2, 2), bidirectional={Modality.IMAGE})
    with pytest.raises(ValueError, match="grid"):
        model.generate(prompts, Modality.IMAGE)
    with pytest.raises(ValueError, match="before the generated span"):
        model.generate([[]], Modality.TEXT, n_tokens=2)


def test_loss_is_the_weighted_sum_and_heads_are_tied_or_not():
    torch.manual_seed(0)
    packed = colour_batch(8, torch.Generator().manual_seed(0))
    model = OmniLM(tiny_config(loss_weights={"text": 1.0, "image": 0.5, "audio": 2.0}))
    losses = model.loss(packed)
    expected = losses["text"] + 0.5 * losses["image"] + 2.0 * losses["audio"]
    assert torch.allclose(losses["loss"], expected)
    assert model.text_head.weight is model.projector.text.weight
    untied = OmniLM(tiny_config(tie_embeddings=False))
    assert untied.text_head.weight is not untied.projector.text.weight
    assert untied.num_parameters() == model.num_parameters() + VOCAB * 32


def test_rope_choice_changes_the_output_only_where_positions_differ():
    torch.manual_seed(0)
    text_only = pack([[text_segment([7, 8, 9, 10])]])
    with_image = pack([[text_segment([7]), image_segment(IMAGES[0], (2, 2)), text_segment([9])]])
    one_d = OmniLM(tiny_config(rope="1d")).eval()
    m_rope = OmniLM(tiny_config(rope="mrope")).eval()
    m_rope.load_state_dict(one_d.state_dict())
    # text only: M-RoPE's three rows are equal to the 1-D positions, so nothing changes
    assert torch.allclose(one_d(text_only), m_rope(text_only), atol=1e-5)
    assert not torch.allclose(one_d(with_image), m_rope(with_image), atol=1e-5)


@pytest.mark.parametrize("kind", ["flow", "regression"])
def test_continuous_heads_plug_in(kind):
    torch.manual_seed(0)
    model = OmniLM(tiny_config(image_head=kind, audio_head=kind))
    losses = model.loss(colour_batch(8, torch.Generator().manual_seed(0)))
    assert set(losses) == {"text", "image", "audio", "loss"}
    assert torch.isfinite(losses["loss"])
    prompts = [[text_segment([7])]]
    draw = [
        model.eval().generate(prompts, Modality.AUDIO, n_tokens=2, steps=4, generator=g)[0]
        for g in (torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
    ]
    assert draw[0].shape == (2, AUDIO_DIM)
    assert torch.equal(draw[0], draw[1])  # sample options reach the head: same seed, same draw
    if kind == "flow":  # another seed, another draw: the flow head samples
        other = model.generate(
            prompts, Modality.AUDIO, n_tokens=2, steps=4, generator=torch.Generator().manual_seed(1)
        )[0]
        assert not torch.equal(draw[0], other)


# ---------------------------------------------------------------- discrete media tokens
N_CODES = 10
CODES = torch.randint(N_CODES, (N_COLOURS, 4), generator=torch.Generator().manual_seed(2))


def code_batch(n: int, gen: torch.Generator):
    """Documents "word, picture as code ids" or the reverse, one colour each."""
    docs = []
    for _ in range(n):
        colour = int(torch.randint(N_COLOURS, (1,), generator=gen))
        pair = [text_segment([word(colour)]), image_segment(CODES[colour], (2, 2))]
        docs.append(pair if torch.rand(1, generator=gen) < 0.5 else pair[::-1])
    return pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM)


def code_config(**overrides) -> OmniLMConfig:
    return OmniLMConfig(
        projector=ProjectorConfig(
            d_model=32,
            vocab_size=VOCAB,
            image_dim=IMAGE_DIM,
            audio_dim=AUDIO_DIM,
            image_vocab_size=N_CODES,
        ),
        decoder=DecoderConfig(d_model=32, n_layers=1, n_heads=2),
        image_head="codes",
        **overrides,
    )


@pytest.fixture(scope="module")
def trained_codes():
    from omni_edu.train import fit, model_loss

    torch.manual_seed(0)
    model = OmniLM(code_config())

    def batches(step):
        return code_batch(16, torch.Generator().manual_seed(step))

    history = fit(model, model_loss, batches, steps=120, lr=1e-2, progress=False)
    return model, history


def test_discrete_images_are_learned_like_words(trained_codes):
    model, history = trained_codes
    image = history.losses["image"]
    assert sum(image[-5:]) / 5 < 0.2 * sum(image[:5]) / 5
    out = model.generate(
        [[text_segment([word(c)])] for c in range(N_COLOURS)], Modality.IMAGE, grid=(2, 2)
    )
    assert all(o.dtype == torch.long for o in out)
    assert torch.equal(torch.stack(out), CODES)  # each colour's codes, exactly
    # ...and the codes are read back: the caption of a discrete picture
    said = model.generate(
        [[image_segment(CODES[c], (2, 2))] for c in range(N_COLOURS)], Modality.TEXT, n_tokens=1
    )
    assert [x.tolist() for x in said] == [[word(c)] for c in range(N_COLOURS)]


def test_code_generation_cached_equals_uncached(trained_codes):
    model, _ = trained_codes
    prompts = [[text_segment([word(0)])], [text_segment([word(1), word(2)])]]
    cached = model.generate(
        prompts,
        Modality.IMAGE,
        grid=(2, 2),
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    full = model.generate(
        prompts,
        Modality.IMAGE,
        grid=(2, 2),
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
        use_cache=False,
    )
    assert all(torch.equal(a, b) for a, b in zip(cached, full, strict=True))


def test_codes_head_is_tied_and_mismatched_data_is_explained():
    model = OmniLM(code_config())
    assert model.image_head.proj.weight is model.projector.codes["image"].weight
    with pytest.raises(ValueError, match="writes image tokens as code ids"):
        model.loss(pack([[text_segment([7]), media(0, Modality.IMAGE)]]))
    feature_model = OmniLM(tiny_config())
    with pytest.raises(ValueError, match="no code table for discrete image"):
        feature_model.loss(code_batch(4, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="image_vocab_size"):
        tiny_config(image_head="codes")
    with pytest.raises(ValueError, match="image_head"):
        tiny_config(image_head="diffusion")


def test_bidirectional_span_in_the_prompt_keeps_cache_and_recompute_equal(trained):
    """A two-way image span is fine to *read*: the prompt is prefilled in one pass."""
    model, _ = trained
    prompts = [[media(1, Modality.IMAGE), text_segment([word(1)])], [media(3, Modality.IMAGE)]]
    two_way = {Modality.IMAGE}
    cached = model.generate(prompts, Modality.TEXT, n_tokens=3, bidirectional=two_way)
    full = model.generate(
        prompts, Modality.TEXT, n_tokens=3, bidirectional=two_way, use_cache=False
    )
    assert all(torch.equal(a, b) for a, b in zip(cached, full, strict=True))
    # Writing a two-way span token by token is refused (each token would see the future).
    with pytest.raises(ValueError, match="bidirectional"):
        model.generate(prompts, Modality.IMAGE, grid=(2, 2), bidirectional=two_way)


def test_fast_width_mrope_is_mrope_with_its_rows_reversed():
    torch.manual_seed(0)
    packed = pack([[text_segment([7]), image_segment(IMAGES[0], (2, 2)), text_segment([9])]])
    fast = OmniLM(tiny_config(rope="mrope_fast_width")).eval()
    qwen = OmniLM(tiny_config(rope="mrope")).eval()
    qwen.load_state_dict(fast.state_dict())
    assert torch.equal(fast.positions(packed), packed.mrope_positions[[2, 1, 0]])
    assert not torch.allclose(fast(packed), qwen(packed), atol=1e-5)  # width now turns fastest
    flipped = dataclasses.replace(packed, mrope_positions=packed.mrope_positions.flip(0))
    torch.testing.assert_close(fast(packed), qwen(flipped))


# ---------------------------------------------------------------- classifier-free guidance
def _guided_model(kind: str) -> OmniLM:
    torch.manual_seed(0)
    model = OmniLM(tiny_config(image_head=kind, audio_head=kind, flow_steps=3))
    for block in model.audio_head.net.blocks if kind == "flow" else []:
        torch.nn.init.normal_(block.modulation[1].weight, std=0.5)  # make cond matter
    return model.eval()


@pytest.mark.parametrize("kind", ["flow", "linear"])
def test_guidance_zero_draws_from_the_unconditional_prompt(kind):
    """Guided sampling runs each prompt beside its empty twin: at guidance 0 only the twin
    counts, so the draw equals generating from the empty prompt itself (same noise)."""
    model = _guided_model(kind)
    prompts = [[text_segment([word(0), word(1)])], [text_segment([word(2)])]]
    empty = [[text_segment([7])], [text_segment([7])]]

    def draw(rows, **options):
        g = torch.Generator().manual_seed(0)
        return torch.stack(model.generate(rows, Modality.AUDIO, n_tokens=2, generator=g, **options))

    guided = draw(prompts, guidance=0.0, uncond_prompts=empty)
    torch.testing.assert_close(guided, draw(empty), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(guided, draw(prompts), atol=1e-4)
    # guidance 1 is plain conditional sampling, with or without the twins
    torch.testing.assert_close(draw(prompts, guidance=1.0, uncond_prompts=empty), draw(prompts))
    # guidance 3 moves the draw further from the unconditional one than guidance 1 does
    far = draw(prompts, guidance=3.0, uncond_prompts=empty)
    assert (far - draw(empty)).norm() > (draw(prompts) - draw(empty)).norm()


def test_guidance_is_refused_where_it_cannot_apply():
    model = _guided_model("flow")
    prompts = [[text_segment([word(0)])]]
    with pytest.raises(ValueError, match="not to text"):
        model.generate(prompts, Modality.TEXT, n_tokens=2, guidance=2.0, uncond_prompts=prompts)
    with pytest.raises(ValueError, match="one document per prompt"):
        model.generate(prompts, Modality.AUDIO, n_tokens=2, guidance=2.0, uncond_prompts=[])
    with pytest.raises(ValueError, match="uncond"):  # no twin and no learned null state
        model.generate(prompts, Modality.AUDIO, n_tokens=2, guidance=2.0)


def test_temperature_reaches_the_flow_head_through_generate():
    model = _guided_model("flow")
    prompts = [[text_segment([word(0)])]]
    cold = [
        model.generate(prompts, Modality.AUDIO, n_tokens=2, temperature=0.0, generator=g)[0]
        for g in (torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    ]
    torch.testing.assert_close(cold[0], cold[1])  # no noise: the seed cannot matter
    warm = [
        model.generate(prompts, Modality.AUDIO, n_tokens=2, temperature=1.0, generator=g)[0]
        for g in (torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    ]
    assert not torch.allclose(warm[0], warm[1])


def test_head_settings_reach_the_heads():
    model = OmniLM(
        tiny_config(image_head="flow", flow_time_shift=5.0, head_cond_dropout=0.1, flow_repeats=2)
    )
    head = model.image_head.config
    assert (head.time_shift, head.cond_dropout, head.repeats) == (5.0, 0.1, 2)
    assert model.image_head.null_cond is not None
