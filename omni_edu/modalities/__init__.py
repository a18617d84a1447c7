"""Turning each modality into tokens: text ids, image patches, audio frames.

* text: :class:`TextTokenizer` (one id per word, plus special and task tokens);
* image: :func:`patchify` / :func:`unpatchify` (one token per ``p x p`` patch);
* audio: :func:`log_mel` / :func:`mel_to_waveform` (sound <-> log-mel frames) and
  :func:`frame_audio` / :func:`unframe_audio` (frames <-> audio tokens).
"""

from enum import IntEnum


class Modality(IntEnum):
    """Which modality a token belongs to. Padding positions carry ``PAD`` (-1)."""

    TEXT = 0
    IMAGE = 1
    AUDIO = 2


PAD = -1

# Imported after Modality so that modules importing it from here find it defined.
from omni_edu.modalities.audio import (  # noqa: E402
    MelConfig,
    audio_token_ms,
    frame_audio,
    log_mel,
    mel_filterbank,
    mel_to_waveform,
    unframe_audio,
)
from omni_edu.modalities.image import patch_grid, patchify, unpatchify  # noqa: E402
from omni_edu.modalities.text import SPECIAL_TOKENS, TextTokenizer  # noqa: E402

__all__ = [
    "PAD",
    "SPECIAL_TOKENS",
    "MelConfig",
    "Modality",
    "TextTokenizer",
    "audio_token_ms",
    "frame_audio",
    "log_mel",
    "mel_filterbank",
    "mel_to_waveform",
    "patch_grid",
    "patchify",
    "unframe_audio",
    "unpatchify",
]
