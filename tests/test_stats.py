"""The shared intervals (omni_edu/stats.py): they cover what they estimate, shrink with more
items, and refit resampled data deterministically."""

import numpy as np
import pytest
import torch

from omni_edu.stats import (
    bootstrap_difference,
    bootstrap_mean,
    bootstrap_refits,
    percentile_interval,
    wilson_interval,
)


def test_wilson_interval_and_a_paired_difference():
    low, high = wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(0, 20)[0] == 0.0
    a = [True] * 80 + [False] * 20
    b = [True] * 40 + [False] * 60
    diff, lo, hi = bootstrap_difference(a, b)
    assert diff == pytest.approx(0.4) and lo < 0.4 < hi and lo > 0.2


def test_bootstrap_mean_interval_covers_the_mean_and_shrinks_with_n():
    small = torch.tensor([0.0, 1.0] * 10)
    large = torch.tensor([0.0, 1.0] * 1000)
    m, lo, hi = bootstrap_mean(small)
    M, LO, HI = bootstrap_mean(large)
    assert m == M == 0.5 and lo < 0.5 < hi and LO < 0.5 < HI
    assert (HI - LO) < (hi - lo) / 5  # 100x the items: about a tenth of the width
    assert bootstrap_mean(torch.full((7,), 0.25)) == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_mean([])


def test_bootstrap_refits_resample_the_points_the_same_way_for_a_seed():
    values = np.arange(10.0)
    refit = lambda idx: np.array([values[idx.numpy()].mean()])
    once = bootstrap_refits(refit, 10, 50, seed=3, progress=False)
    assert once.shape == (50, 1)
    np.testing.assert_array_equal(once, bootstrap_refits(refit, 10, 50, seed=3, progress=False))
    low, high = percentile_interval(once, 0.9)
    assert low[0] < values.mean() < high[0]
    assert percentile_interval(np.array([[1.0], [2.0], [3.0]]), 1.0) == (1.0, 3.0)


def test_t_interval_is_students_for_a_few_runs():
    from omni_edu.stats import t_interval

    mean, low, high = t_interval([0.01, 0.03, 0.02])
    # sd = 0.01, n = 3, t(2) = 4.303: half-width 4.303 * 0.01 / sqrt(3)
    assert mean == pytest.approx(0.02)
    assert high - mean == pytest.approx(mean - low) == pytest.approx(4.303 * 0.01 / 3**0.5)
    assert t_interval([0.5]) == (0.5, -float("inf"), float("inf"))
    many = t_interval([float(k % 2) for k in range(100)])
    assert many[2] - many[0] == pytest.approx(
        1.96 * np.std([k % 2 for k in range(100)], ddof=1) / 10
    )
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, float("nan")])
