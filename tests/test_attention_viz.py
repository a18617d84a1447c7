"""Tests of the attention explorer (lesson 02): masses, the static figure, the widget."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from omni_edu.lessons.interleaved_autoregression import attention
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
