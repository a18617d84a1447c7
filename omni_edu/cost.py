"""What an omni model costs: tokens per input, FLOPs, KV memory and a roofline.

Lesson 08 argues three things with these numbers:

1. **Images, audio and video dominate the context.** A photo costs hundreds of tokens, a
   minute of video tens of thousands; the text around them is a rounding error. The
   ``*_tokens`` functions reproduce the published counting rules of real model families,
   each with its source in the docstring, so a learner can price a request before sending it.
2. **Decoding is memory-bound, diffusion is compute-bound.** One autoregressive step reads
   every weight (and the KV cache) to produce one token per sequence; one diffusion/flow step
   reads the same weights to update hundreds of tokens at once. The roofline model
   (:func:`predict_time`) turns FLOPs and bytes into seconds on a :class:`Device`.
3. **Memory is mostly the KV cache** once contexts hold images and audio
   (:func:`kv_cache_bytes`).

The formulas are plain arithmetic on Python numbers, so they can be read top to bottom.
The measurements beside them are short: :func:`calibrate_this_machine` (this device's
peaks), the course modules' steps (:func:`measure_decode_step`,
:func:`measure_flow_sampling`), and the course's own model stage by stage:
:func:`time_generation` watches one call of its decoding loop (prefill, decode steps, the
flow head's sampling), :func:`generation_costs` gives the roofline's view of the same
passes, and :func:`count_torch_calls` / :func:`seconds_per_torch_call` price what a tiny
model is really made of, a fixed cost per operation.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.overrides import TorchFunctionMode

if TYPE_CHECKING:  # only for type hints: the model package does not depend on this module
    from omni_edu.model.omni_lm import OmniLM

# ---------------------------------------------------------------------------------------------
# Input checks shared by every function below
# ---------------------------------------------------------------------------------------------


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a ValueError in the learner's words when ``value`` is not a usable size."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} should be a number; got {value!r} ({type(value).__name__})")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} should be a finite number; got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} should be {bound}; got {value}. Sizes and times cannot be negative."
        )


# ---------------------------------------------------------------------------------------------
# 1. Token budgets of real model families
# ---------------------------------------------------------------------------------------------

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
        _positive(name, value)
    for name, value in (("factor", factor), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        _positive(name, value)
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
    _positive("seconds", seconds)
    _positive("fps", fps)
    _positive("source_fps", source_fps)
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
    _positive("width", width)
    _positive("height", height)
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
    _positive("width", width)
    _positive("height", height)
    if width <= 384 and height <= 384:
        return GEMINI_IMAGE_TOKENS
    tiles = math.ceil(width / GEMINI_TILE_PX) * math.ceil(height / GEMINI_TILE_PX)
    return GEMINI_IMAGE_TOKENS * tiles


def gemini_audio_tokens(seconds: float) -> int:
    """Gemini charges a fixed 32 tokens per second of audio (docs snapshot, 2025)."""
    _positive("seconds", seconds, allow_zero=True)
    return math.ceil(GEMINI_AUDIO_TOKENS_PER_S * seconds)


def gemini_video_tokens(seconds: float) -> int:
    """Gemini charges a fixed 263 tokens per second of video (1 fps frames plus audio).

    Source: Gemini API docs snapshot, 2025 (see the module constants).
    """
    _positive("seconds", seconds, allow_zero=True)
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
    _positive("seconds", seconds, allow_zero=True)
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
    _positive("seconds", seconds, allow_zero=True)
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
    _positive("seconds", seconds, allow_zero=True)
    _positive("fps", fps)
    _positive("tokens_per_frame", tokens_per_frame, allow_zero=True)
    _positive("temporal_merge", temporal_merge)
    frames = math.ceil(seconds * fps - 1e-9)
    return math.ceil(frames / temporal_merge) * int(tokens_per_frame)


# ---------------------------------------------------------------------------------------------
# 2. Compute and memory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a decoder that FLOP and memory estimates need.

    ``n_params`` counts the weights read per token (embeddings included: the output
    projection reads them). ``n_kv_heads < n_heads`` means grouped-query attention, which
    shrinks the KV cache by ``n_heads / n_kv_heads``.
    """

    name: str
    n_params: float
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        for f in ("n_params", "n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim"):
            _positive(f, getattr(self, f))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) should be a multiple of n_kv_heads ({self.n_kv_heads})"
            )


MODEL_SHAPES: dict[str, ModelShape] = {
    # Qwen2 technical report (arXiv 2407.10671), Table 1; Qwen2.5-7B and the Qwen2.5-Omni-7B
    # "Thinker" use the same shape.
    "qwen2-7b": ModelShape("qwen2-7b", 7.6e9, 28, 3584, 28, 4, 128),
    # The Llama 3 Herd of Models (arXiv 2407.21783), Table 3.
    "llama3-8b": ModelShape("llama3-8b", 8.0e9, 32, 4096, 32, 8, 128),
    # Qwen2 technical report, Table 1 (the 0.5B model: a "small first model").
    "qwen2-0.5b": ModelShape("qwen2-0.5b", 0.49e9, 24, 896, 14, 2, 64),
    # The Talker of Qwen2.5-Omni-7B, the small model that writes its speech tokens from the
    # Thinker's hidden states. The technical report (arXiv 2503.20215) describes it as a
    # dual-track autoregressive decoder but gives no size; the shape is the released
    # checkpoint's ``talker_config`` (Qwen/Qwen2.5-Omni-7B ``config.json``): 24 layers, width
    # 896, 12 query and 4 KV heads of 128, MLP 18944, a codec vocabulary of 8448 embedded at
    # width 3584. Counted layer by layer that is 1.35B parameters, a fifth of the Thinker.
    "qwen2.5-omni-talker": ModelShape("qwen2.5-omni-talker", 1.35e9, 24, 896, 12, 4, 128),
    # DiT-XL/2 (Peebles & Xie, arXiv 2212.09748, Table 1): a diffusion transformer; 256 tokens
    # for a 256x256 image (32x32 latent, patch 2).
    "dit-xl-2": ModelShape("dit-xl-2", 675e6, 28, 1152, 16, 16, 72),
}


def get_model_shape(name: str) -> ModelShape:
    """A preset from :data:`MODEL_SHAPES` by name, with a helpful error for unknown names."""
    if name not in MODEL_SHAPES:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(MODEL_SHAPES))}")
    return MODEL_SHAPES[name]


def flops_per_token(
    n_params: float,
    *,
    n_layers: int = 0,
    context: int = 0,
    d_model: int = 0,
    training: bool = False,
) -> float:
    """FLOPs to process one token: ``2N`` forward (one multiply-add per weight), ``6N`` training.

    The attention term adds ``2 * n_layers * context * d_model`` per token in the forward pass
    (scores ``q.k`` and the weighted sum of values over ``context`` earlier tokens; Kaplan et
    al. 2020, arXiv 2001.08361, Table 1). Training is forward + backward = 3 x forward.
    Leave ``n_layers``/``context``/``d_model`` at 0 for the weights-only estimate.
    """
    _positive("n_params", n_params)
    for name, value in (("n_layers", n_layers), ("context", context), ("d_model", d_model)):
        _positive(name, value, allow_zero=True)
    forward = 2.0 * n_params + 2.0 * n_layers * context * d_model
    return 3.0 * forward if training else forward


def kv_cache_bytes(
    n_layers: int,
    n_kv_heads: int,
    head_dim: int,
    n_tokens: int,
    batch: int = 1,
    bytes_per_value: float = 2,
) -> int:
    """Bytes the KV cache holds: ``2 * layers * kv_heads * head_dim * tokens * batch * bytes``.

    The leading 2 is one key and one value vector per head, per layer, per cached token.
    ``bytes_per_value`` is 2 for bf16/fp16, 4 for fp32, 1 for an 8-bit cache.
    Example: Qwen2-7B (28 layers, 4 KV heads of 128) in bf16 holds 57,344 bytes per token,
    so a 32k-token context costs 1.75 GiB per sequence.
    """
    for name, value in (("n_layers", n_layers), ("n_kv_heads", n_kv_heads), ("head_dim", head_dim)):
        _positive(name, value)
    _positive("n_tokens", n_tokens, allow_zero=True)
    _positive("batch", batch)
    _positive("bytes_per_value", bytes_per_value)
    return int(2 * n_layers * n_kv_heads * head_dim * n_tokens * batch * bytes_per_value)


# ---------------------------------------------------------------------------------------------
# Roofline
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """What the roofline model needs to know about a chip.

    Attributes:
        peak_flops: peak dense FLOP/s per dtype name (``"fp32"``, ``"bf16"``, ...).
        mem_bandwidth: bytes per second between memory and the compute units.
        memory_bytes: how much fits (for "does the KV cache fit?" questions).
        price_per_hour: a typical on-demand price in USD per device-hour (changes often).
    """

    name: str
    peak_flops: dict[str, float]
    mem_bandwidth: float
    memory_bytes: float = 0.0
    price_per_hour: float = 0.0
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.peak_flops:
            raise ValueError(f"Device {self.name!r} needs at least one peak_flops entry")
        for dtype, flops in self.peak_flops.items():
            _positive(f"peak_flops[{dtype!r}]", flops)
        _positive("mem_bandwidth", self.mem_bandwidth)
        _positive("memory_bytes", self.memory_bytes, allow_zero=True)
        _positive("price_per_hour", self.price_per_hour, allow_zero=True)

    def flops(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; a clear error when the device has no such entry."""
        if dtype not in self.peak_flops:
            raise ValueError(
                f"Device {self.name!r} has no peak for dtype {dtype!r}; "
                f"known: {', '.join(sorted(self.peak_flops))}"
            )
        return self.peak_flops[dtype]

    def ridge_point(self, dtype: str = "fp32") -> float:
        """Arithmetic intensity (FLOP/byte) above which a kernel is compute-bound."""
        return self.flops(dtype) / self.mem_bandwidth


GB = 1e9
TB = 1e12

DEVICES: dict[str, Device] = {
    # NVIDIA T4 datasheet: 8.1 TFLOPS fp32, 65 TFLOPS fp16 tensor cores, 320 GB/s GDDR6, 16 GB.
    "T4": Device(
        "T4",
        {"fp32": 8.1e12, "fp16": 65e12},
        320 * GB,
        16 * GB,
        price_per_hour=0.35,
        source="NVIDIA T4 datasheet",
    ),
    # NVIDIA A100 datasheet (SXM4 80GB): 19.5 TFLOPS fp32, 156 TF32, 312 bf16/fp16 dense,
    # 2,039 GB/s HBM2e.
    "A100": Device(
        "A100",
        {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12},
        2039 * GB,
        80 * GB,
        price_per_hour=1.8,
        source="NVIDIA A100 datasheet (SXM4 80GB)",
    ),
    # NVIDIA H100 datasheet (SXM5 80GB), dense numbers (the datasheet's headline figures
    # assume 2:4 sparsity and are twice these): 67 TFLOPS fp32, 495 TF32, 989 bf16/fp16,
    # 1,979 fp8, 3.35 TB/s HBM3.
    "H100": Device(
        "H100",
        {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12, "fp8": 1979e12},
        3.35 * TB,
        80 * GB,
        price_per_hour=3.0,
        source="NVIDIA H100 datasheet (SXM5 80GB), dense",
    ),
}


def get_device_preset(name: str) -> Device:
    """A preset from :data:`DEVICES` (``"T4"``, ``"A100"``, ``"H100"``) by name."""
    key = name.strip().upper() if isinstance(name, str) else name
    if key not in DEVICES:
        raise ValueError(
            f"Unknown device {name!r}. Known devices: {', '.join(sorted(DEVICES))}, or call "
            "calibrate_this_machine() to measure the one you are on."
        )
    return DEVICES[key]


def calibrate_this_machine(
    size: int = 512, copy_mib: int = 32, repeats: int = 3, device: str | None = None
) -> Device:
    """Measure this machine's fp32 matmul FLOP/s and memory-copy bandwidth (about a second).

    * compute: the best of ``repeats`` timings of a ``size x size`` fp32 matmul
      (``2 * size**3`` FLOPs);
    * bandwidth: the best of ``repeats`` copies of a ``copy_mib`` MiB tensor (each copy reads
      and writes it, ``2 * bytes``).

    ``device``: ``"cpu"`` or ``"cuda"``, where the modules you compare with will run (by
    default CUDA when it is available, else the CPU with torch's current thread count).
    These are achievable peaks for large, simple kernels; a tiny model reaches less.
    """
    _positive("size", size)
    _positive("copy_mib", copy_mib)
    _positive("repeats", repeats)
    device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device should be 'cpu' or 'cuda'; got {device!r}")

    def best_time(fn) -> float:
        fn()  # warm-up: allocations, kernel selection
        if device == "cuda":
            torch.cuda.synchronize()
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return max(best, 1e-9)

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    flops = 2.0 * size**3 / best_time(lambda: torch.mm(a, b, out=out))

    src = torch.empty(copy_mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2.0 * src.numel() * 4 / best_time(lambda: dst.copy_(src))

    name = torch.cuda.get_device_name() if device == "cuda" else "this CPU"
    return Device(
        f"{name} (measured)",
        {"fp32": flops},
        bandwidth,
        source=f"calibrate_this_machine(size={size}, copy_mib={copy_mib})",
        notes={"threads": str(torch.get_num_threads()), "backend": device},
    )


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOPs per byte moved: the x-axis of the roofline plot."""
    _positive("flops", flops, allow_zero=True)
    _positive("bytes_moved", bytes_moved)
    return flops / bytes_moved


def predict_time(flops: float, bytes_moved: float, device: Device, dtype: str = "fp32") -> float:
    """Roofline prediction in seconds: ``max(flops / peak_flops, bytes / bandwidth)``.

    A kernel can not run faster than its compute nor faster than its memory traffic; the
    roofline assumes it reaches whichever limit binds. Real kernels land above this bound
    (launch overheads, small matrices), so read it as "at best".
    """
    if not isinstance(device, Device):
        raise ValueError(
            f"device should be a Device (e.g. get_device_preset('A100')); got {device!r}"
        )
    _positive("flops", flops, allow_zero=True)
    _positive("bytes_moved", bytes_moved, allow_zero=True)
    return max(flops / device.flops(dtype), bytes_moved / device.mem_bandwidth)


# Bytes one value takes in memory, per dtype name (the same names as ``Device.peak_flops``).
BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def bytes_per_value(dtype: str) -> int:
    """Bytes of one ``dtype`` value: 4 for fp32 (and tf32, stored as fp32), 2 for bf16/fp16."""
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype should be one of {sorted(BYTES_PER_VALUE)}; got {dtype!r}")
    return BYTES_PER_VALUE[dtype]


@dataclass(frozen=True)
class StepCost:
    """FLOPs and bytes of one model step in ``dtype``, and what the roofline makes of them.

    The dtype is stored once: the byte count was computed with its value size, and
    :meth:`time` and :meth:`bound` use its peak, so the two can never disagree.
    """

    flops: float
    bytes_moved: float
    tokens: int  # tokens produced or updated by the step
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        bytes_per_value(self.dtype)  # a clear error for an unknown dtype

    @property
    def intensity(self) -> float:
        """FLOPs per byte."""
        return arithmetic_intensity(self.flops, self.bytes_moved)

    def time(self, device: Device) -> float:
        """Roofline seconds for this step on ``device``, at the peak of its ``dtype``."""
        return predict_time(self.flops, self.bytes_moved, device, self.dtype)

    def bound(self, device: Device) -> str:
        """``"memory"`` or ``"compute"``: which roof this step hits on ``device``."""
        return "compute" if self.intensity >= device.ridge_point(self.dtype) else "memory"


def decode_step_cost(
    model: ModelShape, context: int, batch: int = 1, dtype: str = "bf16"
) -> StepCost:
    """One autoregressive decode step in ``dtype``: each of ``batch`` sequences adds a token.

    FLOPs: ``batch * (2N + 2 * layers * context * d_model)`` (:func:`flops_per_token`).
    Bytes: every weight once (``N * bytes``, shared by the batch) plus each sequence's KV
    cache of ``context`` tokens (:func:`kv_cache_bytes`). Activations are tiny by comparison.
    The intensity is about ``2 * batch / bytes_per_value`` FLOP/byte, far below any GPU's ridge
    point: decoding is memory-bound.
    """
    _positive("context", context, allow_zero=True)
    _positive("batch", batch)
    size = bytes_per_value(dtype)
    flops = batch * flops_per_token(
        model.n_params, n_layers=model.n_layers, context=context, d_model=model.d_model
    )
    weights = model.n_params * size
    kv = kv_cache_bytes(model.n_layers, model.n_kv_heads, model.head_dim, context, batch, size)
    return StepCost(flops, weights + kv, tokens=batch, dtype=dtype)


def prefill_cost(
    model: ModelShape,
    prompt_tokens: int,
    batch: int = 1,
    dtype: str = "bf16",
    cached_tokens: int = 0,
) -> StepCost:
    """Reading a prompt of ``prompt_tokens`` in one pass (the *prefill*), per ``batch`` rows.

    FLOPs: every prompt token costs ``2N`` plus attention to the ``cached_tokens`` already in
    the KV cache and, on average, half of the prompt before it (causal attention).
    Bytes: every weight once, plus the KV cache written for the prompt (and read for the
    ``cached_tokens``). The weights are reused ``batch * prompt_tokens`` times per read, so
    a long prompt is compute-bound like a diffusion step, while the decode steps after it
    are memory-bound.
    """
    _positive("prompt_tokens", prompt_tokens)
    _positive("batch", batch)
    _positive("cached_tokens", cached_tokens, allow_zero=True)
    size = bytes_per_value(dtype)
    context = cached_tokens + prompt_tokens // 2
    flops = (
        batch
        * prompt_tokens
        * flops_per_token(
            model.n_params, n_layers=model.n_layers, context=context, d_model=model.d_model
        )
    )
    kv = kv_cache_bytes(
        model.n_layers,
        model.n_kv_heads,
        model.head_dim,
        cached_tokens + prompt_tokens,
        batch,
        size,
    )
    return StepCost(flops, model.n_params * size + kv, tokens=batch * prompt_tokens, dtype=dtype)


def diffusion_step_cost(
    model: ModelShape, n_tokens: int, batch: int = 1, dtype: str = "bf16"
) -> StepCost:
    """One diffusion / flow-matching step that updates all ``n_tokens`` of each image at once.

    FLOPs: ``batch * n_tokens * (2N + 2 * layers * n_tokens * d_model)`` (bidirectional
    attention over the image's own tokens). Bytes: every weight once plus the activations
    each layer reads and writes (``2 * batch * n_tokens * d_model`` values per layer).
    The weights are reused ``batch * n_tokens`` times per read, so the intensity grows with the
    image size: diffusion is compute-bound.
    """
    _positive("n_tokens", n_tokens)
    _positive("batch", batch)
    size = bytes_per_value(dtype)
    flops = (
        batch
        * n_tokens
        * flops_per_token(
            model.n_params, n_layers=model.n_layers, context=n_tokens, d_model=model.d_model
        )
    )
    weights = model.n_params * size
    activations = 2 * model.n_layers * batch * n_tokens * model.d_model * size
    return StepCost(flops, weights + activations, tokens=batch * n_tokens, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# 3. Measured against predicted: our own decoder and flow head
# ---------------------------------------------------------------------------------------------


def time_call(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Synchronises CUDA around each run so that GPU work is counted. The median resists the
    occasional hiccup of a shared machine better than the mean.
    """
    _positive("repeats", repeats)
    _positive("warmup", warmup, allow_zero=True)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def decoder_shape(decoder: torch.nn.Module, name: str = "our decoder") -> ModelShape:
    """The :class:`ModelShape` of a :class:`~omni_edu.model.transformer.Decoder`."""
    config = getattr(decoder, "config", None)
    if config is None or not hasattr(config, "n_kv_heads"):
        raise ValueError(
            f"decoder should be an omni_edu Decoder (with a DecoderConfig); got {type(decoder)}"
        )
    n_params = sum(p.numel() for p in decoder.parameters())
    return ModelShape(
        name,
        float(n_params),
        config.n_layers,
        config.d_model,
        config.n_heads,
        config.n_kv_heads,
        config.head_dim,
    )


def measure_decode_step(
    decoder: torch.nn.Module, context: int, batch: int = 1, steps: int = 8, repeats: int = 3
) -> float:
    """Measured seconds per decode step of ``decoder`` with a KV cache.

    Prefills ``context`` random embeddings (not timed), then times each of ``steps``
    one-token steps on its own, ``repeats`` times over (after one warm-up pass), and returns
    the median of those step times. Timing each step (rather than a whole run minus a
    separate prefill) keeps a busy machine's hiccups out of most samples. The weights do not
    matter for speed, so an untrained decoder measures the same as a trained one.
    """
    from omni_edu.model.transformer import KVCache

    _positive("context", context)
    _positive("steps", steps)
    _positive("repeats", repeats)
    config = decoder.config
    device = next(decoder.parameters()).device
    dtype = next(decoder.parameters()).dtype
    cache = KVCache(config, batch, max_len=context + steps, device=device, dtype=dtype)
    prompt = torch.randn(batch, context, config.d_model, device=device, dtype=dtype)
    token = torch.randn(batch, 1, config.d_model, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        for run in range(repeats + 1):  # run 0 warms up (allocations, kernel choice)
            cache.reset()
            decoder(prompt, cache=cache)
            for _ in range(steps):
                sync()
                start = time.perf_counter()
                decoder(token, cache=cache)
                sync()
                if run:
                    times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def flow_sampling_cost(
    head: torch.nn.Module, n_tokens: int, steps: int | None = None, dtype: str = "fp32"
) -> StepCost:
    """FLOPs and bytes of sampling one image of ``n_tokens`` tokens with a flow head.

    Each of ``steps`` Euler steps evaluates the head's MLP once for every token at the same
    time: ``2 * P`` FLOPs per token per step (``P`` = its parameters), while the weights are
    read once per step for all ``n_tokens`` tokens. ``dtype`` is the head's (fp32 for the
    course's modules on a CPU).
    """
    _positive("n_tokens", n_tokens)
    steps = steps or head.config.sampling_steps
    _positive("steps", steps)
    size = bytes_per_value(dtype)
    n_params = sum(p.numel() for p in head.parameters())
    flops = 2.0 * n_params * n_tokens * steps
    width = head.config.width
    activations = 2 * (head.config.depth + 2) * n_tokens * width * size
    return StepCost(flops, steps * (n_params * size + activations), n_tokens, dtype)


def measure_flow_sampling(
    head: torch.nn.Module, n_tokens: int, steps: int | None = None, repeats: int = 3
) -> float:
    """Measured seconds to sample one image of ``n_tokens`` tokens with a flow head."""
    _positive("n_tokens", n_tokens)
    device = next(head.parameters()).device
    cond = torch.randn(n_tokens, head.config.cond_dim, device=device)
    return time_call(lambda: head.sample(cond, steps=steps), repeats=repeats)


# ---------------------------------------------------------------------------------------------
# 4. The course's own model, stage by stage
# ---------------------------------------------------------------------------------------------


def _modality(modality):
    """A :class:`~omni_edu.modalities.Modality` from itself or its name (``"audio"``)."""
    from omni_edu.modalities import Modality

    if isinstance(modality, str):
        if modality.upper() not in Modality.__members__:
            names = ", ".join(m.lower() for m in Modality.__members__)
            raise ValueError(f"modality should be one of {names}; got {modality!r}.")
        return Modality[modality.upper()]
    return Modality(modality)


@dataclass(frozen=True)
class GenerationTiming:
    """Where the seconds of one :meth:`~omni_edu.model.omni_lm.OmniLM.generate` call went.

    Attributes:
        prefill: the first decoder pass, over the whole prompt at once.
        decode: each later decoder pass, one new token per row with the KV cache.
        head: each call of the output head, one per generated token (for a flow head,
            its ``steps`` Euler steps for every row of the batch at once).
        first_token: from the start of the call until the first token was sampled (what a
            user waits before the answer starts).
        total: the whole call.
        prompt_tokens: tokens read by the prefill (per row, left padding included).
        batch: rows generated side by side.
        calls: with ``count_calls``, the torch operations each stage asked for:
            ``{"prefill": ..., "decode": ... (per step), "head": ... (per token),
            "total": ...}`` (see :func:`count_torch_calls`); else None.
    """

    prefill: float
    decode: tuple[float, ...]
    head: tuple[float, ...]
    first_token: float
    total: float
    prompt_tokens: int
    batch: int
    calls: dict[str, int] | None = None

    @property
    def other(self) -> float:
        """Seconds outside the decoder and the head: laying out and packing the prompt,
        embedding each new token, Python between the steps."""
        return self.total - self.prefill - sum(self.decode) - sum(self.head)


def time_generation(
    model: OmniLM, modality, run: Callable[[], object], count_calls: bool = False
) -> tuple[object, GenerationTiming]:
    """Call ``run()``, which generates ``modality`` once with ``model``, and time its stages.

    ``run`` calls :meth:`~omni_edu.model.omni_lm.OmniLM.generate` exactly once, directly
    (``lambda: model.generate(prompts, Modality.AUDIO, n_tokens=8)``) or through a helper
    such as :func:`omni_edu.any_to_any.generate`. Nothing is re-implemented: the model's own
    cached decoding loop runs, observed from outside. Forward hooks on the decoder time each
    pass (the first is the prefill, the others are decode steps); the output head's
    ``sample`` (for text: the text head's forward) is timed around each call. On a GPU
    every mark synchronises, so each stage's kernels are counted in that stage.

    ``count_calls``: also count the torch operations of each stage (what per-operation
    overhead is paid on); counting slows the run, so time and count in separate calls.

    Returns:
        what ``run()`` returned, and the :class:`GenerationTiming`.
    """
    from omni_edu.modalities import Modality

    modality = _modality(modality)
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    marks: dict[str, list[tuple[float, float]]] = {"decoder": [], "head": []}
    counts: dict[str, list[int]] = {"decoder": [], "head": []}
    shapes: list[tuple[int, int]] = []  # (batch, tokens) of each decoder pass
    opened: dict[str, tuple[float, int]] = {}
    counter = _CountCalls()

    def open_(kind: str, shape: tuple[int, ...] = ()) -> None:
        sync()
        opened[kind] = (time.perf_counter(), counter.calls)
        if shape:
            shapes.append((shape[0], shape[1]))  # the decoder's input: (batch, seq, d_model)

    def close(kind: str) -> None:
        sync()
        start, calls = opened[kind]
        marks[kind].append((start, time.perf_counter()))
        counts[kind].append(counter.calls - calls)

    handles = [
        model.decoder.register_forward_pre_hook(lambda m, args: open_("decoder", args[0].shape)),
        model.decoder.register_forward_hook(lambda m, args, out: close("decoder")),
    ]
    head = model.head(modality)
    if modality == Modality.TEXT:  # text is sampled from the logits of the text head
        handles += [
            head.register_forward_pre_hook(lambda m, args: open_("head")),
            head.register_forward_hook(lambda m, args, out: close("head")),
        ]
    else:
        original = head.sample

        def timed_sample(*args, **kwargs):
            open_("head")
            out = original(*args, **kwargs)
            close("head")
            return out

        head.sample = timed_sample  # an instance attribute: shadows the method until deleted
    try:
        sync()
        start = time.perf_counter()
        if count_calls:
            with counter:
                out = run()
        else:
            out = run()
        sync()
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
        if modality != Modality.TEXT:
            del head.sample
    # One generate call: a prompt pass, then one-token passes, and one head call per pass.
    one_call = bool(shapes) and all(seq == 1 for _, seq in shapes[1:])
    if not one_call or len(marks["head"]) != len(shapes):
        raise ValueError(
            f"run should generate {modality.name} once with this model (a prompt pass, then "
            f"one token per step, the {modality.name} head after each); it made "
            f"{len(shapes)} decoder passes of lengths {[seq for _, seq in shapes]} and "
            f"{len(marks['head'])} {modality.name} head calls."
        )
    passes = [b - a for a, b in marks["decoder"]]
    calls = None
    if count_calls:
        steps, heads = counts["decoder"][1:] or [0], counts["head"]
        calls = {
            "prefill": counts["decoder"][0],
            "decode": sorted(steps)[len(steps) // 2],
            "head": sorted(heads)[len(heads) // 2],
            "total": counter.calls,
        }
    return out, GenerationTiming(
        prefill=passes[0],
        decode=tuple(passes[1:]),
        head=tuple(b - a for a, b in marks["head"]),
        first_token=marks["head"][0][1] - start,
        total=total,
        prompt_tokens=shapes[0][1],
        batch=shapes[0][0],
        calls=calls,
    )


def head_sampling_cost(head: torch.nn.Module, batch: int, steps: int | None = None) -> StepCost:
    """FLOPs and bytes of one output head writing one token for each of ``batch`` rows.

    A flow head runs its MLP ``steps`` times (:func:`flow_sampling_cost` with the batch's
    rows as the tokens updated together); a linear or softmax head (text, codes) one
    matrix product. fp32, as the course's models run.
    """
    if hasattr(head, "config") and hasattr(head.config, "sampling_steps"):
        return flow_sampling_cost(head, batch, steps)
    _positive("batch", batch)
    n_params = sum(p.numel() for p in head.parameters())
    return StepCost(2.0 * n_params * batch, 4.0 * n_params, batch, "fp32")


def generation_costs(
    model: OmniLM, timing: GenerationTiming, modality, steps: int | None = None
) -> dict[str, list[StepCost]]:
    """The roofline's view of the call that produced ``timing``: one :class:`StepCost` per
    prefill, decode pass and head call, ``{"prefill": [...], "decode": [...], "head": [...]}``.

    The decoder's shape comes from the model itself (:func:`decoder_shape`); each decode
    step attends to everything before it (the prompt and the tokens written so far).
    """
    shape = decoder_shape(model.decoder, "OmniLM decoder")
    head = model.head(_modality(modality))
    b, p = timing.batch, timing.prompt_tokens
    return {
        "prefill": [prefill_cost(shape, p, b, "fp32")],
        "decode": [decode_step_cost(shape, p + k, b, "fp32") for k in range(len(timing.decode))],
        "head": [head_sampling_cost(head, b, steps) for _ in timing.head],
    }


class _CountCalls(TorchFunctionMode):
    """Counts every call from Python into torch (functions and tensor methods)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") != "__get__":  # attribute reads (x.shape) are free
            self.calls += 1
        return func(*args, **(kwargs or {}))


def count_torch_calls(fn: Callable[[], object]) -> int:
    """How many torch operations ``fn()`` asks for from Python (``linear``, ``add``,
    ``view``, ``__getitem__``...). Each one pays a fixed cost - Python, dispatch, on a GPU a
    kernel launch - whatever the size of its tensors."""
    with torch.no_grad(), _CountCalls() as counter:
        fn()
    return counter.calls


def narrowest_copy(decoder: torch.nn.Module) -> torch.nn.Module:
    """A fresh decoder with ``decoder``'s layers, heads and device, but every matrix as
    narrow as it can be (2 numbers per head): the same operations, almost no arithmetic
    and almost no bytes. What one of its steps costs is the fixed cost of those operations.
    """
    c = decoder.config
    device = next(decoder.parameters()).device
    narrow = type(c)(
        d_model=2 * c.n_heads,
        n_layers=c.n_layers,
        n_heads=c.n_heads,
        n_kv_heads=c.n_kv_heads,
        max_seq_len=c.max_seq_len,
    )
    return type(decoder)(narrow).to(device).eval()


def _decode_step(decoder: torch.nn.Module, context: int) -> Callable[[], object]:
    """One decode step of ``decoder`` (batch 1) after a prefill of ``context`` random
    embeddings; each call adds a token, and the cache is refilled when it is full."""
    from omni_edu.model.transformer import KVCache

    config = decoder.config
    device = next(decoder.parameters()).device
    cache = KVCache(config, 1, max_len=context + 16, device=device)
    prompt = torch.randn(1, context, config.d_model, device=device)
    token = torch.randn(1, 1, config.d_model, device=device)

    @torch.no_grad()
    def step() -> None:
        if cache.length in (0, cache.max_len):
            cache.reset()
            decoder(prompt, cache=cache)
        decoder(token, cache=cache)

    step()  # the prefill happens here, outside what is timed or counted
    return step


def seconds_per_torch_call(decoder: torch.nn.Module, context: int = 16, repeats: int = 5) -> float:
    """Measured fixed cost of one torch operation in ``decoder``'s decode step (seconds).

    Times a decode step of :func:`narrowest_copy` (the same operations on matrices 2 numbers
    per head wide, where FLOPs and bytes are negligible) and divides by the number of
    operations it asks for (:func:`count_torch_calls`). Multiply by a stage's operation count
    to predict what that stage costs when overhead, not arithmetic, sets its time.
    """
    narrow = narrowest_copy(decoder)
    seconds = measure_decode_step(narrow, context, 1, repeats=repeats)
    return seconds / count_torch_calls(_decode_step(narrow, context))
