"""Does the caption *use* the picture and the sound before it? (lesson 02)

An interleaved decoder lets every token attend to every earlier token, whatever its
modality. That a caption word *can* attend to an image patch does not mean it *does*,
and a share of attention does not mean the patch was used. Two statistics answer the
question, each against its own yardstick:

1. **Loss gain by order** (:func:`order_gains`). The same held-out scene laid out with
   the caption first (nothing to read), after the image only, after the audio only, and
   after both. If the caption's words are predicted better after the picture, the model
   reads the picture; the gain is paired over the same scenes, with a 95 % interval.
   The same test for a sound after the picture only (no text in between) asks whether
   one medium reads another directly; a sound after the caption only is its yardstick
   (the sound *can* be predicted from what comes before it).
2. **Attention from the positions that must read** (:func:`attribute_attention`). In a
   caption ("a large yellow circle at the bottom right") only some words are decided by
   the scene: size, colour, shape, position. The position just *before* such a word is
   the one whose prediction needs the picture or the sound. Its attention mass on image
   and audio keys is compared with that of the other caption positions (which predict
   "a", "at", "the": grammar), and with chance (the share of visible keys).

:func:`train_decoder` trains one decoder on an :class:`~omni_edu.data.documents.InterleavedCorpus`
with the course's :class:`~omni_edu.train.Trainer`, so the statistics can be repeated
over seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from omni_edu.data.documents import InterleavedCorpus, check_order
from omni_edu.data.language import HORIZONTAL, SYNONYMS, VERTICAL
from omni_edu.lessons.interleaved_autoregression.attention import attention_mass
from omni_edu.modalities import PAD, Modality
from omni_edu.model.interleave import PackedBatch
from omni_edu.model.omni_lm import OmniLM
from omni_edu.train import History, TrainConfig, Trainer, model_loss
from omni_edu.viz.plots import detached

# Every word that names the value of an attribute (size, colour, shape, position): the
# words a caption can only get right by reading the scene.
ATTRIBUTE_WORDS: frozenset[str] = frozenset(
    [word for values in SYNONYMS.values() for words in values.values() for word in words]
    + [word for side in (VERTICAL, HORIZONTAL) for words in side.values() for word in words]
)

# The layouts compared, as (the part measured, the document order). The measured part's
# context is what comes before it; what follows cannot matter (the mask is causal).
# Every order is one the lesson's decoder trains on.
CONTEXTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "caption first": ("caption", ("caption", "audio", "image")),
    "caption after the image only": ("caption", ("image", "caption", "audio")),
    "caption after the audio only": ("caption", ("audio", "caption", "image")),
    "caption after image and audio": ("caption", ("image", "audio", "caption")),
    "audio first": ("audio", ("audio", "caption", "image")),
    "audio after the image only": ("audio", ("image", "audio", "caption")),
    "audio after the caption only": ("audio", ("caption", "audio", "image")),
}

# Which context each gain compares with which: (baseline, with something to read).
GAINS: dict[str, tuple[str, str]] = {
    "caption reads the image": ("caption first", "caption after the image only"),
    "caption reads the audio": ("caption first", "caption after the audio only"),
    "caption reads both": ("caption first", "caption after image and audio"),
    "audio reads the image": ("audio first", "audio after the image only"),
    "audio reads the caption": ("audio first", "audio after the caption only"),
}

_PART_MODALITY = {"caption": Modality.TEXT, "image": Modality.IMAGE, "audio": Modality.AUDIO}


def predicting_positions(packed: PackedBatch, row: int, segment: int) -> range:
    """Positions of ``row`` whose next token belongs to document segment ``segment``.

    Position ``i`` predicts token ``i + 1``, so for a segment spanning ``[start, stop)``
    these are ``start - 1 ... stop - 2``. The position that predicts the marker *after*
    the segment is not included.
    """
    for span in packed.spans[row]:
        if span.segment == segment:
            return range(span.start - 1, span.stop - 1)
    raise ValueError(f"row {row} has no segment {segment}; it has {len(packed.spans[row])} spans.")


def only_part(packed: PackedBatch, order: Sequence[str], part: str) -> PackedBatch:
    """A copy of ``packed`` whose loss counts only the tokens of ``part``'s first segment."""
    order = check_order(order)
    if part not in order:
        raise ValueError(f"part {part!r} is not in the order {order!r}.")
    segment = order.index(part)
    keep = torch.zeros_like(packed.target_modality, dtype=torch.bool)
    for row in range(packed.batch_size):
        where = predicting_positions(packed, row, segment)
        keep[row, where.start : where.stop] = True
    target = packed.target_modality.masked_fill(~keep, PAD)
    return dataclasses.replace(packed, target_modality=target)


@torch.no_grad()
def part_losses(
    model: OmniLM,
    corpus: InterleavedCorpus,
    indices: Sequence[int],
    order: Sequence[str],
    part: str,
) -> Tensor:
    """``(n,)`` the loss of ``part`` in each scene of ``indices`` laid out in ``order``.

    Cross-entropy per word for a caption, the head's loss per token for image and audio:
    ``model.loss`` on one document at a time, counting only that part's tokens.
    """
    model.eval()
    device = next(model.parameters()).device
    packed = only_part(corpus.pack(list(indices), [order] * len(indices)), order, part)
    name = _PART_MODALITY[part].name.lower()
    rows = [model.loss(packed.select([r]).to(device))[name] for r in range(packed.batch_size)]
    return torch.stack(rows).float().cpu()


def paired_interval(baseline: Tensor, treated: Tensor, z: float = 1.96) -> dict[str, float]:
    """Mean gain ``baseline - treated`` over pairs, with a normal-approximation interval.

    Returns ``{"mean", "low", "high", "n"}`` (``z = 1.96``: a 95 % interval).
    """
    if baseline.shape != treated.shape or baseline.ndim != 1 or len(baseline) < 2:
        raise ValueError(
            f"paired values should be two (n,) tensors with n >= 2; got "
            f"{tuple(baseline.shape)} and {tuple(treated.shape)}."
        )
    gain = (baseline - treated).double()
    mean, half = gain.mean().item(), z * gain.std().item() / math.sqrt(len(gain))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(gain)}


def order_gains(
    model: OmniLM, corpus: InterleavedCorpus, indices: Sequence[int]
) -> tuple[dict[str, Tensor], dict[str, dict[str, float]]]:
    """Per-scene losses in every layout of :data:`CONTEXTS`, and the paired :data:`GAINS`.

    Returns ``(losses, gains)``: ``losses[context]`` is ``(n,)``; ``gains[name]`` is
    :func:`paired_interval` of the baseline context minus the context with something to
    read (positive: reading helps).
    """
    losses = {
        name: part_losses(model, corpus, indices, order, part)
        for name, (part, order) in CONTEXTS.items()
    }
    gains = {name: paired_interval(losses[a], losses[b]) for name, (a, b) in GAINS.items()}
    return losses, gains


@torch.no_grad()
def attribute_attention(
    model: OmniLM,
    corpus: InterleavedCorpus,
    indices: Sequence[int],
    order: Sequence[str] = ("image", "audio", "caption"),
) -> dict[str, dict[str, float | list[float]]]:
    """Attention on image and audio keys from the caption's positions, by what they predict.

    For every scene of ``indices`` laid out in ``order``, the positions that predict the
    caption's words are split into those predicting an attribute word
    (:data:`ATTRIBUTE_WORDS`) and the others ("a", "at", "the"). For each medium before
    the caption, per group: the attention mass on that medium's keys (mean over layers,
    heads, queries, then scenes), chance (the same with uniform attention over the
    visible keys: the share of those keys), and the per-scene difference attribute -
    other with a 95 % interval; ``"per layer"`` repeats the two masses layer by layer.

    Returns ``{medium: {"attribute", "other", "attribute chance", "other chance",
    "difference", "low", "high", "per layer": [(attribute, other), ...]}}``.
    """
    order = check_order(order)
    if "caption" not in order:
        raise ValueError(f"the order should hold a caption; got {order!r}.")
    segment = order.index("caption")
    media = [m for m in order[:segment] if m != "caption"]
    if not media:
        raise ValueError(f"no picture or sound comes before the caption in {order!r}.")
    model.eval()
    device = next(model.parameters()).device
    packed = corpus.pack(list(indices), [order] * len(indices))
    _, attentions = model(packed.to(device), return_attention=True)
    n_layers = len(attentions)
    kinds = ("attribute", "other")
    values: dict[str, list[float]] = {}  # "<medium> <kind>[ chance| L<layer>]" -> per scene

    def add(key: str, mass: np.ndarray) -> None:
        values.setdefault(key, []).append(float(mass.mean()))

    for row in range(packed.batch_size):
        length = int(packed.lengths[row])
        maps = [a[row, :, :length, :length].float().cpu() for a in attentions]
        modality = packed.modality[row, :length]
        labels = corpus.token_labels(packed, row)
        queries = list(predicting_positions(packed, row, segment))
        picked = {
            "attribute": [q for q in queries if labels[q + 1] in ATTRIBUTE_WORDS],
            "other": [q for q in queries if labels[q + 1] not in ATTRIBUTE_WORDS],
        }
        for kind in kinds:
            mass = attention_mass(maps, modality, picked[kind])
            chance = attention_mass(maps, modality, picked[kind], uniform=True)
            by_layer = [
                attention_mass(maps, modality, picked[kind], layer=k) for k in range(n_layers)
            ]
            for m in media:
                add(f"{m} {kind}", mass[m])
                add(f"{m} {kind} chance", chance[m])
                for k in range(n_layers):
                    add(f"{m} {kind} L{k}", by_layer[k][m])
    out: dict[str, dict[str, float | list[float]]] = {}
    for m in media:
        attribute, other = (torch.tensor(values[f"{m} {k}"]) for k in kinds)
        gap = paired_interval(other, attribute)  # other - attribute: negate for the difference
        out[m] = {
            "attribute": attribute.mean().item(),
            "other": other.mean().item(),
            "attribute chance": float(np.mean(values[f"{m} attribute chance"])),
            "other chance": float(np.mean(values[f"{m} other chance"])),
            "difference": -gap["mean"],
            "low": -gap["high"],
            "high": -gap["low"],
            "per layer": [
                tuple(float(np.mean(values[f"{m} {k} L{layer}"])) for k in kinds)
                for layer in range(n_layers)
            ],
        }
    return out


def gain_tracker(
    corpus: InterleavedCorpus, indices: Sequence[int]
) -> Callable[[OmniLM], dict[str, float]]:
    """An ``eval_fn`` for the Trainer: each of :data:`GAINS`, from batch-mean losses.

    The documents are packed once; every evaluation runs one forward pass per context of
    :data:`CONTEXTS` over all of ``indices`` (cheaper than :func:`order_gains`, which
    keeps one loss per scene for intervals).
    """
    packed = {
        name: only_part(corpus.pack(list(indices), [order] * len(indices)), order, part)
        for name, (part, order) in CONTEXTS.items()
    }

    @torch.no_grad()
    def evaluate(model: OmniLM) -> dict[str, float]:
        device = next(model.parameters()).device
        loss = {
            name: model.loss(batch.to(device))[_PART_MODALITY[CONTEXTS[name][0]].name.lower()]
            for name, batch in packed.items()
        }
        return {gain: (loss[a] - loss[b]).item() for gain, (a, b) in GAINS.items()}

    return evaluate


def train_decoder(
    corpus: InterleavedCorpus,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float = 1e-2,
    eval_fn: Callable[[OmniLM], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
) -> tuple[OmniLM, History]:
    """A fresh OmniLM for ``corpus`` trained ``steps`` steps with the Trainer.

    ``seed`` decides the initial weights and the batches (seed 0 sees
    ``corpus.batches(batch_size)``, the batches the lesson trains its model on).
    ``eval_fn`` (for example :func:`gain_tracker`) runs every ``eval_every`` steps and
    at the end; its values land in ``history.evals``.
    """
    torch.manual_seed(seed)
    model = OmniLM(corpus.model_config())
    config = TrainConfig.from_profile(
        corpus.profile,
        steps=steps,
        lr=lr,
        seed=seed,
        eval_every=eval_every,
        progress=progress,
        desc=f"decoder, seed {seed}",
    )
    offset = 1_000_000 * seed  # another stretch of the corpus's batch sequence per seed

    def batches(step: int) -> PackedBatch:
        return corpus.batch(offset + step, batch_size)

    history = Trainer(model, model_loss, batches, config, eval_fn=eval_fn).fit()
    model.eval()
    return model, history


def gain_figure(histories: Sequence[History], gains: Sequence[str] = tuple(GAINS)) -> Figure:
    """One panel per gain: its value during training, one line per run (seed)."""
    fig, axes = plt.subplots(1, len(gains), figsize=(4.0 * len(gains), 3.3), squeeze=False)
    for ax, gain in zip(axes[0], gains, strict=True):
        for seed, history in enumerate(histories):
            if gain not in history.evals:
                raise ValueError(
                    f"run {seed} has no evaluation {gain!r}; train with eval_fn=gain_tracker(...)."
                )
            ax.plot(history.eval_steps, history.evals[gain], marker=".", label=f"seed {seed}")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(gain, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("loss before - loss after (nats or MSE)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Held-out loss gain from what comes before (> 0: it is read)")
    fig.tight_layout()
    return detached(fig)
