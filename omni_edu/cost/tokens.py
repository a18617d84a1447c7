"""Token budgets of real model families: what a picture, a clip of sound or video costs.

Each ``*_tokens`` function reproduces a published counting rule (Qwen2-VL and Qwen2.5-VL,
GPT-4o's tiles, Gemini, Whisper, Qwen2.5-Omni), with its source in the docstring, so a
learner can price a request before sending it. Images, audio and video dominate a context:
a photo costs hundreds of tokens, a minute of video tens of thousands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omni_edu.cost.validate import positive

# Qwen2-VL: a ViT with 14x14-pixel patches whose 2x2 neighbours are merged into one token,
# so one token covers 28x28 pixels.
QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 56 * 56  # 4 tokens
# The default of ``smart_resize`` in the reference code (1280 tokens). The released
# ``preprocessor_config.json`` of Qwen2-VL-7B-Instruct raises it to 28*28*16384 (16384
# tokens, "4-16384 tokens per image" in the model card); pass ``max_pixels`` to use it.
QWEN_MAX_PIXELS = 28 * 28 * 1280
QWEN_PROCESSOR_MAX_PIXELS = 28 * 28 * 16384


def qwen2vl_smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """The size Qwen2-VL / Qwen2.5-VL / Qwen2.5-Omni resize an image to before patching.

    Rule (``smart_resize`` in Hugging Face ``transformers``,
    ``models/qwen2_vl/image_processing_qwen2_vl.py``, and in ``qwen-vl-utils``):

    1. round each side to the nearest multiple of ``factor`` (28 = 14-px patch x 2x2 merge);
    2. if the area exceeds ``max_pixels``, scale both sides by ``sqrt(h*w / max_pixels)`` and
       round *down* to multiples of 28; if it is below ``min_pixels``, scale up by
       ``sqrt(min_pixels / (h*w))`` and round *up*.

    The aspect ratio is kept (up to rounding); images more elongated than 200:1 are refused,
    as in the reference code.

    Returns:
        ``(new_height, new_width)``, both multiples of ``factor``.
    """
    for name, value in (("height", height), ("width", width)):
        positive(name, value)
    for name, value in (("factor", factor), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        positive(name, value)
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) should not exceed max_pixels ({max_pixels})")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"aspect ratio should be at most 200:1 (Qwen2-VL refuses more); got {height}x{width}"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2vl_cap_binds(height: int, width: int, max_pixels: float = QWEN_MAX_PIXELS) -> bool:
    """True when :func:`qwen2vl_smart_resize` must shrink the image to fit ``max_pixels``.

    That is when its size rounded to 28-px blocks exceeds the budget; past that point a
    larger image costs no more tokens, it is only downscaled further.
    """
    h = max(QWEN_FACTOR, round(height / QWEN_FACTOR) * QWEN_FACTOR)
    w = max(QWEN_FACTOR, round(width / QWEN_FACTOR) * QWEN_FACTOR)
    return h * w > max_pixels


def qwen2vl_image_tokens(
    height: int,
    width: int,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> int:
    """Visual tokens Qwen2-VL / Qwen2.5-Omni spend on one image of ``height x width`` pixels.

    After :func:`qwen2vl_smart_resize`, each 28x28-pixel block becomes one token:
    ``tokens = (h / 28) * (w / 28)``. Examples: 224x224 -> 64 tokens, 448x448 -> 256,
    1080x1920 (a Full-HD frame) -> 1222 with the default ``max_pixels`` and 2691 with the
    released processor's (see :data:`QWEN_PROCESSOR_MAX_PIXELS`).
    Source: Qwen2-VL paper (arXiv 2409.12191, Sec. 2.1 "Naive Dynamic Resolution") and the
    reference ``smart_resize``. Two special tokens (vision start/end) wrap each image; they are
    not counted here.
    """
    h, w = qwen2vl_smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // QWEN_FACTOR) * (w // QWEN_FACTOR)


# Qwen2-VL video, as ``fetch_video`` in ``qwen-vl-utils`` does it. The constants are the
# module constants of ``qwen-vl-utils/src/qwen_vl_utils/vision_process.py`` in the QwenLM
# repository (``QwenLM/Qwen2-VL``, since renamed ``Qwen2.5-VL`` and ``Qwen3-VL``), release
# v0.0.8 (commit 4a2035c, 2024-09-24): frames are sampled at ``FPS``, at least
# ``FPS_MIN_FRAMES`` and at most ``FPS_MAX_FRAMES`` of them, an even number
# (``FRAME_FACTOR``); each frame gets at most ``VIDEO_MAX_PIXELS`` and at least
# ``VIDEO_MIN_PIXELS``, and all frames together share ``VIDEO_TOTAL_PIXELS``.
QWEN_VIDEO_FPS = 2.0
QWEN_FRAME_FACTOR = 2  # the ViT's temporal patch: two frames make one set of tokens
QWEN_FPS_MIN_FRAMES = 4
QWEN_FPS_MAX_FRAMES = 768
QWEN_VIDEO_MIN_PIXELS = 128 * 28 * 28
QWEN_VIDEO_MAX_PIXELS = 768 * 28 * 28

# What changed in later releases. Qwen2.5-VL's update of the same file (commit 7398cc5,
# 2025-01-23, "add fps for Qwen2.5-VL"; the same rule ships in Qwen2.5-Omni's
# ``qwen-omni-utils``) raised the shared budget to a 128k-token context
# (``VIDEO_TOTAL_PIXELS = 128000 * 28 * 28 * 0.9``, overridable by an environment variable)
# and rounds the frame count down instead of to the nearest even number.
QWEN_VIDEO_RELEASES: dict[str, dict[str, float | str]] = {
    "qwen2-vl": {"total_pixels": 24576 * 28 * 28, "frame_rounding": "nearest"},
    "qwen2.5-vl": {"total_pixels": int(128000 * 28 * 28 * 0.9), "frame_rounding": "down"},
}


@dataclass(frozen=True)
class VideoTokens:
    """How a Qwen video rule priced one clip (see :func:`qwen2vl_video_plan`).

    Attributes:
        frames: frames sampled from the clip (even, at least 4).
        frame_hw: the size each frame is resized to, ``(height, width)`` in pixels.
        tokens_per_pair: tokens of one pair of frames (the temporal merge).
        tokens: the whole clip, ``frames / 2 * tokens_per_pair``.
        limit: what capped the frame size: ``"shared budget"`` (the total pixel budget
            divided among the frames), ``"per-frame cap"`` (``VIDEO_MAX_PIXELS``) or
            ``"none"`` (the frame kept its size, up to rounding to 28 px).
    """

    frames: int
    frame_hw: tuple[int, int]
    tokens_per_pair: int
    tokens: int
    limit: str


def qwen2vl_video_frames(
    seconds: float,
    fps: float = QWEN_VIDEO_FPS,
    source_fps: float = 30.0,
    release: str = "qwen2-vl",
) -> int:
    """Frames ``qwen-vl-utils`` samples from a clip of ``seconds`` (``smart_nframes``).

    ``seconds * fps`` frames, clamped to ``[4, min(768, frames in the file)]`` and made even
    (rounded to the nearest even number in Qwen2-VL's release, down in Qwen2.5-VL's). So a
    one-second clip at 2 fps takes 4 frames, not 2. ``source_fps`` is the file's own frame
    rate; it only matters for clips shorter than a few frames.
    """
    positive("seconds", seconds)
    positive("fps", fps)
    positive("source_fps", source_fps)
    rule = _video_release(release)
    in_file = int(seconds * source_fps)
    if in_file < QWEN_FRAME_FACTOR:
        raise ValueError(
            f"a clip needs at least {QWEN_FRAME_FACTOR} frames; {seconds} s at {source_fps} fps "
            f"holds {in_file}"
        )
    most = QWEN_FRAME_FACTOR * (min(QWEN_FPS_MAX_FRAMES, in_file) // QWEN_FRAME_FACTOR)
    frames = min(max(seconds * fps, QWEN_FPS_MIN_FRAMES), most)
    if rule["frame_rounding"] == "down":
        return QWEN_FRAME_FACTOR * math.floor(min(frames, in_file) / QWEN_FRAME_FACTOR)
    return QWEN_FRAME_FACTOR * round(frames / QWEN_FRAME_FACTOR)


def _video_release(release: str) -> dict[str, float | str]:
    if release not in QWEN_VIDEO_RELEASES:
        raise ValueError(f"release should be one of {sorted(QWEN_VIDEO_RELEASES)}; got {release!r}")
    return QWEN_VIDEO_RELEASES[release]


def qwen2vl_video_plan(
    height: int,
    width: int,
    seconds: float,
    fps: float = QWEN_VIDEO_FPS,
    release: str = "qwen2-vl",
    source_fps: float = 30.0,
) -> VideoTokens:
    """How Qwen2-VL (or a later ``release``) turns a ``height x width`` clip into tokens.

    Rule (``fetch_video`` of ``qwen-vl-utils``, constants above):

    1. sample ``frames`` with :func:`qwen2vl_video_frames`;
    2. each frame may use ``max(min(VIDEO_MAX_PIXELS, total_pixels / frames * 2),
       1.05 * VIDEO_MIN_PIXELS)`` pixels: the total budget is shared by the frames, so a
       long clip gets smaller frames;
    3. resize each frame with :func:`qwen2vl_smart_resize` to that budget;
    4. merge each pair of consecutive frames (temporal patch 2): one token per 28x28 block
       per pair.

    Example: 60 s of 1080p at 2 fps is 120 frames; the Qwen2-VL budget leaves each frame
    about 321k pixels, 420x728, 390 tokens per pair, 23,400 tokens. Qwen2.5-VL's larger budget
    does not bind there, so the per-frame cap does: 560x1008, 720 per pair, 43,200 tokens.
    """
    rule = _video_release(release)
    frames = qwen2vl_video_frames(seconds, fps, source_fps, release)
    shared = float(rule["total_pixels"]) / frames * QWEN_FRAME_FACTOR
    budget = max(min(QWEN_VIDEO_MAX_PIXELS, shared), int(QWEN_VIDEO_MIN_PIXELS * 1.05))
    h, w = qwen2vl_smart_resize(height, width, min_pixels=QWEN_VIDEO_MIN_PIXELS, max_pixels=budget)
    if not qwen2vl_cap_binds(height, width, budget):
        limit = "none"
    else:
        limit = "shared budget" if shared < QWEN_VIDEO_MAX_PIXELS else "per-frame cap"
    per_pair = (h // QWEN_FACTOR) * (w // QWEN_FACTOR)
    return VideoTokens(frames, (h, w), per_pair, frames // QWEN_FRAME_FACTOR * per_pair, limit)


def qwen2vl_video_tokens(
    height: int,
    width: int,
    seconds: float,
    fps: float = QWEN_VIDEO_FPS,
    release: str = "qwen2-vl",
) -> int:
    """Visual tokens Qwen2-VL spends on a ``seconds``-long ``height x width`` clip.

    The number of :func:`qwen2vl_video_plan` (which also says which limit bound). Examples at
    2 fps: 1 s of 448x448 -> 4 frames -> 512 tokens; 60 s of 1080p -> 23,400 (Qwen2-VL) or
    43,200 (``release="qwen2.5-vl"``, also Qwen2.5-Omni's rule).
    """
    return qwen2vl_video_plan(height, width, seconds, fps, release).tokens


GPT4O_BASE_TOKENS = 85
GPT4O_TILE_TOKENS = 170


def gpt4o_image_tokens(width: int, height: int, detail: str = "high") -> int:
    """Input tokens GPT-4o-style tiling charges for one image.

    Rule (OpenAI API docs, "Images and vision", section "Calculating costs", as published
    for GPT-4o / GPT-4.1 in 2024-2025):

    * ``detail="low"``: a fixed 85 tokens, whatever the size.
    * ``detail="high"``: scale to fit inside 2048x2048 (keeping the aspect ratio), then scale
      so that the shortest side is 768 px, cut into 512x512 tiles; cost =
      170 * tiles + 85.

    Worked examples from the docs: 1024x1024 -> 768x768 -> 4 tiles -> 765 tokens;
    2048x4096 -> 1024x2048 -> 768x1536 -> 6 tiles -> 1105 tokens.
    We only *shrink* in the second step: an image whose shortest side is already below 768 px
    keeps its size (the docs' examples never upscale; implementations differ on this).
    Newer OpenAI models (gpt-4.1-mini, o-series) use a different 32-px-patch rule.
    """
    if detail not in ("low", "high"):
        raise ValueError(f"detail should be 'low' or 'high'; got {detail!r}")
    positive("width", width)
    positive("height", height)
    if detail == "low":
        return GPT4O_BASE_TOKENS
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return GPT4O_TILE_TOKENS * tiles + GPT4O_BASE_TOKENS


# Gemini API docs, "Understand and count tokens" (ai.google.dev/gemini-api/docs/tokens), as
# published for Gemini 1.5 / 2.0 (read in 2025). Later models add a ``media_resolution`` knob
# that changes these numbers, so treat them as a dated snapshot.
GEMINI_IMAGE_TOKENS = 258  # an image with both sides <= 384 px; larger ones are tiled
GEMINI_TILE_PX = 768  # tile side for larger images, 258 tokens per tile
GEMINI_AUDIO_TOKENS_PER_S = 32
GEMINI_VIDEO_TOKENS_PER_S = 263  # frames sampled at 1 fps, plus the sound track


def gemini_image_tokens(width: int, height: int) -> int:
    """Tokens Gemini 2.0-style fixed costing charges for one image.

    258 tokens when both sides are at most 384 px; otherwise the image is cut into
    768x768 tiles (after the docs' cropping/scaling, which we approximate with a ceiling on
    each side) and each tile costs 258 tokens. Source: Gemini API docs, "Understand and count
    tokens", 2025 snapshot (see the module constants).
    """
    positive("width", width)
    positive("height", height)
    if width <= 384 and height <= 384:
        return GEMINI_IMAGE_TOKENS
    tiles = math.ceil(width / GEMINI_TILE_PX) * math.ceil(height / GEMINI_TILE_PX)
    return GEMINI_IMAGE_TOKENS * tiles


def gemini_audio_tokens(seconds: float) -> int:
    """Gemini charges a fixed 32 tokens per second of audio (docs snapshot, 2025)."""
    positive("seconds", seconds, allow_zero=True)
    return math.ceil(GEMINI_AUDIO_TOKENS_PER_S * seconds)


def gemini_video_tokens(seconds: float) -> int:
    """Gemini charges a fixed 263 tokens per second of video (1 fps frames plus audio).

    Source: Gemini API docs snapshot, 2025 (see the module constants).
    """
    positive("seconds", seconds, allow_zero=True)
    return math.ceil(GEMINI_VIDEO_TOKENS_PER_S * seconds)


WHISPER_SAMPLE_RATE = 16_000
WHISPER_HOP = 160  # 10 ms hop -> 100 log-mel frames per second
WHISPER_CHUNK_SECONDS = 30


def whisper_audio_tokens(seconds: float, pad_to_30s: bool = True) -> int:
    """Encoder output frames (tokens) Whisper produces for ``seconds`` of audio.

    Rule (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision",
    arXiv 2212.04356, Sec. 2.2; and the reference code): 16 kHz audio -> 80 log-mel channels
    with a 10 ms hop (100 frames/s) -> two convolutions, the second with stride 2 -> **50
    tokens per second**, 1500 for a 30-second window. Whisper's feature extractor pads every
    input to a 30 s window, so by default even one second costs 1500 tokens; pass
    ``pad_to_30s=False`` for the 50 Hz rate alone.
    """
    positive("seconds", seconds, allow_zero=True)
    if pad_to_30s:
        seconds = max(1, math.ceil(seconds / WHISPER_CHUNK_SECONDS)) * WHISPER_CHUNK_SECONDS
    mel_frames = round(seconds * WHISPER_SAMPLE_RATE) // WHISPER_HOP
    return (mel_frames - 1) // 2 + 1 if mel_frames > 0 else 0


def qwen_omni_audio_tokens(seconds: float) -> int:
    """Audio tokens Qwen2-Audio / Qwen2.5-Omni spend on ``seconds`` of audio: **25 per second**.

    Rule (Qwen2.5-Omni technical report, arXiv 2503.20215, Sec. 2.2: "each frame of audio
    representation corresponds to approximately a 40 ms segment"; reference code
    ``_get_feat_extract_output_lengths``): 16 kHz -> 128-channel log-mel at 100 frames/s ->
    Whisper-style encoder (stride 2, 50 Hz) -> a pooling layer with stride 2 (25 Hz).
    Unlike Whisper there is no padding to 30 s. Following the reference formula, a clip of
    fewer than 3 log-mel frames (under 30 ms) gives no token at all.
    """
    positive("seconds", seconds, allow_zero=True)
    mel_frames = round(seconds * WHISPER_SAMPLE_RATE) // WHISPER_HOP
    if mel_frames == 0:
        return 0
    after_conv = (mel_frames - 1) // 2 + 1
    # The reference formula as written: fewer than 3 log-mel frames (under 30 ms) give 0.
    return max(0, (after_conv - 2) // 2 + 1)


def video_tokens(seconds: float, fps: float, tokens_per_frame: int, temporal_merge: int = 1) -> int:
    """Tokens a video costs when ``fps`` frames per second each cost ``tokens_per_frame``.

    ``frames = ceil(seconds * fps)``; a model that merges ``temporal_merge`` consecutive
    frames into one (Qwen2-VL uses 2) pays ``ceil(frames / temporal_merge) * tokens_per_frame``.
    The lesson's cost tip "sample at 1 fps" is this formula with ``fps`` lowered.
    """
    positive("seconds", seconds, allow_zero=True)
    positive("fps", fps)
    positive("tokens_per_frame", tokens_per_frame, allow_zero=True)
    positive("temporal_merge", temporal_merge)
    frames = math.ceil(seconds * fps - 1e-9)
    return math.ceil(frames / temporal_merge) * int(tokens_per_frame)
