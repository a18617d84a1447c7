"""One law in total compute (chapter 000's unified scaling claim)::

    L(C) / L_const = E + A / C**gamma

where ``C`` is a run's training compute over all its modalities and ``L_const`` is the loss
of the best constant prediction of that modality
(:func:`~omni_edu.lessons.scaling_laws.sweeps.modality_baselines`), which puts text
cross-entropy and image or audio squared error on one scale. :func:`compare_compute_laws`
asks, by leaving each run out in turn, whether one such law predicts every modality as well
as one law per modality.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from omni_edu.lessons.scaling_laws.budget import MODALITIES
from omni_edu.lessons.scaling_laws.fitting import (
    HUBER_DELTA,
    ArrayLike,
    ValueAndGrad,
    capped_exp,
    check_delta,
    check_runs,
    huber_parts,
    multistart,
    power_term,
    warn_if_not_identified,
)
from omni_edu.stats import percentile_interval

# ---------------------------------------------------------------------------
# One law in total compute across modalities (chapter 000's unified scaling claim)
# ---------------------------------------------------------------------------

COMPUTE_LAW_PARAMS = ("E", "A", "gamma")


def compute_law_loss(C: ArrayLike, *, E: float, A: float, gamma: float) -> np.ndarray:
    """``E + A / C**gamma``: loss against training compute ``C`` (FLOPs), broadcast."""
    return E + power_term(A, np.asarray(C, dtype=np.float64), gamma)


def _compute_law_value_and_grad(
    log_c: torch.Tensor, log_l: torch.Tensor, delta: float
) -> ValueAndGrad:
    """Summed Huber loss of ``log(E + A / C**gamma) - log L`` and its gradient, for raw
    ``theta = (a, e, gamma)`` with ``A = exp(a)``, ``E = exp(e)``; ``(3,)`` or ``(starts, 3)``."""

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, e, gamma = (t[..., None] for t in theta.unbind(-1))
        terms = torch.stack(torch.broadcast_tensors(a - gamma * log_c, e))
        value, slope = huber_parts(torch.logsumexp(terms, 0) - log_l, delta)
        w_c, w_e = slope * torch.softmax(terms, 0)
        grad = torch.stack([w_c.sum(-1), w_e.sum(-1), -(w_c * log_c).sum(-1)], dim=-1)
        return value.sum(-1), grad

    return value_and_grad


def _compute_law_grid(log_c: torch.Tensor, log_l: torch.Tensor) -> torch.Tensor:
    """Starting points ``(starts, 3)`` for ``(a, e, gamma)``, placed from the data.

    For each floor ``E`` (a fraction of the smallest loss) and exponent ``gamma``, ``a`` is
    chosen so that the law passes near the runs' mean: compute spans many decades, so a
    fixed grid of ``a`` would put most starts far above or below every run.
    """
    floor = float(log_l.exp().min())
    mean_c, mean_l = float(log_c.mean()), float(log_l.exp().mean())
    starts = []
    for frac, gamma, shift in itertools.product(
        (1e-3, 0.25, 0.5, 0.75, 0.9), (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5), (-1.0, 0.0, 1.0)
    ):
        e = frac * floor
        a = math.log(max(mean_l - e, 1e-6 * mean_l)) + gamma * mean_c + shift
        starts.append((a, math.log(e), gamma))
    return torch.tensor(starts, dtype=torch.float64)


def _compute_theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    a, e, gamma = theta.tolist()
    return {"E": capped_exp(e), "A": capped_exp(a), "gamma": gamma}


def _fit_compute_theta(
    log_c: torch.Tensor,
    log_l: torch.Tensor,
    delta: float,
    n_starts: int,
    warm_start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    return multistart(
        _compute_law_value_and_grad(log_c, log_l, delta),
        _compute_law_grid(log_c, log_l),
        n_starts,
        delta,
        warm_start=warm_start,
    )


@dataclass
class ComputeLawResult:
    """A fitted law ``L(C) = E + A / C**gamma`` in training compute ``C`` (FLOPs).

    ``params`` holds ``E, A, gamma``; ``loss`` is the summed Huber objective (log space).
    """

    params: dict[str, float]
    loss: float
    n_points: int = 0

    def predict(self, C: ArrayLike) -> np.ndarray:
        """Predicted loss at compute ``C`` (broadcasts)."""
        return compute_law_loss(C, **self.params)


def fit_compute_law(
    C: ArrayLike, L: ArrayLike, *, delta: float = HUBER_DELTA, n_starts: int = 4
) -> ComputeLawResult:
    """Fit ``L(C) = E + A / C**gamma`` to runs, ``C`` and ``L`` ``(runs,)``.

    The same recipe as :func:`fit_chinchilla`: log space, summed Huber loss, L-BFGS from
    the best ``n_starts`` of a grid of starts. Raises ``ValueError`` for bad input (as
    :func:`fit_chinchilla`); warns when every run has one compute or one loss.
    """
    delta = check_delta(delta)
    c, loss = check_runs({"C (FLOPs)": C, "L (loss)": L}, min_points=4)
    warn_if_not_identified({"compute C": (c, "A and gamma")}, loss)
    theta, value = _fit_compute_theta(c.log(), loss.log(), delta, n_starts)
    return ComputeLawResult(_compute_theta_to_params(theta), value, n_points=len(c))


@dataclass
class ComputePoints:
    """Evaluations of a sweep on one scale: each ``(run, modality, step)`` is one point.

    ``flops`` ``(points,)``: the run's training compute so far, over all its modalities;
    ``loss`` ``(points,)``: that modality's validation loss divided by its baseline
    (:func:`modality_baselines`); ``modality``, ``run`` and ``setting``: labels per point.
    """

    flops: np.ndarray
    loss: np.ndarray
    modality: list[str]
    run: list[str]
    setting: list[str]

    def __len__(self) -> int:
        return len(self.flops)


@dataclass
class LawComparison:
    """One law in total compute for every modality against one law per modality.

    ``one_law`` and ``per_modality`` are fitted on every point; ``runs`` names the runs and
    ``error_one`` / ``error_per`` ``(runs,)`` hold each run's held-out error: the mean
    ``|log predicted - log measured|`` over its points (about the relative error) when the
    laws were fitted without that run. ``ratio`` is the mean held-out error of the one law
    over that of the per-modality laws, with its bootstrap interval ``ratio_ci`` (runs
    resampled with replacement); ``error_one_ci`` / ``error_per_ci`` likewise.
    """

    one_law: ComputeLawResult
    per_modality: dict[str, ComputeLawResult]
    runs: list[str]
    error_one: np.ndarray
    error_per: np.ndarray
    ratio: float
    ratio_ci: tuple[float, float]
    error_one_ci: tuple[float, float]
    error_per_ci: tuple[float, float]
    ci_level: float = 0.95

    def summary(self) -> str:
        """The fitted laws and the held-out errors, one per line."""
        level = f"{round(100 * self.ci_level)}%"
        lines = [f"held-out error over {len(self.runs)} runs (each left out in turn):"]
        for name, value, (lo, hi) in (
            ("one law in compute", self.error_one.mean(), self.error_one_ci),
            ("a law per modality", self.error_per.mean(), self.error_per_ci),
        ):
            interval = f"{level} [{100 * lo:.1f}, {100 * hi:.1f}]"
            lines.append(f"  {name:>19}: {100 * value:5.1f}%  ({interval})")
        lo, hi = self.ratio_ci
        lines.append(f"  ratio one / per-modality: {self.ratio:.2f} ({level} [{lo:.2f}, {hi:.2f}])")
        for name, law in (("one law", self.one_law), *self.per_modality.items()):
            p = law.params
            lines.append(f"  {name:>8}: L = {p['E']:.3g} + {p['A']:.3g} / C^{p['gamma']:.3g}")
        return "\n".join(lines)


def compare_compute_laws(
    points: ComputePoints,
    *,
    delta: float = HUBER_DELTA,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> LawComparison:
    """Does one law in total compute predict every modality as well as a law per modality?

    Leave-one-run-out: each run in turn is held out, both models are fitted on the other
    runs (the one law on every point; each modality's law on that modality's points), and
    each predicts the held-out run's points. Held-out error, not fit quality, is the fair
    criterion: the per-modality laws have three times the parameters and always fit the
    points they were given at least as well. A run is held out whole, because its
    evaluations at successive steps are not independent. The interval resamples runs.
    """
    delta = check_delta(delta)
    if len(points) < 4:
        raise ValueError(f"compare_compute_laws needs at least 4 points; got {len(points)}.")
    c, loss = check_runs({"flops": points.flops, "loss": points.loss}, min_points=4)
    log_c, log_l = c.log(), loss.log()
    modality = np.array(points.modality)
    runs = list(dict.fromkeys(points.run))
    run_of = np.array([runs.index(r) for r in points.run])
    modalities = [m for m in MODALITIES if m in set(points.modality)]
    for m in modalities:
        if len({points.run[k] for k in np.flatnonzero(modality == m)}) < 2:
            raise ValueError(f"each modality needs at least 2 runs; {m!r} has one.")

    def fit(mask: np.ndarray, warm: torch.Tensor | None = None) -> torch.Tensor:
        """From the grid's best starts; or, leaving one run out, from the full-data fit
        alone (one run of twenty barely moves the optimum, and a fold then costs one
        L-BFGS run instead of several)."""
        idx = torch.as_tensor(np.flatnonzero(mask))
        if warm is None:
            return _fit_compute_theta(log_c[idx], log_l[idx], delta, 4)[0]
        objective = _compute_law_value_and_grad(log_c[idx], log_l[idx], delta)
        return multistart(objective, warm[None], 1, delta)[0]

    def result(mask: np.ndarray, theta: torch.Tensor) -> ComputeLawResult:
        idx = torch.as_tensor(np.flatnonzero(mask))
        value = _compute_law_value_and_grad(log_c[idx], log_l[idx], delta)(theta)[0]
        return ComputeLawResult(_compute_theta_to_params(theta), float(value), len(idx))

    def error(theta: torch.Tensor, mask: np.ndarray) -> np.ndarray:
        idx = torch.as_tensor(np.flatnonzero(mask))
        pred = torch.logsumexp(
            torch.stack(torch.broadcast_tensors(theta[0] - theta[2] * log_c[idx], theta[1])), 0
        )
        return (pred - log_l[idx]).abs().numpy()

    everything = np.ones(len(points), dtype=bool)
    one_theta = fit(everything)
    per_theta = {m: fit(modality == m) for m in modalities}
    error_one, error_per = np.zeros(len(runs)), np.zeros(len(runs))
    for k in tqdm(range(len(runs)), desc="leave one run out", disable=not progress, leave=False):
        held, kept = run_of == k, run_of != k
        error_one[k] = error(fit(kept, one_theta), held).mean()
        errors = [
            error(fit(kept & (modality == m), per_theta[m]), held & (modality == m))
            for m in modalities
            if (held & (modality == m)).any()
        ]
        error_per[k] = np.concatenate(errors).mean()

    gen = np.random.default_rng(seed)
    draws = gen.integers(0, len(runs), size=(n_bootstrap, len(runs)))
    means_one, means_per = error_one[draws].mean(1), error_per[draws].mean(1)

    def interval(x: np.ndarray) -> tuple[float, float]:
        lo, hi = percentile_interval(x, ci_level)
        return float(lo), float(hi)

    return LawComparison(
        one_law=result(everything, one_theta),
        per_modality={m: result(modality == m, t) for m, t in per_theta.items()},
        runs=runs,
        error_one=error_one,
        error_per=error_per,
        ratio=float(error_one.mean() / error_per.mean()),
        ratio_ci=interval(means_one / means_per),
        error_one_ci=interval(means_one),
        error_per_ci=interval(means_per),
        ci_level=ci_level,
    )
