"""Figure text does not collide: titles stay clear of each other and of the pictures.

Checked on the rendered geometry (each text's and each axes' box on the canvas), for the
figures whose captions are long or many lines: lesson 00's batch of OmniWorld pictures,
a sample, the system diagram and the planner's summary.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from omni_edu.data import OmniWorld
from omni_edu.lessons.cost_and_serving.planner import Request, planner_figure
from omni_edu.viz.omniworld import show_batch, show_sample
from omni_edu.viz.system import system_diagram


def text_collisions(fig: Figure) -> list[str]:
    """Pairs of titles (the suptitle and every axes' title) that overlap each other, and
    titles that overlap an axes other than their own."""
    canvas = FigureCanvasAgg(fig)  # a figure detached from pyplot keeps only a bare canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    titles = [(f"title of axes {i}", ax.title, ax) for i, ax in enumerate(fig.axes)]
    if fig._suptitle is not None:
        titles.append(("suptitle", fig._suptitle, None))
    boxes = [
        (name, text.get_window_extent(renderer), owner)
        for name, text, owner in titles
        if text.get_text() and text.get_visible()
    ]
    found = []
    for k, (name, box, owner) in enumerate(boxes):
        for other_name, other, _ in boxes[k + 1 :]:
            if box.overlaps(other):
                found.append(f"{name} overlaps {other_name}")
        for i, ax in enumerate(fig.axes):
            if (
                ax is not owner
                and ax.get_visible()
                and box.overlaps(ax.get_window_extent(renderer))
            ):
                found.append(f"{name} overlaps axes {i}")
    return found


def test_the_check_sees_a_suptitle_over_panel_titles():
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))  # lesson 04's toy figure as it was
    for ax in axes:
        ax.set_title("flow head (16 Euler steps)")
    fig.suptitle("Two modes: regression predicts the mean, the flow head samples")
    assert "title of axes 1 overlaps suptitle" in text_collisions(fig)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")  # the cure
    for ax in axes:
        ax.set_title("flow head (16 Euler steps)")
    fig.suptitle("Two modes: regression predicts the mean, the flow head samples")
    assert text_collisions(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("n_objects", [1, (1, 2), 2])
def test_the_batch_captions_do_not_collide(n_objects):
    batch = OmniWorld("train", seed=0, n_objects=n_objects).sample(8, seed=0)
    assert text_collisions(show_batch(batch, n=8)) == []


def test_a_sample_the_system_diagram_and_the_planner_have_room_for_their_titles():
    sample = OmniWorld("train", seed=0).sample(1, seed=0)[0]
    for fig in (show_sample(sample), system_diagram("heads"), planner_figure(Request())):
        assert text_collisions(fig) == []
