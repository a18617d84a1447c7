"""Checks for lesson 04b's exercises: the masking schedule, one confidence-unmasking step,
and the flow loss of a whole span.

Every check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from omni_edu.grading import Case, CheckResult, Hints, LearnerMistake, check_function
from omni_edu.model.heads.masked import masked_after, unmask_by_confidence
from omni_edu.model.heads.span import span_flow_loss

MASKED_AFTER = Hints(
    "masked_after",
    nudge="After `step` of `steps` decoding steps, the cosine schedule leaves the share "
    "cos(pi/2 * step/steps) of the span's `length` codes hidden; round down, and make sure "
    "every step reveals at least one code.",
    failed="The count is floor(length * cos(pi / 2 * step / steps)), and at most "
    "length - step (each step reveals at least one). After the last step it must be 0.",
    on={
        "values": "Check the rounding (down, not up: cos(pi/2) is about 6e-17, not 0) and "
        "the cap length - step."
    },
    recipe="n = math.floor(length * math.cos(math.pi / 2 * step / steps)); "
    "return max(0, min(n, length - step)).",
)

UNMASK_BY_CONFIDENCE = Hints(
    "unmask_by_confidence",
    nudge="Among the positions still hidden, keep the n_masked least confident hidden; every "
    "other hidden position takes its sampled code. Positions already revealed never change.",
    failed="Rank only the hidden positions of each row by confidence (a revealed position "
    "must never be hidden again: give it confidence +inf), keep the n_masked lowest hidden, "
    "reveal the rest with their draws, leave revealed codes as they are.",
    on={
        "shape": "Return a pair (codes, masked), both (n, L) like the inputs.",
        "type": "Return a pair (codes, masked) of tensors.",
    },
    recipe="score = confidence.masked_fill(~masked, inf); rank = score.argsort(1).argsort(1); "
    "still = masked & (rank < n_masked); reveal = masked & ~still; "
    "return torch.where(reveal, sampled, codes), still.",
)

SPAN_FLOW_LOSS = Hints(
    "span_flow_loss",
    nudge="Put every span on its straight path at its own time t (one time for all its "
    "tokens), ask the denoiser for the velocity of the whole noised span at once, and "
    "compare with the path's velocity.",
    failed="x_t = (1 - t) * noise + t * x with t broadcast over tokens and features "
    "(t[:, None, None]); the target is x - noise; the denoiser sees the whole span "
    "(x_t, t) in one call; the loss is the MEAN squared error.",
    on={
        "shape": "t has one entry per span, shape (n,); make it (n, 1, 1) to mix the "
        "(n, L, dim) tensors, and pass the (n,) t itself to the denoiser.",
        "error": "t has one entry per span: t[:, None, None] broadcasts over (n, L, dim).",
    },
    recipe="t_span = t[:, None, None]; x_t = (1 - t_span) * noise + t_span * x; "
    "return F.mse_loss(denoiser(x_t, t), x - noise).",
)


# ------------------------------------------------------------------ masked_after


def _schedule_cases() -> list[Case]:
    return [
        Case((1, 8, 16), label="step 1 of 8, 16 codes"),
        Case((4, 8, 16), label="step 4 of 8, 16 codes (half way: cos(pi/4) of them)"),
        Case(
            (2, 16, 16),
            label="step 2 of 16, 16 codes",
            hint="The schedule alone keeps 15 hidden here; every step must reveal one.",
        ),
        Case((5, 6, 9), label="step 5 of 6, 9 codes"),
        Case(
            (8, 8, 16),
            label="the last step (8 of 8)",
            hint="After the last step nothing stays hidden; cos(pi/2) is not exactly 0 in "
            "floating point, so round down.",
        ),
        Case((3, 3, 1), label="one code, step 3 of 3"),
    ]


def check_masked_after(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(step, steps, length) -> int``: codes still hidden after ``step``."""
    return check_function(
        "masked_after",
        learner_fn,
        masked_after,
        _schedule_cases(),
        hints=MASKED_AFTER,
        transform=float,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ---------------------------------------------------------- unmask_by_confidence


def _unmask_case(n: int, length: int, n_masked: int, revealed: int, seed: int, label: str) -> Case:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 50, (n, length), generator=g)
    masked = torch.ones(n, length, dtype=torch.bool)
    for row in range(n):  # some positions already revealed, with high confidence draws
        masked[row, torch.randperm(length, generator=g)[:revealed]] = False
    codes = codes.masked_fill(masked, 0)
    sampled = torch.randint(50, 100, (n, length), generator=g)
    confidence = torch.rand(n, length, generator=g)
    return Case((codes, masked, sampled, confidence, n_masked), label=label)


def _unmask_cases() -> list[Case]:
    return [
        _unmask_case(1, 6, 3, 0, 0, "one span of 6, all hidden, keep 3 hidden"),
        _unmask_case(3, 8, 2, 3, 1, "3 spans of 8, 3 already revealed each, keep 2 hidden"),
        _unmask_case(2, 5, 0, 2, 2, "2 spans of 5, keep none hidden (the last step)"),
    ]


def _as_pair(result: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise LearnerMistake(
            f"unmask_by_confidence should return a pair (codes, masked); got "
            f"{type(result).__name__}.",
            kind="type",
        )
    codes, masked = result
    return codes, masked.bool() if isinstance(masked, torch.Tensor) else masked


def check_unmask_by_confidence(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(codes, masked, sampled, confidence, n_masked) -> (codes, masked)``."""
    return check_function(
        "unmask_by_confidence",
        learner_fn,
        unmask_by_confidence,
        _unmask_cases(),
        hints=UNMASK_BY_CONFIDENCE,
        transform=_as_pair,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ---------------------------------------------------------------- span_flow_loss


def _times_per_span(x_t: torch.Tensor, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.shape != (x_t.shape[0],):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise LearnerMistake(
            f"the denoiser got t of shape {got}; it needs one time per span, shape "
            f"({x_t.shape[0]},) for x_t of shape {tuple(x_t.shape)}.",
            kind="shape",
        )


def span_mixing_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A made-up denoiser in which every token's velocity depends on the whole span (its
    mean), as a bidirectional span's does: denoising one token at a time changes it."""
    _times_per_span(x_t, t)
    return 0.5 * x_t + x_t.mean(dim=1, keepdim=True) - 2.0 * t[:, None, None]


def wavy_span_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A non-linear denoiser that reads the time, the token and the span's first token."""
    _times_per_span(x_t, t)
    return torch.sin(3 * x_t + 5 * t[:, None, None]) + x_t[:, :1]


def _span_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, length, dim, denoiser, label in (
        (3, 4, 2, span_mixing_denoiser, "3 spans of 4 tokens in 2-D, a span-mixing denoiser"),
        (5, 6, 3, wavy_span_denoiser, "5 spans of 6 tokens in 3-D, a non-linear denoiser"),
    ):
        x, noise = (
            torch.randn(n, length, dim, generator=g),
            torch.randn(n, length, dim, generator=g),
        )
        cases.append(Case((denoiser, x, noise, torch.rand(n, generator=g)), label=label))
    return cases


def check_span_flow_loss(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(denoiser, x, noise, t) -> loss`` (a scalar tensor)."""
    return check_function(
        "span_flow_loss",
        learner_fn,
        span_flow_loss,
        _span_cases(),
        hints=SPAN_FLOW_LOSS,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
