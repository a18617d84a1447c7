"""How lesson 07 fits a law, whichever law it is: checked inputs, a Huber objective
minimised by L-BFGS from many starts, and the parameter table with bootstrap intervals.

The three laws (:mod:`.chinchilla`, :mod:`.mixed_modal`, :mod:`.compute_law`) each write
their objective and its gradient; everything they share is here:

* input checks with errors in the learner's words (:func:`check_runs`,
  :func:`check_points`, :func:`check_delta`, :func:`check_grid`) and a
  :class:`NotIdentifiedWarning` when the runs cannot pin a parameter down;
* :func:`multistart`: screen a grid of starting points at once, polish the best with
  :func:`lbfgs`, keep the best;
* :func:`params_table` and :func:`named_intervals` for a fit's summary.

Why log space and Huber with a tiny delta, and why the objective is divided by delta for
L-BFGS: see :mod:`.chinchilla` and :func:`lbfgs`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from omni_edu.stats import percentile_interval

ArrayLike = float | Sequence[float] | np.ndarray | torch.Tensor


HUBER_DELTA = 1e-3


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


class NotIdentifiedWarning(UserWarning):
    """The runs cannot pin down some parameters of the law (e.g. every run has one size)."""


def shape_of(x: ArrayLike) -> tuple[int, ...]:
    """The shape of a tensor, an array, a list or a number (``()``)."""
    return tuple(x.shape) if torch.is_tensor(x) else np.shape(x)


def as_1d(name: str, x: ArrayLike, *, positive: bool = True) -> torch.Tensor:
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


def check_runs(arrays: dict[str, ArrayLike], *, min_points: int) -> list[torch.Tensor]:
    """Each array of ``arrays`` (name -> one value per run) as a 1-D float64 tensor.

    Raises ``ValueError`` unless they all have one shape (arrays of different shapes that
    flatten to the same length would pair the wrong runs), hold finite positive values and
    at least ``min_points`` runs.
    """
    names = list(arrays)
    shapes = [shape_of(x) for x in arrays.values()]
    tensors = [as_1d(name, x) for name, x in arrays.items()]
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


def warn_if_not_identified(
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


def check_points(
    N: ArrayLike, D: ArrayLike, L: ArrayLike, *, min_points: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, d, loss = check_runs(
        {"N (parameters)": N, "D (tokens)": D, "L (loss)": L}, min_points=min_points
    )
    warn_if_not_identified(
        {"model size N": (n, "A and alpha"), "token count D": (d, "B and beta")}, loss
    )
    return n, d, loss


def check_delta(delta: float) -> float:
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


def check_grid(grid: ArrayLike, width: int, names: Sequence[str]) -> torch.Tensor:
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


def power_term(coef: float, x: np.ndarray, exponent: float) -> np.ndarray:
    """``coef / x**exponent``, computed in logs so that a huge ``coef`` with a huge
    ``exponent`` (a badly determined fit can wander there) does not give inf / inf."""
    with np.errstate(divide="ignore"):
        return np.exp(np.log(coef) - exponent * np.log(x))


def capped_exp(x: float) -> float:
    """``e**x``, capped below float64's largest value instead of raising OverflowError."""
    return math.exp(min(x, 700.0))


# The fitters hand L-BFGS a function theta -> (objective, gradient). The gradients are
# written out by hand: on a few dozen runs autograd's bookkeeping costs three times the
# arithmetic, and a bootstrap runs L-BFGS hundreds of times. A test checks them
# against autograd.
ValueAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def huber_parts(residual: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber loss of each residual and its derivative (the residual clipped to +-delta)."""
    size = residual.abs()
    value = torch.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta))
    return value, residual.clamp(-delta, delta)


def lbfgs(
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
def one_thread():
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


def multistart(
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
    with one_thread():
        start_values = torch.nan_to_num(value_and_grad(grid)[0], nan=math.inf)
        starts = [grid[i] for i in torch.argsort(start_values)[: max(1, n_starts)].tolist()]
        if warm_start is not None:
            starts.append(warm_start)
        best_theta, best_value = starts[0], math.inf
        for start in starts:
            theta, value = lbfgs(value_and_grad, start, delta)
            if value < best_value:
                best_theta, best_value = theta, value
    if not math.isfinite(best_value):
        raise ValueError(
            f"every start of the fit failed: from all {len(starts)} starting points the "
            "objective ended as NaN or infinity (it overflowed). Pass other starting points "
            "(grid=...) or check the runs for extreme values."
        )
    return best_theta, best_value


def named_intervals(
    samples: np.ndarray, names: Sequence[str], level: float
) -> dict[str, tuple[float, float]]:
    """``{name: (low, high)}``: the central ``level`` of each column of ``samples``
    ``(n_bootstrap, len(names))``."""
    lo, hi = percentile_interval(samples, level)
    return {name: (float(lo[k]), float(hi[k])) for k, name in enumerate(names)}


def params_table(
    title: str,
    names: Sequence[str],
    params: dict[str, float],
    ci: dict[str, tuple[float, float]],
    ci_level: float,
    unidentified: dict[str, str] | None = None,
) -> str:
    """A fit's parameters one per line, each with its bootstrap interval when there is one.

    A parameter named in ``unidentified`` (name -> why) is not quoted: its line says
    "not identified" and why, since any value in a huge range fits the runs as well.
    """
    lines = [title]
    for name in names:
        if unidentified and name in unidentified:
            lines.append(f"  {name:>5} = not identified ({unidentified[name]})")
            continue
        line = f"  {name:>5} = {params[name]:10.4g}"
        if name in ci:
            lo, hi = ci[name]
            line += f"   {round(100 * ci_level)}% CI [{lo:.4g}, {hi:.4g}]"
        lines.append(line)
    return "\n".join(lines)


# When is a parameter pinned down by the runs? Its bootstrap refits (the runs resampled)
# must agree: a positive coefficient within a factor of 10**SCALE_DECADES, an exponent within
# EXPONENT_WIDTH, an additive offset within OFFSET_WIDTH loss units. Past that, very different
# values fit the runs equally well (lesson 07's mixed-modal fit once gave intervals from
# 1e-43 to 1e304), and quoting the fitted value would quote one arbitrary choice.
SCALE_DECADES = 2.0
EXPONENT_WIDTH = 1.0
OFFSET_WIDTH = 1.0


@dataclass(kw_only=True)
class LawFit:
    """What every fitted law of lesson 07 holds, and how its bootstrap is kept.

    ``params`` maps each parameter to its fitted value; ``loss`` is the summed Huber
    objective at the optimum; ``bootstrap`` holds the refitted parameters,
    ``(n_bootstrap, len(NAMES))`` in :attr:`NAMES` order, and ``ci`` each parameter's
    ``(low, high)`` interval over them (both empty without a bootstrap).
    """

    NAMES: ClassVar[tuple[str, ...]] = ()  # the parameters, in the bootstrap's column order
    TITLE: ClassVar[str] = "fit"
    EXPONENTS: ClassVar[tuple[str, ...]] = ()  # judged by the width of their interval
    OFFSETS: ClassVar[tuple[str, ...]] = ()  # additive, any sign; the rest are positive scales

    params: dict[str, float]
    loss: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    n_points: int = 0
    ci_level: float = 0.95

    def keep_bootstrap(self, samples: np.ndarray) -> None:
        """Keep the refits ``samples`` and their intervals (nothing for no refits)."""
        if len(samples):
            self.bootstrap = samples
            self.ci = named_intervals(samples, self.NAMES, self.ci_level)

    def refitted(self) -> list[dict[str, float]]:
        """The parameters of every bootstrap refit, as dicts like :attr:`params`."""
        return [dict(zip(self.NAMES, row, strict=True)) for row in self.bootstrap]

    def unidentified(self) -> dict[str, str]:
        """The parameters the runs do not pin down, each with why: ``{name: reason}``.

        Judged from the bootstrap refits (empty without a bootstrap): a positive
        coefficient whose interval spans more than :data:`SCALE_DECADES` orders of
        magnitude, an exponent whose interval is wider than :data:`EXPONENT_WIDTH`, an
        offset whose interval is wider than :data:`OFFSET_WIDTH` loss units.
        """
        found = {}
        for name, (lo, hi) in self.ci.items():
            if name in self.EXPONENTS or name in self.OFFSETS:
                limit = EXPONENT_WIDTH if name in self.EXPONENTS else OFFSET_WIDTH
                if not hi - lo <= limit:
                    found[name] = f"its refits span {lo:.3g} to {hi:.3g}, wider than {limit:g}"
            elif not (lo > 0 and math.log10(hi) - math.log10(lo) <= SCALE_DECADES):
                finite = lo > 0 and math.isfinite(hi)
                span = math.log10(hi) - math.log10(lo) if finite else math.inf
                found[name] = (
                    f"its refits disagree by {span:.0f} orders of magnitude"
                    if math.isfinite(span)
                    else "its refits reach zero or overflow"
                )
        return found

    @property
    def identified(self) -> bool:
        """Do the bootstrap refits pin down every parameter (:meth:`unidentified`)?"""
        return not self.unidentified()

    def quoted(self, name: str, fmt: str = ".3g") -> str:
        """``"0.34 [0.21, 0.52]"``, or ``"not identified"`` for a parameter the runs do not
        pin down (:meth:`unidentified`): the one way lesson 07 quotes a fitted value."""
        if name in self.unidentified():
            return "not identified"
        value = format(self.params[name], fmt)
        if name not in self.ci:
            return value
        lo, hi = self.ci[name]
        return f"{value} [{format(lo, fmt)}, {format(hi, fmt)}]"

    def summary(self) -> str:
        """A small table: each parameter with its interval ("not identified" where the
        bootstrap refits do not agree, :meth:`unidentified`)."""
        title = f"{self.TITLE} on {self.n_points} runs (summed Huber {self.loss:.3g})"
        return params_table(
            title, self.NAMES, self.params, self.ci, self.ci_level, self.unidentified()
        )
