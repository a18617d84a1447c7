"""Scaling laws: fit how loss falls with parameters N and training tokens D.

Two laws, both fitted "properly", the way the papers did it:

* **Chinchilla** (Hoffmann et al. 2022, arXiv 2203.15556, Appendix D.2)::

      L(N, D) = E + A / N**alpha + B / D**beta

  fitted in log space. Write ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``; then::

      log L(N, D) = logsumexp(a - alpha * log N,  b - beta * log D,  e)

  and minimise the **summed** Huber loss (delta = 1e-3) between that and ``log L`` of
  the measured runs, with L-BFGS started from a grid of initial values, keeping the
  best. Why log space: losses of small and large runs then count alike, and
  ``logsumexp`` keeps ``A, B, E`` positive without constraints. Why Huber with a tiny
  delta: it behaves like least absolute deviations, so one run that diverged or
  stopped early does not drag the whole fit.

* **Mixed-modal** (Aghajanyan et al. 2023, "Scaling Laws for Generative Mixed-Modal
  Language Models", arXiv 2301.03728, Eq. 2): a model trained on modalities ``i`` and
  ``j`` together, with ``D_i`` and ``D_j`` tokens of each, scores the mean of its two
  per-modality losses as::

      L_ij(N, D_i, D_j) = [L_i(N, D_i) + L_j(N, D_j)] / 2
                          - C_ij + A_ij / N**alpha_ij + B_ij / (D_i + D_j)**beta_ij

  where ``L_i`` and ``L_j`` are the unimodal Chinchilla laws fitted first. The last
  three terms are the **interaction**: negative means the modalities help each other
  (synergy), positive means they compete for capacity. ``C_ij`` is the most synergy
  the pair can reach; the two power laws say how competition fades with model size
  and with total tokens.

Public API: :func:`fit_chinchilla` -> :class:`FitResult`, :func:`compute_optimal_split`,
:func:`fit_bimodal` -> :class:`BimodalFitResult`, :func:`huber_log_objective`, and the
published constants :data:`CHINCHILLA_PUBLISHED`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

ArrayLike = float | Sequence[float] | np.ndarray | torch.Tensor

# Hoffmann et al. 2022, Approach 3 (Table A3 / Eq. 10): the constants in nats per token.
CHINCHILLA_PUBLISHED: dict[str, float] = {
    "E": 1.69,
    "A": 406.4,
    "B": 410.7,
    "alpha": 0.34,
    "beta": 0.28,
}

CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")
BIMODAL_PARAMS = ("C", "A", "alpha", "B", "beta")
HUBER_DELTA = 1e-3


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


def _as_1d(name: str, x: ArrayLike, *, positive: bool = True) -> torch.Tensor:
    """``x`` as a float64 1-D tensor, with a clear error for values a law cannot take."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x)
    t = t.detach().to(torch.float64).reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; a fit needs measured runs.")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinity: {t.tolist()}")
    if positive and (t <= 0).any():
        bad = t[t <= 0].tolist()
        raise ValueError(
            f"{name} must be positive everywhere (a law takes its logarithm); "
            f"got non-positive values {bad}."
        )
    return t


def _check_points(
    N: ArrayLike, D: ArrayLike, L: ArrayLike, *, min_points: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, d, loss = _as_1d("N (parameters)", N), _as_1d("D (tokens)", D), _as_1d("L (loss)", L)
    if not (len(n) == len(d) == len(loss)):
        raise ValueError(
            f"N, D and L should hold one value per run; got lengths "
            f"{len(n)}, {len(d)} and {len(loss)}."
        )
    if len(n) < min_points:
        raise ValueError(
            f"A fit of {min_points - 1} parameters needs at least {min_points} runs; got {len(n)}."
        )
    return n, d, loss


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
    ``(starts, 5)`` gives ``(starts,)``.
    """
    residual = log_chinchilla(theta, log_n, log_d) - log_l
    return torch.nn.functional.huber_loss(
        residual, torch.zeros_like(residual), reduction="none", delta=delta
    ).sum(-1)


def chinchilla_loss(
    N: ArrayLike, D: ArrayLike, *, E: float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    """``E + A / N**alpha + B / D**beta`` (broadcasts ``N`` against ``D``)."""
    n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    return E + A / n**alpha + B / d**beta


def default_init_grid() -> torch.Tensor:
    """Hoffmann et al.'s grid of starting points for ``(a, b, e, alpha, beta)``.

    ``alpha, beta`` in {0, 0.5, ..., 2}, ``e`` in {-1, -0.5, ..., 1}, ``a, b`` in
    {0, 5, ..., 25}: 4500 starts, shape ``(4500, 5)``.
    """
    ab = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    exps = [0.0, 0.5, 1.0, 1.5, 2.0]
    es = [-1.0, -0.5, 0.0, 0.5, 1.0]
    return torch.tensor(list(itertools.product(ab, ab, es, exps, exps)), dtype=torch.float64)


def _lbfgs(
    objective: Callable[[torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    delta: float,
    max_iter: int = 300,
) -> tuple[torch.Tensor, float]:
    """Minimise ``objective`` from ``theta0`` with L-BFGS and a strong-Wolfe line search.

    The optimiser sees ``objective / delta``: a Huber loss with ``delta = 1e-3`` is
    about ``delta * |residual|`` per run, so its gradients are tiny and torch's
    stopping tolerances would end the search at the start. Dividing by ``delta``
    moves the same minimum into the range the tolerances were made for.
    """
    theta = theta0.detach().clone().to(torch.float64).requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = objective(theta) / delta
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        value = float(objective(theta))
    if not math.isfinite(value):
        return theta0.detach().clone(), math.inf
    return theta.detach(), value


def _multistart(
    objective: Callable[[torch.Tensor], torch.Tensor],
    grid: torch.Tensor,
    n_starts: int,
    delta: float,
) -> tuple[torch.Tensor, float]:
    """Screen every grid point at once, run L-BFGS from the ``n_starts`` best, keep the best.

    Hoffmann et al. ran L-BFGS from every grid point; evaluating the objective on the
    whole grid first and polishing only the most promising starts finds the same
    minimum on these small problems at a fraction of the cost.
    """
    with torch.no_grad():
        start_values = objective(grid)
    start_values = torch.nan_to_num(start_values, nan=math.inf)
    order = torch.argsort(start_values)[: max(1, n_starts)]
    best_theta, best_value = grid[order[0]], math.inf
    for idx in order.tolist():
        theta, value = _lbfgs(objective, grid[idx], delta)
        if value < best_value:
            best_theta, best_value = theta, value
    return best_theta, best_value


def _percentile_ci(samples: np.ndarray, names: Sequence[str], level: float) -> dict:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {name: (float(lo[k]), float(hi[k])) for k, name in enumerate(names)}


def _bootstrap(
    refit: Callable[[torch.Tensor], np.ndarray],
    n_points: int,
    n_bootstrap: int,
    seed: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Refit on ``n_bootstrap`` resamples of the runs (with replacement).

    ``refit(idx)`` fits the runs at indices ``idx`` and returns the parameters.
    """
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in tqdm(range(n_bootstrap), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(n_points, (n_points,), generator=gen)
        samples.append(refit(idx))
    return np.array(samples)


# ---------------------------------------------------------------------------
# Chinchilla fit
# ---------------------------------------------------------------------------


@dataclass
class FitResult:
    """A fitted Chinchilla law ``L(N, D) = E + A / N**alpha + B / D**beta``.

    ``params`` holds ``E, A, B, alpha, beta``; ``loss`` is the summed Huber objective at
    the optimum (in log space); ``ci`` maps each parameter to a ``(low, high)``
    bootstrap interval (empty without a bootstrap); ``bootstrap`` holds the refitted
    parameters, shape ``(n_bootstrap, 5)`` in :data:`CHINCHILLA_PARAMS` order.
    """

    params: dict[str, float]
    loss: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    n_points: int = 0
    ci_level: float = 0.95

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """Predicted loss for ``N`` parameters trained on ``D`` tokens (broadcasts)."""
        return chinchilla_loss(N, D, **self.params)

    def compute_optimal(self, C: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(N*, D*)`` minimising the predicted loss at compute ``C = 6 N D`` FLOPs."""
        p = self.params
        return compute_optimal_split(C, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])

    def summary(self) -> str:
        """A small table: each parameter with its interval."""
        lines = [f"Chinchilla fit on {self.n_points} runs (summed Huber {self.loss:.3g})"]
        for name in CHINCHILLA_PARAMS:
            value = self.params[name]
            if name in self.ci:
                lo, hi = self.ci[name]
                pct = round(100 * self.ci_level)
                lines.append(f"  {name:>5} = {value:10.4g}   {pct}% CI [{lo:.4g}, {hi:.4g}]")
            else:
                lines.append(f"  {name:>5} = {value:10.4g}")
        return "\n".join(lines)


def _theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    a, b, e, alpha, beta = theta.tolist()
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}


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
        n_starts: how many of the best-screened grid points L-BFGS polishes.
        n_bootstrap: resamples for the confidence intervals (0: no intervals).
        ci_level: coverage of the percentile intervals.
        seed: seeds the bootstrap resampling.
        progress: show a progress bar over the bootstrap.
    """
    n, d, loss = _check_points(N, D, L, min_points=6)
    log_n, log_d, log_l = n.log(), d.log(), loss.log()
    grid = default_init_grid() if grid is None else torch.as_tensor(grid, dtype=torch.float64)

    def objective_on(idx: torch.Tensor | slice) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda theta: huber_log_objective(theta, log_n[idx], log_d[idx], log_l[idx], delta)

    theta, value = _multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        # Warm start from the full-data optimum: a resample moves the minimum only a little.
        t, _ = _lbfgs(objective_on(idx), theta, delta)
        p = _theta_to_params(t)
        return np.array([p[name] for name in CHINCHILLA_PARAMS])

    samples = _bootstrap(refit, len(n), n_bootstrap, seed, progress, "bootstrap fits")
    result = FitResult(
        params=_theta_to_params(theta), loss=value, n_points=len(n), ci_level=ci_level
    )
    if n_bootstrap > 0:
        result.bootstrap = samples
        result.ci = _percentile_ci(samples, CHINCHILLA_PARAMS, ci_level)
    return result


def compute_optimal_split(
    C: ArrayLike, *, A: float, B: float, alpha: float, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """The split of compute ``C`` (FLOPs) into parameters and tokens that minimises loss.

    With ``C = 6 N D``, setting the derivative of ``A / N**alpha + B / D**beta`` along
    ``D = C / (6 N)`` to zero gives (Hoffmann et al. 2022, Eq. 4)::

        G  = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        N* = G * (C / 6) ** (beta / (alpha + beta))
        D* = (C / 6) ** (alpha / (alpha + beta)) / G

    so ``6 N* D* = C``. Returns ``(N*, D*)`` shaped like ``C``.
    """
    c = np.asarray(C, dtype=np.float64)
    if np.any(~np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"compute C must be positive FLOPs; got {c.tolist()}")
    if min(A, B, alpha, beta) <= 0:
        raise ValueError(
            "compute_optimal_split needs A, B, alpha, beta > 0 (a law whose loss falls "
            f"with both N and D); got A={A}, B={B}, alpha={alpha}, beta={beta}."
        )
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g * (c / 6.0) ** (beta / (alpha + beta))
    d_opt = (c / 6.0) ** (alpha / (alpha + beta)) / g
    return n_opt, d_opt


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
    return -C + A / n**alpha + B / d**beta


def _interaction_t(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    """Interaction for raw ``theta = (C, a, alpha, b, beta)``; ``(5,)`` or ``(starts, 5)``."""
    c, a, alpha, b, beta = (t[..., None] for t in theta.unbind(-1))
    return -c + torch.exp(a - alpha * log_n) + torch.exp(b - beta * log_d)


@dataclass
class BimodalFitResult:
    """A fitted mixed-modal law for modalities ``i`` and ``j`` (Aghajanyan et al. 2023).

    ``params`` holds the interaction's ``C, A, alpha, B, beta``; ``law_i`` and ``law_j``
    are the unimodal fits it builds on; ``ci`` and ``bootstrap`` as in
    :class:`FitResult` (bootstrap shape ``(n_bootstrap, 5)`` in
    :data:`BIMODAL_PARAMS` order).
    """

    params: dict[str, float]
    law_i: FitResult
    law_j: FitResult
    loss: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    n_points: int = 0
    ci_level: float = 0.95

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
            draws = np.stack(
                [
                    bimodal_interaction(n, d, **dict(zip(BIMODAL_PARAMS, row, strict=True)))
                    for row in self.bootstrap
                ]
            )
            q = (1 - self.ci_level) / 2
            low, high = np.quantile(draws, [q, 1 - q], axis=0)
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

    def summary(self) -> str:
        """A small table: each interaction parameter with its interval."""
        lines = [f"Mixed-modal interaction on {self.n_points} runs (summed Huber {self.loss:.3g})"]
        for name in BIMODAL_PARAMS:
            value = self.params[name]
            if name in self.ci:
                lo, hi = self.ci[name]
                pct = round(100 * self.ci_level)
                lines.append(f"  {name:>5} = {value:10.4g}   {pct}% CI [{lo:.4g}, {hi:.4g}]")
            else:
                lines.append(f"  {name:>5} = {value:10.4g}")
        return "\n".join(lines)


def _bimodal_theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    c, a, alpha, b, beta = theta.tolist()
    return {"C": c, "A": math.exp(a), "alpha": alpha, "B": math.exp(b), "beta": beta}


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
    n, d_i, loss = _check_points(N, D_i, L, min_points=6)
    d_j = _as_1d("D_j (tokens)", D_j)
    if len(d_j) != len(n):
        raise ValueError(f"D_j should hold one value per run ({len(n)}); got {len(d_j)}.")
    base = torch.as_tensor(
        (law_i.predict(n.numpy(), d_i.numpy()) + law_j.predict(n.numpy(), d_j.numpy())) / 2
    )
    log_n, log_d = n.log(), (d_i + d_j).log()

    def objective_on(idx: torch.Tensor | slice) -> Callable[[torch.Tensor], torch.Tensor]:
        def objective(theta: torch.Tensor) -> torch.Tensor:
            pred = base[idx] + _interaction_t(theta, log_n[idx], log_d[idx])
            residual = (pred - loss[idx]) / loss[idx]
            return torch.nn.functional.huber_loss(
                residual, torch.zeros_like(residual), reduction="none", delta=delta
            ).sum(-1)

        return objective

    # Build the full 5-D grid: each (a, alpha, b, beta) start gets its best constant C.
    g4 = default_bimodal_grid()
    zero_c = torch.cat([torch.zeros(len(g4), 1, dtype=torch.float64), g4], dim=1)
    c_best = (base + _interaction_t(zero_c, log_n, log_d) - loss).mean(-1, keepdim=True)
    grid = torch.cat([c_best, g4], dim=1)

    theta, value = _multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        t, _ = _lbfgs(objective_on(idx), theta, delta)
        p = _bimodal_theta_to_params(t)
        return np.array([p[name] for name in BIMODAL_PARAMS])

    samples = _bootstrap(refit, len(n), n_bootstrap, seed, progress, "bootstrap fits")
    result = BimodalFitResult(
        params=_bimodal_theta_to_params(theta),
        law_i=law_i,
        law_j=law_j,
        loss=value,
        n_points=len(n),
        ci_level=ci_level,
    )
    if n_bootstrap > 0:
        result.bootstrap = samples
        result.ci = _percentile_ci(samples, BIMODAL_PARAMS, ci_level)
    return result
