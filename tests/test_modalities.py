"""Tokenizers per modality: text ids, image patches, log-mel frames and audio tokens."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.data import vocabulary
from omni_edu.modalities import (
    PAD,
    SPECIAL_TOKENS,
    MelConfig,
    Modality,
    TextTokenizer,
    audio_token_ms,
    frame_audio,
    log_mel,
    mel_filterbank,
    patch_grid,
    patchify,
    unframe_audio,
    unpatchify,
)
from omni_edu.profiles import get_profile

TOKENIZER = TextTokenizer()
WORDS = vocabulary()


def test_modality_ids_are_the_shared_convention():
    assert (Modality.TEXT, Modality.IMAGE, Modality.AUDIO, PAD) == (0, 1, 2, -1)


# --- text ---------------------------------------------------------------------------


def test_the_tokenizers_words_are_every_word_omniworld_writes():
    # modalities/ keeps its own copy (it must not import data/): a new word in a template
    # of omni_edu/data/language.py belongs in omni_edu/modalities/vocabulary.py too.
    from omni_edu.modalities.vocabulary import WORDS as TOKENIZER_WORDS

    assert list(TOKENIZER_WORDS) == WORDS


def test_vocabulary_is_specials_then_sorted_words_and_deterministic():
    assert TOKENIZER.tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert TOKENIZER.tokens[len(SPECIAL_TOKENS) :] == sorted(WORDS)
    assert TextTokenizer().tokens == TOKENIZER.tokens
    assert TOKENIZER.vocab_size == len(SPECIAL_TOKENS) + len(WORDS) == len(TOKENIZER)
    assert TOKENIZER.pad_id == 0
    ids = [TOKENIZER.bos_id, TOKENIZER.eos_id, TOKENIZER.unk_id, TOKENIZER.boi_id]
    ids += [TOKENIZER.eoi_id, TOKENIZER.boa_id, TOKENIZER.eoa_id]
    assert len(set(ids)) == len(ids)
    assert TOKENIZER["<draw>"] == TOKENIZER.special_ids["<draw>"]


@settings(max_examples=40)
@given(st.lists(st.sampled_from(WORDS + list(SPECIAL_TOKENS)), min_size=1, max_size=30))
def test_encode_decode_round_trip(words):
    text = " ".join(words)
    ids = TOKENIZER.encode(text)
    assert len(ids) == len(words)
    assert TOKENIZER.decode(ids) == text


def test_encode_normalises_case_and_punctuation_and_marks_unknown_words():
    ids = TOKENIZER.encode("A small, RED circle?!", bos=True, eos=True)
    assert ids[0] == TOKENIZER.bos_id and ids[-1] == TOKENIZER.eos_id
    assert TOKENIZER.decode(ids, skip_special=True) == "a small red circle"
    assert TOKENIZER.encode("a zebra") == [TOKENIZER["a"], TOKENIZER.unk_id]
    assert TOKENIZER.encode("<draw> a red circle")[0] == TOKENIZER["<draw>"]


def test_encode_batch_pads_on_the_right_and_decode_batch_undoes_it():
    texts = ["a red circle", "i see a big blue square at the top left"]
    ids = TOKENIZER.encode_batch(texts, bos=True, eos=True)
    assert ids.dtype == torch.long and ids.shape == (2, 12)
    assert (ids[0, 5:] == TOKENIZER.pad_id).all() and ids[0, 4] == TOKENIZER.eos_id
    assert TOKENIZER.decode_batch(ids) == texts
    assert TOKENIZER.encode_batch(texts, max_len=3).shape == (2, 3)


def test_chars_per_token_counts_content_per_token():
    assert TOKENIZER.chars_per_token(["red box"]) == pytest.approx(7 / 2)


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOKENIZER.decode([TOKENIZER.vocab_size])
    with pytest.raises(ValueError, match="decode_batch"):
        TOKENIZER.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="list of texts"):
        TOKENIZER.encode_batch("a red circle")
    with pytest.raises(ValueError, match="lower-case"):
        TextTokenizer(["Red Circle"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        TOKENIZER["zebra"]


# --- images -------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    patch=st.sampled_from([1, 2, 4]),
)
def test_patchify_round_trip(batch, rows, cols, patch):
    images = torch.rand(batch, 3, rows * patch, cols * patch)
    patches = patchify(images, patch)
    assert patches.shape == (batch, rows * cols, 3 * patch * patch)
    assert torch.equal(unpatchify(patches, patch, rows * patch, cols * patch), images)


def test_patches_are_in_raster_order_with_the_unfold_layout():
    images = torch.rand(2, 3, 8, 12)
    patches = patchify(images, 4)
    expected = torch.nn.functional.unfold(images, kernel_size=4, stride=4).transpose(1, 2)
    assert torch.equal(patches, expected)
    # patch 1 is the second patch of the top row
    assert torch.equal(patches[0, 1].reshape(3, 4, 4), images[0, :, 0:4, 4:8])
    assert patch_grid(8, 12, 4) == (2, 3)


def test_patch_errors_explain_the_problem():
    with pytest.raises(ValueError, match="does not split"):
        patchify(torch.rand(1, 3, 10, 10), 4)
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        patchify(torch.rand(3, 16, 16), 4)
    with pytest.raises(ValueError, match=r"\(batch, 16, 48\)"):
        unpatchify(torch.rand(2, 15, 48), 4, 16, 16)


# --- audio --------------------------------------------------------------------------


def test_mel_config_gives_32_frames_per_half_second_in_every_profile():
    for name in ("ci", "cpu", "gpu"):
        profile = get_profile(name)
        config = MelConfig.from_profile(profile)
        samples = round(profile.sample_rate * profile.audio_seconds)
        assert config.n_frames(samples) == 32
        assert config.frame_ms == pytest.approx(15.625)
        assert config.n_fft >= 2 * config.hop_length
    assert audio_token_ms(4, MelConfig.from_profile(get_profile("ci"))) == pytest.approx(62.5)


def test_mel_filterbank_triangles_cover_the_spectrum():
    config = MelConfig()
    bank = mel_filterbank(config)
    assert bank.shape == (config.n_freqs, config.n_mels)
    assert (bank >= 0).all() and (bank.amax(dim=0) > 0.5).all()  # no empty band
    centres = bank.argmax(dim=0)
    assert (centres[1:] >= centres[:-1]).all()  # bands rise in frequency


def test_log_mel_puts_a_tone_in_the_band_of_its_frequency():
    config = MelConfig()
    t = torch.arange(4000) / config.sample_rate
    low, high = (0.5 * torch.sin(2 * math.pi * f * t) for f in (300.0, 1500.0))
    silence = torch.zeros(4000)
    mels = log_mel(torch.stack([low, high, silence]), config)
    assert mels.shape == (3, 32, config.n_mels)
    band_low, band_high = mels[0].mean(0).argmax(), mels[1].mean(0).argmax()
    assert band_high > band_low + 5
    assert mels[2].max() <= -0.99  # silence sits at -1
    assert 0.0 < mels[0].max() < 1.0


@given(frames=st.sampled_from([1, 2, 4, 8]), n_tokens=st.integers(1, 6))
def test_frame_audio_round_trip_and_time_order(frames, n_tokens):
    mels = torch.randn(2, frames * n_tokens, 5)
    tokens = frame_audio(mels, frames)
    assert tokens.shape == (2, n_tokens, frames * 5)
    assert torch.equal(tokens[:, -1, -5:], mels[:, -1])  # last token ends with last frame
    assert torch.equal(unframe_audio(tokens, frames), mels)


def test_audio_framing_errors():
    with pytest.raises(ValueError, match="do not split"):
        frame_audio(torch.randn(1, 32, 8), 3)
    with pytest.raises(ValueError, match="positive int"):
        frame_audio(torch.randn(1, 32, 8), 0)
    with pytest.raises(ValueError, match="batch, samples"):
        log_mel(torch.zeros(4000))
