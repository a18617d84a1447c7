"""A widget that carries its own static picture, for wherever widgets cannot run.

The course's widgets (the attention explorer, the cost planner) need a live kernel. A
static page, a notebook viewer or a frontend without the widget manager shows only what
the output stored: for a bare widget, a ``VBox(children=(...`` repr. :class:`WithFallback`
makes the cell's one output carry both the widget view and a PNG of its first state (and
a sentence instead of the repr): JupyterLab and Colab render the widget, everything else
the picture. So a widget cell draws its static figure in a kernel too, and shows one
thing wherever it is read.
"""

from __future__ import annotations

import base64
from typing import Any

from matplotlib.figure import Figure

from omni_edu.viz.plots import figure_png

# The widget-view MIME type and the version of its message spec, the same in ipywidgets 7.7
# (Colab) and 8.x (JupyterLab 4).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_VIEW_VERSION = {"version_major": 2, "version_minor": 0}


class WithFallback:
    """``widget`` shown live where widgets run, ``figure`` (as a PNG) everywhere else.

    Return it as a cell's value (the helpers that build one end with it); ``widget`` stays
    reachable for code and tests. ``text`` replaces the widget's repr in plain-text views.
    """

    def __init__(self, widget: Any, figure: Figure, text: str) -> None:
        self.widget = widget
        self.figure = figure
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget's view, the picture and the sentence, in one output."""
        return {
            WIDGET_VIEW: {**_VIEW_VERSION, "model_id": self.widget.model_id},
            "image/png": base64.b64encode(figure_png(self.figure, dpi=100)).decode("ascii"),
            "text/plain": self.text,
        }

    def __repr__(self) -> str:
        return self.text
