"""Lesson 01: content per token, what concatenation loses, and the modality-confusion claim
check."""

import random
from dataclasses import replace

import pytest
import torch

from omni_edu import cost
from omni_edu.data import OmniWorld
from omni_edu.lessons.omni_tokens.concatenation import (
    ORDERS,
    best_possible_accuracy,
    concatenate_by_modality,
    input_keys,
    modality_string,
    order_task_ceiling,
    scene_documents,
)
from omni_edu.lessons.omni_tokens.modality_confusion import (
    FIRST_SYMBOL,
    ConfusionConfig,
    ConfusionData,
    ConfusionModel,
    ConfusionResult,
    _score,
    majority_confusion,
    make_batch,
    power,
    run_experiment,
    summarize,
)
from omni_edu.lessons.omni_tokens.token_density import (
    BPE_CHARS_PER_TOKEN,
    model_family_density,
    omniworld_density,
    talk_tokens,
)
from omni_edu.modalities import Modality, TextTokenizer
from omni_edu.model.interleave import audio_segment, image_segment, pack, text_segment
from omni_edu.profiles import get_profile

# --- content per token ---------------------------------------------------------------------------


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


# --- what concatenation loses --------------------------------------------------------------------


def test_concatenation_groups_modalities_and_keeps_their_inner_order():
    a, b = text_segment([5, 6]), text_segment([7])
    img = image_segment(torch.zeros(4, 3))
    snd = audio_segment(torch.ones(2, 2))
    out = concatenate_by_modality([snd, a, img, b])
    assert [s.modality for s in out] == [
        Modality.TEXT,
        Modality.TEXT,
        Modality.IMAGE,
        Modality.AUDIO,
    ]
    assert out[0] is a and out[1] is b


def test_two_orders_become_one_input_after_concatenation():
    words, img, snd = (
        text_segment([5, 6]),
        image_segment(torch.rand(4, 3)),
        audio_segment(torch.rand(2, 2)),
    )
    by_position = pack([[words, img, snd], [snd, img, words]])
    keys = input_keys(by_position)
    assert keys[0] != keys[1]
    concatenated = pack(
        [concatenate_by_modality(d) for d in ([words, img, snd], [snd, img, words])]
    )
    keys = input_keys(concatenated)
    assert keys[0] == keys[1]
    assert modality_string(concatenated, 0) == "TT IIII AA"


def test_best_possible_accuracy_is_the_majority_per_identical_input():
    assert best_possible_accuracy(["x", "x", "y", "y"], [0, 1, 1, 1]) == pytest.approx(0.75)
    assert best_possible_accuracy(["a", "b", "c"], [0, 1, 2]) == 1.0
    with pytest.raises(ValueError):
        best_possible_accuracy([], [])


def test_the_order_task_is_solvable_only_by_position():
    profile = get_profile("ci")
    batch = OmniWorld("train", seed=0, profile=profile).sample(4, seed=0)
    docs, labels = scene_documents(batch, TextTokenizer(), profile.patch_size)
    assert len(docs) == 4 * len(ORDERS)
    ceiling = order_task_ceiling(docs, labels)
    assert ceiling["interleaved by position"] == 1.0
    assert ceiling["concatenated by modality"] == pytest.approx(1 / len(ORDERS))


# --- the modality-confusion claim check ----------------------------------------------------------

TINY = dict(steps=40, batch_size=16, n_train=128, n_eval=32, n_layers=1)


def test_a_word_and_its_sound_enter_the_model_as_the_same_vector():
    profile = get_profile("ci")
    for flag in (True, False):
        config = ConfusionConfig(modality_embeddings=flag, n_symbols=4)
        proj = ConfusionModel(config.sized(profile), profile).projector
        ids = torch.arange(FIRST_SYMBOL, config.vocab_size)[None]
        frames = torch.eye(config.vocab_size)[FIRST_SYMBOL:][None]
        same = torch.allclose(proj.text(ids), proj.audio(frames))
        assert same  # the projections collide by construction
        differ = not torch.allclose(proj.embed_text(ids), proj.embed_audio(frames))
        assert differ == flag  # only the modality embedding separates them


def test_without_the_shared_table_a_sound_has_a_projector_of_its_own():
    profile = get_profile("ci")
    config = ConfusionConfig(modality_embeddings=False, n_symbols=4, shared_table=False)
    proj = ConfusionModel(config.sized(profile), profile).projector
    ids = torch.arange(FIRST_SYMBOL, config.vocab_size)[None]
    frames = torch.eye(config.vocab_size)[FIRST_SYMBOL:][None]
    assert isinstance(proj.audio, torch.nn.Linear)
    assert not torch.allclose(proj.text(ids), proj.audio(frames))  # no collision left


def test_the_majority_baseline_takes_the_commonest_training_modality():
    config = ConfusionConfig(n_symbols=3, n_train=64, n_eval=32).sized(get_profile("ci"))
    data = ConfusionData.generate(config)
    audio_share = (data.eval_targets >= 3).float().mean().item()
    train_audio = (data.train_labels[data.train_content] >= 3).float().mean().item()
    expected = audio_share if train_audio < 0.5 else 1 - audio_share
    assert majority_confusion(data, 3) == pytest.approx(expected)
    assert 0.3 < majority_confusion(data, 3) < 0.7  # each token is a word or a sound by a coin


def _result(flag, seed, confusion, n=400):
    return ConfusionResult("isolated", flag, seed, 1 - confusion, confusion, [], [0] * n, 0.5)


def test_power_comes_from_the_seeds_or_the_held_out_tokens():
    runs = [
        _result(True, 0, 0.0),
        _result(True, 1, 0.0),
        _result(False, 0, 0.5),
        _result(False, 1, 0.5),
    ]
    found = power(runs)
    # seeds agree exactly, so the binomial errors decide: p(1-p)/(n * seeds) for "off",
    # the floor 1/n / (n * seeds) for "on" (a rate of 0 still has an error)
    expected = 1.96 * (0.25 / 800 + (1 / 400) / 800) ** 0.5
    assert found["detectable"] == pytest.approx(expected)
    assert found["baseline"] == 0.5 and found["n_tokens"] == 400
    spread = [
        _result(True, 0, 0.0),
        _result(True, 1, 0.2),
        _result(False, 0, 0.3),
        _result(False, 1, 0.7),
    ]
    assert power(spread)["detectable"] > 1.96 * (0.08 / 2) ** 0.5  # the seeds' spread decides
    with pytest.raises(ValueError, match="with and without"):
        power(runs[:2])


def test_labels_encode_symbol_and_modality():
    config = ConfusionConfig(layout="marked", n_symbols=5, n_tokens=9).sized(get_profile("ci"))
    packed, content, targets = make_batch(6, config, random.Random(0))
    assert int(content.sum()) == len(targets) == 6 * 9
    is_audio = packed.modality[content] == Modality.AUDIO
    assert torch.equal(targets >= 5, is_audio)
    word_ids = packed.text_ids[content][~is_audio]
    assert torch.equal(targets[~is_audio], word_ids - FIRST_SYMBOL)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout"):
        ConfusionConfig(layout="shuffled")


@pytest.mark.slow
def test_without_embeddings_isolated_tokens_are_confused_and_markers_fix_it():
    profile = get_profile("ci")
    rows = summarize(run_experiment(seeds=1, profile=profile, **TINY))
    score = {(r["layout"], r["modality embeddings"]): r for r in rows}
    assert score["isolated", "on"]["accuracy"] > 0.9
    # Nothing tells a word from its sound: the modality is a coin flip.
    assert 0.3 < score["isolated", "off"]["confusion"] < 0.7
    assert score["marked", "on"]["accuracy"] > 0.9
    assert score["marked", "off"]["accuracy"] > 0.8  # <boa>/<eoa> carry the modality


def test_the_curve_scores_the_first_held_out_documents():
    profile = get_profile("ci")
    config = ConfusionConfig(layout="marked", n_train=8, n_eval=32, n_layers=1).sized(profile)
    model = ConfusionModel(config, profile)
    full = ConfusionData.generate(config, profile)
    first = ConfusionData.generate(replace(config, n_eval=8), profile)  # the same 8 documents
    assert _score(model, full, config.n_symbols, n_docs=8)[:2] == pytest.approx(
        _score(model, first, config.n_symbols)[:2]
    )
    assert torch.equal(
        _score(model, full, config.n_symbols, n_docs=8)[2],
        _score(model, first, config.n_symbols)[2],
    )
