"""Intervals that every lesson reports, in one place.

* :func:`wilson_interval` - a proportion ``k / n`` (lesson 09's per-ability accuracy);
* :func:`bootstrap_mean` and :func:`bootstrap_difference` - a mean over items and a paired
  difference of two means, with percentile bootstrap intervals (lessons 04, 06, 08, 09);
* :func:`bootstrap_refits` and :func:`percentile_interval` - the spread of a fitted model's
  parameters or predictions over refits on resampled data (lesson 07's scaling laws);
* :func:`t_interval` - a mean over a few seeds or repeats (one number each), with Student's
  t interval (lesson 08's seeds of the capstone, arrival seeds and repeated real runs).

Why the bootstrap: the course's experiments score a few dozen test scenes or questions,
and resampling those items says how much a number would move on another draw of items of
the same kind, without assuming a distribution for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion ``k / n`` (Wilson score; sane at 0 and n too)."""
    if n <= 0:
        raise ValueError(f"n should be positive; got {n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(
    values: Sequence[float] | torch.Tensor, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` (one per question or test scene) with a 95 % percentile bootstrap
    interval: ``(mean, low, high)``. Resampling the items says how much the mean would
    move on another draw of questions or scenes of the same kind."""
    x = torch.as_tensor(values, dtype=torch.float32).flatten()
    if x.numel() == 0:
        raise ValueError("bootstrap_mean needs at least one value; got none.")
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(x), (n_boot, len(x)), generator=g)
    means = x[picks].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975])).tolist()
    return float(x.mean()), low, high


def bootstrap_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b`` on the same items (questions, test scenes), with a
    95 % paired bootstrap interval: ``(difference, low, high)``. Resampling items (not
    answers) keeps the pairing, so an item's difficulty cancels out."""
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a and b should be equally long and non-empty; got {len(a)}, {len(b)}")
    diff = torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)
    return bootstrap_mean(diff, n_boot, seed)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` that hold the central ``level`` of ``draws`` along its first axis.

    ``draws`` ``(n_draws, ...)``: one row per bootstrap refit (parameters, predictions);
    ``low`` and ``high`` have the shape of one row.
    """
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def bootstrap_refits(
    refit: Callable[[torch.Tensor], np.ndarray],
    n_points: int,
    n_bootstrap: int,
    seed: int = 0,
    progress: bool = True,
    desc: str = "bootstrap fits",
) -> np.ndarray:
    """Refit on ``n_bootstrap`` resamples of ``n_points`` data points (with replacement).

    ``refit(idx)`` fits the points at indices ``idx`` ``(n_points,)`` and returns the
    parameters ``(k,)``. Returns ``(n_bootstrap, k)`` (``(0,)`` for no resamples).
    """
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in tqdm(range(n_bootstrap), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(n_points, (n_points,), generator=gen)
        samples.append(refit(idx))
    return np.array(samples)


# Student's t, 97.5 % quantile, for 1 to 30 degrees of freedom (a 95 % interval).
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean of ``values`` (one per seed or repeat) with a 95 % Student's t interval:
    ``(mean, low, high)``.

    For a handful of runs, where resampling them says little: with n values the interval is
    ``mean +- t(n - 1) * sd / sqrt(n)``. One value gives an infinite interval (no spread is
    known); past 30 degrees of freedom the normal's 1.96 is used.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("t_interval needs at least one value; got none.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval needs finite values; got {x.tolist()}.")
    mean = float(x.mean())
    if x.size == 1:
        return mean, -math.inf, math.inf
    t = _T_975[x.size - 2] if x.size - 1 <= len(_T_975) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half
