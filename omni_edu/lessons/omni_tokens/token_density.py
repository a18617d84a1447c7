"""How much content one token holds, per modality: characters, pixels, milliseconds.

A transformer pays for every token (attention grows with the square of their number), so
the first question about a modality is how much of it fits in one token. We measure it
twice:

* on **OmniWorld** with the course's own tokenizers (:func:`omniworld_density`): words
  of a caption, ``p x p``-pixel patches, groups of log-mel frames;
* for **real model families** (:func:`model_family_density`), from their published
  counting rules, which live in :mod:`omni_edu.cost` (this module only divides).

:func:`talk_tokens` prices one recorded minute of someone talking as a transcript, as
audio and as video: the same content, one to two orders of magnitude apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from omni_edu import cost
from omni_edu.modalities import MelConfig, TextTokenizer, audio_token_ms, patch_grid
from omni_edu.profiles import Profile, get_profile

# Text rules of thumb for English with a GPT-style BPE tokenizer: "one token generally
# corresponds to ~4 characters of text", "100 tokens ~= 75 words" (OpenAI help centre,
# "What are tokens and how to count them?"). Other languages cost more tokens.
BPE_CHARS_PER_TOKEN = 4.0
BPE_WORDS_PER_TOKEN = 0.75
# Conversational English is spoken at roughly 120-160 words per minute; we take 150.
SPEECH_WORDS_PER_MINUTE = 150

# Media sizes used for the real families: a 448 px square photo (Qwen2-VL's favourite
# size), a 1024 px photo for GPT-4o (the docs' worked example), a 384 px image for
# Gemini (the largest that costs one fixed block), and a 640x360 video.
QWEN_PHOTO_PX = 448
GPT4O_PHOTO_PX = 1024
GEMINI_PHOTO_PX = 384
VIDEO_HW = (360, 640)


@dataclass(frozen=True)
class Density:
    """How much content one token of ``modality`` holds under ``source``'s tokenizer.

    ``per_token`` is in ``unit`` (characters, pixels, ms); ``tokens`` is what the example
    ``item`` costs.
    """

    modality: str
    source: str
    per_token: float
    unit: str
    item: str
    tokens: float

    def row(self) -> dict:
        """A dict for :func:`omni_edu.viz.plots.show_table`."""
        return asdict(self)


def omniworld_density(
    captions: Sequence[str],
    tokenizer: TextTokenizer | None = None,
    profile: Profile | None = None,
    frames_per_token: int = 4,
) -> list[Density]:
    """Content per token of OmniWorld's text, image and audio tokens.

    Args:
        captions: captions to measure characters per word token on (from a batch).
        tokenizer: default the course's word tokenizer over OmniWorld's vocabulary.
        profile: image size, patch size, sample rate and clip length; default active.
        frames_per_token: log-mel frames grouped into one audio token.

    Returns:
        three rows: text (characters/token), image (pixels/token), audio (ms/token).
    """
    if len(captions) == 0:
        raise ValueError("captions is empty; pass a batch's captions, e.g. batch.captions")
    tokenizer = tokenizer or TextTokenizer()
    profile = profile or get_profile()
    name = f"OmniWorld ({profile.name})"
    n_words = sum(len(tokenizer.encode(c)) for c in captions) / len(captions)
    rows, cols = patch_grid(profile.image_size, profile.image_size, profile.patch_size)
    ms = audio_token_ms(frames_per_token, MelConfig.from_profile(profile))
    seconds = profile.audio_seconds
    return [
        Density(
            "text", name, tokenizer.chars_per_token(captions), "characters", "a caption", n_words
        ),
        Density(
            "image",
            name,
            profile.patch_size**2,
            "pixels",
            f"a {profile.image_size}x{profile.image_size} picture",
            rows * cols,
        ),
        Density("audio", name, ms, "ms", f"a {seconds:g} s sound", 1000 * seconds / ms),
    ]


def _pixels(side: int, tokens: int, source: str, item: str | None = None) -> Density:
    item = item or f"a {side}x{side} photo"
    return Density("image", source, side * side / tokens, "pixels", item, tokens)


def _audio(seconds: float, tokens: int, source: str) -> Density:
    return Density(
        "audio", source, 1000 * seconds / tokens, "ms", f"{seconds:g} s of audio", tokens
    )


def model_family_density() -> list[Density]:
    """Content per token for real model families, from their published counting rules.

    Text: English under a GPT-style BPE (a rule of thumb, see ``BPE_CHARS_PER_TOKEN``).
    Images: Qwen2-VL, GPT-4o (high detail) and Gemini. Audio: Whisper (50 tokens/s),
    Qwen2.5-Omni (25/s) and Gemini (32/s). Video: Qwen2-VL at 2 frames/s and Gemini.
    Pixels per token are counted on the *original* image, before any resizing.
    """
    minute = 60.0
    video_h, video_w = VIDEO_HW
    qwen_video = cost.qwen2vl_video_tokens(video_h, video_w, minute)
    gemini_video = cost.gemini_video_tokens(minute)
    return [
        Density(
            "text",
            "GPT-style BPE (English)",
            BPE_CHARS_PER_TOKEN,
            "characters",
            "1000 characters",
            1000 / BPE_CHARS_PER_TOKEN,
        ),
        _pixels(QWEN_PHOTO_PX, cost.qwen2vl_image_tokens(QWEN_PHOTO_PX, QWEN_PHOTO_PX), "Qwen2-VL"),
        _pixels(
            GPT4O_PHOTO_PX,
            cost.gpt4o_image_tokens(GPT4O_PHOTO_PX, GPT4O_PHOTO_PX, "high"),
            "GPT-4o (high detail)",
        ),
        _pixels(
            GEMINI_PHOTO_PX, cost.gemini_image_tokens(GEMINI_PHOTO_PX, GEMINI_PHOTO_PX), "Gemini"
        ),
        _audio(30.0, cost.whisper_audio_tokens(30.0), "Whisper"),
        _audio(30.0, cost.qwen_omni_audio_tokens(30.0), "Qwen2.5-Omni"),
        _audio(30.0, cost.gemini_audio_tokens(30.0), "Gemini"),
        Density(
            "video",
            "Qwen2-VL (2 frames/s)",
            1000 * minute / qwen_video,
            "ms",
            f"1 min of {video_w}x{video_h} video",
            qwen_video,
        ),
        Density(
            "video",
            "Gemini (1 frame/s + sound)",
            1000 * minute / gemini_video,
            "ms",
            "1 min of video",
            gemini_video,
        ),
    ]


def talk_tokens(minutes: float = 1.0) -> dict[str, float]:
    """Tokens for ``minutes`` of a recorded talk, as a transcript, as audio, as video.

    The transcript is ``SPEECH_WORDS_PER_MINUTE`` words at ``BPE_WORDS_PER_TOKEN``; audio
    and video use the families' rules from :mod:`omni_edu.cost` (Whisper without its
    padding to 30 s windows).
    """
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
        raise ValueError(f"minutes should be a positive number; got {minutes!r}")
    seconds = 60.0 * minutes
    video_h, video_w = VIDEO_HW
    return {
        "transcript (BPE text)": SPEECH_WORDS_PER_MINUTE * minutes / BPE_WORDS_PER_TOKEN,
        "audio: Qwen2.5-Omni": cost.qwen_omni_audio_tokens(seconds),
        "audio: Gemini": cost.gemini_audio_tokens(seconds),
        "audio: Whisper": cost.whisper_audio_tokens(seconds, pad_to_30s=False),
        "video: Gemini": cost.gemini_video_tokens(seconds),
        "video: Qwen2-VL 2 fps": cost.qwen2vl_video_tokens(video_h, video_w, seconds),
    }
