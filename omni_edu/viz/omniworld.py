"""See, hear and read OmniWorld samples in a notebook."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch

from omni_edu.modalities.audio import MelConfig
from omni_edu.viz.plots import detached

if TYPE_CHECKING:
    from omni_edu.data.world import OmniBatch, OmniSample


def play(waveform: torch.Tensor, sample_rate: int):
    """An ``IPython.display.Audio`` player for one waveform ``(samples,)``.

    Audio is not normalised, so loud (large) objects sound louder than small ones.
    """
    from IPython.display import Audio

    if waveform.dim() != 1:
        raise ValueError(f"waveform should be (samples,); got {tuple(waveform.shape)}")
    return Audio(waveform.detach().cpu().numpy(), rate=sample_rate, normalize=False)


def show_mel(mel: torch.Tensor, config: MelConfig | None = None, ax=None, title: str = ""):
    """Draw one log-mel spectrogram ``(frames, n_mels)``: time across, mel band up."""
    config = config or MelConfig()
    ax = ax or plt.gca()
    frames = mel.shape[0]
    ax.imshow(
        mel.detach().cpu().T.numpy(),
        origin="lower",
        aspect="auto",
        vmin=-1,
        vmax=1,
        cmap="magma",
        extent=(0, frames * config.frame_ms, 0, mel.shape[1]),
    )
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("mel band")
    ax.set_title(title or "log-mel spectrogram")
    return ax


def show_sample(sample: OmniSample, title: str | None = None):
    """Picture and spectrogram side by side, the caption above: one sample at a glance.

    Returns the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), width_ratios=(1, 1.6))
    left.imshow(sample.image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
    left.set_title("picture")
    left.set_xlabel("x (pixels)")
    left.set_ylabel("y (pixels)")
    show_mel(sample.mel, sample.mel_config, ax=right, title="sound (log-mel)")
    fig.suptitle(title or textwrap.fill(f'"{sample.caption}"', 80), fontsize=10)
    fig.tight_layout()
    return detached(fig)


def show_batch(batch: OmniBatch, n: int = 8, columns: int = 4):
    """A grid of the first ``n`` pictures, each titled with its canonical description.

    Returns the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    n = min(n, len(batch))
    rows = (n + columns - 1) // columns
    titles = [
        "\n".join(textwrap.fill(str(o), 44) for o in scene.objects) for scene in batch.scenes[:n]
    ]
    lines = max(t.count("\n") + 1 for t in titles)  # title lines above each picture
    # Constrained layout keeps each row's titles clear of the pictures above them (a tight
    # layout let two-line titles run into the row above).
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(2.4 * columns, (2.2 + 0.14 * lines) * rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(batch.images[i].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle("OmniWorld pictures")
    return detached(fig)
