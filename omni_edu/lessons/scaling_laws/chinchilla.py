"""The Chinchilla law (Hoffmann et al. 2022, arXiv 2203.15556, Section 3.3)::

    L(N, D) = E + A / N**alpha + B / D**beta

fitted in log space. Write ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``; then::

    log L(N, D) = logsumexp(a - alpha * log N,  b - beta * log D,  e)

and minimise the **summed** Huber loss (delta = 1e-3) between that and ``log L`` of the
measured runs, with L-BFGS started from a grid of initial values, keeping the best. Why log
space: losses of small and large runs then count alike, and ``logsumexp`` keeps ``A, B, E``
positive without constraints. Why Huber with a tiny delta: it behaves like least absolute
deviations, so one run that diverged or stopped early does not drag the whole fit.

:func:`fit_chinchilla` -> :class:`FitResult`; :func:`compute_optimal_split`;
:func:`huber_log_objective` (the exercise). Published constants:
:data:`CHINCHILLA_PUBLISHED` (Hoffmann et al.'s rounded ones) and :data:`CHINCHILLA_EPOCH`
(Besiroglu et al.'s refit).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from omni_edu.lessons.scaling_laws.fitting import (
    HUBER_DELTA,
    ArrayLike,
    LawFit,
    ValueAndGrad,
    capped_exp,
    check_delta,
    check_grid,
    check_points,
    huber_parts,
    multistart,
    power_term,
)
from omni_edu.stats import bootstrap_refits, percentile_interval

# Hoffmann et al. 2022, Approach 3 (Section 3.3): the constants in nats per token.
CHINCHILLA_PUBLISHED: dict[str, float] = {
    "E": 1.69,
    "A": 406.4,
    "B": 410.7,
    "alpha": 0.34,
    "beta": 0.28,
}

# Besiroglu, Erdil, Barnett and You 2024, "Chinchilla Scaling: A replication attempt"
# (arXiv 2404.10102): Approach 3 fitted again on the runs read off Hoffmann et al.'s
# Figure 4, with the optimiser run to convergence. Hoffmann's rounded constants above put
# the compute-optimal model at Chinchilla's budget far from Chinchilla itself; these do not.
CHINCHILLA_EPOCH: dict[str, float] = {
    "E": 1.82,
    "A": 482.0,
    "B": 2085.4,
    "alpha": 0.348,
    "beta": 0.366,
}
# The training compute of Chinchilla (70B parameters, 1.4T tokens), Hoffmann et al. Table 3.
CHINCHILLA_FLOPS = 5.76e23

CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")


# ---------------------------------------------------------------------------
# The Chinchilla law and its objective
# ---------------------------------------------------------------------------


def log_chinchilla(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    """Predicted ``log L`` for raw parameters ``theta = (a, b, e, alpha, beta)``.

    ``theta`` is ``(5,)`` or ``(starts, 5)`` (many candidate fits at once); ``log_n`` and
    ``log_d`` are ``(runs,)``. Returns ``(runs,)`` or ``(starts, runs)``.
    """
    a, b, e, alpha, beta = theta.unbind(-1)
    terms = torch.stack(
        [
            a[..., None] - alpha[..., None] * log_n,
            b[..., None] - beta[..., None] * log_d,
            e[..., None].expand(*e.shape, log_n.shape[-1]),
        ]
    )
    return torch.logsumexp(terms, dim=0)


def huber_log_objective(
    theta: torch.Tensor,
    log_n: torch.Tensor,
    log_d: torch.Tensor,
    log_l: torch.Tensor,
    delta: float = HUBER_DELTA,
) -> torch.Tensor:
    """The Hoffmann objective: ``sum_i Huber_delta(log_chinchilla(theta)_i - log L_i)``.

    ``Huber_delta(r) = r**2 / 2`` when ``|r| <= delta`` else ``delta * (|r| - delta / 2)``.
    Summed, not averaged, as in the paper. ``theta`` ``(5,)`` gives a scalar;
    ``(starts, 5)`` gives ``(starts,)``. ``delta`` must be positive.
    """
    delta = check_delta(delta)
    residual = log_chinchilla(theta, log_n, log_d) - log_l
    return torch.nn.functional.huber_loss(
        residual, torch.zeros_like(residual), reduction="none", delta=delta
    ).sum(-1)


def chinchilla_loss(
    N: ArrayLike, D: ArrayLike, *, E: float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    """``E + A / N**alpha + B / D**beta`` (broadcasts ``N`` against ``D``)."""
    n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    return E + power_term(A, n, alpha) + power_term(B, d, beta)


def default_init_grid() -> torch.Tensor:
    """Hoffmann et al.'s grid of starting points for ``(a, b, e, alpha, beta)``.

    ``alpha, beta`` in {0, 0.5, ..., 2}, ``e`` in {-1, -0.5, ..., 1}, ``a, b`` in
    {0, 5, ..., 25}: 4500 starts, shape ``(4500, 5)``.
    """
    ab = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    exps = [0.0, 0.5, 1.0, 1.5, 2.0]
    es = [-1.0, -0.5, 0.0, 0.5, 1.0]
    return torch.tensor(list(itertools.product(ab, ab, es, exps, exps)), dtype=torch.float64)


def _chinchilla_value_and_grad(
    log_n: torch.Tensor, log_d: torch.Tensor, log_l: torch.Tensor, delta: float
) -> ValueAndGrad:
    """:func:`huber_log_objective` and its gradient, for ``theta`` ``(5,)`` or ``(starts, 5)``."""

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, e, alpha, beta = (t[..., None] for t in theta.unbind(-1))
        terms = torch.stack(torch.broadcast_tensors(a - alpha * log_n, b - beta * log_d, e))
        value, slope = huber_parts(torch.logsumexp(terms, 0) - log_l, delta)
        # d logsumexp / d term = softmax of the terms: each term's share of the loss.
        w_n, w_d, w_e = slope * torch.softmax(terms, 0)
        grad = torch.stack(
            [w_n.sum(-1), w_d.sum(-1), w_e.sum(-1), -(w_n * log_n).sum(-1), -(w_d * log_d).sum(-1)],
            dim=-1,
        )
        return value.sum(-1), grad

    return value_and_grad


# ---------------------------------------------------------------------------
# Chinchilla fit
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class FitResult(LawFit):
    """A fitted Chinchilla law ``L(N, D) = E + A / N**alpha + B / D**beta``.

    ``params`` holds ``E, A, B, alpha, beta`` (:data:`CHINCHILLA_PARAMS`); ``loss`` is the
    summed Huber objective in log space; ``ci`` and ``bootstrap`` as in :class:`LawFit`.
    """

    NAMES = CHINCHILLA_PARAMS
    TITLE = "Chinchilla fit"
    EXPONENTS = ("alpha", "beta")

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """Predicted loss for ``N`` parameters trained on ``D`` tokens (broadcasts)."""
        return chinchilla_loss(N, D, **self.params)

    def predict_interval(self, N: ArrayLike, D: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the prediction over the bootstrap fits (``ci_level`` coverage)."""
        if not len(self.bootstrap):
            raise ValueError("this fit has no bootstrap; fit again with n_bootstrap > 0.")
        draws = np.stack([chinchilla_loss(N, D, **p) for p in self.refitted()])
        return percentile_interval(draws, self.ci_level)

    def terms(self, N: ArrayLike, D: ArrayLike) -> dict[str, np.ndarray]:
        """The three parts of the predicted loss: ``{"E": floor, "N": A / N**alpha,
        "D": B / D**beta}`` (each broadcast like ``N`` against ``D``; they sum to
        :meth:`predict`)."""
        return _terms(self.params, N, D)

    def term_shares(self, N: ArrayLike, D: ArrayLike) -> dict[str, tuple[float, float, float]]:
        """Each term's share of the predicted loss at one point ``(N, D)``.

        ``{"E" | "N" | "D": (share, low, high)}``: the share under the fit, and its
        bootstrap interval (``ci_level``; ``low = high = share`` without a bootstrap).
        The ``N`` share says how much of the prediction rests on the model-size term: a
        prediction at a new size whose ``N`` share is small tests the rest of the law.
        """
        if np.size(N) != 1 or np.size(D) != 1:
            raise ValueError(f"term_shares takes one point (N, D); got N {N!r}, D {D!r}.")

        def shares(params: dict[str, float]) -> np.ndarray:
            parts = _terms(params, N, D)
            total = sum(float(v) for v in parts.values())
            return np.array([float(parts[k]) / total for k in ("E", "N", "D")])

        value = shares(self.params)
        low = high = value
        if len(self.bootstrap):
            draws = np.stack([shares(p) for p in self.refitted()])
            low, high = percentile_interval(draws, self.ci_level)
        return {
            k: (float(value[i]), float(low[i]), float(high[i]))
            for i, k in enumerate(("E", "N", "D"))
        }

    def compute_optimal(self, C: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(N*, D*)`` minimising the predicted loss at compute ``C = 6 N D`` FLOPs."""
        p = self.params
        return compute_optimal_split(C, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])


def _terms(params: dict[str, float], N: ArrayLike, D: ArrayLike) -> dict[str, np.ndarray]:
    n, d = np.broadcast_arrays(np.asarray(N, np.float64), np.asarray(D, np.float64))
    return {
        "E": np.full(n.shape, float(params["E"])),
        "N": power_term(params["A"], n, params["alpha"]),
        "D": power_term(params["B"], d, params["beta"]),
    }


def _theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    a, b, e, alpha, beta = theta.tolist()
    return {
        "E": capped_exp(e),
        "A": capped_exp(a),
        "B": capped_exp(b),
        "alpha": alpha,
        "beta": beta,
    }


def fit_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    delta: float = HUBER_DELTA,
    grid: torch.Tensor | None = None,
    n_starts: int = 4,
    n_bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> FitResult:
    """Fit ``L(N, D) = E + A / N**alpha + B / D**beta`` to measured runs.

    Args:
        N, D, L: one value per run, ``(runs,)``: parameters, training tokens, final loss.
        delta: the Huber threshold in log-loss units (Hoffmann et al.: 1e-3).
        grid: starting points ``(starts, 5)`` for ``(a, b, e, alpha, beta)``; default
            :func:`default_init_grid`.

    Raises ``ValueError`` for runs a law cannot take (see the messages), a ``delta`` that is
    not positive, an empty grid, or when L-BFGS fails from every start; warns
    (:class:`NotIdentifiedWarning`) when the runs cannot determine some parameters: a
    single model size, a single token count, or one loss for every run.
        n_starts: how many of the best-screened grid points L-BFGS polishes.
        n_bootstrap: resamples for the confidence intervals (0: no intervals).
        ci_level: coverage of the percentile intervals.
        seed: seeds the bootstrap resampling.
        progress: show a progress bar over the bootstrap.
    """
    delta = check_delta(delta)
    n, d, loss = check_points(N, D, L, min_points=6)
    log_n, log_d, log_l = n.log(), d.log(), loss.log()
    grid = check_grid(
        default_init_grid() if grid is None else grid, 5, ("a", "b", "e", "alpha", "beta")
    )

    def objective_on(idx: torch.Tensor | slice) -> ValueAndGrad:
        return _chinchilla_value_and_grad(log_n[idx], log_d[idx], log_l[idx], delta)

    theta, value = multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        # From the full-data optimum (a resample usually moves the minimum a little) and
        # from the resample's best grid point: where the data pin a parameter down badly,
        # the warm start alone can sit where the objective is flat and never move.
        t, _ = multistart(objective_on(idx), grid, 1, delta, warm_start=theta)
        p = _theta_to_params(t)
        return np.array([p[name] for name in CHINCHILLA_PARAMS])

    samples = bootstrap_refits(refit, len(n), n_bootstrap, seed, progress, "bootstrap fits")
    result = FitResult(
        params=_theta_to_params(theta), loss=value, n_points=len(n), ci_level=ci_level
    )
    result.keep_bootstrap(samples)
    return result


def compute_optimal_split(
    C: ArrayLike, *, A: float, B: float, alpha: float, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """The split of compute ``C`` (FLOPs) into parameters and tokens that minimises loss.

    With ``C = 6 N D``, setting the derivative of ``A / N**alpha + B / D**beta`` along
    ``D = C / (6 N)`` to zero gives (Hoffmann et al. 2022, Section 3.3)::

        G  = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        N* = G * (C / 6) ** (beta / (alpha + beta))
        D* = (C / 6) ** (alpha / (alpha + beta)) / G

    so ``6 N* D* = C``. Returns ``(N*, D*)`` shaped like ``C``. Raises ``ValueError`` for
    compute that is not positive and for constants that are not finite and positive.
    """
    c = np.asarray(C, dtype=np.float64)
    if np.any(~np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"compute C must be positive FLOPs; got {c.tolist()}")
    constants = {"A": A, "B": B, "alpha": alpha, "beta": beta}
    not_finite = {k: v for k, v in constants.items() if not np.all(np.isfinite(v))}
    if not_finite:
        raise ValueError(
            "compute_optimal_split needs finite constants A, B, alpha, beta (a fitted law); "
            f"got {not_finite}."
        )
    if min(A, B, alpha, beta) <= 0:
        raise ValueError(
            "compute_optimal_split needs A, B, alpha, beta > 0 (a law whose loss falls "
            f"with both N and D); got A={A}, B={B}, alpha={alpha}, beta={beta}."
        )
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g * (c / 6.0) ** (beta / (alpha + beta))
    d_opt = (c / 6.0) ** (alpha / (alpha + beta)) / g
    return n_opt, d_opt
