"""Timing the course's own model stage by stage (omni_edu/cost/generation.py, measure.py)."""

import pytest
import torch

from omni_edu import cost
from omni_edu.data import OmniWorld
from omni_edu.modalities import Modality
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import get_profile


@pytest.fixture(scope="module")
def tiny():
    """An untrained OmniLM with flow heads for pictures and sounds, and its data (ci sizes)."""
    ci = get_profile("ci")
    world = OmniWorld("train", seed=0, n_objects=1, caption_style="canonical", profile=ci)
    data = a2a.AnyToAnyData(world, 6)
    model = a2a.build_model(data, image_head="flow", audio_head="flow").eval()
    return model, data


def _speak(model, data, rows, generator=None):
    prompts = [data.document("text->audio", i, with_target=False) for i in rows]
    n = data.audio.shape[1]
    return lambda: model.generate(
        prompts, Modality.AUDIO, n, specials=data.specials, steps=3, generator=generator
    )


def test_time_generation_times_the_models_own_loop_without_changing_it(tiny):
    model, data = tiny
    n = data.audio.shape[1]
    plain = _speak(model, data, [0, 1], torch.Generator().manual_seed(0))()
    out, timing = cost.time_generation(
        model, "audio", _speak(model, data, [0, 1], torch.Generator().manual_seed(0))
    )
    for a, b in zip(out, plain, strict=True):
        torch.testing.assert_close(a, b)  # observed, not altered
    assert timing.batch == 2 and len(timing.head) == n and len(timing.decode) == n - 1
    words = len(data.tokenizer.encode(data.batch.captions[0]))
    assert timing.prompt_tokens == words + 3  # <bos> <speak> the caption <boa>
    parts = [timing.prefill, *timing.decode, *timing.head]
    assert all(t > 0 for t in parts)
    assert timing.prefill + sum(timing.decode) + sum(timing.head) <= timing.total
    assert timing.other >= 0 and 0 < timing.first_token <= timing.total
    # the instrumentation is gone afterwards
    assert "sample" not in vars(model.audio_head)
    assert not model.decoder._forward_hooks and not model.decoder._forward_pre_hooks


def test_time_generation_of_text_times_the_text_head(tiny):
    model, data = tiny
    prompts = [data.document("image->text", 0, with_target=False)]
    _, timing = cost.time_generation(
        model, Modality.TEXT, lambda: model.generate(prompts, Modality.TEXT, 5)
    )
    assert len(timing.head) == 5 and len(timing.decode) == 4 and timing.batch == 1


def test_time_generation_refuses_a_run_that_is_not_one_generate_call(tiny):
    model, data = tiny
    twice = _speak(model, data, [0])

    with pytest.raises(ValueError, match="once"):
        cost.time_generation(model, "audio", lambda: (twice(), twice()))
    with pytest.raises(ValueError, match="once"):
        cost.time_generation(model, "image", twice)  # the picture head never ran
    assert "sample" not in vars(model.image_head)


def test_generation_costs_follow_the_model_and_the_timed_call(tiny):
    model, data = tiny
    _, timing = cost.time_generation(model, "audio", _speak(model, data, [0, 1, 2]))
    costs = cost.generation_costs(model, timing, "audio", steps=3)
    shape = cost.decoder_shape(model.decoder)
    p, b = timing.prompt_tokens, timing.batch
    (prefill,) = costs["prefill"]
    assert prefill.flops == pytest.approx(
        b * p * cost.flops_per_token(shape.n_params, n_layers=2, context=p // 2, d_model=64)
    )
    # each decode step attends to one more token than the one before
    contexts = [c.flops for c in costs["decode"]]
    assert len(contexts) == len(timing.decode) and contexts == sorted(contexts)
    head = costs["head"][0]
    assert head.flops == pytest.approx(2 * model.audio_head.num_parameters() * b * 3)
    assert len(costs["head"]) == len(timing.head)


def test_counting_torch_calls():
    x = torch.ones(3)
    assert cost.count_torch_calls(lambda: (x + 1).mul(2)) == 2
    assert cost.count_torch_calls(lambda: [x.add(1) for _ in range(10)]) == 10


def test_the_narrowest_copy_runs_the_same_operations_on_tiny_matrices():
    from omni_edu.model.transformer import Decoder, DecoderConfig

    wide = Decoder(DecoderConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2)).eval()
    narrow = cost.narrowest_copy(wide)
    c = narrow.config
    assert (c.d_model, c.n_layers, c.n_heads, c.n_kv_heads) == (8, 2, 4, 2)
    assert narrow.num_parameters() * 30 < wide.num_parameters()

    def calls_per_step(decoder):
        prefill, step = cost.decode_driver(decoder, 8)
        prefill()
        return cost.count_torch_calls(step)

    assert calls_per_step(wide) == calls_per_step(narrow) > 20
    assert 0 < cost.seconds_per_torch_call(wide, context=8, repeats=1) < 1e-2


def test_time_generation_counts_the_operations_of_each_stage(tiny):
    model, data = tiny
    prompts = [data.document("text->audio", 0, with_target=False)]
    n = data.audio.shape[1]

    def calls(steps):
        def run():
            return model.generate(prompts, Modality.AUDIO, n, specials=data.specials, steps=steps)

        return cost.time_generation(model, "audio", run, count_calls=True)[1].calls

    one, two, three = calls(1), calls(2), calls(3)
    assert one["decode"] > 10 and one["prefill"] >= one["decode"]
    # every Euler step runs the same network once more: the head's count grows linearly
    assert two["head"] - one["head"] == three["head"] - two["head"] > 0
    assert two["decode"] == one["decode"]
    assert three["total"] >= three["prefill"] + (n - 1) * three["decode"] + n * three["head"]
    assert cost.time_generation(model, "audio", _speak(model, data, [0]))[1].calls is None
