"""Rotary position embeddings (RoPE) and their multimodal form (M-RoPE, Qwen2-VL).

A query or key vector of one head is read as ``head_dim // 2`` *pairs* of numbers; pair
``i`` is dimensions ``(2i, 2i + 1)``. RoPE turns every pair by an angle ``position *
inv_freq[i]``, so the score ``q . k`` of two rotated vectors depends only on how far apart
the two tokens are, never on where they sit.

In reading order:

1. :func:`rope_frequencies` - how fast each pair turns.
2. :func:`rope_angles` - the angle of every pair at every position, for 1-D positions
   ``(batch, seq)`` or for M-RoPE positions ``(3, batch, seq)`` (time, height, width),
   where each section of the pairs follows its own coordinate.
3. :func:`rope_cos_sin` - their cosines and sines, computed once per forward pass and
   shared by every layer.
4. :func:`apply_rope` - the rotation itself, in real numbers.

The decoder (:mod:`omni_edu.model.transformer`) calls them; lesson 02's exercise asks the
learner to write :func:`apply_rope`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def default_mrope_sections(head_dim: int) -> tuple[int, int, int]:
    """Split the ``head_dim // 2`` rotary frequency pairs into (time, height, width).

    Qwen2-VL uses (16, 24, 24) of 64 pairs: a quarter for time and three eighths each for
    height and width. We keep those proportions; time takes whatever rounding leaves.
    """
    pairs = head_dim // 2
    spatial = (3 * pairs) // 8
    return (pairs - 2 * spatial, spatial, spatial)


def rope_frequencies(head_dim: int, base: float = 10000.0) -> Tensor:
    """Angular speed of each of the ``head_dim // 2`` rotary pairs: ``base^(-2i/head_dim)``.

    Fast pairs tell neighbours apart; slow pairs still change over long distances.
    """
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def rope_angles(
    positions: Tensor,
    inv_freq: Tensor,
    mrope_sections: tuple[int, int, int] | None = None,
) -> Tensor:
    """Rotation angle of every frequency pair at every position.

    Args:
        positions: 1-D positions ``(batch, seq)``, or M-RoPE positions ``(3, batch, seq)``
            holding (time, height, width) for each token.
        inv_freq: ``(head_dim // 2,)`` from :func:`rope_frequencies`.
        mrope_sections: for M-RoPE, how many pairs follow time, height and width (in
            that order, lowest pairs = fastest frequencies first).

    Returns:
        angles ``(batch, seq, head_dim // 2)``. With M-RoPE, pair ``i`` in the time
        section turns with the time coordinate, and so on; when all three coordinates
        are equal this is exactly 1-D RoPE.
    """
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., batch, seq, pairs)
    if positions.dim() == 2:
        return angles
    if positions.dim() != 3 or positions.shape[0] != 3:
        raise ValueError(
            "positions should be 1-D (batch, seq) or M-RoPE (3, batch, seq); "
            f"got {tuple(positions.shape)}."
        )
    if mrope_sections is None:
        raise ValueError("M-RoPE positions (3, batch, seq) need mrope_sections.")
    # Take the time angles for the first section, height for the next, width for the last.
    chunks = angles.split(list(mrope_sections), dim=-1)
    return torch.cat([chunk[axis] for axis, chunk in enumerate(chunks)], dim=-1)


def rope_cos_sin(angles: Tensor) -> tuple[Tensor, Tensor]:
    """``(batch, seq, pairs)`` angles -> cos and sin ``(batch, seq, 1, pairs)``.

    Computed once per forward pass and shared by every layer; the axis of size 1
    broadcasts over the heads.
    """
    angles = angles.unsqueeze(2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate query or key vectors by their positions' angles.

    Pair ``i`` of a head is ``(a, b) = (x[..., 2i], x[..., 2i + 1])``; turned by angle
    ``t`` it becomes ``(a cos t - b sin t, b cos t + a sin t)``. For whole vectors that is
    ``x * cos + turned * sin``, where ``turned`` is every pair turned by a right angle,
    ``(a, b) -> (-b, a)``. (Read as the complex number ``a + 1j * b``, the rotation is one
    multiplication by ``cos t + 1j * sin t``; ``benchmarks/rope.py`` times both.)

    Args:
        x: ``(batch, seq, heads, head_dim)``.
        cos, sin: ``(batch, seq, 1, head_dim // 2)`` from :func:`rope_cos_sin`, one per
            pair; the axis of size 1 broadcasts over the heads.

    Returns:
        ``x`` rotated, same shape and dtype.
    """
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)  # the two numbers of every pair
    turned = torch.stack((-b, a), dim=-1).flatten(-2)
    # One angle per pair -> one per number (bf16 under autocast: stay in x's dtype).
    cos = cos.repeat_interleave(2, dim=-1).to(x.dtype)
    sin = sin.repeat_interleave(2, dim=-1).to(x.dtype)
    return x * cos + turned * sin
