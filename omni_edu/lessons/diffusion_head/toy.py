"""A 2-D distribution with two modes: where regression fails and flow matching does not.

All points share the same condition, and half of them sit near ``(-separation, 0)``,
half near ``(+separation, 0)``. The MSE-optimal prediction is the mean, ``(0, 0)``:
a point that never occurs. A generative head should put its samples on both modes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def two_mode_points(
    n: int,
    separation: float = 2.0,
    noise: float = 0.1,
    cond_dim: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``(n, 2)`` from two Gaussian blobs, and their (identical) conditions.

    Returns ``(points, cond)`` with ``cond`` all zeros ``(n, cond_dim)``: nothing tells
    the model which mode a point comes from.
    """
    side = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1  # -1 or +1
    centres = torch.stack([side * separation, torch.zeros(n)], dim=1)
    points = centres + noise * torch.randn(n, 2, generator=generator)
    return points, torch.zeros(n, cond_dim)


def mode_coverage(
    samples: torch.Tensor, separation: float = 2.0, radius: float = 0.5
) -> dict[str, float]:
    """Fractions of ``samples`` ``(n, 2)`` within ``radius`` of each mode and of the mean.

    Returns ``left``, ``right`` (near ``(-separation, 0)`` and ``(+separation, 0)``) and
    ``middle`` (near ``(0, 0)``, where no real point lies).
    """

    def near(centre_x: float) -> float:
        centre = torch.tensor([centre_x, 0.0])
        return ((samples - centre).norm(dim=1) < radius).float().mean().item()

    return {"left": near(-separation), "right": near(separation), "middle": near(0.0)}


def point_batches(
    points: torch.Tensor, cond: torch.Tensor, batch_size: int = 128, seed: int = 0
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """``step -> (points, cond)``: random rows, the same for the same step (for the Trainer)."""
    if len(points) != len(cond):
        raise ValueError(f"{len(points)} points but {len(cond)} conditions; give one each.")

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        pick = torch.randint(len(points), (batch_size,), generator=g)
        return points[pick], cond[pick]

    return batch


def head_loss(head: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The Trainer's loss function for a head on ``(points, cond)`` batches."""
    points, cond = batch
    return {"loss": head.loss(points, cond)}
