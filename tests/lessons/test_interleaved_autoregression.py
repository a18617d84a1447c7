"""Lesson 02: the attention explorer, 1-D against multimodal RoPE, whether a caption uses
the picture and the sound before it, and whether a sound can read (and reads) the picture."""

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from omni_edu.data.documents import InterleavedCorpus
from omni_edu.lessons.interleaved_autoregression import attention, rope_position
from omni_edu.lessons.interleaved_autoregression import audio_reads_image as ari
from omni_edu.lessons.interleaved_autoregression import cross_modal_use as cmu
from omni_edu.lessons.interleaved_autoregression.attention import (
    attention_figure,
    attention_mass,
    attention_widget,
    cross_modal_attention_mass,
    default_token_labels,
    explore_attention,
    query_options,
)
from omni_edu.modalities import PAD, Modality
from omni_edu.model.omni_lm import OmniLM
from omni_edu.profiles import get_profile

# --- the attention explorer ----------------------------------------------------------------------


TXT, IMG = Modality.TEXT, Modality.IMAGE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def hand_attention() -> tuple[np.ndarray, list[int]]:
    """One layer, two heads, tokens [text, image, image, text]; causal rows summing to 1."""
    head0 = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.3, 0.5, 0], [0.1, 0.2, 0.3, 0.4]]
    head1 = [[1, 0, 0, 0], [0.3, 0.7, 0, 0], [0, 0.5, 0.5, 0], [0.4, 0.1, 0.1, 0.4]]
    return np.array([[head0, head1]]), [TXT, IMG, IMG, TXT]


# ----------------------------------------------------------------------------- masses
def test_cross_modal_attention_mass_on_a_hand_case():
    attn, mods = hand_attention()
    mass = cross_modal_attention_mass(attn, mods)
    # text queries (0, 3): image mass 0 and 0.5 in head 0, 0 and 0.2 in head 1
    assert mass["text->image"] == pytest.approx((0 + 0.5 + 0 + 0.2) / 4)
    assert mass["text->text"] == pytest.approx(1 - 0.175)
    # image queries (1, 2): text mass 0.5, 0.2 (head 0) and 0.3, 0 (head 1)
    assert mass["image->text"] == pytest.approx((0.5 + 0.2 + 0.3 + 0) / 4)
    assert mass["image->image"] == pytest.approx(0.75)
    assert set(mass) == {"text->text", "text->image", "image->text", "image->image"}
    assert cross_modal_attention_mass(attn, mods, head=0)["text->image"] == pytest.approx(0.25)
    assert cross_modal_attention_mass(torch.tensor(attn), torch.tensor(mods), layer=0) == mass
    per_layer = [torch.tensor(attn[0])[None]]  # what a decoder returns for a batch of one
    assert cross_modal_attention_mass(per_layer, mods) == mass


def test_uniform_attention_mass_is_the_chance_level():
    attn, mods = hand_attention()
    chance = cross_modal_attention_mass(attn, mods, uniform=True)
    # query 3 sees 4 keys, 2 of them image; query 0 sees only itself
    assert chance["text->image"] == pytest.approx((0 + 0.5 + 0 + 0.5) / 4)
    # query 1 sees 2 keys (1 text); query 2 sees 3 in head 0 (1 text), 2 in head 1 (0 text)
    assert chance["image->text"] == pytest.approx((0.5 + 1 / 3 + 0.5 + 0) / 4)


def test_attention_mass_per_chosen_query():
    attn, mods = hand_attention()
    mass = attention_mass(attn, mods, [3, 2])
    # query 3: image weight 0.5 (head 0) and 0.2 (head 1); query 2: 0.8 and 1.0
    np.testing.assert_allclose(mass["image"], [0.35, 0.9])
    np.testing.assert_allclose(mass["text"] + mass["image"], [1.0, 1.0])
    # a bool mask picks the same queries, in position order
    by_mask = attention_mass(attn, mods, np.array([False, False, True, True]))
    np.testing.assert_allclose(by_mask["image"], [0.9, 0.35])
    chance = attention_mass(attn, mods, [3], uniform=True)
    assert chance["image"] == pytest.approx([0.5])  # 2 image keys among 4 visible
    assert attention_mass(attn, mods, [3], head=1)["image"] == pytest.approx([0.2])
    with pytest.raises(ValueError, match=r"positions in \[0, 4\)"):
        attention_mass(attn, mods, [4])
    with pytest.raises(ValueError, match=r"query mask should be \(4,\)"):
        attention_mass(attn, mods, np.array([True, False]))


def test_padding_is_left_out_of_the_mass():
    attn = np.array([[1.0, 0, 0], [0.25, 0.75, 0], [0, 0, 1.0]])  # (T, T) is accepted
    mass = cross_modal_attention_mass(attn, [TXT, Modality.AUDIO, PAD])
    assert mass == pytest.approx(
        {"text->text": 1.0, "text->audio": 0.0, "audio->text": 0.25, "audio->audio": 0.75}
    )


def test_attention_inputs_are_checked():
    attn, mods = hand_attention()
    with pytest.raises(ValueError, match="pick one sequence"):
        cross_modal_attention_mass(attn[None], mods)
    with pytest.raises(ValueError, match=r"modality_ids should be \(4,\)"):
        cross_modal_attention_mass(attn, mods[:3])
    with pytest.raises(ValueError, match="head should be in"):
        cross_modal_attention_mass(attn, mods, head=2)


# ----------------------------------------------------------------------------- figure
def test_attention_figure_bars_titles_and_legend():
    attn, mods = hand_attention()
    fig = attention_figure(attn, mods, labels=["a", "cat", "pic", "is"], query=2, head=0)
    bars_ax, map_ax = fig.axes[0], fig.axes[1]
    assert "Query 2 'pic' (image)" in bars_ax.get_title() and "head 0" in bars_ax.get_title()
    assert bars_ax.get_xlabel() and bars_ax.get_ylabel()
    assert map_ax.get_title() and map_ax.get_xlabel() == "key position"
    heights = [p.get_height() for p in bars_ax.patches[:3]]  # keys 0..2 (the query's past)
    assert heights == pytest.approx([0.2, 0.3, 0.5])
    colors = [p.get_facecolor() for p in bars_ax.patches[:3]]
    assert colors[1] == colors[2] != colors[0]  # coloured by modality
    legend = [t.get_text() for t in bars_ax.get_legend().get_texts()]
    assert legend == ["text: 0.20", "image: 0.80"]
    assert [t.get_text() for t in bars_ax.get_xticklabels()] == ["a", "cat", "pic"]


def test_default_labels_and_static_fallback():
    attn, mods = hand_attention()
    assert default_token_labels(mods) == ["T0", "I1", "I2", "T3"]
    fig = explore_attention(attn, mods)  # not in a notebook: the static figure
    assert isinstance(fig, Figure) and "mean of heads" in fig.axes[0].get_title()
    fig = explore_attention(attn, mods, ["a", "cat", "pic", "is"], query=1)
    assert fig.axes[0].get_title().startswith("Query 1 'cat'")


# ----------------------------------------------------------------------------- widget
def test_query_options_name_each_position_by_its_token():
    assert query_options(["<bos>", "red", "red"]) == [("0: <bos>", 0), ("1: red", 1), ("2: red", 2)]


def test_attention_widget_picks_the_query_by_token_and_redraws(monkeypatch):
    drawn = []
    monkeypatch.setattr(attention, "figure_png", lambda fig: drawn.append(fig) or b"png")
    attn, mods = hand_attention()
    labels = ["a", "cat", "pic", "is"]
    box = attention_widget(np.concatenate([attn, attn]), mods, labels, query=2)  # two layers
    controls, image = box.children
    query, layer, head = controls.children
    assert isinstance(query, ipywidgets.Dropdown) and isinstance(image, ipywidgets.Image)
    assert image.value == b"png"  # drawn at once, into the widget's own state
    assert query.label == "2: pic" and query.value == 2
    assert [label for label, _ in query.options] == ["0: a", "1: cat", "2: pic", "3: is"]
    assert [label for label, _ in layer.options] == ["mean of layers", "layer 0", "layer 1"]
    assert [value for _, value in head.options] == [-1, 0, 1]
    query.label = "1: cat"  # the learner picks a token; every change redraws
    head.value = 1
    layer.value = 0
    titles = [fig.axes[0].get_title() for fig in drawn]
    assert titles == [
        "Query 2 'pic' (image), mean of layers, mean of heads",
        "Query 1 'cat' (image), mean of layers, mean of heads",
        "Query 1 'cat' (image), mean of layers, head 1",
        "Query 1 'cat' (image), layer 0, head 1",
    ]
    # the redrawn bars are those of the chosen query, layer and head
    assert [p.get_height() for p in drawn[-1].axes[0].patches[:2]] == pytest.approx([0.3, 0.7])
    assert plt.get_fignums() == []  # each drawn figure is closed again


def test_attention_widget_defaults_to_the_last_token_and_checks_its_inputs():
    attn, mods = hand_attention()
    box = attention_widget(attn, mods)
    assert box.children[0].children[0].label == "3: T3"
    with pytest.raises(ValueError, match="query should be a position"):
        attention_widget(attn, mods, query=4)
    with pytest.raises(ValueError, match="3 labels for 4 tokens"):
        attention_widget(attn, mods, ["a", "b", "c"])


# --- 1-D RoPE against M-RoPE ---------------------------------------------------------------------


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


# --- does the caption use the picture and the sound? ---------------------------------------------


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


@pytest.mark.slow
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


# --- can a sound read the picture directly, and does the trained decoder? ------------------------


def test_hiding_keys_from_audio_rows_leaves_every_other_row(corpus):
    packed = ari.documents(corpus, [0, 1], ari.IMAGE_THEN_AUDIO)
    hidden = ari.hide_from_audio(packed, (Modality.TEXT, Modality.IMAGE))
    audio = packed.modality == Modality.AUDIO
    assert torch.equal(hidden[~audio], packed.attn_mask[~audio])  # only audio rows change
    for row in range(2):
        rows = audio[row].nonzero().flatten()
        seen = packed.modality[row][hidden[row, rows].any(dim=0)]
        assert set(seen.tolist()) == {int(Modality.AUDIO)}  # only earlier sounds remain
        assert hidden[row, rows, rows].all()  # every audio query keeps its own key


def test_the_gradient_reaches_the_sound_only_through_the_paths_the_mask_leaves(corpus, model):
    packed = ari.documents(corpus, [2], ari.IMAGE_THEN_AUDIO)
    reach = ari.capability(model, packed)
    assert set(reach) == set(ari.HIDDEN)
    assert reach["audio sees neither (control)"] == 0.0  # no path left: exactly zero
    assert reach["audio sees no text"] > 0  # the direct path alone
    assert reach["audio sees no image"] > 0  # through the markers <eoi> <boa> only
    assert ari.capability_holds(reach)
    assert not ari.capability_holds({**reach, "audio sees no text": 0.0})
    assert not ari.capability_holds({**reach, "audio sees neither (control)": 1e-9})
    # a sound *before* the picture can never read it: the mask is causal
    later = ari.documents(corpus, [2], ari.AUDIO_FIRST)
    assert ari.gradient_reach(model, later) == 0.0
    with pytest.raises(ValueError, match="a picture and a sound"):
        ari.gradient_reach(model, corpus.pack([2], [("caption", "image")]))


def test_audio_losses_are_each_documents_own_loss(corpus, model):
    order = ari.IMAGE_THEN_AUDIO
    packed = ari.documents(corpus, [0, 3, 5], order)
    batched = ari.audio_losses(model, packed, order)
    for row in range(3):
        alone = ari.audio_losses(model, packed.select([row]), order)[0]
        assert batched[row].item() == pytest.approx(alone.item(), rel=1e-4, abs=1e-7)
    # the first token's loss: the head's prediction at <boa> against the first audio token
    with torch.no_grad():
        hidden = model(packed)
    span = next(s for s in packed.spans[1] if s.modality == Modality.AUDIO)
    prediction = model.head(Modality.AUDIO).proj(hidden[1, span.start - 1])
    expected = F.mse_loss(prediction, corpus.audio[3, 0])
    assert batched[1].item() == pytest.approx(expected.item(), rel=1e-5)
    # the whole sound is averaged over its tokens
    whole = ari.audio_losses(model, packed, order, first=False)
    predictions = model.head(Modality.AUDIO).proj(hidden[1, span.start - 1 : span.stop - 1])
    assert whole[1].item() == pytest.approx(
        F.mse_loss(predictions, corpus.audio[3]).item(), rel=1e-5
    )


def test_a_swapped_picture_is_the_only_change(corpus):
    donors = ari.donors_for(corpus, [0, 1, 2])
    assert len(donors) == 3 and all(d != i for i, d in zip([0, 1, 2], donors, strict=True))
    own = ari.documents(corpus, [0, 1, 2], ari.IMAGE_THEN_AUDIO)
    swapped = ari.documents(corpus, [0, 1, 2], ari.IMAGE_THEN_AUDIO, donors)
    image = own.modality == Modality.IMAGE
    assert torch.equal(own.modality, swapped.modality)
    assert torch.equal(own.audio, swapped.audio) and torch.equal(own.text_ids, swapped.text_ids)
    assert torch.equal(swapped.image[image].view(3, -1, corpus.image_dim), corpus.patches[donors])
    with pytest.raises(ValueError, match="one donor per scene"):
        ari.documents(corpus, [0, 1], ari.IMAGE_THEN_AUDIO, [2])


def test_the_mean_predictor_is_scored_like_the_audio_head(corpus):
    train = InterleavedCorpus(6, split="train", seed=0)
    first = ari.mean_predictor_losses(train, corpus, [0, 1], first=True)
    mean = train.audio[:, 0].mean(0)
    assert first[1].item() == pytest.approx(F.mse_loss(mean, corpus.audio[1, 0]).item())
    whole = ari.mean_predictor_losses(train, corpus, [0, 1])
    assert whole[0].item() == pytest.approx(F.mse_loss(train.audio.mean(0), corpus.audio[0]).item())


def test_audio_use_pairs_the_statistics_per_scene(corpus, model):
    train = InterleavedCorpus(6, split="train", seed=0)
    use = ari.audio_use(model, train, corpus, range(4))
    swap = use["after another image"] - use["after its image"]
    assert use["image swap"]["mean"] == pytest.approx(swap.mean().item(), abs=1e-7)
    gain = use["first"] - use["after its image"]
    assert use["first-frame gain"]["mean"] == pytest.approx(gain.mean().item(), abs=1e-7)
    for key in ("image swap", "first-frame gain", "sound learned"):
        assert use[key]["low"] <= use[key]["mean"] <= use[key]["high"] and use[key]["n"] == 4
    assert ari.detectable([use]) == pytest.approx(
        (use["image swap"]["high"] - use["image swap"]["low"]) / 2
    )
    # the rule: both intervals above zero; degenerate when no run learned the sound
    up = {"low": 0.1, "mean": 0.2, "high": 0.3, "n": 4}
    down = {"low": -0.1, "mean": 0.0, "high": 0.1, "n": 4}
    assert ari.uses_image({"first-frame gain": up, "image swap": up})
    assert not ari.uses_image({"first-frame gain": down, "image swap": up})
    assert not ari.uses_image({"first-frame gain": up, "image swap": down})
    assert ari.sound_not_learned([{"sound learned": down}, {"sound learned": down}])
    assert not ari.sound_not_learned([{"sound learned": down}, {"sound learned": up}])


def test_the_lessons_corpus_puts_the_picture_before_the_sound_in_half_its_documents():
    orders = ari.IMAGE_TO_AUDIO_ORDERS
    direct = [o for o in orders if "image" in o and o.index("audio") == o.index("image") + 1]
    assert len(direct) / len(orders) == 0.5
    # every layout the claim check reads is one the decoder trains on
    assert ari.IMAGE_THEN_AUDIO in orders and ari.AUDIO_FIRST in orders
