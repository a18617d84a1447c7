"""Checks for lesson 04's exercises: the flow-matching loss and one Euler sampling step.

Every check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, Hints, LearnerMistake, check_function
from omni_edu.model.heads.flow import euler_step, flow_matching_loss, timestep_embedding

FLOW_MATCHING_LOSS = Hints(
    "flow_matching_loss",
    nudge="Put each token on the straight path between its noise and its data point at its "
    "time t, ask velocity_fn for the velocity there, and compare it with the path's own "
    "velocity (a mean squared error).",
    failed="The path x_t = (1 - t) * noise + t * x runs from noise (t = 0) to data (t = 1), "
    "so its velocity is x - noise; the loss is the MEAN squared error.",
    on={
        "shape": "The loss is one number: a 0-d tensor, the mean over tokens and dimensions. "
        "t has one entry per token; use it as a column (t[:, None]) to mix the (n, dim) "
        "tensors.",
    },
    recipe="x_t = (1 - t) * noise + t * x (t as a column: t[:, None]); the target is the "
    "velocity of that straight path, x - noise; return the mean squared error between "
    "velocity_fn(x_t, t, cond) and the target.",
)

EULER_STEP = Hints(
    "euler_step",
    nudge="One Euler step moves x_t along the velocity for a time dt: ask velocity_fn for "
    "the velocity at the current point and time, then take the step.",
    failed="Evaluate the velocity at the current point and time (x_t, t), then "
    "x_next = x_t + dt * velocity.",
    on={
        "shape": "velocity_fn wants t as a tensor with one entry per token: "
        "torch.full((x_t.shape[0],), t).",
    },
    recipe="Evaluate the velocity at the *current* point and time, with t as a tensor of "
    "shape (n,): torch.full((x_t.shape[0],), t); then x_next = x_t + dt * velocity.",
)


def linear_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A made-up velocity field that uses all three inputs, so mix-ups show in the result."""
    return 0.5 * x_t - 2.0 * t[:, None] + cond.sum(-1, keepdim=True)


def wavy_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A non-linear field: it changes with ``t``, so evaluating at the wrong time shows."""
    return torch.sin(3 * x_t + 5 * t[:, None]) + cond[:, :1]


def per_token_time_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A field that reads one time per token through a sinusoidal embedding, as the flow
    head's network does. It refuses any ``t`` but ``(n,)``: a ``(1,)`` tensor would
    broadcast silently here, and give the wrong shape to a network that embeds ``t`` per row.
    """
    if not isinstance(t, torch.Tensor) or t.shape != (x_t.shape[0],):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise LearnerMistake(
            f"velocity_fn got t of shape {got}; it needs one time per token, shape "
            f"({x_t.shape[0]},) for x_t of shape {tuple(x_t.shape)}.",
            kind="shape",
        )
    return timestep_embedding(t, x_t.shape[1]) * x_t + cond[:, :1]


def _loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, dim, field, label, hint in (
        (4, 2, linear_velocity, "4 tokens in 2-D, a linear field", ""),
        (
            16,
            5,
            wavy_velocity,
            "16 tokens in 5-D, a non-linear field",
            "This field changes with t: pass the same t you used to build x_t.",
        ),
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
                hint=hint,
            )
        )
    return cases


def check_flow_matching_loss(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(velocity_fn, x, cond, noise, t) -> loss`` (a scalar tensor)."""
    return check_function(
        "flow_matching_loss",
        learner_fn,
        flow_matching_loss,
        _loss_cases(),
        hints=FLOW_MATCHING_LOSS,
        show_recipe=show_recipe,
        time_limit=time_limit,
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
            hint="This field changes with t: evaluate it at the current time t, not at t + dt.",
        ),
        Case(
            (
                per_token_time_velocity,
                torch.randn(5, 4, generator=g),
                0.75,
                0.25,
                torch.randn(5, 3, generator=g),
            ),
            label="5 tokens at t=0.75, a field that embeds t per token (needs t of shape (5,))",
        ),
    ]


def check_euler_step(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(velocity_fn, x_t, t, dt, cond) -> x_next``."""
    return check_function(
        "euler_step",
        learner_fn,
        euler_step,
        _euler_cases(),
        hints=EULER_STEP,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
