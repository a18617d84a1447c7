"""Lesson 04b's figures: the masks of the two kinds of span, quality against sampling
steps, and quality against the cost of a picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

from omni_edu.viz.plots import detached

# (prompt set, metric, axis label, flip): what the curves show; coverage as 1 - TV.
PANELS = (
    ("full", "fidelity", "fidelity, full prompts", False),
    ("open", "validity", "validity, open prompts", False),
    ("open", "coverage_tv", "coverage (1 - TV), open prompts", True),
)


def masks_figure(masks: Mapping[str, Tensor], labels: Sequence[str]) -> Figure:
    """The attention masks ``{title: (T, T) bool}`` of one document side by side, each
    position labelled by ``labels`` (``T`` short names: a word, ``<boi>``, ``p3``...)."""
    fig, axes = plt.subplots(1, len(masks), figsize=(5.2 * len(masks), 5.0), layout="constrained")
    axes = [axes] if len(masks) == 1 else list(axes)
    for ax, (title, mask) in zip(axes, masks.items(), strict=True):
        ax.imshow(mask.float().numpy(), cmap="Greys", vmin=0, vmax=1.4)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set(title=title, xlabel="key (attended to)", ylabel="query (attending)")
    fig.suptitle("Who may attend to whom (dark: may attend)")
    return detached(fig)


def steps_figure(
    curves: Mapping[str, Mapping[int, Mapping[str, float]]],
    flat: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """Quality against sampling steps, one panel per metric of :data:`PANELS`.

    ``curves``: arm -> steps -> ``{"full: fidelity": ..., "open: validity": ...,
    "open: coverage_tv": ...}``; ``flat``: arms that draw in one fixed way (drawn as
    dashed lines); ``reference``: the same keys for real pictures (a dotted line).
    """
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.0), layout="constrained")
    for ax, (prompts, metric, label, flip) in zip(axes, PANELS, strict=True):
        key = f"{prompts}: {metric}"

        def shown(value: float, flip: bool = flip) -> float:
            return 1 - value if flip else value

        for k, (arm, by_steps) in enumerate(curves.items()):
            steps = sorted(by_steps)
            ys = [shown(by_steps[s][key]) for s in steps]
            ax.plot(steps, ys, "o-", color=f"C{k}", label=arm)
        for k, (arm, values) in enumerate(flat.items(), start=len(curves)):
            ax.axhline(shown(values[key]), color=f"C{k}", linestyle="--", label=f"{arm} (one way)")
        if reference is not None:
            ax.axhline(shown(reference[key]), color="black", linestyle=":", label="real pictures")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="sampling steps (decoder or head passes)", ylabel=label, title=label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Quality against sampling steps (higher is better)")
    return detached(fig)


def cost_figure(points: Mapping[str, tuple[float, float, float]]) -> Figure:
    """Score against the cost of a picture: ``{arm: (decoder passes, ms per picture,
    score)}``, two panels."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for k, (arm, (passes, ms, score)) in enumerate(points.items()):
        for ax, x in zip(axes, (passes, ms), strict=True):
            ax.scatter([x], [score], color=f"C{k}", s=50, label=arm)
            ax.annotate(arm, (x, score), fontsize=7, xytext=(4, 3), textcoords="offset points")
    axes[0].set(
        xscale="log",
        xlabel="decoder passes per picture (one after another)",
        ylabel="score (lesson 06's rule)",
        title="Score against decoder passes",
    )
    axes[1].set(
        xscale="log",
        xlabel="milliseconds per picture (this machine)",
        ylabel="score (lesson 06's rule)",
        title="Score against time",
    )
    fig.suptitle("What a picture costs, and what it is worth (default samplers)")
    return detached(fig)
