"""The cost planner of lesson 08: the token caps it reports, and its widget's behaviour."""

import matplotlib.pyplot as plt
import pytest

from omni_edu import cost
from omni_edu.lessons.cost_and_serving import planner


def test_image_cap_is_reported_exactly_when_it_binds():
    # Below about 994 px a square photo is priced by its size; from there on the 1280-token
    # max_pixels shrinks it, so the image slider stops changing the price.
    assert planner.token_caps(planner.Request(image_side=980)) == []
    for side in (994, 1024, 4096):
        (note,) = planner.token_caps(planner.Request(image_side=side))
        assert "image capped at 1,225 tokens" in note and "994px" in note
        assert planner.plan(planner.Request(image_side=side))["tokens"]["image"] == 1225
    assert planner.token_caps(planner.Request(image_side=0)) == []  # no image, no cap


def test_video_caps_name_the_limit_that_binds():
    (note,) = planner.token_caps(planner.Request(image_side=448, video_seconds=60, video_side=1080))
    assert "shared budget" in note and "120 frames" in note
    later = planner.Request(
        image_side=448, video_seconds=60, video_side=1080, video_rule="qwen2.5-vl"
    )
    (note,) = planner.token_caps(later)
    assert "per-frame cap" in note
    long = planner.token_caps(planner.Request(image_side=448, video_seconds=600))
    assert any("768 frames" in note for note in long)
    square = cost.qwen2vl_video_tokens(1080, 1080, 60, release="qwen2.5-vl")
    assert planner.plan(later)["tokens"]["video"] == square


def test_widget_panel_follows_its_controls_and_shows_caps():
    pytest.importorskip("ipywidgets")
    box = planner.planner_widget(planner.Request(image_side=1024))
    controls, panel = box.children
    assert panel.value.count("Cap reached") == 1 and "1,225 tokens" in panel.value
    output = controls.children[6]
    # the browser snaps a slider to min + k * step: the start value must lie on that grid
    assert output.description == "output tokens"
    assert (output.value - output.min) % output.step == 0
    image = controls.children[0]
    assert image.description == "image side (px)"
    image.value = 448  # below the cap: the note goes away and the price falls
    assert "Cap reached" not in panel.value
    assert "256" in panel.value  # 448x448 -> 256 tokens
    # every control spans the notebook, with a label column wide enough for its label
    for control in controls.children:
        assert control.layout.width == "100%"
        width = int(control.style.description_width.removesuffix("px"))
        assert width >= 7 * len(control.description)  # about 7 px per character
    controls.children[-2].value = "H100"  # device: the panel is rewritten for the new request
    assert controls.children[-2].description == "device"
    assert panel.value == planner.planner_html(planner.Request(image_side=448, device="H100"))
    assert panel.value != planner.planner_html(planner.Request(image_side=448))


def test_static_figure_states_the_caps():
    fig = planner.planner_figure(planner.Request(image_side=2048))
    assert any("Cap reached" in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = planner.planner_figure(planner.Request(image_side=448))
    assert not fig.texts
    plt.close(fig)


def test_in_a_notebook_the_planner_carries_its_static_figure(monkeypatch):
    """One output: the widget where widgets run, the starting request's figure elsewhere."""
    import base64

    pytest.importorskip("ipywidgets")
    from omni_edu.viz.fallback import WIDGET_VIEW, WithFallback

    monkeypatch.setattr(planner, "in_notebook", lambda: True)
    shown = planner.cost_planner(video_seconds=60)
    assert isinstance(shown, WithFallback)
    bundle = shown._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == shown.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["text/plain"].startswith("Cost planner") and "VBox" not in repr(shown)
    video = shown.widget.children[0].children[2]
    assert video.description == "video length (s)" and video.value == 60
