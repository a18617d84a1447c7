"""Tests of the shared plots, the live loss plot and the attention explorer."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from omni_edu.modalities import PAD, Modality
from omni_edu.viz import attention, live
from omni_edu.viz.attention import (
    attention_figure,
    attention_widget,
    cross_modal_attention_mass,
    default_token_labels,
    explore_attention,
)
from omni_edu.viz.plots import (
    bar_chart,
    format_table,
    in_notebook,
    plot_loss_curves,
    show_image_rows,
    show_images,
    show_table,
    table_html,
)

TXT, IMG = Modality.TEXT, Modality.IMAGE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- images
def test_show_images_grid_titles_and_pixels():
    images = torch.rand(5, 3, 8, 8)
    fig = show_images(images, titles=[f"#{i}" for i in range(5)], ncols=3, title="Scenes")
    assert fig._suptitle.get_text() == "Scenes"
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last one blank
    shown = [ax for ax in axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["#0", "#1", "#2", "#3", "#4"]
    np.testing.assert_allclose(shown[2].images[0].get_array(), images[2].permute(1, 2, 0))


def test_show_images_explains_a_missing_batch_dimension():
    with pytest.raises(ValueError, match="batch dimension"):
        show_images(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="channels first"):
        show_images(np.zeros((2, 8, 8, 3)))


def test_show_image_rows_aligns_inputs_and_outputs():
    x = torch.rand(4, 3, 8, 8)
    fig = show_image_rows({"input": x, "output": 1 - x}, titles=list("abcd"))
    assert fig._suptitle.get_text() == "Input vs output"
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["input", "output"]
    np.testing.assert_allclose(fig.axes[4 + 1].images[0].get_array(), (1 - x[1]).permute(1, 2, 0))
    with pytest.raises(ValueError, match="same number of images"):
        show_image_rows({"input": x, "output": x[:3]})


# ------------------------------------------------------------------------ curves, bars
def test_loss_curves_labels_log_scale_and_smoothing():
    steps = [0, 1, 2, 3]
    fig = plot_loss_curves(steps, {"text": [4.0, 2.0, 2.0, 1.0]}, log_y=True, smooth=0.5)
    ax = fig.axes[0]
    assert ax.get_title() == "Training loss"
    assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "loss (nats)"
    assert ax.get_yscale() == "log"
    raw, smoothed = ax.get_lines()
    # EMA with alpha 0.5: 4, 0.5*4 + 0.5*2 = 3, 2.5, 1.75
    np.testing.assert_allclose(smoothed.get_ydata(), [4.0, 3.0, 2.5, 1.75])
    np.testing.assert_allclose(raw.get_ydata(), [4.0, 2.0, 2.0, 1.0])


def test_bar_chart_plain_and_grouped_with_error_bars():
    fig = bar_chart(
        {"early": 0.9, "late": 0.7},
        {"early": 0.02, "late": 0.05},
        title="Accuracy",
        ylabel="accuracy (fraction)",
    )
    ax = fig.axes[0]
    assert ax.get_title() == "Accuracy" and ax.get_ylabel() == "accuracy (fraction)"
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.9, 0.7])
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    assert bars.errorbar is not None  # error bars drawn
    grouped = bar_chart(
        {"tight": {"early": 0.9, "late": 0.6}, "loose": {"early": 0.8, "late": 0.8}}
    )
    ax = grouped.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tight", "loose"]
    assert sorted(p.get_height() for p in ax.patches) == pytest.approx([0.6, 0.8, 0.8, 0.9])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["early", "late"]


# ---------------------------------------------------------------------------- tables
ROWS = [{"fusion": "early", "accuracy": 0.91234}, {"fusion": "late <b>", "accuracy": 0.5}]


def test_table_as_text_and_html(capsys):
    text = format_table(ROWS)
    lines = text.splitlines()
    assert lines[0].split() == ["fusion", "accuracy"]
    assert lines[2].split() == ["early", "0.9123"]
    assert len({len(line.rstrip()) for line in lines[:2]}) == 1  # header and rule aligned
    html = table_html(ROWS, title="Fusion")
    assert "<caption>Fusion</caption>" in html and "late &lt;b&gt;" in html
    assert not in_notebook()
    show_table(ROWS, title="Fusion")
    assert capsys.readouterr().out == "Fusion\n" + text + "\n"
    with pytest.raises(ValueError, match="list of dicts"):
        format_table([])


# -------------------------------------------------------------------------- live plot
def test_live_plot_is_a_no_op_outside_notebooks():
    plot = live.LivePlot()
    assert not plot.enabled
    plot.update([0, 1], {"loss": [1.0, 0.5]}, force=True)  # nothing to draw on, no error


def test_live_plot_updates_one_display_in_place(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(live, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    plot = live.LivePlot(min_interval_s=3600.0)
    plot.update([0], {"loss": [1.0]})
    plot.update([0, 1], {"loss": [1.0, 0.5]})  # too soon: skipped
    plot.update([0, 1, 2], {"loss": [1.0, 0.5, 0.2]}, force=True)
    assert [kind for kind, _ in shown] == ["display", "update"]
    assert shown[0][1].data[:4] == b"\x89PNG"
    assert plt.get_fignums() == []  # the live figure never enters pyplot


# -------------------------------------------------------------------------- attention
def hand_attention() -> tuple[np.ndarray, list[int]]:
    """One layer, two heads, tokens [text, image, image, text]; causal rows summing to 1."""
    head0 = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.3, 0.5, 0], [0.1, 0.2, 0.3, 0.4]]
    head1 = [[1, 0, 0, 0], [0.3, 0.7, 0, 0], [0, 0.5, 0.5, 0], [0.4, 0.1, 0.1, 0.4]]
    return np.array([[head0, head1]]), [TXT, IMG, IMG, TXT]


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


def test_attention_widget_builds_headless_and_redraws(monkeypatch):
    drawn = []
    monkeypatch.setattr(attention, "figure_png", lambda fig: drawn.append(fig) or b"")
    attn, mods = hand_attention()
    box = attention_widget(np.concatenate([attn, attn]), mods)  # two layers
    controls, query, out = box.children
    layer, head = controls.children
    assert isinstance(out, ipywidgets.Output)
    assert (query.min, query.max, query.value) == (0, 3, 3)
    assert [label for label, _ in layer.options] == ["mean of layers", "layer 0", "layer 1"]
    assert [value for _, value in head.options] == [-1, 0, 1]
    query.value = 1  # every change redraws; errors would surface here
    head.value = 1
    titles = [fig.axes[0].get_title() for fig in drawn]
    assert titles == [
        "Query 3 'T3' (text), mean of layers, mean of heads",
        "Query 1 'I1' (image), mean of layers, mean of heads",
        "Query 1 'I1' (image), mean of layers, head 1",
    ]
    assert plt.get_fignums() == []  # each drawn figure is closed again
