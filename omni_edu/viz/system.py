"""The diagram of the whole system, with the part a lesson builds highlighted.

Lesson 00 shows the system the course builds ("what you will have built by lesson 06");
lessons 01-06 open with the same picture and their own part in colour, so a learner
always sees where the piece in front of them sits. One helper draws all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from omni_edu.viz.plots import detached

# The parts of the system, the lesson that builds each, and what the lesson's title says.
PARTS: dict[str, tuple[str, str]] = {
    "projector": ("01", "omni-token projector and modality embeddings"),
    "decoder": ("02", "the interleaved decoder: masks, positions, KV cache"),
    "tokenizers": ("03", "discrete tokens: VQ / FSQ codes for pictures and sounds"),
    "heads": ("04", "output heads: codes, regression, flow"),
    "diffusion_family": ("04b", "the diffusion family: DiT, whole-image diffusion, masked codes"),
    "fusion": ("05", "where the modalities meet: early, late, cross-attention"),
    "any_to_any": ("06", "one model, every direction: prompts, curriculum, loss weights"),
}

HIGHLIGHT, PLAIN, EDGE_ON, EDGE_OFF = "#ffd37a", "#eef1f5", "#b35c00", "#8a94a3"


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float
    text: str
    part: str | tuple[str, ...] | None = None  # the PARTS entries it belongs to (None: data)

    def lit_by(self, highlight: str | None) -> bool:
        """Whether ``highlight`` (None: the whole system) colours this box."""
        parts = (self.part,) if isinstance(self.part, str) else self.part or ()
        return bool(parts) and (highlight is None or highlight in parts)


_BOXES = [
    # inputs
    _Box(0.2, 6.0, 1.6, 0.8, "text", None),
    _Box(0.2, 4.6, 1.6, 0.8, "picture", None),
    _Box(0.2, 3.2, 1.6, 0.8, "sound", None),
    # tokens per modality
    _Box(2.4, 6.0, 2.4, 0.8, "word ids", None),
    _Box(2.4, 4.6, 2.4, 0.8, "patches, or\nVQ codes (03)", "tokenizers"),
    _Box(2.4, 3.2, 2.4, 0.8, "log-mel frames,\nor codes (03)", "tokenizers"),
    # projector and decoder
    _Box(5.4, 3.2, 2.2, 3.6, "omni-token\nprojector\n+ modality\nembeddings\n(01)", "projector"),
    _Box(
        8.2,
        3.2,
        2.6,
        3.6,
        "interleaved\ndecoder\ncausal / span masks\n1-D or M-RoPE\nKV cache\n(02)",
        "decoder",
    ),
    # heads
    _Box(11.4, 6.0, 2.8, 0.8, "text head (softmax)", None),
    _Box(
        11.4,
        4.45,
        2.8,
        1.1,
        "image head: codes (03)\nregression | flow (04)\nDiT | in-decoder | masked (04b)",
        ("heads", "diffusion_family"),
    ),
    _Box(
        11.4,
        3.05,
        2.8,
        1.1,
        "audio head: codes (03)\nregression | flow (04)\nDiT | in-decoder | masked (04b)",
        ("heads", "diffusion_family"),
    ),
    # outputs
    _Box(14.8, 6.0, 1.6, 0.8, "text", None),
    _Box(14.8, 4.6, 1.6, 0.8, "picture", None),
    _Box(14.8, 3.2, 1.6, 0.8, "sound", None),
    # fusion variants
    _Box(
        5.4,
        1.3,
        5.4,
        1.1,
        "fusion variants from the same blocks:\nearly / late / gated cross-attention (05)",
        "fusion",
    ),
]

_ARROWS = [
    ((1.8, 6.4), (2.4, 6.4)),
    ((1.8, 5.0), (2.4, 5.0)),
    ((1.8, 3.6), (2.4, 3.6)),
    ((4.8, 6.4), (5.4, 6.4)),
    ((4.8, 5.0), (5.4, 5.0)),
    ((4.8, 3.6), (5.4, 3.6)),
    ((7.6, 5.0), (8.2, 5.0)),
    ((10.8, 6.4), (11.4, 6.4)),
    ((10.8, 5.0), (11.4, 5.0)),
    ((10.8, 3.6), (11.4, 3.6)),
    ((14.2, 6.4), (14.8, 6.4)),
    ((14.2, 5.0), (14.8, 5.0)),
    ((14.2, 3.6), (14.8, 3.6)),
]


def system_diagram(highlight: str | None = None, ax=None) -> Figure:
    """Draw OmniLM, the system of the course, with part ``highlight`` in colour.

    ``highlight``: one of :data:`PARTS` (``"projector"``, ``"decoder"``, ``"tokenizers"``,
    ``"heads"``, ``"fusion"``, ``"any_to_any"``), or ``None`` for the whole system as
    lesson 00 shows it. Without ``ax`` it returns a new figure, detached from pyplot (shown
    once: end the cell with the call, or ``display`` it); with ``ax`` it draws there.
    """
    if highlight is not None and highlight not in PARTS:
        raise ValueError(f"highlight should be one of {sorted(PARTS)} or None; got {highlight!r}.")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(12.5, 5.2))
    else:
        fig = ax.figure
    everything = highlight is None
    frame_on = everything or highlight == "any_to_any"
    ax.add_patch(
        FancyBboxPatch(
            (0.0, 2.9),
            16.6,
            4.5,
            boxstyle="round,pad=0.05,rounding_size=0.2",
            facecolor="none",
            edgecolor=EDGE_ON if frame_on else EDGE_OFF,
            linewidth=2.2 if highlight == "any_to_any" else 1.0,
            linestyle="-" if frame_on else "--",
        )
    )
    ax.text(
        8.3,
        7.15,
        "OmniLM - one set of weights, every direction (06)",
        ha="center",
        va="center",
        fontsize=10,
        fontweight="bold" if highlight == "any_to_any" else "normal",
        color=EDGE_ON if highlight == "any_to_any" else "0.25",
    )
    for box in _BOXES:
        on = box.lit_by(highlight)
        ax.add_patch(
            FancyBboxPatch(
                (box.x, box.y),
                box.w,
                box.h,
                boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=HIGHLIGHT if on else PLAIN,
                edgecolor=EDGE_ON if on else EDGE_OFF,
                linewidth=2.0 if on and not everything else 1.0,
                linestyle="--" if box.part == "fusion" and not on else "-",
            )
        )
        ax.text(
            box.x + box.w / 2,
            box.y + box.h / 2,
            box.text,
            ha="center",
            va="center",
            fontsize=8.5,
            color="black" if (on or box.part is None) else "0.35",
        )
    for start, end in _ARROWS:
        ax.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color="0.35", lw=1)
        )
    ax.annotate(
        "",
        xy=(8.1, 2.45),
        xytext=(8.1, 3.15),
        arrowprops=dict(arrowstyle="<->", color="0.55", lw=1, linestyle=":"),
    )
    ax.text(0.2, 7.7, "inputs", fontsize=9, color="0.3")
    ax.text(14.8, 7.7, "outputs", fontsize=9, color="0.3")
    ax.set_xlim(-0.2, 16.8)
    ax.set_ylim(1.0, 8.1)
    ax.set_axis_off()
    if everything:
        title = (
            "What you will have built by lesson 06: OmniLM, text, pictures and sounds in and out"
        )
    else:
        lesson, what = PARTS[highlight]
        title = f"Lesson {lesson} builds: {what}"
    ax.set_title(title, fontsize=11)
    if not own:
        return fig  # the caller's figure: its layout and its display are the caller's
    fig.tight_layout()
    return detached(fig)
