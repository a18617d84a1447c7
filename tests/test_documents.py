"""Interleaved OmniWorld documents of lesson 02 (omni_edu/data/documents.py)."""

import pytest
import torch

from omni_edu.data.documents import InterleavedCorpus, check_order, order_name
from omni_edu.modalities import Modality
from omni_edu.model.omni_lm import OmniLM
from omni_edu.train import model_loss


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


def test_the_models_loss_gives_the_trainer_a_total_and_each_modality(corpus):
    torch.manual_seed(0)
    model = OmniLM(corpus.model_config())
    out = model_loss(model, corpus.batch(0, 4))
    assert set(out) == {"loss", "text", "image", "audio"}
    assert torch.allclose(out["loss"], out["text"] + out["image"] + out["audio"])
