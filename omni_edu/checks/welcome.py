"""Checks for lesson 00's warm-up exercise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, check_function


def to_unit_range(images: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rescale each image of a batch to [0, 1] using its own minimum and maximum.

    images: (batch, channels, height, width) -> the same shape, every image spanning [0, 1]
    (a constant image becomes all zeros; ``eps`` avoids dividing by zero).
    """
    if images.dim() != 4:
        raise ValueError(
            f"images should be (batch, channels, height, width); got {tuple(images.shape)}"
        )
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low + eps)


def check_to_unit_range(learner_fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Does ``learner_fn`` rescale every image of a batch on its own?"""
    g = torch.Generator().manual_seed(0)
    bright = torch.rand(2, 3, 4, 4, generator=g) * 50 + 100
    mixed = torch.stack(
        [torch.rand(3, 4, 4, generator=g), torch.rand(3, 4, 4, generator=g) * 9 - 3]
    )
    cases = [
        Case((torch.rand(1, 3, 2, 2, generator=g),), label="one small image"),
        Case((bright,), label="two bright images (values 100..150)"),
        Case((mixed,), label="two images with different ranges"),
        Case((torch.full((1, 1, 3, 3), 7.0),), label="a constant image (must not divide by zero)"),
    ]
    return check_function(
        "to_unit_range",
        learner_fn,
        to_unit_range,
        cases,
        hint="Take the min and max over (channels, height, width) of each image separately "
        "(amin/amax with dim=(1, 2, 3), keepdim=True), not over the whole batch.",
        atol=1e-5,
    )
