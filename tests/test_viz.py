"""Tests of the shared plots and the live loss plot (attention: test_attention_viz.py)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer

from omni_edu.viz import live
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


def test_show_source_can_fold_an_answer_away(capsys, monkeypatch):
    """Outside a notebook a folded listing prints only its summary; inside, the code sits in
    a closed <details> element under the summary."""
    from omni_edu.train import EMA
    from omni_edu.viz import plots, source

    source.show_source(EMA.update, folded="the package's answer")
    assert capsys.readouterr().out.strip() == "[folded: the package's answer]"
    shown = []
    monkeypatch.setattr(plots, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", shown.append)
    source.show_source(EMA.update, folded="the package's <answer>")
    html = shown[0].data
    assert html.startswith("<details><summary>the package&#x27;s &lt;answer&gt;</summary>")
    assert "lerp_" in html and "open" not in html.split(">")[0]
