"""Checks for lesson 04's exercises: the flow-matching loss and one Euler sampling step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, check_function
from omni_edu.model.heads.flow import euler_step, flow_matching_loss


def linear_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A made-up velocity field that uses all three inputs, so mix-ups show in the result."""
    return 0.5 * x_t - 2.0 * t[:, None] + cond.sum(-1, keepdim=True)


def wavy_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A non-linear field: it changes with ``t``, so evaluating at the wrong time shows."""
    return torch.sin(3 * x_t + 5 * t[:, None]) + cond[:, :1]


def _loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, dim, field, label in (
        (4, 2, linear_velocity, "4 tokens in 2-D, a linear field"),
        (16, 5, wavy_velocity, "16 tokens in 5-D, a non-linear field"),
    ):
        cases.append(
            Case(
                (
                    field,
                    torch.randn(n, dim, generator=g),
                    torch.randn(n, 3, generator=g),
                    torch.randn(n, dim, generator=g),
                    torch.rand(n, generator=g),
                ),
                label=label,
            )
        )
    return cases


def check_flow_matching_loss(learner_fn: Callable) -> CheckResult:
    """``learner_fn(velocity_fn, x, cond, noise, t) -> loss`` (a scalar tensor)."""
    return check_function(
        "flow_matching_loss",
        learner_fn,
        flow_matching_loss,
        _loss_cases(),
        hint="x_t = (1 - t) * noise + t * x (t as a column: t[:, None]); the target is the "
        "velocity of that straight path, x - noise; return the mean squared error between "
        "velocity_fn(x_t, t, cond) and the target.",
    )


def _euler_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    return [
        Case(
            (
                linear_velocity,
                torch.randn(3, 2, generator=g),
                0.0,
                0.25,
                torch.randn(3, 2, generator=g),
            ),
            label="3 tokens at t=0, dt=0.25, a linear field",
        ),
        Case(
            (
                wavy_velocity,
                torch.randn(8, 4, generator=g),
                0.5,
                0.125,
                torch.randn(8, 2, generator=g),
            ),
            label="8 tokens at t=0.5, dt=0.125, a non-linear field",
        ),
    ]


def check_euler_step(learner_fn: Callable) -> CheckResult:
    """``learner_fn(velocity_fn, x_t, t, dt, cond) -> x_next``."""
    return check_function(
        "euler_step",
        learner_fn,
        euler_step,
        _euler_cases(),
        hint="Evaluate the velocity at the *current* point and time, with t as a tensor of "
        "shape (n,): torch.full((x_t.shape[0],), t); then x_next = x_t + dt * velocity.",
    )
