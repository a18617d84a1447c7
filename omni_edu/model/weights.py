"""Weights: how every OmniLM module starts, and how many parameters it has.

One place for both, so the projector, the decoder, the fusion variants and the heads start
at one scale and are counted one way.
"""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """GPT-2's small normal init, for ``module.apply(init_weights)``.

    Linear and embedding weights are drawn from N(0, 0.02²), linear biases start at zero:
    every modality enters at a similar scale, so none drowns the others (or the modality
    vectors) at the start. Other modules (norms) keep their own init.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``module`` (a tied matrix counts once); with ``trainable_only``, only
    those with ``requires_grad`` (a frozen encoder left out)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
