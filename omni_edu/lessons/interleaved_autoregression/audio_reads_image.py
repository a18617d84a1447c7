"""Can an audio token read an image patch directly, and does the trained decoder? (lesson 02)

Chapter 000 says the decoder "computes self-attention across the entire interleaved
sequence, allowing an audio token to directly attend to an image patch without routing
through text". The sentence is about the *architecture*; whether a trained model *uses*
that path is a second question. Two halves, each with its own statistic:

1. **Capability** (:func:`gradient_reach`): does an audio position's output depend on an
   image patch, through the mask alone? The gradient of the audio positions' hidden states
   with respect to the image patches' input embeddings, under four masks: the course's
   mask; the same with every text key hidden from the audio queries (then any dependence
   on the picture is direct: no path passes through a text token); the image keys hidden
   from the audio queries (the picture can only arrive through the text markers between
   them); and both hidden (the control: the gradient must be exactly zero, so the test can
   see a zero). It holds at any weights, trained or not.
2. **Use** (:func:`audio_use`): on held-out scenes laid out *picture, then sound*, two
   statistics paired per scene, both on the **first audio token**, the one token of the
   sound that nothing earlier in the sound can predict:

   * *first-frame gain*: its loss when the sound comes first in the document, minus its
     loss right after its own picture;
   * *image swap*: its loss after another scene's picture, minus its loss after its own
     picture, in the same layout (only the picture's content differs: the counterfactual).

   A mean predictor of the first token (the training set's average, scored by the same
   MSE) is the measured baseline: a model at that level has learned nothing it could use.

The lesson trains on :data:`IMAGE_TO_AUDIO_ORDERS`, a corpus in which half of the documents
put the picture right before the sound, so that reading the picture pays off often enough
to be learned (in the course's default mix, the picture is the sound's only source in one
layout of five).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from omni_edu.data.documents import ORDERS, InterleavedCorpus, check_order
from omni_edu.modalities import Modality
from omni_edu.model.interleave import PackedBatch, image_segment, pack
from omni_edu.model.omni_lm import OmniLM

# The picture, then its sound (then the caption): where the sound can only read the picture.
IMAGE_THEN_AUDIO: tuple[str, ...] = ("image", "audio", "caption")
# The sound first: nothing before it to read (the first-frame gain's baseline layout).
AUDIO_FIRST: tuple[str, ...] = ("audio", "caption", "image")

# The course's orders plus three more documents of the picture right before the sound:
# half of the documents then hold the pair the claim is about.
IMAGE_TO_AUDIO_ORDERS: tuple[tuple[str, ...], ...] = ORDERS + (IMAGE_THEN_AUDIO,) * 3

# The four masks of the capability test: which keys the audio queries may not see.
HIDDEN: dict[str, tuple[Modality, ...]] = {
    "the course's mask": (),
    "audio sees no text": (Modality.TEXT,),
    "audio sees no image": (Modality.IMAGE,),
    "audio sees neither (control)": (Modality.TEXT, Modality.IMAGE),
}


def hide_from_audio(
    packed: PackedBatch, hidden: Sequence[Modality], mask: Tensor | None = None
) -> Tensor:
    """An attention mask ``(B, T, T)`` (default ``packed``'s) with the keys of ``hidden``
    modalities removed from every audio query's row (True = may attend). Each audio query
    keeps its own key, so no row is empty."""
    mask = (packed.attn_mask if mask is None else mask).clone()
    audio_rows = packed.modality == Modality.AUDIO  # (B, T)
    for modality in hidden:
        keys = packed.modality == modality  # (B, T)
        mask &= ~(audio_rows[:, :, None] & keys[:, None, :])
    return mask


def gradient_reach(
    model: OmniLM, packed: PackedBatch, hidden: Sequence[Modality] = (), seed: int = 0
) -> float:
    """How much the audio positions' outputs depend on the image patches' inputs.

    The norm of the gradient of ``<r, h_audio>`` (``h_audio`` the decoder's hidden states
    at every audio position of row 0, ``r`` a fixed random direction) with respect to the
    input embeddings of row 0's image patches, under the mask :func:`hide_from_audio`
    makes. Exactly 0.0 when no path in the mask leads from a patch to a sound; > 0 when one
    does (for any weights but a measure-zero set). ``packed`` must hold an image before an
    audio span in row 0.
    """
    row = packed.select([0])
    audio = row.modality[0] == Modality.AUDIO
    image = row.modality[0] == Modality.IMAGE
    if not audio.any() or not image.any():
        raise ValueError("row 0 should hold a picture and a sound; got " + row.describe(0))
    device = next(model.parameters()).device
    row = row.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = model.projector(row).detach().requires_grad_(True)
            mask = hide_from_audio(row, hidden, model.attention_mask(row))
            h = model.decoder(x, model.positions(row), mask)
            g = torch.Generator().manual_seed(seed)
            direction = torch.randn(h.shape[-1], generator=g).to(device)
            (grad,) = torch.autograd.grad((h[0, audio.to(device)] @ direction).sum(), x)
    finally:
        model.train(was_training)
    return grad[0, image.to(device)].norm().item()


def capability(model: OmniLM, packed: PackedBatch) -> dict[str, float]:
    """:func:`gradient_reach` under each mask of :data:`HIDDEN`: ``{mask name: norm}``."""
    return {name: gradient_reach(model, packed, hidden) for name, hidden in HIDDEN.items()}


def capability_holds(reach: dict[str, float]) -> bool:
    """The capability half's rule: the picture reaches the sound with no text in between
    (``"audio sees no text"`` > 0) and the control is exactly zero."""
    return reach["audio sees no text"] > 0 and reach["audio sees neither (control)"] == 0


def _audio_positions(packed: PackedBatch, order: Sequence[str], first: bool) -> Tensor:
    """``(B, T)`` bool: the positions that predict the tokens of the sound (only its first
    token with ``first``); position ``i`` predicts token ``i + 1``."""
    segment = check_order(order).index("audio")
    keep = torch.zeros_like(packed.target_modality, dtype=torch.bool)
    for row in range(packed.batch_size):
        span = next(s for s in packed.spans[row] if s.segment == segment)
        keep[row, span.start - 1 : span.start if first else span.stop - 1] = True
    return keep


@torch.no_grad()
def audio_losses(
    model: OmniLM, packed: PackedBatch, order: Sequence[str], first: bool = True
) -> Tensor:
    """``(B,)`` the audio head's loss per document of ``packed`` (laid out in ``order``) on
    its sound's first token (``first``) or on the whole sound: one batched forward pass,
    then the head's loss row by row (what :meth:`OmniLM.loss` gives one document alone)."""
    model.eval()
    device = next(model.parameters()).device
    packed = packed.to(device)
    keep = _audio_positions(packed, order, first)
    hidden = model(packed)
    head = model.head(Modality.AUDIO)
    rows = [
        head.loss(packed.audio_targets[r][keep[r]], hidden[r][keep[r]])
        for r in range(packed.batch_size)
    ]
    return torch.stack(rows).float().cpu()


def documents(
    corpus: InterleavedCorpus,
    indices: Sequence[int],
    order: Sequence[str],
    donors: Sequence[int] | None = None,
) -> PackedBatch:
    """Scenes ``indices`` laid out in ``order``; with ``donors``, scene ``indices[i]``'s
    picture is replaced by scene ``donors[i]``'s (everything else stays its own)."""
    if donors is None:
        return corpus.pack(list(indices), [order] * len(indices))
    if len(donors) != len(indices):
        raise ValueError(f"give one donor per scene; got {len(donors)} for {len(indices)}.")
    docs = []
    for i, j in zip(indices, donors, strict=True):
        doc = corpus.document(i, order)
        docs.append(
            [
                image_segment(corpus.patches[j], corpus.grid) if s.modality == Modality.IMAGE else s
                for s in doc
            ]
        )
    return pack(
        docs, specials=corpus.specials, image_dim=corpus.image_dim, audio_dim=corpus.audio_dim
    )


def donors_for(corpus: InterleavedCorpus, indices: Sequence[int]) -> list[int]:
    """For each scene of ``indices``, the next scene of ``indices`` whose first audio token
    differs from its own (the swapped picture then implies another start of the sound);
    the scene after it when none does."""
    indices = list(indices)
    first = corpus.audio[indices, 0]  # (n, audio_dim)
    donors = []
    for k in range(len(indices)):
        for step in range(1, len(indices)):
            j = (k + step) % len(indices)
            if not torch.allclose(first[j], first[k], atol=1e-3):
                donors.append(indices[j])
                break
        else:
            donors.append(indices[(k + 1) % len(indices)])
    return donors


def mean_predictor_losses(
    train: InterleavedCorpus, test: InterleavedCorpus, indices: Sequence[int], first: bool = False
) -> Tensor:
    """The measured baseline, ``(n,)`` per held-out scene: the MSE of predicting each audio
    token of the sound (or only its first token, ``first=True``) as the training set's
    average token at that position - what a model that reads nothing can do, scored as the
    audio head's loss is (mean squared error per feature)."""
    tokens = slice(0, 1) if first else slice(None)
    mean = train.audio[:, tokens].mean(dim=0)  # (tokens, audio_dim)
    return (test.audio[list(indices), tokens] - mean).pow(2).mean(dim=(1, 2))


def paired(baseline: Tensor, treated: Tensor, z: float = 1.96) -> dict[str, float]:
    """Mean of ``baseline - treated`` over pairs with a normal 95 % interval
    (``{"mean", "low", "high", "n"}``)."""
    if baseline.shape != treated.shape or baseline.ndim != 1 or len(baseline) < 2:
        raise ValueError(
            f"paired values should be two (n,) tensors with n >= 2; got "
            f"{tuple(baseline.shape)} and {tuple(treated.shape)}."
        )
    gain = (baseline - treated).double()
    mean, half = gain.mean().item(), z * gain.std().item() / len(gain) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(gain)}


def audio_use(
    model: OmniLM, train: InterleavedCorpus, test: InterleavedCorpus, indices: Sequence[int]
) -> dict[str, dict[str, float] | Tensor]:
    """The use half on held-out scenes ``indices`` of ``test``: per-scene first-token
    losses, the two paired statistics, and whether the model learned sounds at all.

    Returns ``{"first": (n,), "after its image": (n,), "after another image": (n,),
    "first-frame gain": paired, "image swap": paired, "sound learned": paired}``, where
    ``paired`` is :func:`paired`'s dict (positive: the picture helped; for ``"sound
    learned"``: the whole sound, laid out first, is predicted better than by the training
    set's average token, :func:`mean_predictor_losses`).
    """
    donors = donors_for(test, indices)
    alone = documents(test, indices, AUDIO_FIRST)
    first = audio_losses(model, alone, AUDIO_FIRST)
    own = audio_losses(model, documents(test, indices, IMAGE_THEN_AUDIO), IMAGE_THEN_AUDIO)
    swapped = documents(test, indices, IMAGE_THEN_AUDIO, donors)
    other = audio_losses(model, swapped, IMAGE_THEN_AUDIO)
    sound = audio_losses(model, alone, AUDIO_FIRST, first=False)
    return {
        "first": first,
        "after its image": own,
        "after another image": other,
        "first-frame gain": paired(first, own),
        "image swap": paired(other, own),
        "sound learned": paired(mean_predictor_losses(train, test, indices), sound),
    }


def uses_image(use: dict) -> bool:
    """The use half's rule for one run: both paired intervals lie above zero."""
    return use["first-frame gain"]["low"] > 0 and use["image swap"]["low"] > 0


def sound_not_learned(uses: Sequence[dict]) -> bool:
    """The design's degeneracy: in no run is the whole sound predicted better than the mean
    predictor (interval above zero), so no run could show that it reads anything."""
    return all(u["sound learned"]["low"] <= 0 for u in uses)


def detectable(uses: Sequence[dict]) -> float:
    """The smallest effect the use half can see: the widest 95 % half-width of the image
    swap over runs (MSE per feature of the first audio token)."""
    return max((u["image swap"]["high"] - u["image swap"]["low"]) / 2 for u in uses)
