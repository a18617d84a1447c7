"""Finite scalar quantisation (FSQ, Mentzer et al. 2023): a codebook you never learn.

Each of the ``d`` code dimensions is squashed into a bounded range and rounded to one of
``levels[i]`` values. The codebook is implicit: every combination of per-dimension values
is a code, ``prod(levels)`` in all (``(8, 5, 5, 5)`` gives 1000). Nothing can collapse
because nothing is learned: there is no codebook loss, no commitment loss, no EMA and no
dead codes to restart.

The values of one dimension are spread evenly over ``[-1, 1]``, both ends included:
``L = 3`` gives ``-1, 0, 1``; ``L = 2`` gives ``-1, 1``; ``L = 4`` gives
``-1, -1/3, 1/3, 1``. An odd ``L`` has a value for 0 and ``z = 0`` rounds to it; an even
``L`` has none, and ``z = 0`` sits on the boundary between the two middle values.
(The paper's own bound shifts even levels by half a step so that 0 is a value; with
``L = 2`` that shift needs ``atanh`` of a number above 1, which is NaN, and near it the
gradient vanishes. The symmetric grid has neither problem.)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def round_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward; identity backward (rounding has zero gradient almost everywhere)."""
    return x + (torch.round(x) - x).detach()


class FSQ(nn.Module):
    """Quantise ``z`` ``(..., len(levels))`` to a grid with ``levels[i]`` values per dimension.

    Codes lie in ``[-1, 1]``. ``codes_to_indices`` and ``indices_to_codes`` turn codes into
    token ids in ``[0, prod(levels))`` and back (mixed-radix digits).
    """

    def __init__(self, levels: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"levels should be integers >= 2, one per dimension; got {levels}")
        self.levels_tuple = levels
        self.codebook_size = math.prod(levels)
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        # Mixed-radix place values: index = digit_0 + L_0 * (digit_1 + L_1 * (...)).
        basis = torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.long), dim=0)
        self.register_buffer("basis", basis, persistent=False)

    def _half(self, dtype: torch.dtype) -> torch.Tensor:
        """``(L - 1) / 2`` per dimension: the distance from the middle digit to either end."""
        return (self.levels.to(dtype) - 1) / 2

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each dimension into ``[-(L-1)/2, (L-1)/2]``, centred on ``bound(0) = 0``.

        Adding ``(L-1)/2`` and rounding then gives exactly the digits ``0 .. L-1``: ``tanh``
        never leaves ``[-1, 1]``, so no value can round past either end.
        """
        return torch.tanh(z) * self._half(z.dtype)

    def _check(self, z: torch.Tensor) -> None:
        if z.shape[-1] != len(self.levels_tuple):
            raise ValueError(
                f"z should be (..., {len(self.levels_tuple)}), one dimension per FSQ level; "
                f"got {tuple(z.shape)}."
            )

    def squash(self, z: torch.Tensor) -> torch.Tensor:
        """The codes before rounding: ``bound(z)`` rescaled to ``(-1, 1)``, ``z``'s shape.

        :meth:`forward` rounds exactly this to the nearest grid value, so it is the
        continuous value a decoder reads when the rounding is skipped.
        """
        self._check(z)
        return self.bound(z) / self._half(z.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantised codes in ``[-1, 1]``, same shape as ``z``, straight-through gradient."""
        self._check(z)
        half = self._half(z.dtype)
        digits = round_straight_through(self.bound(z) + half)  # 0 .. L-1, as floats
        return (digits - half) / half

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., d)`` from :meth:`forward` -> token ids ``(...)`` int64."""
        half = self._half(codes.dtype)
        digits = torch.round(codes * half + half).long()  # 0 .. L-1
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids ``(...)`` -> codes ``(..., d)`` in ``[-1, 1]``."""
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"FSQ indices should lie in [0, {self.codebook_size}); got values from "
                f"{int(indices.min())} to {int(indices.max())}."
            )
        digits = (indices.long()[..., None] // self.basis) % self.levels
        half = self._half(torch.float32)
        return (digits.float() - half) / half
