"""FSQ: exactly ``levels[i]`` values per dimension, every code reachable, index round
trips, the straight-through gradient, and no NaN for any level (a level of 2 used to give
NaN: the old bound took ``atanh`` of a number above 1)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.model.heads.fsq import FSQ

REGRESSION_LEVELS = [(2, 2), (3,), (8, 5, 5, 5)]


@pytest.mark.parametrize("levels", REGRESSION_LEVELS)
def test_no_nan_and_exactly_the_grid(levels):
    fsq = FSQ(levels)
    z = 3 * torch.randn(20_000, len(levels), generator=torch.Generator().manual_seed(0))
    codes = fsq(z)
    assert torch.isfinite(codes).all()
    assert codes.abs().max() <= 1.0
    for dim, level in enumerate(levels):
        values = torch.unique(codes[:, dim])
        assert len(values) == level
        # evenly spread over [-1, 1], both ends included
        torch.testing.assert_close(values, torch.linspace(-1, 1, level))


@pytest.mark.parametrize("levels", REGRESSION_LEVELS)
def test_every_code_is_reachable_and_indices_round_trip(levels):
    fsq = FSQ(levels)
    indices = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(indices)
    assert len({tuple(c) for c in codes.tolist()}) == fsq.codebook_size  # all codes distinct
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    # An encoder output that reaches each code: undo the bound (stay inside tanh's range).
    z = torch.atanh(0.999 * codes)
    reached = fsq(z)
    assert torch.equal(reached, codes)
    assert torch.equal(fsq.codes_to_indices(reached), indices)


@pytest.mark.parametrize("levels", REGRESSION_LEVELS)
def test_gradient_passes_straight_through_the_rounding(levels):
    fsq = FSQ(levels)
    z = torch.randn(64, len(levels), generator=torch.Generator().manual_seed(1))
    z1 = z.clone().requires_grad_()
    upstream = torch.randn(64, len(levels), generator=torch.Generator().manual_seed(2))
    (fsq(z1) * upstream).sum().backward()
    # The same as differentiating the smooth path with no rounding at all.
    z2 = z.clone().requires_grad_()
    half = (torch.tensor(levels, dtype=torch.float32) - 1) / 2
    ((fsq.bound(z2) / half) * upstream).sum().backward()
    assert torch.isfinite(z1.grad).all()
    torch.testing.assert_close(z1.grad, z2.grad)
    # at z = 0 (where a fresh encoder starts) the gradient is 1 for every level, 2 included
    at_zero = torch.zeros(1, len(levels), requires_grad=True)
    fsq(at_zero).sum().backward()
    torch.testing.assert_close(at_zero.grad, torch.ones(1, len(levels)))


def test_bound_of_zero_rounds_to_the_zero_code_where_there_is_one():
    fsq = FSQ((3, 5, 7))  # odd levels: a value for 0 exists
    assert torch.equal(fsq(torch.zeros(1, 3)), torch.zeros(1, 3))
    assert torch.equal(fsq.bound(torch.zeros(3)), torch.zeros(3))


@settings(max_examples=20, deadline=None)
@given(levels=st.lists(st.integers(2, 8), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_random_levels_round_trip(levels, seed):
    fsq = FSQ(levels)
    assert fsq.codebook_size == math.prod(levels)
    codes = fsq(5 * torch.randn(500, len(levels), generator=torch.Generator().manual_seed(seed)))
    assert torch.isfinite(codes).all() and codes.abs().max() <= 1.0
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)


def test_bad_input_raises():
    fsq = FSQ((8, 5, 3))
    with pytest.raises(ValueError, match="one dimension per FSQ level"):
        fsq(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"should lie in \[0, 120\)"):
        fsq.indices_to_codes(torch.tensor([120]))
    with pytest.raises(ValueError, match="integers >= 2"):
        FSQ((1, 4))


@given(levels=st.lists(st.integers(2, 7), min_size=1, max_size=4), seed=st.integers(0, 99))
@settings(max_examples=20, deadline=None)
def test_squash_is_what_forward_rounds(levels, seed):
    """The continuous value before rounding: inside (-1, 1), and rounding it to the grid
    gives the code forward returns."""
    fsq = FSQ(levels)
    z = 2 * torch.randn(50, len(levels), generator=torch.Generator().manual_seed(seed))
    squashed = fsq.squash(z)
    assert squashed.shape == z.shape and squashed.abs().max() < 1
    half = (torch.tensor(levels, dtype=torch.float32) - 1) / 2
    torch.testing.assert_close((torch.round(squashed * half + half) - half) / half, fsq(z))
    with pytest.raises(ValueError, match="one dimension per FSQ level"):
        fsq.squash(torch.zeros(2, len(levels) + 1))
