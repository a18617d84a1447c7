"""An OmniLM for a pool: its config, its heads' scales and its measured loss weights.

:func:`build_model` sizes OmniLM by the profile for a pool's vocabulary and tokens;
:func:`balanced_loss_weights` puts every modality's loss on one scale, measured per head
(:func:`prompt_losses`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from omni_edu.data import ATTRIBUTES, VALUES
from omni_edu.model.heads.flow import FlowHeadConfig
from omni_edu.model.heads.output import DISCRETE_KINDS, PER_TOKEN_SIBLING, build_head
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.profiles import Profile
from omni_edu.train import fit

WEIGHT_RULES = ("explained", "blind")


def balanced_loss_weights(
    data: AnyToAnyData,
    image_head: str = "linear",
    audio_head: str = "linear",
    rule: str = "explained",
    **overrides,
) -> dict[str, float]:
    """Loss weights that put every media modality on one scale, measured per head.

    Cross-entropy of text starts near log(vocabulary) and ends near 0.1-1, but the mean
    squared error of an image patch or an audio frame is at most its variance across the
    data (what predicting the average gives), here a few hundredths. Summed with equal
    weights, text dominates the gradient. What a media loss should be divided by depends
    on the head, so it is *measured* (:func:`prompt_losses`) by training the same head
    twice on the pool's tokens: once blind (a constant condition) and once told the scene
    (the object's attributes and the token's place):

    * ``rule="explained"`` (default): 1 / (blind - told), the part of the loss that
      reading the prompt can remove, so that it is worth 1 in every modality. For a
      linear head that is close to the data's variance; a flow head that ignores the
      prompt still reads much of the token from ``x_t``, so far less of its loss is the
      prompt's to explain, and its weight is larger;
    * ``rule="blind"``: 1 / blind, "ignoring the prompt costs 1".

    ``overrides`` are the model's other config fields (head size, time shift), which a
    flow head's losses depend on. Text keeps weight 1. A span head (lesson 04b) gets the
    weight of the per-token head of its token form (``PER_TOKEN_SIBLING``).
    """
    if rule not in WEIGHT_RULES:
        raise ValueError(f"rule should be one of {WEIGHT_RULES}; got {rule!r}.")
    image_head = PER_TOKEN_SIBLING.get(image_head, image_head)
    audio_head = PER_TOKEN_SIBLING.get(audio_head, audio_head)
    config = model_config(data, None, None, image_head, audio_head, **overrides)
    weights = {"text": 1.0}
    for name, kind in (("image", image_head), ("audio", audio_head)):
        losses = prompt_losses(data, name, kind, config.head_config(name))
        scale = losses["blind"] - losses["told"] if rule == "explained" else losses["blind"]
        weights[name] = float(f"{1.0 / max(scale, 1e-6):.2g}")
    return weights


_PROMPT_LOSSES: dict[tuple, dict[str, float]] = {}  # measured once per process


def prompt_losses(
    data: AnyToAnyData, modality: str, kind: str, head: FlowHeadConfig, steps: int | None = None
) -> dict[str, float]:
    """How much of a ``kind`` head's loss on ``modality`` tokens the prompt can explain.

    Trains the head (its own loss, ``steps`` seeded updates, 256 tokens each; by default
    300 through the pool's profile budget, so a gpu-dry run takes a few) on the pool's
    tokens twice: ``"blind"``, with a constant condition, and ``"told"``, with a condition
    that names the scene (one-hot shape, colour, size and position) and the token's place
    in the sequence: what a decoder that reads the prompt perfectly could tell the head.
    Returns both losses averaged over fixed held-out draws (single-object scenes).
    """
    steps = data.profile.budget(300, dry=4) if steps is None else steps
    features = data.patches if modality == "image" else data.audio
    tokens = data.codes[modality] if kind == "codes" else features
    # Keyed by the tokens' content, not the pool object: a pool built again later (or a
    # new one at a freed object's address) must not reuse another pool's measurement.
    fingerprint = (
        tuple(tokens.shape),
        float(tokens.float().sum()),
        float(tokens.float().square().sum()),
    )
    key = (fingerprint, modality, kind, repr(head), steps)
    if key in _PROMPT_LOSSES:
        return dict(_PROMPT_LOSSES[key])
    n, length = tokens.shape[:2]
    attributes = data.batch.attributes[:, 0]
    if kind in ("linear", "regression"):
        # Mean squared error has closed forms: the best constant leaves the variance, and
        # the best prediction from (scene, place) leaves the variance within each group.
        scale = 1.0 if kind == "linear" else head.scale
        groups = (attributes * torch.tensor([1000, 100, 10, 1])).sum(-1)
        within = [features[groups == g].var(dim=0, unbiased=False) for g in groups.unique()]
        counts = torch.stack([(groups == g).sum() for g in groups.unique()]).float()
        told = (torch.stack(within).mean(dim=(1, 2)) * counts).sum() / counts.sum()
        blind = features.reshape(n * length, -1).var(dim=0, unbiased=False).mean()
        result = {"blind": float(blind) / scale**2, "told": float(told) / scale**2}
    else:
        told = torch.cat(
            [F.one_hot(attributes[:, k], len(VALUES[a])) for k, a in enumerate(ATTRIBUTES)], -1
        )
        told = torch.cat(
            [told[:, None].expand(-1, length, -1), torch.eye(length)[None].expand(n, -1, -1)],
            dim=-1,
        ).float()
        flat = tokens.reshape(n * length, *tokens.shape[2:])
        conditions = {"blind": torch.zeros(n * length, 1), "told": told.reshape(n * length, -1)}
        result = {
            name: _fit_head(kind, flat, cond, head, steps) for name, cond in conditions.items()
        }
    _PROMPT_LOSSES[key] = result
    return dict(result)


def _fit_head(kind: str, tokens: Tensor, cond: Tensor, head: FlowHeadConfig, steps: int) -> float:
    """Train a fresh ``kind`` head to predict ``tokens`` from ``cond``; its held-out loss."""
    torch.manual_seed(0)
    width = cond.shape[-1]
    vocab = int(tokens.max()) + 1 if kind == "codes" else 0
    model = build_head(kind, width, head.token_dim, vocab, replace(head, cond_dropout=0.0))
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))
    train, held = order[: -len(order) // 8], order[-len(order) // 8 :]

    def batches(step: int) -> tuple[Tensor, Tensor]:
        pick = train[
            torch.randint(len(train), (256,), generator=torch.Generator().manual_seed(step))
        ]
        return tokens[pick], cond[pick]

    fit(model, lambda m, b: {"loss": m.loss(*b)}, batches, steps, lr=3e-3, progress=False)
    g = torch.Generator().manual_seed(10_000)
    with torch.no_grad():
        losses = [model.loss(tokens[c], cond[c], generator=g) for c in held.split(256)]
    return float(torch.stack(losses).mean())


def _head_scale(data: AnyToAnyData, modality: str) -> tuple[float, float]:
    """The (shift, scale) the regression and flow heads work in: the mean and spread of the
    modality's token features over the pool, so that the head's standard-normal noise has
    the data's scale (pixels have mean about 0.11 and spread 0.14 here; mapping [0, 1] to
    [-1, 1] instead left them at mean -0.78, spread 0.27)."""
    mean, std = data.feature_scale(modality)
    return (round(mean, 3), round(std, 3))


def build_model(
    data: AnyToAnyData,
    seed: int = 0,
    loss_weights: Mapping[str, float] | None = None,
    profile: Profile | None = None,
    image_head: str = "linear",
    audio_head: str = "linear",
    **overrides,
) -> OmniLM:
    """A fresh OmniLM sized by the profile for ``data``'s vocabulary and tokens.

    ``image_head``, ``audio_head``: ``"linear"``, ``"regression"``, ``"flow"`` or
    ``"codes"`` (the latter needs ``data`` built with that modality's tokenizer).
    ``overrides``: other fields of :class:`~omni_edu.model.omni_lm.OmniLMConfig`.
    """
    return OmniLM(
        model_config(data, loss_weights, profile, image_head, audio_head, seed, **overrides)
    )


# The flow heads' settings in OmniLM, measured by benchmarks/flow_ablation.py (issue 18,
# ci, 2-core CPU, 2026-12-06): training times shifted towards the noise, where reading the
# prompt matters (without the shift the generating directions fell from 0.72 to 0.56 and
# text->audio to 0.38), drawn logit-normal (0.82 against 0.77 for uniform times, mean of
# three seeds, higher in each), and three blocks.
FLOW_HEAD = {"flow_time_shift": 12.0, "flow_time_sampling": "logit_normal", "head_depth": 3}

# The rotary layout of the any-to-any model: M-RoPE with width on the fastest pairs, the
# layout lesson 02 measured best on its spatial task (and, in our runs, the one with which a
# flow head learns to read the caption soonest).
ROPE = "mrope_fast_width"


def model_config(
    data: AnyToAnyData,
    loss_weights: Mapping[str, float] | None = None,
    profile: Profile | None = None,
    image_head: str = "linear",
    audio_head: str = "linear",
    seed: int = 0,
    **overrides,
) -> OmniLMConfig:
    """The :class:`~omni_edu.model.omni_lm.OmniLMConfig` of :func:`build_model` (seeds
    the initial weights too); ``overrides`` are further fields of the config."""
    profile = profile or data.profile
    for name, kind in (("image", image_head), ("audio", audio_head)):
        if (kind in DISCRETE_KINDS) != (name in data.tokenizers):
            raise ValueError(
                f"{name}_head={kind!r} but the data gives {name} as "
                f"{'code ids' if name in data.tokenizers else 'features'}: build the data "
                f"with a {name}_tokenizer exactly when the head is 'codes'."
            )
    torch.manual_seed(seed)
    settings = {
        "rope": ROPE,
        "image_head": image_head,
        "audio_head": audio_head,
        "image_scale": _head_scale(data, "image"),
        "audio_scale": _head_scale(data, "audio"),
        "projector_overrides": {
            "image_dim": data.image_dim,
            "audio_dim": data.audio_dim,
            "image_vocab_size": data.vocab_size("image"),
            "audio_vocab_size": data.vocab_size("audio"),
        },
    }
    if loss_weights is not None:
        settings["loss_weights"] = dict(loss_weights)
    settings.update(overrides)
    return OmniLMConfig.from_profile(
        data.tokenizer.vocab_size, data.frames_per_token, profile, **settings
    )
