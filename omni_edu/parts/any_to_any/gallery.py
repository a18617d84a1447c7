"""Lesson 06's gallery: inputs and generated outputs side by side, one row per direction."""

from __future__ import annotations

from collections.abc import Mapping

from omni_edu.parts.any_to_any.directions import get_direction
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.parts.any_to_any.scoring import Generations


def gallery_figure(
    generations: Mapping[str, Mapping[str, Generations]],
    data: AnyToAnyData,
    n: int = 2,
    title: str = "One model, six directions: input | generated outputs",
):
    """Inputs and outputs side by side: one row per direction, ``n`` examples per row.

    ``generations`` maps a model's label (for example ``"linear head"``, ``"flow head"``)
    to its ``{direction: Generations}``; each example takes one panel for the input and
    one per model, so the models' outputs for the same prompt stand next to each other.
    Pictures show as pictures, sounds as log-mel spectrograms (time across, pitch up),
    captions as text.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from omni_edu.viz.omniworld import show_mel
    from omni_edu.viz.plots import detached

    labels = list(generations)
    rows = list(next(iter(generations.values())))
    per_example = 1 + len(labels)
    fig, axes = plt.subplots(
        len(rows),
        n * per_example,
        figsize=(1.9 * n * per_example, 1.95 * len(rows)),
        squeeze=False,
        layout="constrained",
    )

    def draw(ax, modality: str, value, title: str) -> None:
        if modality == "image":
            ax.imshow(value.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        elif modality == "audio":
            show_mel(value, data.world.mel_config, ax=ax, title=title)
            ax.set_xlabel("")
            ax.set_ylabel("")
        else:
            ax.text(0.5, 0.5, textwrap.fill(value, 16), ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])

    for r, name in enumerate(rows):
        d = get_direction(name)
        first = generations[labels[0]][name]
        for k in range(min(n, len(first.indices))):
            i = first.indices[k]
            source = {
                "text": data.batch.captions[i],
                "image": data.batch.images[i],
                "audio": data.batch.mels[i],
            }[d.source]
            column = k * per_example
            draw(axes[r, column], d.source, source, "input")
            for m, label in enumerate(labels):
                output = generations[label][name].outputs[k]
                draw(axes[r, column + 1 + m], d.target, output, label)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(title)
    return detached(fig)
