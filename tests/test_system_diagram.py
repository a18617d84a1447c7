"""The system diagram: one helper, the lesson's part in colour, the rest plain."""

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.patches import FancyBboxPatch

from omni_edu.viz.system import HIGHLIGHT, PARTS, system_diagram


def coloured_texts(fig):
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    on = [b for b in boxes if matplotlib.colors.to_hex(b.get_facecolor()) == HIGHLIGHT]
    texts = {
        (round(t.get_position()[0], 1), round(t.get_position()[1], 1)): t.get_text()
        for t in ax.texts
    }
    return [
        texts.get(
            (round(b.get_x() + b.get_width() / 2, 1), round(b.get_y() + b.get_height() / 2, 1)), ""
        )
        for b in on
    ]


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_lesson_highlights_its_own_part(part):
    fig = system_diagram(part)
    lesson, _ = PARTS[part]
    assert fig.axes[0].get_title().startswith(f"Lesson {lesson} builds")
    lit = coloured_texts(fig)
    if part == "any_to_any":
        assert lit == []  # the frame around everything is what lights up
    else:
        assert lit and all(f"({lesson})" in text for text in lit), lit


def test_lesson_00_shows_everything():
    fig = system_diagram()
    assert "by lesson 06" in fig.axes[0].get_title()
    assert len(coloured_texts(fig)) == 7  # tokenizers x2, projector, decoder, heads x2, fusion


def test_unknown_part_is_explained():
    with pytest.raises(ValueError, match="highlight should be one of"):
        system_diagram("attention")
