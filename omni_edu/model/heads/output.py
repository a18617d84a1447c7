"""The output heads of OmniLM: how a hidden state becomes the next token of a modality.

The decoder gives one hidden state ``(d_model,)`` per position. What turns it into the
next token depends on what a token *is*:

* a word or a VQ code id - a finite vocabulary: a linear map to logits and a softmax
  (:class:`CodeHead` for image/audio codes; the text head is the same idea, tied to the
  text embedding table); sampled with :func:`sample_token`;
* a continuous patch or audio frame - a vector: a **regression** head predicts it directly
  with mean squared error (:class:`LinearHead`, or the MLP
  :class:`~omni_edu.model.heads.flow.RegressionHead`), which gives the conditional
  *mean*; a **flow** head (:class:`~omni_edu.model.heads.flow.FlowHead`) learns to turn
  noise into a token, which gives a *sample*;
* a whole span at once (lesson 04b, :mod:`~omni_edu.model.heads.span`): a **DiT** head
  denoises all of a picture's patches together from the decoder's state before it
  (:class:`~omni_edu.model.heads.dit.DiTHead`); in **whole-image diffusion** the decoder
  itself denoises the picture's span
  (:class:`~omni_edu.model.heads.transfusion.TransfusionHead`); **masked codes** fill in a
  picture's code ids in a few parallel steps
  (:class:`~omni_edu.model.heads.masked.MaskedCodeHead`).

Every per-token head has the same two methods, so OmniLM can swap them: ``loss(target,
cond)`` (the mean loss of targets given hidden states ``(n, d_model)``) and ``sample(cond,
**options)`` (one token per hidden state). ``discrete`` says whether targets are code ids;
``writes_span`` marks a span head, whose methods take whole spans (see its module).
:func:`build_head` makes a head by name; lessons 04 and 04b race them.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.heads.dit import DiTConfig, DiTHead
from omni_edu.model.heads.flow import FlowHead, FlowHeadConfig, RegressionHead, guide
from omni_edu.model.heads.masked import MaskedCodeHead
from omni_edu.model.heads.transfusion import TransfusionHead

HEAD_KINDS = ("linear", "regression", "flow", "codes", "dit", "transfusion", "masked_codes")
DISCRETE_KINDS = ("codes", "masked_codes")  # heads that write a tokenizer's code ids
SPAN_KINDS = ("dit", "transfusion", "masked_codes")  # heads that write a whole span at once
# The per-token head of each span head's token form: the same data (features or code ids)
# and the same kind of loss, so its measured loss weight and flow settings serve both.
PER_TOKEN_SIBLING = {"dit": "flow", "transfusion": "flow", "masked_codes": "codes"}


def sample_token(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row of ``logits`` ``(n, vocab)``; returns ids ``(n,)``.

    ``temperature=0`` is greedy (the most likely token). Otherwise the logits are divided
    by the temperature (below 1 sharpens, above 1 flattens) and, with ``top_k``, every
    token outside the ``k`` most likely is ruled out before sampling.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits should be (n, vocab); got {tuple(logits.shape)}.")
    if temperature < 0:
        raise ValueError(f"temperature should be >= 0 (0 = greedy); got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k should be a positive number of tokens or None; got {top_k}.")
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_best = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    probs = logits.softmax(dim=-1).cpu()  # sample on the CPU: same draws on any device
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


class LinearHead(nn.Module):
    """The simplest continuous head: a linear map from hidden state to token, MSE loss.

    It predicts the conditional mean of the token: sharp where the decoder is sure,
    a blurry average where several tokens are likely.
    """

    discrete = False

    def __init__(self, d_model: int, token_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, token_dim)

    def loss(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error of the prediction from ``cond`` ``(n, d_model)`` to ``x``."""
        return F.mse_loss(self.proj(cond), x)

    def sample(
        self,
        cond: Tensor,
        guidance: float = 1.0,
        uncond: Tensor | None = None,
        **ignored: object,
    ) -> Tensor:
        """The prediction ``(..., token_dim)`` for hidden states ``(..., d_model)``.

        Sampling options of other heads (``steps``, ``temperature``) are ignored: there is
        nothing to sample. ``guidance`` != 1 extrapolates from the prediction for
        ``uncond`` (an empty prompt's hidden states), as classifier-free guidance does."""
        return guide(self.proj, cond, guidance, uncond)


class CodeHead(nn.Module):
    """Discrete media tokens: logits over a tokenizer's ``vocab_size`` codes, cross-entropy.

    Exactly the text head's recipe, for the code ids of lesson 03's VQ tokenizer.
    """

    discrete = True

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size, bias=False)

    def loss(self, ids: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Cross-entropy of code ids ``(n,)`` given hidden states ``(n, d_model)``."""
        return F.cross_entropy(self.proj(cond), ids)

    def sample(
        self,
        cond: Tensor,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        guidance: float = 1.0,
        uncond: Tensor | None = None,
        **ignored: object,
    ) -> Tensor:
        """One code id per hidden state ``(n, d_model)`` -> ``(n,)`` (greedy by default;
        options of continuous heads such as ``steps`` are ignored).

        ``guidance`` != 1 applies classifier-free guidance to the logits,
        ``l_uncond + guidance * (l_cond - l_uncond)``, with ``uncond`` the hidden states
        of the unconditional prompt (the same recipe as the flow head's, so a race of the
        two compares heads, not guidance)."""
        return sample_token(guide(self.proj, cond, guidance, uncond), temperature, top_k, generator)


def build_head(
    kind: str,
    d_model: int,
    token_dim: int = 0,
    vocab_size: int = 0,
    flow: FlowHeadConfig | None = None,
) -> nn.Module:
    """An output head by name.

    Args:
        kind: ``"linear"`` (linear regression, MSE), ``"regression"`` (the flow head's MLP
            trained with MSE: the baseline of equal size), ``"flow"`` (per-token flow
            matching), ``"codes"`` (softmax over ``vocab_size`` tokenizer codes), or a span
            head: ``"dit"`` (a DiT of ``flow.depth`` blocks ``flow.width`` wide),
            ``"transfusion"`` (whole-image diffusion in the decoder) or ``"masked_codes"``
            (masked discrete diffusion over ``vocab_size`` codes).
        d_model: width of the hidden states the head reads.
        token_dim: width of a continuous token (patch or audio frame features).
        vocab_size: codes of the tokenizer, for ``"codes"``.
        flow: network sizes, data scale and sampling steps of the ``"regression"``,
            ``"flow"``, ``"dit"`` and ``"transfusion"`` heads (and the default decoding steps
            of ``"masked_codes"``); ``token_dim`` and ``cond_dim`` come from the arguments.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"an output head is one of {HEAD_KINDS}; got {kind!r}.")
    flow = flow or FlowHeadConfig(token_dim=max(token_dim, 1), cond_dim=d_model)
    if kind in DISCRETE_KINDS:
        if vocab_size < 1:
            raise ValueError(f"a {kind!r} head needs the tokenizer's vocab_size (codebook size).")
        if kind == "masked_codes":
            return MaskedCodeHead(d_model, vocab_size, flow.sampling_steps)
        return CodeHead(d_model, vocab_size)
    if token_dim < 1:
        raise ValueError(f"a {kind!r} head needs token_dim >= 1; got {token_dim}.")
    if kind == "linear":
        return LinearHead(d_model, token_dim)
    config = replace(flow, token_dim=token_dim, cond_dim=d_model)
    if kind == "dit":
        return DiTHead(DiTConfig.from_flow(config, config.width, config.depth))
    if kind == "transfusion":
        return TransfusionHead(d_model, config)
    return FlowHead(config) if kind == "flow" else RegressionHead(config)
