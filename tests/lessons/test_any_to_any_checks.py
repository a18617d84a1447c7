"""Lesson 06's core-build check against plausible mistakes: ``OmniLM.loss`` written by the
learner, the package's weights loaded into it. The rows join the table in
``tests/test_checks.py``; one test per mistake runs there."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omni_edu.modalities import Modality
from omni_edu.model.omni_lm import OmniLM

MEDIA = ((Modality.IMAGE, "image"), (Modality.AUDIO, "audio"))


def _media_targets(packed, modality, head, here):
    if head.discrete:
        return packed.code_targets[here]
    features = packed.image_targets if modality == Modality.IMAGE else packed.audio_targets
    return features[here]


def _losses(model, packed, *, where=None, reduction="mean", absent_as_zero=False):
    hidden = model(packed)
    where = where or packed.loss_mask
    losses = {}
    here = where(Modality.TEXT)
    if here.any():
        losses["text"] = F.cross_entropy(
            model.text_head(hidden[here]), packed.text_targets[here], reduction=reduction
        )
    for modality, name in MEDIA:
        here = where(modality)
        if here.any():
            head = model.head(modality)
            losses[name] = head.loss(_media_targets(packed, modality, head, here), hidden[here])
        elif absent_as_zero:
            losses[name] = hidden.sum() * 0.0
    return losses


def _total(model, losses, default=1.0):
    weights = model.config.loss_weights
    return sum(weights.get(name, default) * value for name, value in losses.items())


class LossWritten(OmniLM):
    """Right: the loss written out as the exercise asks."""

    def loss(self, packed):
        losses = _losses(self, packed)
        losses["loss"] = _total(self, losses)
        return losses


class LossOverEveryPosition(OmniLM):
    """Right as well: cross-entropy over every position, the targets' ignore index (-100)
    leaving out what is not trained text."""

    def loss(self, packed):
        losses = _losses(self, packed)
        logits = self.text_head(self(packed))
        losses["text"] = F.cross_entropy(logits.flatten(0, 1), packed.text_targets.flatten())
        losses["loss"] = _total(self, losses)
        return losses


class LossUnweighted(OmniLM):
    # Plausible mistake: adds the modalities' losses without their weights.
    def loss(self, packed):
        losses = _losses(self, packed)
        losses["loss"] = sum(losses.values())
        return losses


class LossMissingWeightIsZero(OmniLM):
    # Plausible mistake: a modality without a weight (text here) drops out of the total.
    def loss(self, packed):
        losses = _losses(self, packed)
        losses["loss"] = _total(self, losses, default=0.0)
        return losses


class LossAbsentModalityAsZero(OmniLM):
    # Plausible mistake: every modality gets a key, a zero where the batch trains none.
    def loss(self, packed):
        losses = _losses(self, packed, absent_as_zero=True)
        losses["loss"] = _total(self, losses)
        return losses


class LossAtTheTokensOwnModality(OmniLM):
    # Plausible mistake: picks positions by the token's own modality, not the next one's.
    def loss(self, packed):
        def where(modality):
            trained = packed.target_modality != -1
            return (packed.modality == modality) & trained

        losses = _losses(self, packed, where=where)
        losses["loss"] = _total(self, losses)
        return losses


class LossSummedText(OmniLM):
    # Plausible mistake: sums the text loss over tokens instead of averaging it.
    def loss(self, packed):
        losses = _losses(self, packed, reduction="sum")
        losses["loss"] = _total(self, losses)
        return losses


class LossPerToken(OmniLM):
    # Plausible mistake: one mean over every trained token of every modality, so a
    # modality counts by its number of tokens.
    def loss(self, packed):
        losses = _losses(self, packed)
        counts = {
            "text": packed.loss_mask(Modality.TEXT).sum(),
            "image": packed.loss_mask(Modality.IMAGE).sum(),
            "audio": packed.loss_mask(Modality.AUDIO).sum(),
        }
        total = sum(counts[k] * v for k, v in losses.items()) / sum(counts[k] for k in losses)
        losses["loss"] = total
        return losses


class LossDetachedMedia(OmniLM):
    # Plausible mistake: the media losses are detached (logged, not trained).
    def loss(self, packed):
        losses = _losses(self, packed)
        for name in ("image", "audio"):
            if name in losses:
                losses[name] = losses[name].detach()
        losses["loss"] = _total(self, losses)
        return losses


LOSS_RIGHT = (LossWritten, LossOverEveryPosition)
LOSS_MISTAKES = (
    LossUnweighted,
    LossMissingWeightIsZero,
    LossAbsentModalityAsZero,
    LossAtTheTokensOwnModality,
    LossSummedText,
    LossPerToken,
    LossDetachedMedia,
)


def test_the_check_batches_train_what_their_labels_say():
    from omni_edu.lessons.any_to_any.checks import loss_check_batches

    batches = loss_check_batches()
    every = batches["every direction, padded at the end"]
    only_text = batches["captions only (nothing to draw or speak)"]
    for m in (Modality.TEXT, Modality.IMAGE, Modality.AUDIO):
        assert every.loss_mask(m).any()
    assert not only_text.loss_mask(Modality.IMAGE).any()
    assert not only_text.loss_mask(Modality.AUDIO).any()
    assert torch.equal(batches["every direction, padded at the start"].lengths, every.lengths)
