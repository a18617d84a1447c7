import random
from dataclasses import replace

import pytest
import torch

from omni_edu.lessons.omni_tokens.modality_confusion import (
    FIRST_SYMBOL,
    ConfusionConfig,
    ConfusionData,
    ConfusionModel,
    _score,
    make_batch,
    run_experiment,
    summarize,
)
from omni_edu.modalities import Modality
from omni_edu.profiles import get_profile

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
    assert _score(model, full, config.n_symbols, n_docs=8) == pytest.approx(
        _score(model, first, config.n_symbols)
    )
