"""Lesson 05's figures: the fusion variants drawn as diagrams, accuracy against training
steps, and their costs.
"""

from __future__ import annotations

import torch

from omni_edu.lessons.fusion_strategies.experiment import (
    GATES_OPEN,
    FusionResults,
)
from omni_edu.lessons.fusion_strategies.tasks import (
    get_task,
    task_config,
)
from omni_edu.model.fusion import (
    FusionConfig,
)

# ----------------------------------------------------------------------------- diagrams

_COLOURS = {"text": "#8ecae6", "image": "#ffb703", "audio": "#90be6d", "layer": "#e5e5e5"}


def draw_fusion_diagrams(config: FusionConfig | None = None):
    """Block diagrams of the three variants side by side (a matplotlib figure).

    Boxes are labelled with the layer counts of ``config`` (default: the active profile's),
    so the picture shows how each variant spends the same budget.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from omni_edu.viz.plots import detached

    config = config or task_config("colour")
    enc, late, cross = config.encoder_layers, config.late_decoder_layers, config.cross_layers
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))

    def box(ax, x, y, w, h, text, colour):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=colour, ec="k"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(ax, start, end):
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.2})

    def tokens(ax, y, kinds, x0=0.05, width=0.9):
        step = width / len(kinds)
        for i, kind in enumerate(kinds):
            box(ax, x0 + i * step, y, step * 0.9, 0.08, kind[0].upper(), _COLOURS[kind])

    sequence = ["text", "image", "image", "image", "audio", "audio", "text", "text"]
    # Early fusion: one stack over the whole interleaved sequence.
    ax = axes[0]
    tokens(ax, 0.05, sequence)
    arrow(ax, (0.5, 0.14), (0.5, 0.24))
    box(
        ax,
        0.05,
        0.25,
        0.9,
        0.45,
        f"decoder\n{config.depth} causal blocks\nover all tokens",
        _COLOURS["layer"],
    )
    arrow(ax, (0.5, 0.71), (0.5, 0.81))
    box(ax, 0.3, 0.82, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("early fusion (GPT-4o, Gemini)")
    # Late fusion: encoders, connectors, then the decoder over text + encoded media.
    ax = axes[1]
    tokens(ax, 0.02, ["image"] * 3, 0.02, 0.4)
    tokens(ax, 0.02, ["audio"] * 2, 0.55, 0.4)
    box(ax, 0.02, 0.16, 0.4, 0.16, f"image encoder\n{enc} layer(s)", _COLOURS["image"])
    box(ax, 0.55, 0.16, 0.4, 0.16, f"audio encoder\n{enc} layer(s)", _COLOURS["audio"])
    box(ax, 0.02, 0.36, 0.4, 0.07, "connector", "white")
    box(ax, 0.55, 0.36, 0.4, 0.07, "connector", "white")
    arrow(ax, (0.22, 0.44), (0.4, 0.52))
    arrow(ax, (0.75, 0.44), (0.6, 0.52))
    box(
        ax,
        0.05,
        0.53,
        0.9,
        0.24,
        f"decoder: {late} causal blocks\nover text + media tokens",
        _COLOURS["layer"],
    )
    arrow(ax, (0.5, 0.78), (0.5, 0.84))
    box(ax, 0.3, 0.85, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("late fusion (LLaVA)")
    # Cross-attention fusion: text-only decoder, media enter through gated layers.
    ax = axes[2]
    box(ax, 0.02, 0.3, 0.33, 0.2, f"media\nencoders\n{enc}+{enc} layers", _COLOURS["image"])
    tokens(ax, 0.05, ["text"] * 3, 0.45, 0.5)
    arrow(ax, (0.7, 0.14), (0.7, 0.27))
    box(ax, 0.45, 0.28, 0.5, 0.17, "gated cross-attn\nx + tanh(a)·xattn(x, media)", "#ffd6a5")
    box(ax, 0.45, 0.5, 0.5, 0.14, "decoder block\n(text only)", _COLOURS["layer"])
    arrow(ax, (0.36, 0.4), (0.45, 0.37))
    ax.text(0.7, 0.68, f"repeat x {cross}", ha="center", fontsize=9)
    arrow(ax, (0.7, 0.73), (0.7, 0.82))
    box(ax, 0.5, 0.83, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("gated cross-attention (Flamingo)")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
    fig.suptitle(
        "Where the modalities meet (T = text, I = image patch, A = audio token)", fontsize=11
    )
    fig.tight_layout()
    return detached(fig)


# One look per variant in every figure: colour, marker and line style (so that curves
# lying on top of each other, such as two variants at chance, stay visible).
VARIANT_STYLE: dict[str, dict[str, str]] = {
    "early": {"color": "#219ebc", "marker": "o", "ls": "-"},
    "late": {"color": "#fb8500", "marker": "s", "ls": "--"},
    "cross": {"color": "#8338ec", "marker": "^", "ls": ":"},
    "control": {"color": "#023047", "marker": "D", "ls": "-."},
    GATES_OPEN: {"color": "#c77dff", "marker": "v", "ls": "-."},
}


def setup_style(label: str) -> dict[str, str]:
    """The look of a setup: its variant's, or the control's for a modified variant."""
    return VARIANT_STYLE.get(label, VARIANT_STYLE["control"])


def plot_accuracy_curves(results: FusionResults):
    """Test accuracy against training steps, one panel per task: each seed as a thin line,
    the mean over seeds as a thick one, the blind baselines as grey lines."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    tasks = list(dict.fromkeys(task for task, _, _ in results.histories))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        spec = get_task(task)
        setups = dict.fromkeys(label for t, label, _ in results.histories if t == task)
        for label in setups:
            style = setup_style(label)
            runs = [h for (t, s, _), h in results.histories.items() if t == task and s == label]
            steps = runs[0].eval_steps
            curves = torch.tensor([h.evals["accuracy"] for h in runs])
            for curve in curves:
                ax.plot(steps, curve, color=style["color"], ls=style["ls"], lw=0.8, alpha=0.35)
            ax.plot(steps, curves.mean(0), lw=2, label=f"{label} (mean of {len(runs)})", **style)
        for i, (name, value) in enumerate(sorted(results.baselines.get(task, {}).items())):
            grey = ("#555555", "#888888", "#bbbbbb")[i % 3]
            ax.axhline(value, ls="-", lw=0.9, c=grey, label=f"blind: {name} ({value:.2f})")
        ax.set_title(f"{task} ({spec.coupling} coupling)")
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy (fraction)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy against training steps at a matched parameter budget (thin: one seed)")
    fig.tight_layout()
    return detached(fig)


def plot_costs(results: FusionResults, task: str = "colour"):
    """Bar charts of FLOPs, training memory and latency per setup (on ``task``)."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    rows = [r for r in results.rows if r["task"] == task]
    names = [str(r["setup"]) for r in rows]
    metrics = [
        ("MFLOPs/example", "forward FLOPs per example", "MFLOPs"),
        ("train memory (MiB)", "memory of one training step", "MiB"),
        ("latency (ms/example)", "inference latency", "ms per example"),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(14, 3.8))
    for ax, (key, title, unit) in zip(axes, metrics, strict=True):
        values = [float(r[key]) for r in rows]
        ax.bar(names, values, color=[setup_style(n)["color"] for n in names])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=9)
        ax.set_title(title)
        ax.set_xlabel("setup")
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(f"What each setup costs ({task} task, batch of {results.settings['batch_size']})")
    fig.tight_layout()
    return detached(fig)


def plot_task_examples(task: str = "binding", n: int = 6, profile=None):
    """The first ``n`` training examples of ``task`` as the model gets them: each picture,
    titled with what its sound plays and the right answer (a figure, detached)."""
    import matplotlib.pyplot as plt

    from omni_edu.data import POSITIONS, SHAPES, render_images
    from omni_edu.lessons.fusion_strategies.tasks import draw_scenes, scene_generator
    from omni_edu.profiles import get_profile
    from omni_edu.viz.plots import detached

    profile = profile or get_profile()
    spec = get_task(task)
    generator = scene_generator(0, "train")
    scenes = draw_scenes(task, n, "train", generator)
    images = render_images(scenes.attributes, scenes.mask, profile.image_size, generator)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.6), layout="constrained", squeeze=False)
    for ax, image, heard, label in zip(
        axes[0], images, scenes.heard[:, 0].tolist(), scenes.labels.tolist(), strict=True
    ):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(
            f"sound: {SHAPES[heard[0]]},\n{POSITIONS[heard[3]]}\nanswer: {spec.classes[label]}",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle(f'{task} task: "{spec.question}?"', fontsize=10)
    return detached(fig)
