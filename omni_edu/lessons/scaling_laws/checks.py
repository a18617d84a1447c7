"""Checks for lesson 07's exercises: the fitting objective and the compute-optimal split.

Every check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from omni_edu.grading import Case, CheckResult, Hints, check_function
from omni_edu.lessons.scaling_laws.chinchilla import compute_optimal_split, huber_log_objective

__all__ = [
    "check_compute_optimal_split",
    "check_huber_log_objective",
    "compute_optimal_split",
    "huber_log_objective",
]

HUBER_LOG_OBJECTIVE = Hints(
    "huber_log_objective",
    nudge="Predict log L for every run from the five parameters (the log of a sum of three "
    "exponentials), take the residual against the measured log L, and add up the Huber "
    "losses of the residuals.",
    failed="Compute the prediction with torch.logsumexp, apply Huber with the given delta, "
    "and SUM over runs (not the mean).",
    on={
        "shape": "Return one number (a 0-d tensor): the sum over runs.",
    },
    recipe="Predict log L with torch.logsumexp over the three terms a - alpha*log_n, "
    "b - beta*log_d and e (stack them on a new first dimension), take the residual "
    "prediction - log_l, apply Huber with the given delta and SUM over runs (not mean).",
)

COMPUTE_OPTIMAL_SPLIT = Hints(
    "compute_optimal_split",
    nudge="With C = 6 N D fixed, minimise A / N**alpha + B / D**beta: N* grows as "
    "C ** (beta / (alpha + beta)) and D* as C ** (alpha / (alpha + beta)). Work out the "
    "constant in front and check that 6 * N* * D* equals C.",
    failed="N* uses the exponent beta / (alpha + beta), D* uses alpha / (alpha + beta), both "
    "applied to C / 6; check 6 * N* * D* == C.",
    on={
        "type": "Return a pair (N*, D*).",
        "length": "Return a pair (N*, D*).",
    },
    recipe="G = (alpha*A / (beta*B)) ** (1/(alpha+beta)); N* = G * (C/6) ** (beta/(alpha+beta)); "
    "D* = (C/6) ** (alpha/(alpha+beta)) / G. Check: 6 * N* * D* should equal C.",
)


def _as_scalar(x):
    """A float64 scalar tensor, or ``x`` unchanged when it is not one (then compared as is)."""
    try:
        return torch.as_tensor(x, dtype=torch.float64).reshape(())
    except (TypeError, ValueError, RuntimeError):
        return x


def _as_pair(x):
    """``(N*, D*)`` as float64 arrays, or ``x`` unchanged when it is not such a pair."""
    try:
        n_opt, d_opt = x
        return (np.asarray(n_opt, dtype=np.float64), np.asarray(d_opt, dtype=np.float64))
    except (TypeError, ValueError):
        return x


def _runs(n_runs: int, seed: int, noise: float) -> tuple[torch.Tensor, ...]:
    """Logs of ``n_runs`` made-up runs of a Hoffmann-like law, with log-normal noise."""
    g = torch.Generator().manual_seed(seed)
    log_n = torch.empty(n_runs, dtype=torch.float64).uniform_(13, 21, generator=g)
    log_d = torch.empty(n_runs, dtype=torch.float64).uniform_(18, 25, generator=g)
    loss = 1.69 + 406.4 * torch.exp(-0.34 * log_n) + 410.7 * torch.exp(-0.28 * log_d)
    log_l = loss.log() + noise * torch.randn(n_runs, generator=g, dtype=torch.float64)
    return log_n, log_d, log_l


def check_huber_log_objective(
    learner_fn: Callable[..., torch.Tensor],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(theta, log_n, log_d, log_l, delta)`` give the summed Huber loss
    of the log-space Chinchilla prediction?"""
    hoffmann = torch.tensor(
        [math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28], dtype=torch.float64
    )
    start = torch.tensor([5.0, 5.0, 0.5, 0.5, 0.5], dtype=torch.float64)
    cases = [
        Case((hoffmann, *_runs(4, 0, 1e-4), 1e-3), label="true parameters, residuals below delta"),
        Case(
            (hoffmann, *_runs(6, 1, 0.05), 1e-3),
            label="true parameters, residuals above delta",
            hint="Above delta, Huber grows linearly: delta * (|r| - delta / 2); below it, "
            "r ** 2 / 2.",
        ),
        Case((start, *_runs(12, 2, 0.01), 1e-3), label="a grid start far from the optimum"),
        Case(
            (start, *_runs(12, 3, 0.01), 0.1),
            label="a wide delta of 0.1",
            hint="Use the delta argument, not a fixed value.",
        ),
    ]
    return check_function(
        "huber_log_objective",
        learner_fn,
        lambda *args: huber_log_objective(*args),
        cases,
        atol=1e-10,
        rtol=1e-6,
        transform=_as_scalar,
        hints=HUBER_LOG_OBJECTIVE,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def check_compute_optimal_split(
    learner_fn: Callable[..., tuple], *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(C, A=, B=, alpha=, beta=)`` return Hoffmann et al.'s ``(N*, D*)``?"""
    hoffmann = {"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    cases = [
        Case((5.76e23,), hoffmann, label="Chinchilla's budget, Hoffmann's constants"),
        Case(
            (np.array([1e15, 1e18, 1e21]),),
            hoffmann,
            label="three budgets at once",
            hint="C may be an array of budgets: use ** and NumPy operations, which work "
            "elementwise (not math.pow or a Python loop that returns one number).",
        ),
        Case(
            (1e12,),
            {"A": 2.0, "B": 50.0, "alpha": 0.5, "beta": 0.25},
            label="unequal exponents",
            hint="With alpha != beta the two exponents differ: N* uses beta / (alpha + beta), "
            "D* uses alpha / (alpha + beta).",
        ),
        Case((3e9,), {"A": 80.0, "B": 8.0, "alpha": 0.3, "beta": 0.6}, label="a tiny budget"),
    ]
    return check_function(
        "compute_optimal_split",
        learner_fn,
        compute_optimal_split,
        cases,
        rtol=1e-6,
        atol=0.0,
        transform=_as_pair,
        hints=COMPUTE_OPTIMAL_SPLIT,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
