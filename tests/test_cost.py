"""Token budgets, FLOPs, KV memory and the roofline of omni_edu.cost."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu import cost


@pytest.mark.parametrize(
    ("height", "width", "tokens"),
    [
        (224, 224, 64),  # 8 x 8 blocks of 28 px
        (448, 448, 256),
        (28, 28, 4),  # below min_pixels (56*56): scaled up to 56x56
        (1080, 1920, 1222),  # above max_pixels (1280 tokens): scaled down
    ],
)
def test_qwen2vl_image_tokens_known_values(height, width, tokens):
    assert cost.qwen2vl_image_tokens(height, width) == tokens


def test_qwen2vl_cap_binds_where_the_token_count_stops_growing():
    # 993 px rounds to 980 (35 blocks, within 1280 tokens); 994 rounds to 1008 (36 blocks): capped
    assert not cost.qwen2vl_cap_binds(993, 993)
    assert cost.qwen2vl_cap_binds(994, 994)
    assert cost.qwen2vl_image_tokens(994, 994) == cost.qwen2vl_image_tokens(4000, 4000) == 1225
    assert not cost.qwen2vl_cap_binds(994, 994, max_pixels=cost.QWEN_PROCESSOR_MAX_PIXELS)


def test_qwen2vl_released_processor_allows_more_tokens():
    big = cost.qwen2vl_image_tokens(1080, 1920, max_pixels=cost.QWEN_PROCESSOR_MAX_PIXELS)
    assert big == (1092 // 28) * (1932 // 28) == 2691


@settings(max_examples=60, deadline=None)
@given(st.integers(28, 4000), st.integers(28, 4000))
def test_qwen2vl_resize_invariants(height, width):
    if max(height, width) / min(height, width) > 200:
        return
    h, w = cost.qwen2vl_smart_resize(height, width)
    assert h % 28 == 0 and w % 28 == 0
    assert cost.QWEN_MIN_PIXELS <= h * w <= cost.QWEN_MAX_PIXELS
    # the aspect ratio survives up to rounding to 28-px blocks
    assert abs(math.log((h / w) / (height / width))) < math.log((max(height, width) + 56) / 28)


def test_qwen2vl_video_merges_two_frames():
    per_frame = cost.qwen2vl_image_tokens(336, 336, min_pixels=128 * 28 * 28)
    # 10 s at 2 fps = 20 frames -> 10 temporal pairs
    assert cost.qwen2vl_video_tokens(336, 336, seconds=10) == 10 * per_frame
    # halving the frame rate halves the cost
    assert cost.qwen2vl_video_tokens(336, 336, 10, fps=1.0) == 5 * per_frame


def test_qwen2vl_video_takes_at_least_four_frames():
    # qwen-vl-utils' FPS_MIN_FRAMES = 4: a 1 s clip at 2 fps takes 4 frames (2 pairs), not 2
    per_pair = cost.qwen2vl_image_tokens(448, 448)
    assert cost.qwen2vl_video_frames(1.0) == 4
    assert cost.qwen2vl_video_tokens(448, 448, 1.0) == 2 * per_pair == 512
    assert cost.qwen2vl_video_frames(0.2, source_fps=10) == 2  # only 2 frames in the file
    with pytest.raises(ValueError, match="at least 2 frames"):
        cost.qwen2vl_video_frames(0.05, source_fps=30)


def test_qwen2vl_video_shares_one_pixel_budget_across_frames():
    # 60 s of 1080p: 120 frames share VIDEO_TOTAL_PIXELS = 24576 * 28 * 28, about 321k
    # pixels a frame: 420x728 -> 15 x 26 = 390 tokens per pair, 60 pairs
    plan = cost.qwen2vl_video_plan(1080, 1920, 60)
    assert (plan.frames, plan.frame_hw, plan.tokens_per_pair) == (120, (420, 728), 390)
    assert plan.tokens == cost.qwen2vl_video_tokens(1080, 1920, 60) == 23_400
    assert plan.limit == "shared budget"
    # Qwen2.5-VL's budget (128000 * 28 * 28 * 0.9) does not bind here: the per-frame cap does
    later = cost.qwen2vl_video_plan(1080, 1920, 60, release="qwen2.5-vl")
    assert (later.tokens, later.limit) == (43_200, "per-frame cap")
    # a small clip is not resized at all
    assert cost.qwen2vl_video_plan(448, 448, 60).limit == "none"
    # ten minutes at 2 fps would be 1200 frames: capped at FPS_MAX_FRAMES = 768
    assert cost.qwen2vl_video_plan(360, 640, 600).frames == 768
    # the releases round the frame count differently: 3.5 s x 2 fps = 7 frames
    assert cost.qwen2vl_video_frames(3.5) == 8
    assert cost.qwen2vl_video_frames(3.5, release="qwen2.5-vl") == 6
    with pytest.raises(ValueError, match="release"):
        cost.qwen2vl_video_frames(3.0, release="qwen3")


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI docs: 768x768 -> 4 tiles
        (2048, 4096, "high", 1105),  # OpenAI docs: 768x1536 -> 6 tiles
        (4096, 8192, "low", 85),  # low detail: fixed
        (512, 512, "high", 255),  # one tile, no upscaling
    ],
)
def test_gpt4o_tiles(width, height, detail, tokens):
    assert cost.gpt4o_image_tokens(width, height, detail) == tokens


def test_numpy_numbers_are_accepted():
    import numpy as np

    assert cost.qwen2vl_image_tokens(np.int64(224), np.int64(224)) == 64
    assert (
        cost.kv_cache_bytes(np.int32(2), 2, 16, np.float64(10.0), 1, 4) == 2 * 2 * 2 * 16 * 10 * 4
    )
    with pytest.raises(ValueError, match="should be a number"):
        cost.whisper_audio_tokens("30")


def test_gemini_fixed_costs():
    assert cost.gemini_image_tokens(384, 384) == 258
    assert cost.gemini_image_tokens(1536, 768) == 2 * 258
    assert cost.gemini_audio_tokens(60) == 32 * 60
    assert cost.gemini_video_tokens(10) == 2630


def test_audio_rates():
    assert cost.whisper_audio_tokens(30) == 1500  # 50 Hz after the stride-2 conv
    assert cost.whisper_audio_tokens(1) == 1500  # padded to a 30 s window
    assert cost.whisper_audio_tokens(1, pad_to_30s=False) == 50
    assert cost.whisper_audio_tokens(31) == 3000
    assert cost.qwen_omni_audio_tokens(30) == 750  # 25 Hz
    assert cost.qwen_omni_audio_tokens(1) == 25
    assert cost.qwen_omni_audio_tokens(0) == 0


def test_qwen_omni_audio_under_30_ms_is_no_token():
    # the reference _get_feat_extract_output_lengths: fewer than 3 log-mel frames -> 0 tokens
    assert [cost.qwen_omni_audio_tokens(s) for s in (0.005, 0.01, 0.019, 0.029)] == [0] * 4
    assert cost.qwen_omni_audio_tokens(0.03) == 1
    assert cost.qwen_omni_audio_tokens(0.07) == 2


def test_video_tokens_by_frame_rate():
    assert cost.video_tokens(60, fps=1, tokens_per_frame=258) == 60 * 258
    assert cost.video_tokens(60, fps=2, tokens_per_frame=100, temporal_merge=2) == 6000
    assert cost.video_tokens(0.5, fps=1, tokens_per_frame=10) == 10  # a partial second: one frame


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: cost.qwen2vl_image_tokens(-1, 224), "height should be > 0"),
        (lambda: cost.qwen2vl_image_tokens(10, 5000), "aspect ratio"),
        (lambda: cost.gpt4o_image_tokens(100, 100, "medium"), "detail"),
        (lambda: cost.whisper_audio_tokens(-3), "seconds should be >= 0"),
        (lambda: cost.kv_cache_bytes(2, 2, 16, -5), "n_tokens"),
        (lambda: cost.flops_per_token(0), "n_params"),
        (lambda: cost.Hardware("x", {"fp32": 1e12}, 0.0), "mem_bandwidth"),
        (lambda: cost.get_hardware("TPU"), "Unknown hardware"),
        (lambda: cost.get_hardware("T4").flops("bf16"), "no peak for dtype"),
        (lambda: cost.predict_time(1.0, 1.0, "A100"), "should be a Hardware"),
        (lambda: cost.get_model_shape("gpt-5"), "Unknown model"),
        (lambda: cost.ModelShape("x", 1e6, 2, 64, 4, 3, 16), "multiple of n_kv_heads"),
    ],
)
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_flops_per_token():
    assert cost.flops_per_token(1e9) == 2e9
    assert cost.flops_per_token(1e9, training=True) == 6e9
    with_attention = cost.flops_per_token(1e9, n_layers=10, context=1000, d_model=512)
    assert with_attention == 2e9 + 2 * 10 * 1000 * 512


def test_kv_cache_bytes():
    # Qwen2-7B in bf16: 2 * 28 layers * 4 kv heads * 128 dims * 2 bytes per token
    assert cost.kv_cache_bytes(28, 4, 128, 1) == 57_344
    assert cost.kv_cache_bytes(28, 4, 128, 32_768) == 57_344 * 32_768
    assert (
        cost.kv_cache_bytes(2, 2, 16, 10, batch=3, bytes_per_value=4) == 2 * 2 * 2 * 16 * 10 * 3 * 4
    )


@settings(max_examples=40, deadline=None)
@given(
    st.floats(1e3, 1e18),
    st.floats(1e3, 1e15),
    st.sampled_from(sorted(cost.HARDWARE)),
)
def test_predict_time_is_the_binding_roof(flops, bytes_moved, name):
    device = cost.get_hardware(name)
    t = cost.predict_time(flops, bytes_moved, device)
    assert t >= flops / device.flops("fp32") * (1 - 1e-12)
    assert t >= bytes_moved / device.mem_bandwidth * (1 - 1e-12)
    assert t == pytest.approx(max(flops / device.flops("fp32"), bytes_moved / device.mem_bandwidth))


def test_decode_is_memory_bound_and_big_diffusion_is_compute_bound():
    model = cost.get_model_shape("qwen2-7b")
    decode = cost.decode_step_cost(model, context=4096, batch=1)
    diffuse = cost.diffusion_step_cost(model, n_tokens=1024, batch=1)
    for name in cost.HARDWARE:
        device = cost.get_hardware(name)
        fp16 = cost.decode_step_cost(model, 4096, dtype="fp16")
        assert fp16.bound(device) == "memory"
        assert cost.diffusion_step_cost(model, 1024, dtype="fp16").bound(device) == "compute"
    # decode intensity ~ 2 * batch / bytes_per_value (~1 FLOP/byte in bf16)
    assert 0.5 < decode.intensity < 1.5
    assert diffuse.intensity > 300
    # batching decode raises its intensity almost linearly (weights are shared)
    assert cost.decode_step_cost(model, context=0, batch=64).intensity == pytest.approx(64.0)


def test_step_cost_derives_bytes_and_peak_from_one_dtype():
    # A step stores its dtype: the bytes use its value size and the time uses its peak.
    model = cost.get_model_shape("qwen2-7b")
    a100 = cost.get_hardware("A100")
    bf16 = cost.diffusion_step_cost(model, n_tokens=1024)  # compute-bound
    assert bf16.dtype == "bf16"
    assert bf16.time(a100) == pytest.approx(bf16.flops / 312e12)  # the bf16 peak, not fp32's
    fp32 = cost.diffusion_step_cost(model, n_tokens=1024, dtype="fp32")
    assert fp32.bytes_moved == pytest.approx(2 * bf16.bytes_moved)
    assert fp32.time(a100) == pytest.approx(fp32.flops / 19.5e12)
    decode = cost.decode_step_cost(model, context=0)  # memory-bound: the weights, 2 bytes each
    assert decode.bytes_moved == pytest.approx(2 * model.n_params)
    assert decode.time(a100) == pytest.approx(2 * model.n_params / a100.mem_bandwidth)
    with pytest.raises(ValueError, match="no peak for dtype 'bf16'"):
        decode.time(cost.get_hardware("T4"))  # a T4 has no bf16
    with pytest.raises(ValueError, match="dtype should be one of"):
        cost.StepCost(1.0, 1.0, 1, dtype="int4")


def test_the_talker_shape_counts_its_config():
    # Qwen2.5-Omni-7B's talker_config: 24 layers, width 896, 12 query / 4 KV heads of 128,
    # MLP 18944 (SwiGLU: three matrices), codec vocabulary 8448 embedded at width 3584.
    talker = cost.get_model_shape("qwen2.5-omni-talker")
    d, heads, kv, hd, ff = 896, 12, 4, 128, 18944
    attention = d * heads * hd * 2 + d * kv * hd * 2 + (heads + 2 * kv) * hd  # with q/k/v bias
    layer = attention + 3 * d * ff + 2 * d
    total = 24 * layer + 8448 * 3584 + 3584 * d + 896 * 8448 + 2 * d
    assert talker.n_params == pytest.approx(total, rel=0.01)
    assert talker.n_params < cost.get_model_shape("qwen2-7b").n_params / 5


def test_ridge_points_of_presets():
    h100 = cost.get_hardware("h100")
    assert h100.ridge_point("bf16") == pytest.approx(989e12 / 3.35e12)
    assert cost.get_hardware("T4").ridge_point("fp32") == pytest.approx(8.1e12 / 320e9)


def test_calibrate_this_machine_returns_a_usable_device():
    device = cost.calibrate_this_machine(size=128, copy_mib=4, repeats=2)
    # Loose floors: a loaded 2-core CI machine measured 6e7 FLOP/s with this tiny size.
    # They only catch unit mistakes (GFLOP/s reported as FLOP/s), not slow machines.
    assert math.isfinite(device.flops("fp32")) and device.flops("fp32") > 1e6
    assert math.isfinite(device.mem_bandwidth) and device.mem_bandwidth > 1e6
    assert cost.predict_time(1e9, 0, device) == pytest.approx(1e9 / device.flops("fp32"))


def test_kv_cache_formula_matches_the_course_cache():
    from omni_edu.model.transformer import DecoderConfig, KVCache

    config = DecoderConfig(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2)
    cache = KVCache(config, batch_size=5, max_len=37)
    expected = cost.kv_cache_bytes(3, 2, config.head_dim, 37, batch=5, bytes_per_value=4)
    assert cache.nbytes == expected


def test_measured_helpers_on_the_course_modules():
    import torch

    from omni_edu.model.heads.flow import FlowHead, FlowHeadConfig
    from omni_edu.model.transformer import Decoder, DecoderConfig

    torch.manual_seed(0)
    decoder = Decoder(DecoderConfig(d_model=32, n_layers=1, n_heads=2)).eval()
    shape = cost.decoder_shape(decoder)
    assert shape.n_params == decoder.num_parameters()
    assert (shape.n_layers, shape.d_model, shape.head_dim) == (1, 32, 16)
    seconds = cost.measure_decode_step(decoder, context=4, steps=2, repeats=1)
    assert 0 < seconds < 10

    head = FlowHead(FlowHeadConfig(token_dim=6, cond_dim=32, width=16, depth=1)).eval()
    sample = cost.flow_sampling_cost(head, n_tokens=10, steps=4)
    assert sample.flops == 2 * head.num_parameters() * 10 * 4
    assert sample.dtype == "fp32"  # the course's modules run in fp32
    # more tokens per step reuse the same weights: intensity grows with the image size
    assert cost.flow_sampling_cost(head, 1000, 4).intensity > 3 * sample.intensity
    assert 0 < cost.measure_flow_sampling(head, n_tokens=10, steps=4, repeats=1) < 10
    with pytest.raises(ValueError, match="Decoder"):
        cost.decoder_shape(torch.nn.Linear(2, 2))
