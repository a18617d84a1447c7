"""Interleaved OmniWorld documents (lesson 02) and the stripes task of the RoPE experiment."""

import pytest
import torch

from omni_edu.lessons.interleaved_autoregression import rope_position
from omni_edu.modalities import Modality
from omni_edu.model.documents import InterleavedCorpus, check_order, loss_fn, order_name
from omni_edu.model.omni_lm import OmniLM
from omni_edu.profiles import get_profile


@pytest.fixture(scope="module")
def corpus():
    return InterleavedCorpus(12, seed=0)


def test_documents_follow_their_order(corpus):
    order = ("caption", "image", "caption", "audio")
    doc = corpus.document(3, order)
    assert [s.modality for s in doc] == [
        Modality.TEXT,
        Modality.IMAGE,
        Modality.TEXT,
        Modality.AUDIO,
    ]
    assert doc[1].grid == corpus.grid and len(doc[3]) == corpus.audio.shape[1]
    assert corpus.tokenizer.decode(doc[0].data) == corpus.captions[3][0]
    packed = corpus.pack([3], [order])
    # markers: <bos> caption <boi> image <eoi> caption <boa> audio <eoa> <eos>
    assert packed.describe(0).count("I") == len(doc[1])
    labels = corpus.token_labels(packed)
    assert labels[0] == "<bos>" and labels[-1] == "<eos>" and "img 3,3" in labels


def test_batches_are_deterministic_and_mix_orders(corpus):
    a, b = corpus.batch(5, 8), corpus.batch(5, 8)
    assert torch.equal(a.modality, b.modality) and torch.equal(a.text_ids, b.text_ids)
    assert not torch.equal(corpus.batch(6, 8).text_ids, a.text_ids)
    # position 0 is <bos>, 1 a word or a <boi>/<boa> marker, 2 shows the first part
    first_kind = {corpus.pool.modality[i, 2].item() for i in range(len(corpus))}
    assert len(first_kind) > 1, "every pooled document starts with the same modality"


def test_bad_orders_are_explained():
    with pytest.raises(ValueError, match="sequence of parts"):
        check_order("caption")
    with pytest.raises(ValueError, match="parts from"):
        check_order(("caption", "video"))
    assert order_name(("image", "caption")) == "image > caption"


def test_loss_fn_gives_the_trainer_a_total_and_each_modality(corpus):
    torch.manual_seed(0)
    model = OmniLM(corpus.model_config())
    out = loss_fn(model, corpus.batch(0, 4))
    assert set(out) == {"loss", "text", "image", "audio"}
    assert torch.allclose(out["loss"], out["text"] + out["image"] + out["audio"])


def test_stripes_repeat_the_row_above():
    config = rope_position.StripesConfig(rows=3, widths=(2, 5), noise=0.0)
    packed = rope_position.stripes(6, torch.Generator().manual_seed(0), config)
    for b, spans in enumerate(packed.spans):
        span = next(s for s in spans if s.modality == Modality.IMAGE)
        cols = span.grid[1]
        patches = packed.image[b, span.start : span.stop]
        assert torch.equal(patches[cols:], patches[:-cols])  # row r + 1 == row r


def test_predictable_marks_the_positions_before_rows_below_the_first():
    config = rope_position.StripesConfig(rows=4, widths=(3,))
    packed = rope_position.stripes(2, torch.Generator().manual_seed(1), config)
    mask = rope_position.predictable(packed)
    assert mask.sum(dim=1).tolist() == [3 * 3, 3 * 3]  # (rows - 1) * cols patches each
    span = next(s for s in packed.spans[0] if s.modality == Modality.IMAGE)
    # position start + 2 (patch 0,2) predicts patch 1,0, the first copy of the row above
    assert mask[0, span.start + 2] and not mask[0, span.start + 1]


def test_fast_width_is_the_models_own_layout():
    packed = rope_position.stripes(1, torch.Generator().manual_seed(2))
    model = OmniLM(rope_position.model_config("mrope_fast_width"))
    moved = model.positions(packed)
    assert torch.equal(moved[0], packed.mrope_positions[2])
    assert torch.equal(moved[2], packed.mrope_positions[0])
    with pytest.raises(ValueError, match="rope should be one of"):
        rope_position.model_config("2d")


def test_a_dry_run_cuts_the_rope_budget():
    dry = get_profile("gpu-dry")
    run = rope_position.train_rope("1d", seed=0, steps=500, profile=dry, progress=False)
    assert run.history.steps[-1] < 2  # 2 updates (steps 0 and 1), not 500
    assert set(run.errors) == {"rows below (copy)", "first row"}
