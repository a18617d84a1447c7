"""The attention explorer of lesson 02: where does a token look, and in which modality?

All functions take the attention maps of *one* sequence as ``(layers, heads, T, T)``
(query rows, key columns, each row summing to 1), as numpy or torch, or as a list of
per-layer ``(heads, T, T)`` or ``(1, heads, T, T)`` maps, plus the modality id of every
token ``(T,)`` (``TEXT=0, IMAGE=1, AUDIO=2``, ``PAD=-1``).

* :func:`attention_mass` - per chosen query, how much attention it pays to the keys of
  each modality (the chance level too);
* :func:`cross_modal_attention_mass` - a number: how much attention the queries of one
  modality pay to the keys of another;
* :func:`attention_figure` - a static matplotlib figure for one query;
* :func:`explore_attention` - drop-downs over queries (picked by their token), layers and
  heads in a notebook (carrying the static figure for viewers without widgets), the
  static figure anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from omni_edu.viz.fallback import WithFallback
from omni_edu.viz.plots import (
    MODALITY_COLORS,
    MODALITY_NAMES,
    detached,
    figure_png,
    in_notebook,
    to_numpy,
)

PAD = -1


def _attention_array(attn: Any) -> np.ndarray:
    """Accept ``(layers, heads, T, T)``, ``(heads, T, T)``, ``(T, T)`` or a list of layers."""
    if isinstance(attn, (list, tuple)):  # one (heads, T, T) or (1, heads, T, T) map per layer
        layers = [to_numpy(layer) for layer in attn]
        if all(layer.ndim == 4 and layer.shape[0] == 1 for layer in layers):
            layers = [layer[0] for layer in layers]
        attn = np.stack(layers)
    a = to_numpy(attn).astype(np.float64)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        hint = (
            " It looks batched: pick one sequence first, e.g. [a[0] for a in attentions]"
            " for a list of per-layer (batch, heads, T, T) maps."
            if a.ndim == 5
            else ""
        )
        raise ValueError(
            f"attn should be (layers, heads, T, T) for one sequence; got {tuple(a.shape)}.{hint}"
        )
    return a


def _modality_array(modality_ids: Any, n_tokens: int) -> np.ndarray:
    m = to_numpy(modality_ids).astype(np.int64)
    if m.ndim == 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape != (n_tokens,):
        raise ValueError(
            f"modality_ids should be ({n_tokens},), one id per token of the attention map; "
            f"got {tuple(m.shape)}. For a batch, pick the same sequence as for attn."
        )
    unknown = sorted(set(m.tolist()) - set(MODALITY_NAMES))
    if unknown:
        raise ValueError(f"modality_ids holds unknown ids {unknown}; expected 0, 1, 2 or -1.")
    return m


def _check_index(index: int | None, size: int, name: str) -> None:
    if index is not None and not -size <= index < size:
        raise ValueError(f"{name} should be in [0, {size}) or None (mean); got {index}.")


def _select(a: np.ndarray, layer: int | None, head: int | None) -> np.ndarray:
    """Pick (or average over) layers and heads: ``(layers, heads, T, T)`` -> ``(T, T)``."""
    _check_index(layer, a.shape[0], "layer")
    _check_index(head, a.shape[1], "head")
    a = a.mean(axis=0) if layer is None else a[layer]
    return a.mean(axis=0) if head is None else a[head]


def default_token_labels(modality_ids: Any) -> list[str]:
    """``["T0", "T1", "I2", ...]``: the modality's initial and the position."""
    m = to_numpy(modality_ids).astype(np.int64).reshape(-1)
    return [f"{MODALITY_NAMES[int(k)][0].upper()}{i}" for i, k in enumerate(m)]


def _layers_heads(a: np.ndarray, layer: int | None, head: int | None) -> np.ndarray:
    """Keep one layer and/or head (as length-1 axes) or all of them."""
    _check_index(layer, a.shape[0], "layer")
    _check_index(head, a.shape[1], "head")
    if layer is not None:
        a = a[[layer]]
    if head is not None:
        a = a[:, [head]]
    return a


def _uniform(a: np.ndarray) -> np.ndarray:
    """Each row's weight spread evenly over the keys it *may* attend to (weight > 0)."""
    visible = (a > 0).astype(np.float64)
    return visible / np.maximum(visible.sum(axis=-1, keepdims=True), 1.0)


def attention_mass(
    attn: Any,
    modality_ids: Any,
    queries: Any,
    layer: int | None = None,
    head: int | None = None,
    uniform: bool = False,
) -> dict[str, np.ndarray]:
    """How much weight each chosen query puts on the keys of each modality.

    ``result["image"][j]`` is the total weight that query ``queries[j]`` gives to image
    keys, averaged over heads and layers (or only ``layer``/``head`` when given). For one
    query the values sum to 1 over the modalities present (padding keys aside).

    With ``uniform=True`` each query spreads its weight evenly over the keys it *may*
    attend to (weight > 0): the chance level, the share of visible keys of each modality.

    Args:
        attn: ``(layers, heads, T, T)`` attention weights of one sequence.
        modality_ids: ``(T,)`` modality id per token.
        queries: query positions ``(n,)`` (ints), or a ``(T,)`` bool mask.

    Returns:
        ``{modality name: (n,) masses}`` for every modality present in ``modality_ids``.
    """
    a = _layers_heads(_attention_array(attn), layer, head)
    n_tokens = a.shape[-1]
    m = _modality_array(modality_ids, n_tokens)
    q = to_numpy(queries).reshape(-1)
    if q.dtype == np.bool_:
        if q.shape != (n_tokens,):
            raise ValueError(f"a query mask should be ({n_tokens},); got {tuple(q.shape)}.")
        q = np.flatnonzero(q)
    q = q.astype(np.int64)
    if q.size and not (0 <= q.min() and q.max() < n_tokens):
        raise ValueError(f"queries should be positions in [0, {n_tokens}); got {q.tolist()}.")
    rows = a[:, :, q, :]  # (layers, heads, n, T)
    if uniform:
        rows = _uniform(rows)
    present = [k for k in sorted(set(m.tolist())) if k != PAD]
    return {MODALITY_NAMES[k]: rows[..., m == k].sum(axis=-1).mean(axis=(0, 1)) for k in present}


def cross_modal_attention_mass(
    attn: Any,
    modality_ids: Any,
    layer: int | None = None,
    head: int | None = None,
    uniform: bool = False,
) -> dict[str, float]:
    """Average attention mass that queries of one modality put on keys of another.

    ``result["text->image"]`` is: for every text query, the total weight it gives to
    image keys, averaged over text queries, heads and layers (or only ``layer``/``head``
    when given). Values for one query modality sum to 1 over key modalities (padding
    aside). Only modalities present in ``modality_ids`` appear; padding is skipped.

    With ``uniform=True`` each query spreads its weight evenly over the keys it *may*
    attend to (weight > 0): the chance level to compare against. A text token that can
    only see 3 image tokens among 30 earlier tokens pays them 0.1 at chance.

    Args:
        attn: ``(layers, heads, T, T)`` attention weights of one sequence.
        modality_ids: ``(T,)`` modality id per token.
    """
    a = _attention_array(attn)
    m = _modality_array(modality_ids, a.shape[-1])
    result = {}
    for q in [k for k in sorted(set(m.tolist())) if k != PAD]:
        mass = attention_mass(a, m, m == q, layer, head, uniform)
        for key, values in mass.items():
            result[f"{MODALITY_NAMES[q]}->{key}"] = float(values.mean())
    return result


def _checked(attn, modality_ids, labels, query: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attention ``(layers, heads, T, T)``, the modality ids ``(T,)`` and ``T`` labels
    (default ones when ``labels`` is None), or a clear error for labels or a query that do
    not fit the ``T`` tokens."""
    a = _attention_array(attn)
    n_tokens = a.shape[-1]
    m = _modality_array(modality_ids, n_tokens)
    labels = list(labels) if labels is not None else default_token_labels(m)
    if len(labels) != n_tokens:
        raise ValueError(f"got {len(labels)} labels for {n_tokens} tokens; give one per token.")
    if not -n_tokens <= query < n_tokens:
        raise ValueError(f"query should be a position in [0, {n_tokens}); got {query}.")
    return a, m, labels


def attention_figure(
    attn: Any,
    modality_ids: Any,
    labels: Sequence[str] | None = None,
    query: int = -1,
    layer: int | None = None,
    head: int | None = None,
    show_map: bool = True,
) -> Figure:
    """One query's attention over the keys, as bars coloured by the keys' modality.

    Args:
        attn: ``(layers, heads, T, T)`` attention weights of one sequence.
        modality_ids: ``(T,)`` modality id per token.
        labels: ``T`` token labels (default ``"T0", "I1", ...``).
        query: query position (negative counts from the end).
        layer, head: which layer/head; ``None`` averages over them.
        show_map: also draw the whole ``(T, T)`` map with the query's row outlined.

    Returns the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    a, m, labels = _checked(attn, modality_ids, labels, query)
    n_tokens = a.shape[-1]
    query %= n_tokens
    weights = _select(a, layer, head)  # (T, T)
    row = weights[query]
    # Show keys up to the query, or further if the mask lets it see later tokens (an
    # image span attends both ways).
    last = max(query, int(np.flatnonzero(row > 0).max(initial=0)))
    keys = np.arange(last + 1)

    bar_width = min(14.0, 3.0 + 0.16 * len(keys))  # inches: wider for longer sequences
    widths = [bar_width, 4.5] if show_map else [bar_width]
    fig, axes = plt.subplots(
        1,
        len(widths),
        figsize=(sum(widths), 4.0),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    ax = axes[0, 0]
    ax.bar(keys, row[keys], color=[MODALITY_COLORS[int(k)] for k in m[keys]])
    ax.bar([query], [row[query]], fill=False, edgecolor="black", linewidth=1.5)
    handles = [
        Patch(color=MODALITY_COLORS[k], label=f"{MODALITY_NAMES[k]}: {row[m == k].sum():.2f}")
        for k in sorted(set(m[keys].tolist()))
    ]
    ax.legend(handles=handles, title="mass on keys", fontsize=8, title_fontsize=8)
    ax.set_xticks(keys)
    ax.set_xticklabels([labels[k] for k in keys], rotation=90, fontsize=7)
    if len(keys) > 48:  # too many to read: keep every few labels
        for i, tick in enumerate(ax.get_xticklabels()):
            tick.set_visible(i % (len(keys) // 24) == 0)
    ax.set_xlabel("key token (position order)")
    ax.set_ylabel("attention weight (row sums to 1)")
    where = f"layer {layer}" if layer is not None else "mean of layers"
    which = f"head {head}" if head is not None else "mean of heads"
    ax.set_title(
        f"Query {query} {labels[query]!r} ({MODALITY_NAMES[int(m[query])]}), {where}, {which}"
    )
    ax.grid(axis="y", alpha=0.3)

    if show_map:
        ax = axes[0, 1]
        image = ax.imshow(weights, cmap="viridis", vmin=0.0, interpolation="nearest")
        ax.add_patch(Rectangle((-0.5, query - 0.5), n_tokens, 1, fill=False, edgecolor="red"))
        fig.colorbar(image, ax=ax, label="weight")
        ax.set_title("all queries (query row in red)")
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.tight_layout()
    return detached(fig)


def query_options(labels: Sequence[str]) -> list[tuple[str, int]]:
    """The query menu: one ``("12: red", 12)`` entry per position, in sequence order.

    The learner picks a query by its token; the position in front keeps equal words
    apart (the same word can sit in two captions of one document).
    """
    return [(f"{i}: {label}", i) for i, label in enumerate(labels)]


def attention_widget(
    attn: Any,
    modality_ids: Any,
    labels: Sequence[str] | None = None,
    query: int = -1,
) -> Any:
    """The interactive explorer as an ipywidgets box (built even without a display).

    The query is chosen from a drop-down of ``"position: token"`` entries (see
    :func:`query_options`), the layer and head from two more; ``query`` is the one shown
    first (negative counts from the end). Uses only ``Dropdown``, ``HBox``/``VBox``,
    ``Layout``, ``Image`` and ``observe``, which behave the same on ipywidgets 7.7 (Colab)
    and 8.x (JupyterLab 4). The picture is an ``Image`` widget whose value every change
    redraws: it lives in the widget's state, not in displayed outputs, so a tool that
    records a cell's outputs without a widget manager (nbval) does not record it as one.

    Returns ``VBox([HBox([query, layer, head]), image])``.
    """
    import ipywidgets as widgets

    a, m, labels = _checked(attn, modality_ids, labels, query)
    n_layers, n_heads, n_tokens, _ = a.shape
    mean = -1  # a Dropdown value of None means "nothing selected", so -1 stands for "mean"
    query_menu = widgets.Dropdown(
        options=query_options(labels),
        value=query % n_tokens,
        description="query",
        layout=widgets.Layout(width="16em"),
    )
    layer = widgets.Dropdown(
        options=[("mean of layers", mean)] + [(f"layer {i}", i) for i in range(n_layers)],
        value=mean,
        description="layer",
        layout=widgets.Layout(width="16em"),
    )
    head = widgets.Dropdown(
        options=[("mean of heads", mean)] + [(f"head {i}", i) for i in range(n_heads)],
        value=mean,
        description="head",
        layout=widgets.Layout(width="16em"),
    )
    # A PNG shows the same under every matplotlib backend (inline, ipympl, ...).
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    def draw(_change: Any = None) -> None:
        fig = attention_figure(
            a,
            m,
            labels,
            query=query_menu.value,
            layer=None if layer.value == mean else layer.value,
            head=None if head.value == mean else head.value,
        )
        image.value = figure_png(fig)

    for control in (query_menu, layer, head):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([query_menu, layer, head]), image])


def explore_attention(
    attn: Any,
    modality_ids: Any,
    labels: Sequence[str] | None = None,
    query: int = -1,
) -> Any:
    """Interactive explorer in a notebook; the static :func:`attention_figure` elsewhere.

    ``query``: the position shown first (the learner then picks others by their token).
    Returns, and does not display: end a cell with the call. In a notebook the value is a
    :class:`~omni_edu.viz.fallback.WithFallback`: the widget where widgets run, the static
    figure of the first query (mean of layers and heads) where they do not.
    """
    figure = attention_figure(attn, modality_ids, labels, query=query)
    if in_notebook():
        try:
            widget = attention_widget(attn, modality_ids, labels, query=query)
        except ImportError:
            return figure  # no ipywidgets: the static figure alone
        text = "Attention explorer (interactive: run the notebook to pick a query)"
        return WithFallback(widget, figure, text)
    return figure
