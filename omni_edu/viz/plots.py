"""Small plotting helpers every lesson reuses: image grids, loss curves, bars, tables.

The rule of the house: **a helper displays or returns, never both.** A helper that makes
its own figure returns it *detached* from pyplot (:func:`detached`), so Jupyter shows it
exactly once: as the cell's value when the call ends the cell, or where the caller passes
it to ``display(fig)``. (Left open in pyplot, the inline backend would show it a second
time when the cell ends; and a trailing ``;`` hides it in JupyterLab but not under
nbval, whose kernel runs cells with ``store_history=False``.) A helper given ``ax=`` draws
into the caller's figure and leaves it to the caller. :func:`show_table` displays and
returns ``None``.

No helper picks a matplotlib backend: that is the notebook's (or the test's) choice.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# One colour per modality, used by every plot that colours tokens (TEXT=0, IMAGE=1, AUDIO=2;
# PAD=-1 is grey). Colour-blind-safe tab10 entries.
MODALITY_COLORS: dict[int, str] = {0: "tab:blue", 1: "tab:orange", 2: "tab:green", -1: "0.7"}
MODALITY_NAMES: dict[int, str] = {0: "text", 1: "image", 2: "audio", -1: "pad"}


def in_notebook() -> bool:
    """True inside a Jupyter/Colab kernel (where widgets and rich HTML can render)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def detached(fig: Figure) -> Figure:
    """Close ``fig`` in pyplot and return it, still whole: what a figure helper returns.

    pyplot keeps every figure it made open until the cell ends, and the inline backend
    then shows each open one; a figure that is also the cell's value would be shown twice.
    Closed, it is shown only where it is returned to or displayed.
    """
    plt.close(fig)
    return fig


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, any dtype, with or without grad) or array-like as numpy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _image_batch(images: Any, name: str = "images") -> np.ndarray:
    """Check a batch of images and return it as ``(n, H, W, 3)`` floats in [0, 1]."""
    arr = to_numpy(images).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[1] > 3:
        raise ValueError(
            f"{name} should be a batch (n, 3, H, W); got one image {tuple(arr.shape)}. "
            f"Did you forget the batch dimension? Try {name}[None]."
        )
    if arr.ndim == 3:  # (n, H, W) greyscale
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} should be (n, 3, H, W) or (n, 1, H, W) with channels first; "
            f"got {tuple(arr.shape)}."
        )
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    # Model outputs stray slightly outside [0, 1]; clip so imshow shows them faithfully.
    return np.clip(arr.transpose(0, 2, 3, 1), 0.0, 1.0)


def show_images(
    images: Any,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str = "Images",
    size: float = 1.4,
) -> Figure:
    """A grid of images.

    Args:
        images: ``(n, 3, H, W)`` (or ``(n, 1, H, W)``, ``(n, H, W)``) floats in [0, 1],
            torch or numpy.
        titles: optional caption per image (``n`` strings).
        ncols: images per row.
        title: the figure title.
        size: inches per image.
    """
    arr = _image_batch(images)
    n = len(arr)
    if n == 0:
        raise ValueError("images is empty: nothing to show.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images; give one title per image.")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + 0.5), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return detached(fig)


def show_image_rows(
    rows: Mapping[str, Any],
    titles: Sequence[str] | None = None,
    title: str = "Input vs output",
    size: float = 1.4,
) -> Figure:
    """Side-by-side gallery: one labelled row per entry of ``rows``, columns aligned.

    ``show_image_rows({"input": x, "reconstruction": x_hat})`` puts each input above its
    output so differences are easy to spot. Every entry is ``(n, 3, H, W)`` with the same
    ``n``; ``titles`` (optional) captions the columns.
    """
    if not rows:
        raise ValueError("rows is empty: give at least one row, e.g. {'input': images}.")
    arrays = {label: _image_batch(imgs, name=f"rows[{label!r}]") for label, imgs in rows.items()}
    counts = {label: len(a) for label, a in arrays.items()}
    n = next(iter(counts.values()))
    if any(c != n for c in counts.values()):
        raise ValueError(f"every row needs the same number of images; got {counts}.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} columns; give one per column.")
    fig, axes = plt.subplots(
        len(arrays), n, figsize=(size * n + 1.0, size * len(arrays) + 0.5), squeeze=False
    )
    for r, (label, arr) in enumerate(arrays.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(arr[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:  # horizontal and wrapped: long labels must not run into the next row
                wrapped = "\n".join(textwrap.wrap(label, 16))
                ax.set_ylabel(wrapped, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title("\n".join(textwrap.wrap(str(titles[c]), 20)), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return detached(fig)


def _ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average that skips NaNs (steps where a loss was not logged)."""
    out = np.full_like(values, np.nan)
    avg = np.nan
    for i, v in enumerate(values):
        if not np.isnan(v):
            avg = v if np.isnan(avg) else alpha * avg + (1 - alpha) * v
        out[i] = avg
    return out


def plot_loss_curves(
    steps: Sequence[int],
    losses: Mapping[str, Sequence[float]],
    title: str = "Training loss",
    ylabel: str = "loss (nats)",
    xlabel: str = "optimizer step",
    log_y: bool = False,
    smooth: float = 0.0,
    ax: Axes | None = None,
) -> Figure:
    """One curve per key of ``losses`` (each aligned with ``steps``; NaN = not logged).

    ``smooth`` in [0, 1) draws an exponential moving average on top of the faint raw
    curve: per-step losses are noisy because each step sees a different batch. Without
    ``ax`` it returns a new figure, detached (see the module's rule); with ``ax`` it draws
    there and returns that axes' figure, left to the caller.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth should be in [0, 1); got {smooth}.")
    x = np.asarray(steps)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    else:
        fig = ax.figure
    for i, (key, values) in enumerate(losses.items()):
        y = np.asarray(values, dtype=np.float64)
        if len(y) != len(x):
            raise ValueError(f"losses[{key!r}] has {len(y)} values for {len(x)} steps.")
        color = f"C{i}"
        if smooth > 0:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(x, _ema(y, smooth), color=color, label=key)
        else:
            ax.plot(x, y, color=color, label=key)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if losses:
        ax.legend()
    return detached(fig) if own else fig


def bar_chart(
    values: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    errors: Mapping[str, float] | Mapping[str, Mapping[str, float]] | None = None,
    title: str = "Results",
    ylabel: str = "value",
    xlabel: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Bars with optional error bars (for example mean ± standard deviation over seeds).

    ``values`` is either ``{label: value}`` or, for grouped bars,
    ``{group: {series: value}}`` (for example ``{"tight task": {"early": 0.9, ...}}``).
    ``errors`` has the same shape as ``values``. Without ``ax`` it returns a new figure,
    detached (see the module's rule); with ``ax`` it draws there and returns that axes'
    figure, left to the caller.
    """
    if not values:
        raise ValueError("values is empty: nothing to plot.")
    grouped = isinstance(next(iter(values.values())), Mapping)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    else:
        fig = ax.figure
    groups = list(values)
    x = np.arange(len(groups))
    if grouped:
        series = list(dict.fromkeys(s for g in groups for s in values[g]))
        width = 0.8 / len(series)
        for i, s in enumerate(series):
            heights = [values[g].get(s, np.nan) for g in groups]
            errs = None if errors is None else [errors[g].get(s, 0.0) for g in groups]
            ax.bar(
                x + (i - (len(series) - 1) / 2) * width,
                heights,
                width,
                yerr=errs,
                capsize=3,
                label=s,
            )
        ax.legend()
    else:
        errs = None if errors is None else [errors.get(g, 0.0) for g in groups]
        ax.bar(
            x,
            [values[g] for g in groups],
            yerr=errs,
            capsize=3,
            color=[f"C{i}" for i in range(len(groups))],
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", alpha=0.3)
    return detached(fig) if own else fig


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("rows should be a non-empty list of dicts, one dict per table row.")
    return list(dict.fromkeys(k for r in rows for k in r))  # first-seen column order


def format_table(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4g") -> str:
    """``rows`` (a list of dicts) as an aligned plain-text table."""
    cols = _columns(rows)
    cells = [[_cell(r.get(c, ""), floatfmt) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def table_html(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4g", title: str = "") -> str:
    """``rows`` (a list of dicts) as an HTML table (values escaped)."""
    cols = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(r.get(c, ''), floatfmt))}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def show_table(rows: Sequence[Mapping[str, Any]], title: str = "", floatfmt: str = ".4g") -> None:
    """Show a results table: HTML in a notebook, aligned text elsewhere.

    ``rows`` is a list of dicts with the same keys, for example
    ``[{"fusion": "early", "accuracy": 0.91}, {"fusion": "late", "accuracy": 0.74}]``.
    """
    if in_notebook():
        from IPython.display import HTML, display

        display(HTML(table_html(rows, floatfmt, title)))
    else:
        print((title + "\n" if title else "") + format_table(rows, floatfmt))


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render ``fig`` to PNG bytes (works with every matplotlib backend)."""
    import io

    buf = io.BytesIO()
    # "tight", as the inline backend draws: text placed outside the axes (a note under the
    # figure) stays in the picture.
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()
