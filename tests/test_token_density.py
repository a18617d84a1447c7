import pytest

from omni_edu import cost
from omni_edu.lessons.omni_tokens.token_density import (
    BPE_CHARS_PER_TOKEN,
    model_family_density,
    omniworld_density,
    talk_tokens,
)
from omni_edu.modalities import TextTokenizer
from omni_edu.profiles import get_profile


def test_omniworld_density_follows_the_profile():
    profile = get_profile("ci")
    captions = ["a red circle", "a big blue square at the top left"]
    text, image, audio = omniworld_density(captions, TextTokenizer(), profile, frames_per_token=4)
    # "a red circle": 12 characters in 3 words; the second: 33 characters in 8 words.
    assert text.per_token == pytest.approx((12 + 33) / 11)
    assert text.tokens == pytest.approx(5.5)
    assert image.per_token == profile.patch_size**2
    assert image.tokens == (profile.image_size // profile.patch_size) ** 2
    # 64 log-mel frames per second, 4 frames per token -> 62.5 ms, 16 tokens per second.
    assert audio.per_token == pytest.approx(62.5)
    assert audio.tokens == pytest.approx(16 * profile.audio_seconds)


def test_omniworld_density_needs_captions():
    with pytest.raises(ValueError, match="captions is empty"):
        omniworld_density([])


def test_model_families_match_their_published_rates():
    rows = {(d.modality, d.source): d for d in model_family_density()}
    assert rows["text", "GPT-style BPE (English)"].per_token == BPE_CHARS_PER_TOKEN
    assert rows["image", "Qwen2-VL"].per_token == 28 * 28  # one token per 28x28 block
    assert rows["audio", "Whisper"].per_token == pytest.approx(20.0)  # 50 tokens/s
    assert rows["audio", "Qwen2.5-Omni"].per_token == pytest.approx(40.0)  # 25 tokens/s
    assert rows["audio", "Gemini"].per_token == pytest.approx(1000 / 32)
    for d in rows.values():  # per-token content times tokens gives back the item's size
        assert d.per_token * d.tokens > 0


def test_a_talk_costs_far_more_as_audio_and_video_than_as_text():
    tokens = talk_tokens(1.0)
    assert tokens["transcript (BPE text)"] == pytest.approx(200)
    assert tokens["audio: Whisper"] == cost.whisper_audio_tokens(60, pad_to_30s=False) == 3000
    assert tokens["video: Gemini"] == 263 * 60
    text = tokens["transcript (BPE text)"]
    assert all(v > 5 * text for k, v in tokens.items() if k.startswith(("audio", "video")))
    with pytest.raises(ValueError, match="minutes"):
        talk_tokens(0)
