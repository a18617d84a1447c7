"""The statistics of lesson 02's question: does the caption use the picture and the sound?"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from omni_edu.lessons.interleaved_autoregression import cross_modal_use as cmu
from omni_edu.modalities import Modality
from omni_edu.model.documents import InterleavedCorpus
from omni_edu.model.omni_lm import OmniLM


@pytest.fixture(scope="module")
def corpus():
    return InterleavedCorpus(8, split="test", seed=1)


@pytest.fixture(scope="module")
def model(corpus):
    torch.manual_seed(0)
    return OmniLM(corpus.model_config()).eval()


def test_attribute_words_are_the_scene_words_only():
    assert {"red", "crimson", "circle", "large", "top", "left"} <= cmu.ATTRIBUTE_WORDS
    assert not {"a", "at", "the", "and", "<eos>"} & cmu.ATTRIBUTE_WORDS


def test_predicting_positions_predict_the_segment_tokens(corpus):
    order = ("image", "caption", "audio")
    packed = corpus.pack([2], [order])
    where = cmu.predicting_positions(packed, 0, segment=1)
    assert packed.text_targets[0, where.start : where.stop].tolist() == list(corpus._ids[2][0])
    audio = cmu.predicting_positions(packed, 0, segment=2)
    assert (packed.target_modality[0, audio.start : audio.stop] == Modality.AUDIO).all()
    assert len(audio) == corpus.audio.shape[1]
    with pytest.raises(ValueError, match="no segment 3"):
        cmu.predicting_positions(packed, 0, segment=3)


def test_only_part_keeps_the_loss_of_one_part(corpus):
    order = ("caption", "image", "caption", "audio")
    packed = corpus.pack([0, 1], [order, order])
    kept = cmu.only_part(packed, order, "caption")
    for row in range(2):
        where = cmu.predicting_positions(packed, row, 0)  # the first caption, not the second
        expected = torch.zeros(packed.seq_len, dtype=torch.bool)
        expected[where.start : where.stop] = True
        assert torch.equal(kept.loss_mask(Modality.TEXT)[row], expected)
    assert not kept.loss_mask(Modality.IMAGE).any() and not kept.loss_mask(Modality.AUDIO).any()
    with pytest.raises(ValueError, match="not in the order"):
        cmu.only_part(corpus.pack([0], [("image",)]), ("image",), "audio")


def test_part_losses_are_each_scenes_cross_entropy_on_its_caption(corpus, model):
    order = ("audio", "caption", "image")
    losses = cmu.part_losses(model, corpus, [3, 5], order, "caption")
    packed = corpus.pack([3, 5], [order, order])
    with torch.no_grad():
        logits = model.head(Modality.TEXT)(model(packed))
    for row, loss in enumerate(losses):
        where = cmu.predicting_positions(packed, row, 1)
        targets = packed.text_targets[row, where.start : where.stop]
        expected = F.cross_entropy(logits[row, where.start : where.stop], targets)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_paired_interval():
    equal_gain = cmu.paired_interval(torch.tensor([1.0, 2, 3, 4]), torch.tensor([0.0, 1, 2, 3]))
    assert equal_gain == pytest.approx({"mean": 1.0, "low": 1.0, "high": 1.0, "n": 4})
    spread = cmu.paired_interval(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0]))
    # gains 1 and -1: mean 0, sample sd sqrt(2), half width 1.96 * sqrt(2) / sqrt(2)
    assert (spread["low"], spread["high"]) == pytest.approx((-1.96, 1.96))
    with pytest.raises(ValueError, match="n >= 2"):
        cmu.paired_interval(torch.tensor([1.0]), torch.tensor([0.0]))


def test_order_gains_and_the_tracker_agree(corpus, model):
    losses, gains = cmu.order_gains(model, corpus, range(6))
    assert set(losses) == set(cmu.CONTEXTS) and set(gains) == set(cmu.GAINS)
    for name, (before, after) in cmu.GAINS.items():
        assert gains[name]["mean"] == pytest.approx((losses[before] - losses[after]).mean().item())
    # every caption (and every sound) has the same length, so the tracker's batch means
    # equal the means of the per-scene losses
    tracked = cmu.gain_tracker(corpus, range(6))(model)
    assert tracked == pytest.approx({k: v["mean"] for k, v in gains.items()}, abs=1e-5)


def test_attribute_attention_splits_the_caption_positions(corpus, model):
    stats = cmu.attribute_attention(model, corpus, range(4), ("image", "audio", "caption"))
    assert set(stats) == {"image", "audio"}
    for s in stats.values():
        assert s["difference"] == pytest.approx(s["attribute"] - s["other"], abs=1e-6)
        assert s["low"] <= s["difference"] <= s["high"]
        assert len(s["per layer"]) == corpus.profile.n_layers
        assert 0 < s["attribute chance"] < 1
    # only media before the caption count
    assert set(cmu.attribute_attention(model, corpus, range(2), ("image", "caption", "audio"))) == {
        "image"
    }
    with pytest.raises(ValueError, match="no picture or sound comes before"):
        cmu.attribute_attention(model, corpus, range(2), ("caption", "image"))


def test_attribute_attention_chance_is_the_share_of_visible_keys(corpus, model):
    order = ("image", "caption")
    stats = cmu.attribute_attention(model, corpus, [0, 1], order)["image"]
    packed = corpus.pack([0, 1], [order, order])
    n_patches = corpus.patches.shape[1]
    per_scene = []
    for row in range(2):
        labels = corpus.token_labels(packed, row)
        where = cmu.predicting_positions(packed, row, 1)
        # a query at position q sees q + 1 keys, n_patches of them image patches
        shares = [n_patches / (q + 1) for q in where if labels[q + 1] in cmu.ATTRIBUTE_WORDS]
        per_scene.append(sum(shares) / len(shares))
    assert stats["attribute chance"] == pytest.approx(sum(per_scene) / 2)


def test_train_decoder_lowers_the_loss_and_tracks_the_gains():
    small = InterleavedCorpus(16, seed=0)
    track = cmu.gain_tracker(InterleavedCorpus(4, split="test", seed=1), range(4))
    _, history = cmu.train_decoder(
        small, seed=1, steps=30, batch_size=8, eval_fn=track, eval_every=15, progress=False
    )
    assert history.losses["loss"][-1] < 0.7 * history.losses["loss"][0]
    assert history.eval_steps == [0, 15, 30] and set(history.evals) == set(cmu.GAINS)
    fig = cmu.gain_figure([history, history])
    assert len(fig.axes) == len(cmu.GAINS)
    assert [line.get_label() for line in fig.axes[0].lines[:2]] == ["seed 0", "seed 1"]
    assert fig.axes[0].get_xlabel() == "optimizer step" and fig.axes[0].get_ylabel()
    plt.close(fig)
    history.evals.clear()
    with pytest.raises(ValueError, match="gain_tracker"):
        cmu.gain_figure([history])
