"""Scaling laws: fit how loss falls with parameters N and training tokens D.

Three laws, all fitted "properly", the way the papers did it:

* **Chinchilla** (Hoffmann et al. 2022, arXiv 2203.15556, Section 3.3)::

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
  Language Models", arXiv 2301.03728): a model trained on modalities ``i`` and
  ``j`` together, with ``D_i`` and ``D_j`` tokens of each, scores the mean of its two
  per-modality losses as::

      L_ij(N, D_i, D_j) = [L_i(N, D_i) + L_j(N, D_j)] / 2
                          - C_ij + A_ij / N**alpha_ij + B_ij / (D_i + D_j)**beta_ij

  where ``L_i`` and ``L_j`` are the unimodal Chinchilla laws fitted first. The last
  three terms are the **interaction**: negative means the modalities help each other
  (synergy), positive means they compete for capacity. ``C_ij`` is the most synergy
  the pair can reach; the two power laws say how competition fades with model size
  and with total tokens.

* **One law in total compute** (chapter 000's unified scaling claim)::

      L(C) / L_const = E + A / C**gamma

  where ``C`` is a run's training compute over all its modalities and ``L_const`` is
  the loss of the best constant prediction of that modality (:func:`modality_baselines`),
  which puts text cross-entropy and image or audio squared error on one scale.
  :func:`compare_compute_laws` asks, by leaving each run out in turn, whether one such
  law predicts every modality as well as one law per modality.

The data come from **sweeps** (:func:`run_sweep`): a grid of small ``OmniLM`` models
(:data:`SWEEPS` per profile) trained on OmniWorld text, image, audio, text+image and
text+audio, each evaluated at several token budgets; finished runs are cached in a
JSON file (:class:`SweepCache`) so a rerun is instant. :func:`run_heldout` trains the
larger run that lesson 07 predicts before revealing it.

Fits: :func:`fit_chinchilla` -> :class:`FitResult`, :func:`compute_optimal_split`,
:func:`fit_bimodal` -> :class:`BimodalFitResult`, :func:`huber_log_objective`;
:func:`fit_sweep` and :func:`fit_mixed` fit a sweep's records; :func:`fit_compute_law`,
:func:`compute_points` and :func:`compare_compute_laws` test the one-law claim; plots at
the end. Published constants: :data:`CHINCHILLA_PUBLISHED` (Hoffmann et al.'s rounded
ones) and :data:`CHINCHILLA_EPOCH` (Besiroglu et al.'s refit).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from omni_edu.course_cache import cache_dir
from omni_edu.data import OmniWorld
from omni_edu.modalities import Modality, TextTokenizer, frame_audio, patchify
from omni_edu.model.interleave import audio_segment, image_segment, pack, text_segment
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.profiles import get_device, get_profile
from omni_edu.train import TrainConfig, Trainer

ArrayLike = float | Sequence[float] | np.ndarray | torch.Tensor

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
BIMODAL_PARAMS = ("C", "A", "alpha", "B", "beta")
HUBER_DELTA = 1e-3


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


class NotIdentifiedWarning(UserWarning):
    """The runs cannot pin down some parameters of the law (e.g. every run has one size)."""


def _shape(x: ArrayLike) -> tuple[int, ...]:
    return tuple(x.shape) if torch.is_tensor(x) else np.shape(x)


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


def _check_runs(arrays: dict[str, ArrayLike], *, min_points: int) -> list[torch.Tensor]:
    """Each array of ``arrays`` (name -> one value per run) as a 1-D float64 tensor.

    Raises ``ValueError`` unless they all have one shape (arrays of different shapes that
    flatten to the same length would pair the wrong runs), hold finite positive values and
    at least ``min_points`` runs.
    """
    names = list(arrays)
    shapes = [_shape(x) for x in arrays.values()]
    tensors = [_as_1d(name, x) for name, x in arrays.items()]
    if len(set(shapes)) > 1:
        lengths = ", ".join(str(len(t)) for t in tensors[:-1]) + f" and {len(tensors[-1])}"
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(
            f"{', '.join(n.split()[0] for n in names)} should hold one value per run, in arrays "
            f"of one shape; got shapes {listed} (lengths {lengths})."
        )
    if len(tensors[0]) < min_points:
        raise ValueError(
            f"A fit of {min_points - 1} parameters needs at least {min_points} runs; "
            f"got {len(tensors[0])}."
        )
    return tensors


def _warn_if_not_identified(
    variables: dict[str, tuple[torch.Tensor, str]], loss: torch.Tensor
) -> None:
    """Warn when the runs cannot determine some parameters.

    ``variables`` maps a variable's name to its values and the parameters that describe how
    the loss depends on it: with one value of that variable they are not identified (any
    of a family of values fits equally well). A constant loss identifies none of them.
    """
    if torch.unique(loss).numel() == 1:
        warnings.warn(
            f"the loss is {float(loss[0]):.4g} in every run, so nothing in the data says how it "
            "depends on " + " or ".join(variables) + ": the fitted parameters are not identified.",
            NotIdentifiedWarning,
            stacklevel=3,
        )
        return
    for name, (values, params) in variables.items():
        if torch.unique(values).numel() == 1:
            warnings.warn(
                f"every run has the same {name} ({float(values[0]):.4g}), so {params} are not "
                f"identified: their fitted values are one choice among many that fit equally.",
                NotIdentifiedWarning,
                stacklevel=3,
            )


def _check_points(
    N: ArrayLike, D: ArrayLike, L: ArrayLike, *, min_points: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, d, loss = _check_runs(
        {"N (parameters)": N, "D (tokens)": D, "L (loss)": L}, min_points=min_points
    )
    _warn_if_not_identified(
        {"model size N": (n, "A and alpha"), "token count D": (d, "B and beta")}, loss
    )
    return n, d, loss


def _check_delta(delta: float) -> float:
    """``delta`` as a float, or a clear error: the Huber threshold must be positive."""
    try:
        value = float(delta)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            "delta, the Huber threshold in log-loss units, must be a positive finite number "
            f"(Hoffmann et al. used 1e-3); got {delta!r}."
        )
    return value


def _check_grid(grid: ArrayLike, width: int, names: Sequence[str]) -> torch.Tensor:
    """Starting points ``(starts, width)`` as float64, or a clear error."""
    g = torch.as_tensor(np.asarray(grid) if not torch.is_tensor(grid) else grid)
    g = g.detach().to(torch.float64)
    if g.ndim != 2 or g.shape[1] != width or g.shape[0] == 0:
        raise ValueError(
            f"grid should hold at least one starting point of {width} values "
            f"({', '.join(names)}), shape (starts, {width}); got shape {tuple(g.shape)}."
        )
    if not torch.isfinite(g).all():
        raise ValueError("grid should hold finite starting points; it contains NaN or infinity.")
    return g


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
    delta = _check_delta(delta)
    residual = log_chinchilla(theta, log_n, log_d) - log_l
    return torch.nn.functional.huber_loss(
        residual, torch.zeros_like(residual), reduction="none", delta=delta
    ).sum(-1)


def chinchilla_loss(
    N: ArrayLike, D: ArrayLike, *, E: float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    """``E + A / N**alpha + B / D**beta`` (broadcasts ``N`` against ``D``)."""
    n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    return E + _power_term(A, n, alpha) + _power_term(B, d, beta)


def _power_term(coef: float, x: np.ndarray, exponent: float) -> np.ndarray:
    """``coef / x**exponent``, computed in logs so that a huge ``coef`` with a huge
    ``exponent`` (a badly determined fit can wander there) does not give inf / inf."""
    with np.errstate(divide="ignore"):
        return np.exp(np.log(coef) - exponent * np.log(x))


def _exp(x: float) -> float:
    """``e**x``, capped below float64's largest value instead of raising OverflowError."""
    return math.exp(min(x, 700.0))


def default_init_grid() -> torch.Tensor:
    """Hoffmann et al.'s grid of starting points for ``(a, b, e, alpha, beta)``.

    ``alpha, beta`` in {0, 0.5, ..., 2}, ``e`` in {-1, -0.5, ..., 1}, ``a, b`` in
    {0, 5, ..., 25}: 4500 starts, shape ``(4500, 5)``.
    """
    ab = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    exps = [0.0, 0.5, 1.0, 1.5, 2.0]
    es = [-1.0, -0.5, 0.0, 0.5, 1.0]
    return torch.tensor(list(itertools.product(ab, ab, es, exps, exps)), dtype=torch.float64)


# The fitters hand L-BFGS a function theta -> (objective, gradient). The gradients are
# written out by hand: on a few dozen runs autograd's bookkeeping costs three times the
# arithmetic, and a bootstrap runs L-BFGS hundreds of times. A test checks them
# against autograd.
ValueAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _huber_parts(residual: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber loss of each residual and its derivative (the residual clipped to +-delta)."""
    size = residual.abs()
    value = torch.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta))
    return value, residual.clamp(-delta, delta)


def _chinchilla_value_and_grad(
    log_n: torch.Tensor, log_d: torch.Tensor, log_l: torch.Tensor, delta: float
) -> ValueAndGrad:
    """:func:`huber_log_objective` and its gradient, for ``theta`` ``(5,)`` or ``(starts, 5)``."""

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, e, alpha, beta = (t[..., None] for t in theta.unbind(-1))
        terms = torch.stack(torch.broadcast_tensors(a - alpha * log_n, b - beta * log_d, e))
        value, slope = _huber_parts(torch.logsumexp(terms, 0) - log_l, delta)
        # d logsumexp / d term = softmax of the terms: each term's share of the loss.
        w_n, w_d, w_e = slope * torch.softmax(terms, 0)
        grad = torch.stack(
            [w_n.sum(-1), w_d.sum(-1), w_e.sum(-1), -(w_n * log_n).sum(-1), -(w_d * log_d).sum(-1)],
            dim=-1,
        )
        return value.sum(-1), grad

    return value_and_grad


def _lbfgs(
    value_and_grad: ValueAndGrad, theta0: torch.Tensor, delta: float, max_iter: int = 200
) -> tuple[torch.Tensor, float]:
    """Minimise from ``theta0`` with L-BFGS and a strong-Wolfe line search.

    The optimiser sees the objective divided by ``delta``: a Huber loss with
    ``delta = 1e-3`` is about ``delta * |residual|`` per run, so its gradients are tiny
    and torch's stopping tolerances would end the search at the start. Dividing moves
    the same minimum into the range the tolerances were made for.
    """
    theta = theta0.detach().clone().to(torch.float64)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        value, grad = value_and_grad(theta)
        theta.grad = grad / delta
        return value / delta

    opt.step(closure)
    value = float(value_and_grad(theta)[0])
    if not math.isfinite(value):
        return theta0.detach().clone(), math.inf
    return theta, value


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread inside the block.

    A fit works on tensors of a few dozen numbers, a sweep trains small models: threads
    only add synchronisation, and on a busy machine each tiny operation can wait for a
    descheduled thread (measured: one thread fits three times faster on a shared 2-core
    CPU).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _multistart(
    value_and_grad: ValueAndGrad,
    grid: torch.Tensor,
    n_starts: int,
    delta: float,
    warm_start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Screen every grid point at once, run L-BFGS from the ``n_starts`` best (and from
    ``warm_start``, if given), keep the best.

    Hoffmann et al. ran L-BFGS from every grid point; evaluating the objective on the
    whole grid first and polishing only the most promising starts finds the same
    minimum on these small problems at a fraction of the cost. Raises ``ValueError`` when
    every start ends with a non-finite objective (a fit that returned its starting point
    would look like a result).
    """
    with _one_thread():
        start_values = torch.nan_to_num(value_and_grad(grid)[0], nan=math.inf)
        starts = [grid[i] for i in torch.argsort(start_values)[: max(1, n_starts)].tolist()]
        if warm_start is not None:
            starts.append(warm_start)
        best_theta, best_value = starts[0], math.inf
        for start in starts:
            theta, value = _lbfgs(value_and_grad, start, delta)
            if value < best_value:
                best_theta, best_value = theta, value
    if not math.isfinite(best_value):
        raise ValueError(
            f"every start of the fit failed: from all {len(starts)} starting points the "
            "objective ended as NaN or infinity (it overflowed). Pass other starting points "
            "(grid=...) or check the runs for extreme values."
        )
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


def _params_table(
    title: str,
    names: Sequence[str],
    params: dict[str, float],
    ci: dict[str, tuple[float, float]],
    ci_level: float,
) -> str:
    """A fit's parameters one per line, each with its bootstrap interval when there is one."""
    lines = [title]
    for name in names:
        line = f"  {name:>5} = {params[name]:10.4g}"
        if name in ci:
            lo, hi = ci[name]
            line += f"   {round(100 * ci_level)}% CI [{lo:.4g}, {hi:.4g}]"
        lines.append(line)
    return "\n".join(lines)


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

    def predict_interval(self, N: ArrayLike, D: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the prediction over the bootstrap fits (``ci_level`` coverage)."""
        if not len(self.bootstrap):
            raise ValueError("this fit has no bootstrap; fit again with n_bootstrap > 0.")
        draws = np.stack(
            [
                chinchilla_loss(N, D, **dict(zip(CHINCHILLA_PARAMS, row, strict=True)))
                for row in self.bootstrap
            ]
        )
        q = (1 - self.ci_level) / 2
        low, high = np.quantile(draws, [q, 1 - q], axis=0)
        return low, high

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
            draws = np.stack(
                [shares(dict(zip(CHINCHILLA_PARAMS, row, strict=True))) for row in self.bootstrap]
            )
            q = (1 - self.ci_level) / 2
            low, high = np.quantile(draws, [q, 1 - q], axis=0)
        return {
            k: (float(value[i]), float(low[i]), float(high[i]))
            for i, k in enumerate(("E", "N", "D"))
        }

    def compute_optimal(self, C: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(N*, D*)`` minimising the predicted loss at compute ``C = 6 N D`` FLOPs."""
        p = self.params
        return compute_optimal_split(C, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])

    def summary(self) -> str:
        """A small table: each parameter with its interval."""
        title = f"Chinchilla fit on {self.n_points} runs (summed Huber {self.loss:.3g})"
        return _params_table(title, CHINCHILLA_PARAMS, self.params, self.ci, self.ci_level)


def _terms(params: dict[str, float], N: ArrayLike, D: ArrayLike) -> dict[str, np.ndarray]:
    n, d = np.broadcast_arrays(np.asarray(N, np.float64), np.asarray(D, np.float64))
    return {
        "E": np.full(n.shape, float(params["E"])),
        "N": _power_term(params["A"], n, params["alpha"]),
        "D": _power_term(params["B"], d, params["beta"]),
    }


def _theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    a, b, e, alpha, beta = theta.tolist()
    return {"E": _exp(e), "A": _exp(a), "B": _exp(b), "alpha": alpha, "beta": beta}


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
    delta = _check_delta(delta)
    n, d, loss = _check_points(N, D, L, min_points=6)
    log_n, log_d, log_l = n.log(), d.log(), loss.log()
    grid = _check_grid(
        default_init_grid() if grid is None else grid, 5, ("a", "b", "e", "alpha", "beta")
    )

    def objective_on(idx: torch.Tensor | slice) -> ValueAndGrad:
        return _chinchilla_value_and_grad(log_n[idx], log_d[idx], log_l[idx], delta)

    theta, value = _multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        # From the full-data optimum (a resample usually moves the minimum a little) and
        # from the resample's best grid point: where the data pin a parameter down badly,
        # the warm start alone can sit where the objective is flat and never move.
        t, _ = _multistart(objective_on(idx), grid, 1, delta, warm_start=theta)
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
    return -C + _power_term(A, n, alpha) + _power_term(B, d, beta)


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
        value, slope = _huber_parts((base - c + by_n + by_d - loss) / loss, delta)
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
        title = f"Mixed-modal interaction on {self.n_points} runs (summed Huber {self.loss:.3g})"
        return _params_table(title, BIMODAL_PARAMS, self.params, self.ci, self.ci_level)


def _bimodal_theta_to_params(theta: torch.Tensor) -> dict[str, float]:
    c, a, alpha, b, beta = theta.tolist()
    return {"C": c, "A": _exp(a), "alpha": alpha, "B": _exp(b), "beta": beta}


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
    delta = _check_delta(delta)
    n, d_i, loss = _check_points(N, D_i, L, min_points=6)
    d_j = _as_1d("D_j (tokens)", D_j)
    if len(d_j) != len(n) or _shape(D_j) != _shape(N):
        raise ValueError(
            f"D_j should hold one value per run, shaped like N {_shape(N)} ({len(n)} runs); "
            f"got shape {_shape(D_j)} ({len(d_j)} values)."
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

    theta, value = _multistart(objective_on(slice(None)), grid, n_starts, delta)

    def refit(idx: torch.Tensor) -> np.ndarray:
        # As in fit_chinchilla: warm start and the resample's best grid point.
        sub = objective_on(idx)
        c_sub = (base[idx] + _interaction_t(zero_c, log_n[idx], log_d[idx]) - loss[idx]).mean(-1)
        t, _ = _multistart(sub, torch.cat([c_sub[:, None], g4], 1), 1, delta, warm_start=theta)
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


# ---------------------------------------------------------------------------
# One law in total compute across modalities (chapter 000's unified scaling claim)
# ---------------------------------------------------------------------------

COMPUTE_LAW_PARAMS = ("E", "A", "gamma")


def compute_law_loss(C: ArrayLike, *, E: float, A: float, gamma: float) -> np.ndarray:
    """``E + A / C**gamma``: loss against training compute ``C`` (FLOPs), broadcast."""
    return E + _power_term(A, np.asarray(C, dtype=np.float64), gamma)


def _compute_law_value_and_grad(
    log_c: torch.Tensor, log_l: torch.Tensor, delta: float
) -> ValueAndGrad:
    """Summed Huber loss of ``log(E + A / C**gamma) - log L`` and its gradient, for raw
    ``theta = (a, e, gamma)`` with ``A = exp(a)``, ``E = exp(e)``; ``(3,)`` or ``(starts, 3)``."""

    def value_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, e, gamma = (t[..., None] for t in theta.unbind(-1))
        terms = torch.stack(torch.broadcast_tensors(a - gamma * log_c, e))
        value, slope = _huber_parts(torch.logsumexp(terms, 0) - log_l, delta)
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
    return {"E": _exp(e), "A": _exp(a), "gamma": gamma}


def _fit_compute_theta(
    log_c: torch.Tensor,
    log_l: torch.Tensor,
    delta: float,
    n_starts: int,
    warm_start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    return _multistart(
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
    delta = _check_delta(delta)
    c, loss = _check_runs({"C (FLOPs)": C, "L (loss)": L}, min_points=4)
    _warn_if_not_identified({"compute C": (c, "A and gamma")}, loss)
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
    delta = _check_delta(delta)
    if len(points) < 4:
        raise ValueError(f"compare_compute_laws needs at least 4 points; got {len(points)}.")
    c, loss = _check_runs({"flops": points.flops, "loss": points.loss}, min_points=4)
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
        return _multistart(objective, warm[None], 1, delta)[0]

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
    q = [(1 - ci_level) / 2, (1 + ci_level) / 2]

    def interval(x: np.ndarray) -> tuple[float, float]:
        lo, hi = np.quantile(x, q)
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


# ---------------------------------------------------------------------------
# Sweeps: train a grid of small OmniLMs and record (N, D, loss)
# ---------------------------------------------------------------------------

MODALITIES = ("text", "image", "audio")
SETTINGS = ("text", "image", "audio", "text+image", "text+audio")
CACHE_VERSION = 1


@dataclass(frozen=True)
class ModelSize:
    """One decoder shape of the sweep."""

    d_model: int
    n_layers: int
    n_heads: int

    @property
    def label(self) -> str:
        return f"d{self.d_model}xL{self.n_layers}"


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep trains. Every field goes into the cache key of each run.

    Each (setting, size) is **one run** at a constant learning rate after warm-up,
    evaluated on held-out data after each of ``eval_steps`` optimizer steps; the last
    entry is the run's length. One run therefore gives a point for every token budget
    D (the Kaplan et al. 2020 shortcut). Hoffmann et al. instead trained one
    cosine-decayed run per budget, which lowers each loss a little; with a constant
    rate every budget is treated alike, which is what a fit across budgets needs.

    ``profile`` sets the data (image size, audio length); ``pool`` caps how many
    training scenes are generated (runs longer than ``pool / batch_size`` steps see
    scenes again).
    """

    profile: str
    sizes: tuple[ModelSize, ...]
    eval_steps: tuple[int, ...]
    settings: tuple[str, ...] = SETTINGS
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    n_eval: int = 128
    pool: int = 4096
    frames_per_token: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"settings should be among {SETTINGS}; got {unknown}.")
        steps = list(self.eval_steps)
        if not steps or steps != sorted(set(steps)) or steps[0] <= self.warmup_steps:
            raise ValueError(
                f"eval_steps should increase strictly and start after warm-up "
                f"({self.warmup_steps} steps); got {self.eval_steps}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


# The sweep of each profile; the held-out run is bigger than every run of its sweep.
SWEEPS: dict[str, SweepConfig] = {
    "ci": SweepConfig(
        profile="ci",
        sizes=(ModelSize(16, 1, 2), ModelSize(32, 1, 2), ModelSize(32, 2, 2), ModelSize(48, 2, 4)),
        eval_steps=(20, 30, 45, 70, 100, 150),
        batch_size=32,
        n_eval=128,
        pool=9600,
    ),
    "cpu": SweepConfig(
        profile="cpu",
        sizes=(
            ModelSize(16, 1, 2),
            ModelSize(32, 1, 2),
            ModelSize(32, 2, 2),
            ModelSize(64, 2, 4),
            ModelSize(64, 4, 4),
        ),
        eval_steps=(25, 40, 65, 100, 160, 250, 400),
        batch_size=32,
        n_eval=256,
        pool=25600,
    ),
    "gpu": SweepConfig(
        profile="gpu",
        sizes=(
            ModelSize(64, 2, 4),
            ModelSize(128, 4, 4),
            ModelSize(192, 4, 6),
            ModelSize(256, 6, 8),
        ),
        eval_steps=(100, 150, 250, 400, 650, 1000),
        batch_size=128,
        lr=2e-3,
        warmup_steps=50,
        n_eval=1024,
        pool=32768,
    ),
}
HELDOUT: dict[str, tuple[ModelSize, int]] = {
    "ci": (ModelSize(64, 3, 4), 300),
    "cpu": (ModelSize(96, 4, 4), 800),
    "gpu": (ModelSize(384, 6, 8), 2000),
}


# Bootstrap resamples per profile: enough for a rough 95% interval on a 2-core CPU in
# ci, a steadier one where there is time.
N_BOOTSTRAP = {"ci": 20, "cpu": 100, "gpu": 400}


def sweep_config(profile: str | None = None) -> SweepConfig:
    """The sweep of ``profile`` (default: the active one).

    Its step counts and data sizes go through :meth:`Profile.budget`: the same as
    :data:`SWEEPS` except in the gpu dry run, which keeps the gpu shapes and trains each
    run a few steps. ``profile`` of the result is the profile's ``key`` (``"gpu-dry"``), so
    a dry run's runs never share a cache entry with real ones.
    """
    p = get_profile(profile)
    base = SWEEPS[p.name]
    # A dry run evaluates 4 times (the fits keep the last two of each run: 8 points per
    # modality), at steps 2, 3, 4, 5: still increasing, and past a one-step warm-up.
    evaluations = base.eval_steps[: p.budget(len(base.eval_steps), dry=4)]
    return replace(
        base,
        profile=p.key,
        eval_steps=tuple(p.budget(s, dry=2 + k) for k, s in enumerate(evaluations)),
        warmup_steps=p.budget(base.warmup_steps, dry=1),
        batch_size=p.budget(base.batch_size, dry=4),
        n_eval=p.budget(base.n_eval, dry=8),
        pool=p.budget(base.pool, dry=64),
    )


def heldout_size(profile: str | None = None) -> tuple[ModelSize, int]:
    """The larger run that lesson 07 predicts before training it: ``(size, steps)``.

    Twice as long as the sweep's longest run (in the dry run too)."""
    p = get_profile(profile)
    size, steps = HELDOUT[p.name]
    return size, p.budget(steps, dry=2 * max(sweep_config(p.key).eval_steps))


def bootstrap_resamples(profile: str | None = None) -> int:
    """How many bootstrap refits lesson 07 runs in ``profile`` (:data:`N_BOOTSTRAP`)."""
    p = get_profile(profile)
    return p.budget(N_BOOTSTRAP[p.name], dry=2)


def decoder_parameters(size: ModelSize) -> int:
    """``N`` of a size before training it: the decoder's parameters (as in the sweep)."""

    decoder = Decoder(
        DecoderConfig(d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads)
    )
    return sum(p.numel() for p in decoder.parameters() if p.requires_grad)


def default_cache_path(profile: str = "ci") -> Path:
    """Where the sweeps of ``profile`` are cached.

    In a clone of the course: ``notebooks/data/scaling_sweeps.json`` for ``ci``, which ships
    the project's own results, and ``notebooks/data/scaling_sweeps_<profile>.json`` (not
    tracked by git) for ``cpu`` and ``gpu``, so a learner's own runs never change the
    shipped file. Elsewhere (a pip install, Colab): the same names in the working
    directory. The gpu dry run's meaningless numbers go to the course cache
    (:func:`omni_edu.course_cache.cache_dir`, a temporary folder under the tests).
    """
    p = get_profile(profile)
    if p.dry_run:
        return cache_dir(p) / "scaling_sweeps.json"
    name = "scaling_sweeps.json" if p.key == "ci" else f"scaling_sweeps_{p.key}.json"
    repo = Path(__file__).resolve().parent.parent
    if (repo / "notebooks").is_dir():
        return repo / "notebooks" / "data" / name
    return Path(name)


class SweepCache:
    """A JSON file of finished runs, keyed by a hash of everything that made them.

    It also keeps each sweep's modality baselines (:func:`modality_baselines`), keyed the
    same way, so that the lesson normalises losses without generating the data again.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.runs: dict[str, dict] = {}
        self.baselines: dict[str, dict] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            if data.get("version") == CACHE_VERSION:
                self.runs = data["runs"]
                self.baselines = data.get("baselines", {})

    @staticmethod
    def key(spec: dict) -> str:
        text = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def get(self, spec: dict) -> list[dict] | None:
        entry = self.runs.get(self.key(spec))
        return None if entry is None else entry["records"]

    def put(self, spec: dict, records: list[dict]) -> None:
        self.runs[self.key(spec)] = {"spec": spec, "records": records}
        self._write()

    def get_baselines(self, spec: dict) -> dict[str, float] | None:
        entry = self.baselines.get(self.key(spec))
        return None if entry is None else entry["baselines"]

    def put_baselines(self, spec: dict, baselines: dict[str, float]) -> None:
        self.baselines[self.key(spec)] = {"spec": spec, "baselines": baselines}
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = {"version": CACHE_VERSION, "runs": self.runs, "baselines": self.baselines}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "non_embedding": ...}`` trainable parameters of an OmniLM.

    ``non_embedding`` counts the decoder blocks only: no text embedding, image/audio
    projector or output head (Kaplan et al.'s convention). At our sizes those parts
    are a large, modality-dependent share, so the decoder count is the ``N`` that
    compares across text, image and audio runs.
    """
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    decoder = sum(p.numel() for p in model.decoder.parameters() if p.requires_grad)
    return {"total": total, "non_embedding": decoder}


def training_flops(
    n_params: float, tokens: float, n_layers: int, d_model: int, ctx: float
) -> float:
    """Training FLOPs: ``6 N D`` plus attention, ``6 * n_layers * ctx * d_model`` per token.

    Kaplan et al. 2020 (Sec. 2.1): a forward pass costs ``2 N + 2 n_layers ctx d_model``
    per token (the second term is scores and weighted sums over ``ctx`` positions); the
    backward pass twice that. ``ctx`` is the mean sequence length.
    """
    return 6.0 * n_params * tokens + 6.0 * n_layers * ctx * d_model * tokens


@dataclass
class _Pool:
    """Training or evaluation scenes, turned into each modality's tokens."""

    text: list[list[int]]
    image: torch.Tensor  # (n, patches, image_dim), standardised per feature
    audio: torch.Tensor  # (n, audio_tokens, audio_dim), standardised per feature
    grid: tuple[int, int]


def _make_pool(config: SweepConfig, split: str, n: int, stats: dict | None) -> tuple[_Pool, dict]:
    """Generate ``n`` scenes and tokenize them; features are standardised with ``stats``.

    Standardising makes an image or audio MSE a fraction of the feature variance (1.0
    for a model that predicts the mean), on a scale like a text loss in nats: without
    it, a mixed run's total loss would be nearly all text and its image part would
    barely train.
    """
    profile = get_profile(config.profile)
    world = OmniWorld(split, seed=config.seed, profile=profile)
    tokenizer = TextTokenizer()
    text, images, audio = [], [], []
    for start in range(0, n, 512):
        batch = world.sample(min(512, n - start))
        text += [tokenizer.encode(c, bos=True, eos=True) for c in batch.captions]
        images.append(patchify(batch.images, profile.patch_size))
        audio.append(frame_audio(batch.mels, config.frames_per_token))
    image, sound = torch.cat(images), torch.cat(audio)
    if stats is None:
        stats = {
            name: (x.mean((0, 1)), x.std((0, 1)).clamp_min(1e-3))
            for name, x in (("image", image), ("audio", sound))
        }
    image = (image - stats["image"][0]) / stats["image"][1]
    sound = (sound - stats["audio"][0]) / stats["audio"][1]
    side = profile.image_size // profile.patch_size
    return _Pool(text, image, sound, (side, side)), stats


def _document(pool: _Pool, modality: str, k: int) -> list:

    if modality == "text":
        return [text_segment(pool.text[k])]
    if modality == "image":
        return [image_segment(pool.image[k], pool.grid)]
    return [audio_segment(pool.audio[k])]


def _batches(pool: _Pool, setting: str, batch_size: int, image_dim: int, audio_dim: int) -> list:
    """Packed batches of ``setting``, one pass over the pool.

    A mixed run's batch holds ``batch_size`` documents of *each* of its modalities, so
    that at every step it sees as many tokens of each as the matching single-modality
    run: the two differ only in what else the model learns, not in steps or tokens.
    Every document holds one modality, and the second modality's scenes are shifted by
    half the pool, so no caption meets its own picture: a modality can only help
    another through what the shared weights learn.
    """

    n = len(pool.text)
    shifts = (0, n // 2)
    batches = []
    for start in range(0, n - batch_size + 1, batch_size):
        docs = [
            _document(pool, modality, (k + shift) % n)
            for modality, shift in zip(setting.split("+"), shifts, strict=False)
            for k in range(start, start + batch_size)
        ]
        batches.append(pack(docs, image_dim=image_dim, audio_dim=audio_dim))
    return batches


def _modality_tokens(packed, modality: str) -> int:

    return int((packed.modality == Modality[modality.upper()]).sum())


class _SweepData:
    """Packed batches per setting, built once per sweep and shared by all sizes."""

    def __init__(self, config: SweepConfig, progress: bool) -> None:
        self.config = config
        # Enough scenes for one pass of the longest run, the held-out one included.
        steps = max(*config.eval_steps, heldout_size(config.profile)[1])
        n_train = min(config.pool, steps * config.batch_size)
        with tqdm(total=2, desc="generating OmniWorld", disable=not progress, leave=False) as bar:
            self.train, stats = _make_pool(config, "train", n_train, None)
            bar.update()
            self.val, _ = _make_pool(config, "test", config.n_eval, stats)
            bar.update()
        self.image_dim = self.train.image.shape[-1]
        self.audio_dim = self.train.audio.shape[-1]
        self._cache: dict[str, tuple[list, dict[str, list]]] = {}
        self._val: dict[str, list] = {}

    def batches(self, setting: str) -> tuple[list, dict[str, list]]:
        """Training batches of ``setting`` and validation batches per modality it has."""
        if setting not in self._cache:
            cfg = self.config
            dims = (self.image_dim, self.audio_dim)
            train = _batches(self.train, setting, cfg.batch_size, *dims)
            self._cache[setting] = (train, {m: self.val_batches(m) for m in setting.split("+")})
        return self._cache[setting]

    def val_batches(self, modality: str) -> list:
        """Validation batches of one modality (the same for every setting that has it)."""
        key = f"val {modality}"
        if key not in self._val:
            dims = (self.image_dim, self.audio_dim)
            self._val[key] = _batches(self.val, modality, self.config.batch_size, *dims)
        return self._val[key]


def _build_model(data: _SweepData, size: ModelSize, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return OmniLM(
        OmniLMConfig(
            projector=ProjectorConfig(
                d_model=size.d_model,
                vocab_size=TextTokenizer().vocab_size,
                image_dim=data.image_dim,
                audio_dim=data.audio_dim,
            ),
            decoder=DecoderConfig(
                d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads
            ),
        )
    )


def _omni_loss(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    losses = model.loss(batch)
    return {"loss": losses.pop("total"), **losses}


def _train_run(
    data: _SweepData, setting: str, size: ModelSize, eval_steps: Sequence[int]
) -> list[dict]:
    """Train one model on ``setting`` and evaluate it after each of ``eval_steps``."""
    cfg = data.config
    train, val = data.batches(setting)
    model = _build_model(data, size, cfg.seed)
    params = count_parameters(model)
    device = get_device(get_profile(cfg.profile))

    def validation_loss(m: nn.Module) -> dict[str, float]:
        return {
            modality: float(np.mean([m.loss(b.to(device))[modality].item() for b in batches]))
            for modality, batches in val.items()
        }

    trainer = Trainer(
        model,
        _omni_loss,
        lambda step: train[step % len(train)],
        TrainConfig(
            steps=max(eval_steps),
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            min_lr_ratio=1.0,  # constant after warm-up: every budget is measured alike
            log_every=max(eval_steps),
            seed=cfg.seed,
            device=str(device),
            progress=False,
        ),
        eval_fn=validation_loss,
    )
    per_batch = {m: np.mean([_modality_tokens(b, m) for b in train]) for m in MODALITIES}
    ctx = float(np.mean([b.lengths.float().mean().item() for b in train]))
    records = []
    for step in eval_steps:
        trainer.fit(until=step)
        tokens = {m: float(per_batch[m] * step) for m in setting.split("+")}
        total = sum(tokens.values())
        records.append(
            {
                "setting": setting,
                **asdict(size),
                "params": params["total"],
                "params_nonembedding": params["non_embedding"],
                "step": step,
                "tokens": tokens,
                "tokens_total": total,
                "flops": training_flops(
                    params["non_embedding"], total, size.n_layers, size.d_model, ctx
                ),
                "loss": trainer.evaluate(),
            }
        )
    return records


def _run_spec(
    config: SweepConfig, setting: str, size: ModelSize, eval_steps: Sequence[int]
) -> dict:
    spec = config.to_dict()
    spec.pop("sizes"), spec.pop("settings")
    return {**spec, "eval_steps": list(eval_steps), "setting": setting, "size": asdict(size)}


@functools.lru_cache(maxsize=1)
def _sweep_data(config: SweepConfig, progress: bool) -> _SweepData:
    # Kept between calls, so the held-out run reuses the sweep's data.
    return _SweepData(config, progress)


def _open_cache(cache: SweepCache | str | Path | None, config: SweepConfig) -> SweepCache:
    if isinstance(cache, SweepCache):
        return cache
    return SweepCache(cache if cache is not None else default_cache_path(config.profile))


def _run_all(
    config: SweepConfig,
    jobs: Sequence[tuple[str, ModelSize, Sequence[int]]],
    cache: SweepCache | str | Path | None,
    progress: bool,
    desc: str,
) -> list[dict]:
    cache = _open_cache(cache, config)
    records: list[dict] = []
    bar = tqdm(jobs, desc=desc, disable=not progress)
    for setting, size, steps in bar:
        bar.set_postfix_str(f"{setting} {size.label}")
        spec = _run_spec(config, setting, size, steps)
        found = cache.get(spec)
        if found is None:
            data = _sweep_data(config, progress)
            # The sweep's models are small: on a CPU, torch's threads only add waiting
            # (on a busy 2-core machine a step took several times longer with two).
            on_cpu = get_device(get_profile(config.profile)).type == "cpu"
            with _one_thread() if on_cpu else contextlib.nullcontext():
                found = _train_run(data, setting, size, steps)
            cache.put(spec, found)
        records += found
    return records


def run_sweep(
    config: SweepConfig | None = None,
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train (or load from the cache) every run of a sweep; one record per evaluation.

    A record: ``setting``, ``d_model``, ``n_layers``, ``n_heads``, ``params`` (all
    trainable), ``params_nonembedding`` (decoder only: the ``N`` we fit), ``step``,
    ``tokens`` (per modality) and ``tokens_total`` (``D``), ``flops``
    (:func:`training_flops`) and ``loss`` (validation loss per modality: nats per
    token for text, MSE of standardised features for image and audio).

    Cached runs load instantly; new ones train and are written to the cache (default: the
    sweep profile's :func:`default_cache_path`) as soon as each finishes, so a stopped
    sweep resumes.
    """
    config = config or sweep_config()
    jobs = [(s, size, config.eval_steps) for s in config.settings for size in config.sizes]
    return _run_all(config, jobs, cache, progress, f"{config.profile} sweep")


def run_heldout(
    config: SweepConfig | None = None,
    setting: str = "text",
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """The held-out run: a model bigger than any of the sweep, trained longer.

    Same data and recipe as :func:`run_sweep`; evaluated at the sweep's budgets and at
    its own last step (:func:`heldout_size` gives its size and length per profile).
    """
    config = config or sweep_config()
    size, steps = heldout_size(config.profile)
    eval_steps = (*(s for s in config.eval_steps if s < steps), steps)
    return _run_all(config, [(setting, size, eval_steps)], cache, progress, "held-out run")


def past_transient(records: Sequence[dict], config: SweepConfig) -> list[dict]:
    """The evaluations a fit should use: each run's third evaluation and later.

    The first steps of any run are a transient no power law describes: the model first
    learns the data's simplest statistics (which words are common, the mean image), and
    its loss drops far faster than later on. Kaplan et al. also fitted only after such
    an initial phase.
    """
    first = config.eval_steps[min(2, len(config.eval_steps) - 1)]
    return [r for r in records if r["step"] >= first]


def _measure_baselines(data: _SweepData) -> dict[str, float]:
    """The best constant prediction's loss on each modality's validation targets."""
    baselines = {}
    for modality in MODALITIES:
        batches = data.val_batches(modality)
        mask = [b.loss_mask(Modality[modality.upper()]) for b in batches]
        if modality == "text":
            targets = torch.cat([b.text_targets[m] for b, m in zip(batches, mask, strict=True)])
            freq = torch.bincount(targets).to(torch.float64)
            freq = freq[freq > 0] / freq.sum()
            baselines[modality] = float(-(freq * freq.log()).sum())
        else:
            name = f"{modality}_targets"
            x = torch.cat([getattr(b, name)[m] for b, m in zip(batches, mask, strict=True)])
            baselines[modality] = float(((x - x.mean(0)) ** 2).mean())
    return baselines


def modality_baselines(
    config: SweepConfig | None = None,
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Each modality's loss under the best **constant** prediction: ``{modality: loss}``.

    Measured on the sweep's validation targets (the positions its losses average over):

    * text: the entropy of the target tokens' frequencies, in nats per token: the
      cross-entropy of always predicting those frequencies, the best a model can do that
      ignores the context;
    * image, audio: the variance of the standardised target features around their mean:
      the squared error of always predicting the mean (close to 1 by construction).

    Dividing a model's loss by its modality's baseline puts text, image and audio on one
    scale: 1 means "no better than ignoring the context", lower is better. Cached with the
    sweep's runs.
    """
    config = config or sweep_config()
    cache = _open_cache(cache, config)
    # Everything that decides the data (the training pool sets the standardisation).
    spec = {**config.to_dict(), "heldout_steps": heldout_size(config.profile)[1]}
    for unused in ("sizes", "settings", "lr", "warmup_steps"):
        spec.pop(unused)
    spec["kind"] = "baselines"
    found = cache.get_baselines(spec)
    if found is None:
        found = _measure_baselines(_sweep_data(config, progress))
        cache.put_baselines(spec, found)
    return found


def compute_points(records: Sequence[dict], baselines: dict[str, float]) -> ComputePoints:
    """Every ``(run, modality, evaluation)`` of ``records`` on one scale.

    The loss is divided by its modality's ``baselines`` (:func:`modality_baselines`) and
    set against the run's total training compute (``flops``, all modalities together).
    A mixed run gives one point per modality at the same compute.
    """
    flops, loss, modality, run, setting = [], [], [], [], []
    for r in records:
        for m, value in r["loss"].items():
            if m not in baselines:
                raise ValueError(f"no baseline for modality {m!r}; got {sorted(baselines)}.")
            flops.append(r["flops"])
            loss.append(value / baselines[m])
            modality.append(m)
            run.append(f"{r['setting']} d{r['d_model']}xL{r['n_layers']}")
            setting.append(r["setting"])
    if not flops:
        raise ValueError("compute_points needs records; got none.")
    return ComputePoints(np.array(flops), np.array(loss), modality, run, setting)


def sweep_points(
    records: Sequence[dict], setting: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D, L)`` of a unimodal setting: decoder parameters, tokens, validation loss."""
    if setting not in MODALITIES:
        raise ValueError(f"sweep_points takes a unimodal setting {MODALITIES}; got {setting!r}.")
    rows = [r for r in records if r["setting"] == setting]
    if not rows:
        raise ValueError(f"no records of setting {setting!r}; settings: {_settings(records)}.")
    n = np.array([r["params_nonembedding"] for r in rows], dtype=np.float64)
    d = np.array([r["tokens"][setting] for r in rows], dtype=np.float64)
    loss = np.array([r["loss"][setting] for r in rows], dtype=np.float64)
    return n, d, loss


def mixed_points(
    records: Sequence[dict], setting: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D_i, D_j, L)`` of a mixed setting ``"i+j"``; ``L`` is the mean of its two
    per-modality validation losses, as in Aghajanyan et al."""
    i, j = _pair(setting)
    rows = [r for r in records if r["setting"] == setting]
    if not rows:
        raise ValueError(f"no records of setting {setting!r}; settings: {_settings(records)}.")
    n = np.array([r["params_nonembedding"] for r in rows], dtype=np.float64)
    d_i = np.array([r["tokens"][i] for r in rows], dtype=np.float64)
    d_j = np.array([r["tokens"][j] for r in rows], dtype=np.float64)
    loss = np.array([(r["loss"][i] + r["loss"][j]) / 2 for r in rows], dtype=np.float64)
    return n, d_i, d_j, loss


def _settings(records: Sequence[dict]) -> list[str]:
    return sorted({r["setting"] for r in records})


def _pair(setting: str) -> tuple[str, str]:
    parts = setting.split("+")
    if len(parts) != 2 or not set(parts) <= set(MODALITIES):
        raise ValueError(f"a mixed setting looks like 'text+image'; got {setting!r}.")
    return parts[0], parts[1]


def fit_sweep(
    records: Sequence[dict], n_bootstrap: int = 0, seed: int = 0, progress: bool = True
) -> dict[str, FitResult]:
    """A Chinchilla fit per unimodal setting found in ``records``."""
    return {
        setting: fit_chinchilla(
            *sweep_points(records, setting), n_bootstrap=n_bootstrap, seed=seed, progress=progress
        )
        for setting in MODALITIES
        if setting in _settings(records)
    }


def fit_mixed(
    records: Sequence[dict],
    laws: dict[str, FitResult],
    n_bootstrap: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, BimodalFitResult]:
    """The mixed-modal law of each mixed setting in ``records``, on the unimodal ``laws``."""
    fits = {}
    for setting in _settings(records):
        if "+" not in setting:
            continue
        i, j = _pair(setting)
        fits[setting] = fit_bimodal(
            *mixed_points(records, setting),
            laws[i],
            laws[j],
            n_bootstrap=n_bootstrap,
            seed=seed,
            progress=progress,
        )
    return fits


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

_UNITS = {"text": "nats/token", "image": "MSE, standardised", "audio": "MSE, standardised"}


def plot_sweep(records: Sequence[dict], fits: dict[str, FitResult] | None = None):
    """Validation loss against tokens, one panel per unimodal setting, one line per size.

    With ``fits``, the fitted law is drawn dashed through each size's points.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    settings = [s for s in MODALITIES if s in _settings(records)]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        n, d, loss = sweep_points(records, setting)
        for k, size in enumerate(sorted(set(n))):
            here = n == size
            colour = plt.cm.viridis(k / max(1, len(set(n)) - 1))
            ax.plot(d[here], loss[here], "o-", color=colour, label=f"N = {size:,.0f}")
            if fits and setting in fits:
                grid = np.geomspace(d[here].min(), d[here].max(), 50)
                ax.plot(grid, fits[setting].predict(size, grid), "--", color=colour, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{setting} only")
        ax.set_xlabel(f"training tokens D ({setting})")
        ax.set_ylabel(f"validation loss ({_UNITS[setting]})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Sweep: loss falls with parameters N and tokens D (dashed: fitted law)")
    fig.tight_layout()
    return detached(fig)


def plot_isoflops(fit: FitResult, budgets: Sequence[float], title: str = ""):
    """Predicted loss along ``C = 6 N D`` for each compute budget, minimum marked at N*."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, c in enumerate(budgets):
        n_opt, _ = fit.compute_optimal(c)
        n = float(n_opt) * np.geomspace(0.1, 10, 200)
        colour = plt.cm.plasma(k / max(1, len(budgets) - 1))
        ax.plot(n, fit.predict(n, c / (6 * n)), color=colour, label=f"C = {c:.1e} FLOPs")
        ax.plot(n_opt, fit.predict(n_opt, c / (6 * n_opt)), "o", color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N (decoder)")
    ax.set_ylabel("predicted loss")
    ax.set_title(title or "IsoFLOP curves: each budget has a best model size (dots)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return detached(fig)


def plot_frontier(fits: dict[str, FitResult], budgets: Sequence[float]):
    """Compute-optimal N*(C) and D*(C) per fit, with bootstrap bands where available."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    c = np.asarray(budgets, dtype=np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, fit in fits.items():
        n_opt, d_opt = fit.compute_optimal(c)
        for ax, value, k in ((axes[0], n_opt, 0), (axes[1], d_opt, 1)):
            (line,) = ax.plot(c, value, label=name)
            draws = [
                compute_optimal_split(c, A=row[1], B=row[2], alpha=row[3], beta=row[4])[k]
                for row in fit.bootstrap
                if np.all(np.isfinite(row)) and min(row[1:]) > 0
            ]
            if draws:
                low, high = np.quantile(np.array(draws), [0.05, 0.95], axis=0)
                ax.fill_between(c, low, high, color=line.get_color(), alpha=0.2)
    for ax, what in zip(axes, ("parameters N*", "tokens D*"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs, 6ND)")
        ax.set_ylabel(f"compute-optimal {what}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal frontier (band: 90% of bootstrap fits)")
    fig.tight_layout()
    return detached(fig)


def plot_interaction(fits: dict[str, BimodalFitResult], n: Sequence[float], d: float):
    """The fitted interaction term against model size at ``d`` total tokens.

    Below zero the two modalities help each other; above, they compete.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    n = np.asarray(n, dtype=np.float64)
    for name, fit in fits.items():
        rows = fit.mixing_report(n, d)
        (line,) = ax.plot(n, [r["interaction"] for r in rows], "o-", label=name)
        ax.fill_between(
            n,
            [r["low"] for r in rows],
            [r["high"] for r in rows],
            color=line.get_color(),
            alpha=0.2,
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (decoder)")
    ax.set_ylabel("interaction (loss units)")
    ax.set_title(f"Mixing: > 0 competition, < 0 synergy (D = {d:,.0f} tokens)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return detached(fig)


def plot_compute_laws(points: ComputePoints, comparison: LawComparison):
    """Normalised loss against total training compute, every modality on one axis.

    Circles: runs of one modality; triangles: that modality's loss in a mixed run. Black
    dashed: the one law fitted to every point; coloured: each modality's own law.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    colours = {m: plt.cm.tab10(k) for k, m in enumerate(MODALITIES)}
    modality, mixed = np.array(points.modality), np.array(["+" in s for s in points.setting])
    grid = np.geomspace(points.flops.min(), points.flops.max(), 100)
    for m in MODALITIES:
        if m not in comparison.per_modality:
            continue
        for is_mixed, marker, what in ((False, "o", "alone"), (True, "^", "in a mixed run")):
            here = (modality == m) & (mixed == is_mixed)
            if here.any():
                ax.plot(
                    points.flops[here],
                    points.loss[here],
                    marker,
                    color=colours[m],
                    alpha=0.7,
                    label=f"{m} {what}",
                )
        law = comparison.per_modality[m]
        ax.plot(grid, law.predict(grid), "-", color=colours[m], label=f"{m}'s own law")
    ax.plot(grid, comparison.one_law.predict(grid), "k--", lw=2, label="one law for all")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C of the run, all modalities (FLOPs)")
    ax.set_ylabel("loss / best constant prediction's loss")
    ax.set_title("One law in total compute, or one per modality?")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return detached(fig)
