"""The mixed-modal law (Aghajanyan et al. 2023, "Scaling Laws for Generative Mixed-Modal
Language Models", arXiv 2301.03728).

A model trained on modalities ``i`` and ``j`` together, with ``D_i`` and ``D_j`` tokens of
each, scores the mean of its two per-modality losses as::

    L_ij(N, D_i, D_j) = [L_i(N, D_i) + L_j(N, D_j)] / 2
                        - C_ij + A_ij / N**alpha_ij + B_ij / (D_i + D_j)**beta_ij

where ``L_i`` and ``L_j`` are the unimodal Chinchilla laws fitted first. The last three
terms are the **interaction**: negative means the modalities help each other (synergy),
positive means they compete for capacity. ``C_ij`` is the most synergy the pair can reach;
the two power laws say how competition fades with model size and with total tokens.

:func:`fit_bimodal` -> :class:`BimodalFitResult`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from omni_edu.lessons.scaling_laws.chinchilla import FitResult
from omni_edu.lessons.scaling_laws.fitting import (
    HUBER_DELTA,
    ArrayLike,
    LawFit,
    ValueAndGrad,
    as_1d,
    capped_exp,
    check_delta,
    check_points,
    huber_parts,
    multistart,
    power_term,
    shape_of,
)
from omni_edu.stats import bootstrap_refits, percentile_interval

BIMODAL_PARAMS = ("C", "A", "alpha", "B", "beta")


# ---------------------------------------------------------------------------
# Mixed-modal fit (Aghajanyan et al. 2023)
# ---------------------------------------------------------------------------


def bimodal_interaction(
    N: ArrayLike, D: ArrayLike, *, C: float, A: float, alpha: float, B: float, beta: float
) -> np.ndarray:
    """The interaction ``-C + A / N**alpha + B / D**beta`` (``D``: total tokens).

    Negative: mixing the two modalities helps (synergy). Positive: they compete.
    """
    n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    return -C + power_term(A, n, alpha) + power_term(B, d, beta)


def _interaction_t(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    """Interaction for raw ``theta = (C, a, alpha, b, beta)``; ``(5,)`` or ``(starts, 5)``."""
    c, a, alpha, b, beta = (t[..., None] for t in theta.unbind(-1))
    return -c + torch.exp(a - alpha * log_n) + torch.exp(b - beta * log_d)


def _bimodal_value_and_grad(
    base: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor, loss: torch.Tensor, delta: float
) -> ValueAndGrad:
    """Summed Huber loss of the relative residual of the mixed-modal law, and its gradient."""

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, a, alpha, b, beta = (t[..., None] for t in theta.unbind(-1))
        by_n, by_d = torch.exp(a - alpha * log_n), torch.exp(b - beta * log_d)
        value, slope = huber_parts((base - c + by_n + by_d - loss) / loss, delta)
        s = slope / loss  # d Huber / d prediction
        grad = torch.stack(
            [
                -s.sum(-1),
                (s * by_n).sum(-1),
                -(s * by_n * log_n).sum(-1),
                (s * by_d).sum(-1),
                -(s * by_d * log_d).sum(-1),
            ],
            dim=-1,
        )
        return value.sum(-1), grad

    return value_and_grad


@dataclass(kw_only=True)
class BimodalFitResult(LawFit):
    """A fitted mixed-modal law for modalities ``i`` and ``j`` (Aghajanyan et al. 2023).

    ``params`` holds the interaction's ``C, A, alpha, B, beta`` (:data:`BIMODAL_PARAMS`);
    ``law_i`` and ``law_j`` are the unimodal fits it builds on; ``ci`` and ``bootstrap`` as
    in :class:`LawFit`.
    """

    NAMES = BIMODAL_PARAMS
    TITLE = "Mixed-modal interaction"
    EXPONENTS = ("alpha", "beta")
    OFFSETS = ("C",)

    law_i: FitResult
    law_j: FitResult

    def interaction(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """``-C + A / N**alpha + B / D**beta`` at ``N`` parameters, ``D`` total tokens."""
        return bimodal_interaction(N, D, **self.params)

    def predict(self, N: ArrayLike, D_i: ArrayLike, D_j: ArrayLike) -> np.ndarray:
        """Predicted mean loss of a model trained on ``D_i`` + ``D_j`` tokens."""
        d_i, d_j = np.asarray(D_i, dtype=np.float64), np.asarray(D_j, dtype=np.float64)
        base = (self.law_i.predict(N, d_i) + self.law_j.predict(N, d_j)) / 2
        return base + self.interaction(N, d_i + d_j)

    def mixing_report(self, N: ArrayLike, D: ArrayLike) -> list[dict]:
        """Does mixing help or hurt at each model size?

        For each pair ``(N, D)`` (broadcast), one dict: ``N``, ``D``, ``interaction``
        (fitted), ``low``/``high`` (bootstrap interval, when there is one) and
        ``verdict``: "helps" (interaction < 0), "hurts" (> 0), or "unclear" when the
        interval straddles zero. The interval holds the unimodal laws fixed, so it
        understates the uncertainty a little.
        """
        n, d = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        value = self.interaction(n, d)
        if len(self.bootstrap):
            draws = np.stack([bimodal_interaction(n, d, **p) for p in self.refitted()])
            low, high = percentile_interval(draws, self.ci_level)
        else:
            low = high = value
        rows = []
        for k in range(n.size):
            lo, hi = float(low.flat[k]), float(high.flat[k])
            verdict = "helps" if hi < 0 else "hurts" if lo > 0 else "unclear"
            rows.append(
                {
                    "N": float(n.flat[k]),
                    "D": float(d.flat[k]),
                    "interaction": float(value.flat[k]),
                    "low": lo,
                    "high": hi,
                    "verdict": verdict,
                }
            )
        return rows


def _bimodal_theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    c, a, alpha, b, beta = theta.tolist()
    return {"C": c, "A": capped_exp(a), "alpha": alpha, "B": capped_exp(b), "beta": beta}


def default_bimodal_grid() -> torch.Tensor:
    """Starting points for ``(a, alpha, b, beta)`` of the interaction, ``(starts, 4)``.

    ``C`` is not gridded: for each start it is set to the value that best fits the
    residual (its mean), which is exact for a squared loss and a good start for Huber.
    """
    logs = [-6.0, -3.0, 0.0, 3.0, 6.0, 9.0]
    exps = [0.1, 0.3, 0.6, 1.0]
    return torch.tensor(list(itertools.product(logs, exps, logs, exps)), dtype=torch.float64)


def fit_bimodal(
    N: ArrayLike,
    D_i: ArrayLike,
    D_j: ArrayLike,
    L: ArrayLike,
    law_i: FitResult,
    law_j: FitResult,
    *,
    delta: float = HUBER_DELTA,
    n_starts: int = 4,
    n_bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> BimodalFitResult:
    """Fit the interaction term of Aghajanyan et al.'s mixed-modal law.

    Args:
        N: parameters of each mixed run, ``(runs,)``.
        D_i, D_j: tokens of modality ``i`` and ``j`` each run trained on, ``(runs,)``.
        L: the mean of the run's two per-modality validation losses, ``(runs,)``.
        law_i, law_j: unimodal fits (:func:`fit_chinchilla`) for ``i`` and ``j``.
        delta, n_starts, n_bootstrap, ci_level, seed, progress: as in
            :func:`fit_chinchilla`.

    The residual is relative, ``(prediction - L) / L``: to first order the log-space
    residual of the unimodal fit, but still defined while a trial interaction pushes
    the prediction below zero.
    """
    delta = check_delta(delta)
    n, d_i, loss = check_points(N, D_i, L, min_points=6)
    d_j = as_1d("D_j (tokens)", D_j)
    if len(d_j) != len(n) or shape_of(D_j) != shape_of(N):
        raise ValueError(
            f"D_j should hold one value per run, shaped like N {shape_of(N)} ({len(n)} runs); "
            f"got shape {shape_of(D_j)} ({len(d_j)} values)."
        )
    base = torch.as_tensor(
        (law_i.predict(n.numpy(), d_i.numpy()) + law_j.predict(n.numpy(), d_j.numpy())) / 2
    )
    log_n, log_d = n.log(), (d_i + d_j).log()

    def objective_on(idx: torch.Tensor | slice) -> ValueAndGrad:
        return _bimodal_value_and_grad(base[idx], log_n[idx], log_d[idx], loss[idx], delta)

    # Build the full 5-D grid: each (a, alpha, b, beta) start gets its best constant C.
    g4 = default_bimodal_grid()
    zero_c = torch.cat([torch.zeros(len(g4), 1, dtype=torch.float64), g4], dim=1)
    c_best = (base + _interaction_t(zero_c, log_n, log_d) - loss).mean(-1, keepdim=True)
    grid = torch.cat([c_best, g4], dim=1)

    theta, value = multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        # As in fit_chinchilla: warm start and the resample's best grid point.
        sub = objective_on(idx)
        c_sub = (base[idx] + _interaction_t(zero_c, log_n[idx], log_d[idx]) - loss[idx]).mean(-1)
        t, _ = multistart(sub, torch.cat([c_sub[:, None], g4], 1), 1, delta, warm_start=theta)
        p = _bimodal_theta_to_params(t)
        return np.array([p[name] for name in BIMODAL_PARAMS])

    samples = bootstrap_refits(refit, len(n), n_bootstrap, seed, progress, "bootstrap fits")
    result = BimodalFitResult(
        params=_bimodal_theta_to_params(theta),
        law_i=law_i,
        law_j=law_j,
        loss=value,
        n_points=len(n),
        ci_level=ci_level,
    )
    result.keep_bootstrap(samples)
    return result
