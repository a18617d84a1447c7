"""Checks for lesson 06's exercises: the prompt format of every direction, and the model's
loss (the package's weights loaded into the learner's OmniLM).

The check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, Hints, check_function, check_module
from omni_edu.modalities import TextTokenizer
from omni_edu.model.interleave import PackedBatch, SpecialTokens, pack
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import DecoderConfig
from omni_edu.parts.any_to_any import DIRECTIONS, make_document

MAKE_DOCUMENT = Hints(
    "make_document",
    nudge="A training document is three parts in order: the task (its token, plus the "
    "caption when the input is text), the input, and the output. Only the output is "
    "trained (predict=True).",
    failed="Check each segment's modality, contents and predict flag: the task and the input "
    "have predict=False, the output predict=True.",
    on={
        "length": "One segment for the task (+ caption), one for the input when it is an "
        "image or a sound, one for the output when a target is given.",
    },
    recipe="Start with a text segment holding the task token (plus the caption's ids when "
    "the input is text), predict=False; then the image or audio input with "
    "predict=False; then, if a target is given, the output with predict=True. "
    "Segments compare by modality, contents, grid and predict flag.",
)


def _cases() -> list[Case]:
    tokenizer = TextTokenizer()
    g = torch.Generator().manual_seed(0)
    inputs = {
        "text": "a small red circle at the top left",
        "image": torch.rand(4, 48, generator=g),  # a 2x2 grid of 4x4 RGB patches
        "audio": torch.rand(3, 64, generator=g),  # 3 audio tokens
    }
    outputs = {
        "text": "a large blue square at the bottom right",
        "image": torch.rand(4, 48, generator=g),
        "audio": torch.rand(3, 64, generator=g),
    }
    cases = []
    for name, d in DIRECTIONS.items():
        cases.append(
            Case(
                (name, tokenizer, inputs[d.source], outputs[d.target]),
                label=f"{name}, a training example (prompt and output)",
            )
        )
    prompt = "Without a target, stop after the input: the prompt is what the model continues."
    cases.append(
        Case(
            ("text->image", tokenizer, inputs["text"]),
            label="text->image, the prompt alone",
            hint=prompt,
        )
    )
    cases.append(
        Case(
            ("audio->text", tokenizer, inputs["audio"]),
            label="audio->text, the prompt alone",
            hint=prompt,
        )
    )
    return cases


def check_make_document(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(direction, tokenizer, source, target=None)`` lay out every
    direction as [task token (+ caption), input, output] with only the output trained?"""
    return check_function(
        "make_document",
        learner_fn,
        make_document,
        _cases(),
        hints=MAKE_DOCUMENT,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ---------------------------------------------------------------------------------------
# OmniLM.loss: the learner's model loss, with the package's weights loaded
# ---------------------------------------------------------------------------------------

OMNI_LOSS = Hints(
    "OmniLM.loss",
    nudge="One forward pass gives a hidden state per position. Each position is trained on "
    "the token after it, in that token's modality: packed.loss_mask(modality) says where. "
    "Score text with cross-entropy through the text head, pictures and sounds with their "
    "own head's loss; keep one mean loss per modality that has positions, and add them up "
    "with the config's loss weights.",
    failed="Check the positions (loss_mask: the *next* token's modality), the mean per "
    "modality (not per token over all modalities), and the weights (a modality without a "
    "weight counts 1).",
    on={
        "keys": "Return a loss only for the modalities this batch trains, plus 'loss': a "
        "batch of captions has no 'image' or 'audio' key.",
        "gradient": "The losses match but a gradient does not: every loss must flow back "
        "through the model (no .item() or .detach() before the total).",
    },
    recipe="hidden = self(packed); losses = {}; for text: here = packed.loss_mask("
    "Modality.TEXT), if here.any(): losses['text'] = F.cross_entropy(self.text_head("
    "hidden[here]), packed.text_targets[here]); for image and audio: here = "
    "packed.loss_mask(m), if here.any(): head = self.head(m); targets = "
    "packed.code_targets[here] if head.discrete else packed.image_targets[here] (or "
    "audio_targets); losses[name] = head.loss(targets, hidden[here]); then losses['loss'] = "
    "sum(self.config.loss_weights.get(name, 1.0) * loss for name, loss in losses.items()).",
)


def loss_check_config() -> OmniLMConfig:
    """A tiny OmniLM for the loss check: pictures as features (a linear head), sounds as
    code ids (a softmax head), and loss weights that leave text at its default of 1."""
    vocab = len(TextTokenizer().tokens)
    projector = ProjectorConfig(
        d_model=16, vocab_size=vocab, image_dim=12, audio_dim=8, audio_vocab_size=10
    )
    return OmniLMConfig(
        projector=projector,
        decoder=DecoderConfig(d_model=16, n_layers=1, n_heads=2),
        rope="1d",
        image_head="linear",
        audio_head="codes",
        loss_weights={"image": 2.5, "audio": 0.5},
    )


def loss_check_batches() -> dict[str, PackedBatch]:
    """The packed batches the check runs: every direction (right padding), the same left
    padded, and captions only (no picture or sound is trained)."""
    tok = TextTokenizer()
    specials = SpecialTokens.from_vocab(tok.ids)
    g = torch.Generator().manual_seed(3)
    captions = ["a small red circle at the top left", "a large blue box at the bottom right"]

    def item(modality: str, k: int) -> str | torch.Tensor:
        if modality == "text":
            return captions[k % 2]
        if modality == "image":
            return torch.rand(4, 12, generator=g)  # a 2x2 grid of patches
        return torch.randint(10, (3,), generator=g)  # 3 sound codes

    docs = [
        make_document(name, tok, item(d.source, k), item(d.target, k + 1))
        for k, (name, d) in enumerate(DIRECTIONS.items())
    ]
    to_text = [doc for doc, d in zip(docs, DIRECTIONS.values(), strict=True) if d.target == "text"]
    sizes = dict(specials=specials, image_dim=12, audio_dim=8)
    return {
        "every direction, padded at the end": pack(docs, **sizes),
        "every direction, padded at the start": pack(docs, pad_side="left", **sizes),
        "captions only (nothing to draw or speak)": pack(to_text, **sizes),
    }


def _total_last(losses: dict) -> dict:
    """Each modality's loss before the total, so that a difference is reported at the
    modality where it starts rather than at the sum it spreads to."""
    return {k: losses[k] for k in sorted(losses, key=lambda k: k == "loss")}


def check_omni_loss(
    learner_cls: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_cls(config)``: an :class:`~omni_edu.model.omni_lm.OmniLM` whose
    ``loss(packed) -> {"text": ..., "image": ..., "audio": ..., "loss": ...}`` is the
    learner's. The package's weights are loaded into it; every loss and every gradient
    must match the package's on packed batches of every direction."""
    batches = loss_check_batches()
    return check_module(
        learner_cls,
        OmniLM,
        loss_check_config(),
        {label: (lambda g, p=batch: (p,)) for label, batch in batches.items()},
        forward=lambda model, packed: _total_last(model.loss(packed)),
        hints=OMNI_LOSS,
        name="OmniLM.loss",
        input_grads=False,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
