"""A live loss plot for notebooks: one figure, redrawn in place while training runs.

Outside a notebook kernel every method is a no-op, so a script or a test can leave
``live_plot=True`` on at no cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from omni_edu.viz.plots import figure_png, in_notebook, plot_loss_curves


class LivePlot:
    """Redraw a loss-curve figure in one notebook output, at most every ``min_interval_s``.

    The figure is rendered to PNG and shown through an IPython display handle, so each
    update replaces the previous picture instead of appending a new one. It is made with
    :class:`matplotlib.figure.Figure` rather than pyplot, so it never leaks into pyplot's
    list of open figures and works with any backend.
    """

    def __init__(self, title: str = "Training loss (live)", min_interval_s: float = 0.5) -> None:
        self.title = title
        self.min_interval_s = min_interval_s
        self.enabled = in_notebook()
        self._handle = None
        self._last_draw = -float("inf")
        self._fig = Figure(figsize=(6.4, 3.6)) if self.enabled else None

    def update(
        self,
        steps: Sequence[int],
        losses: Mapping[str, Sequence[float]],
        force: bool = False,
    ) -> None:
        """Redraw with the curves so far; skipped if the last draw was too recent."""
        if not self.enabled or not steps:
            return
        now = time.perf_counter()
        # Throttle: drawing a PNG costs ~50 ms, so redrawing every step would slow training.
        if not force and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        from IPython.display import Image, display

        self._fig.clf()
        plot_loss_curves(steps, losses, title=self.title, smooth=0.9, ax=self._fig.subplots())
        self._fig.tight_layout()
        image = Image(data=figure_png(self._fig), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
