"""Checks for lesson 00's warm-up exercise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, Hints, check_function

HINTS = Hints(
    "to_unit_range",
    nudge="Each image needs its own smallest and largest value: find them per image (over "
    "channels, height and width), then shift and scale so that they land on 0 and 1.",
    failed="Take the minimum and maximum of each image separately, and add eps to the "
    "denominator of every image.",
    on={
        "shape": "The result has the input's shape. A reduction drops the dimensions it "
        "reduces unless you pass keepdim=True; (batch, 1, 1, 1) then broadcasts against "
        "(batch, channels, height, width).",
        "values": "Rescale each image by its own minimum and maximum, not the whole "
        "batch's: reduce over dims (1, 2, 3) only.",
        "nan": "A constant image has max - min = 0: add eps to the denominator.",
    },
    recipe="low = images.amin(dim=(1, 2, 3), keepdim=True); high = images.amax(dim=(1, 2, 3), "
    "keepdim=True); return (images - low) / (high - low + eps).",
)


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


def check_to_unit_range(
    learner_fn: Callable[..., torch.Tensor],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(images, eps=1e-8)`` rescale every image of a batch on its own?

    ``show_recipe=True`` shows the full recipe now; ``time_limit`` is in seconds.
    """
    g = torch.Generator().manual_seed(0)
    bright = torch.rand(2, 3, 4, 4, generator=g) * 50 + 100
    mixed = torch.stack(
        [torch.rand(3, 4, 4, generator=g), torch.rand(3, 4, 4, generator=g) * 9 - 3]
    )
    add_eps = (
        "Add the eps argument to every image's range, (high - low + eps), as the exercise "
        "says: do not clamp the range to at least eps, and do not hard-code 1e-8."
    )
    cases = [
        Case((torch.rand(1, 3, 2, 2, generator=g),), label="one small image"),
        Case((bright,), label="two bright images (values 100..150)"),
        Case((mixed,), label="two images with different ranges"),
        Case(
            (torch.full((1, 1, 3, 3), 7.0),),
            label="a constant image (must not divide by zero)",
            hint="A constant image has range 0: with eps added to the denominator it becomes "
            "all zeros instead of NaN.",
        ),
        Case(
            (torch.tensor([0.0, 1e-8, 5e-9, 0.0]).reshape(1, 1, 2, 2),),
            label="an image whose range equals eps (1e-8)",
            hint=add_eps,
        ),
        Case(
            (torch.tensor([[[[0.0, 0.5], [0.25, 0.5]]]]),),
            {"eps": 0.5},
            label="range 0.5 with eps=0.5 passed in",
            hint=add_eps,
        ),
    ]
    return check_function(
        "to_unit_range",
        learner_fn,
        to_unit_range,
        cases,
        atol=1e-5,
        hints=HINTS,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
