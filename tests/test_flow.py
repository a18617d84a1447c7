"""Flow-matching head: loss and sampler conventions, guidance, and the two-mode toy."""

import pytest
import torch

from omni_edu.lessons.diffusion_head.toy import (
    head_loss,
    mode_coverage,
    point_batches,
    two_mode_points,
)
from omni_edu.model.heads import (
    FlowHead,
    FlowHeadConfig,
    RegressionHead,
    euler_step,
    flow_matching_loss,
)
from omni_edu.model.heads.flow import shift_time
from omni_edu.train import fit


def oracle_for(point: torch.Tensor):
    """The exact velocity field of the straight path from any noise to ``point``."""

    def velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (point - x_t) / (1 - t[:, None])

    return velocity


def test_flow_matching_loss_is_zero_for_the_true_velocity():
    g = torch.Generator().manual_seed(0)
    point = torch.tensor([3.0, -1.0])
    x = point.repeat(64, 1)
    noise = torch.randn(64, 2, generator=g)
    t = 0.9 * torch.rand(64, generator=g)
    cond = torch.zeros(64, 1)
    assert flow_matching_loss(oracle_for(point), x, cond, noise, t).item() < 1e-10
    # a field that points from data to noise is as wrong as it can be
    wrong = flow_matching_loss(lambda x_t, t, c: -oracle_for(point)(x_t, t, c), x, cond, noise, t)
    assert wrong.item() > 1.0


def test_euler_steps_follow_a_straight_flow_to_the_data():
    point = torch.tensor([3.0, -1.0])
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    cond = torch.zeros(5, 1)
    steps = 4
    for i in range(steps):
        x = euler_step(oracle_for(point), x, i / steps, 1 / steps, cond)
    torch.testing.assert_close(x, point.repeat(5, 1))
    constant = euler_step(
        lambda x_t, t, c: torch.ones_like(x_t), torch.zeros(3, 2), 0.5, 0.25, cond
    )
    torch.testing.assert_close(constant, torch.full((3, 2), 0.25))


def test_head_accepts_sequences_of_tokens():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(token_dim=6, cond_dim=10, width=16, depth=1))
    hidden = torch.randn(2, 5, 10)
    loss = head.loss(torch.randn(2, 5, 6), hidden)
    assert loss.dim() == 0 and loss.item() > 0
    assert head.sample(hidden, steps=3).shape == (2, 5, 6)
    with pytest.raises(ValueError, match="same leading shape"):
        head.loss(torch.randn(2, 4, 6), hidden)
    with pytest.raises(ValueError, match=r"cond should be \(\.\.\., 10\)"):
        head.sample(torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="uncond"):
        head.sample(hidden, guidance=2.0)


def test_guidance_zero_samples_the_unconditional_model():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(token_dim=3, cond_dim=4, width=16, depth=1, cond_dropout=0.1))
    torch.nn.init.normal_(head.null_cond)
    for block in head.net.blocks:  # make the condition matter (zero-init blocks ignore it)
        torch.nn.init.normal_(block.modulation[1].weight, std=0.5)
    cond = torch.randn(8, 4)
    unguided = head.sample(cond, steps=4, guidance=0.0, generator=torch.Generator().manual_seed(3))
    null = head.null_cond.detach().expand(8, 4)
    unconditional = head.sample(null, steps=4, generator=torch.Generator().manual_seed(3))
    conditional = head.sample(cond, steps=4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(unguided, unconditional)
    assert (conditional - unconditional).abs().max() > 1e-3


def test_flow_head_covers_both_modes_where_regression_collapses_to_the_mean():
    points, cond = two_mode_points(2048, cond_dim=8, generator=torch.Generator().manual_seed(0))
    config = FlowHeadConfig(token_dim=2, cond_dim=8, width=32, depth=2)
    torch.manual_seed(0)
    flow = FlowHead(config)
    fit(flow, head_loss, point_batches(points, cond), steps=200, lr=2e-3, progress=False)
    torch.manual_seed(0)
    regression = RegressionHead(config)
    fit(regression, head_loss, point_batches(points, cond), steps=100, lr=2e-3, progress=False)

    generator = torch.Generator().manual_seed(1)
    flow_cover = mode_coverage(flow.sample(cond[:512], steps=16, generator=generator))
    assert flow_cover["left"] > 0.25 and flow_cover["right"] > 0.25
    assert flow_cover["middle"] < 0.1
    regression_cover = mode_coverage(regression.sample(cond[:512]))
    assert regression_cover["middle"] > 0.95
    assert regression_cover["left"] == regression_cover["right"] == 0.0


def test_data_scale_and_repeats():
    """The head learns on (x - shift) / scale and samples map back; repeats multiply draws."""
    torch.manual_seed(0)
    config = FlowHeadConfig(token_dim=3, cond_dim=4, width=8, depth=1, shift=0.5, scale=0.5)
    head = RegressionHead(config)
    cond = torch.randn(5, 4)
    raw = head.predict(cond)
    torch.testing.assert_close(head.sample(cond), raw * 0.5 + 0.5)
    x = raw * 0.5 + 0.5  # the data the prediction stands for: zero loss
    assert head.loss(x, cond).item() < 1e-10
    repeated = FlowHead(FlowHeadConfig(token_dim=3, cond_dim=4, width=8, depth=1, repeats=4))
    x, c = repeated._inputs(torch.randn(5, 3), cond, repeats=4)
    assert x.shape == (20, 3) and c.shape == (20, 4)
    with pytest.raises(ValueError, match="scale > 0"):
        FlowHeadConfig(token_dim=3, cond_dim=4, scale=0.0)


def test_only_the_flow_head_repeats_its_tokens():
    """Four copies of one token teach a regression head nothing new: it sees each once."""
    config = FlowHeadConfig(token_dim=3, cond_dim=4, width=8, depth=1, repeats=4)
    calls = []
    for head in (FlowHead(config), RegressionHead(config)):
        head.net.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
        head.loss(torch.randn(5, 3), torch.randn(5, 4))
    assert calls == [20, 5]


def test_temperature_scales_the_starting_noise():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(token_dim=2, cond_dim=3, width=8, depth=1))
    cond = torch.randn(256, 3)
    cold = [
        head.sample(cond, steps=4, temperature=0.0, generator=torch.Generator().manual_seed(s))
        for s in (0, 1)
    ]
    torch.testing.assert_close(cold[0], cold[1])  # no noise: the seed does not matter
    # A velocity of zero (a fresh head's output layer is not zero, so use a constant one):
    # samples are exactly the scaled starting noise.
    still = FlowHead(FlowHeadConfig(token_dim=2, cond_dim=3, width=8, depth=1))
    torch.nn.init.zeros_(still.net.out.weight)
    torch.nn.init.zeros_(still.net.out.bias)
    spread = {
        t: still.sample(cond, temperature=t, generator=torch.Generator().manual_seed(0))
        .std()
        .item()
        for t in (0.5, 1.0)
    }
    assert spread[0.5] == pytest.approx(0.5 * spread[1.0], rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        head.sample(cond, temperature=-1.0)


def test_time_shift_moves_times_towards_the_noise_and_keeps_the_ends():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    shifted = shift_time(t, 4.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] < t[1:-1]).all() and (shifted.diff() > 0).all()
    torch.testing.assert_close(shift_time(t, 1.0), t)
    with pytest.raises(ValueError, match="time_shift"):
        FlowHeadConfig(token_dim=2, cond_dim=2, time_shift=0.5)


def test_shifted_euler_grid_still_lands_on_the_data():
    """A shifted grid has uneven steps; along a straight path any grid ends at the point."""
    point = torch.tensor([3.0, -1.0])
    head = FlowHead(FlowHeadConfig(token_dim=2, cond_dim=1, time_shift=6.0))
    head.velocity = oracle_for(point)  # the exact field, so only the grid is tested
    out = head.sample(torch.zeros(5, 1), steps=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, point.repeat(5, 1))


def test_training_times_follow_the_shift():
    """Measured through the loss: a shifted head trains on times nearer the noise."""
    seen = {}
    for shift in (1.0, 12.0):
        head = FlowHead(FlowHeadConfig(token_dim=2, cond_dim=1, time_shift=shift))
        times = []
        head.velocity = lambda x_t, t, c, times=times: times.append(t) or torch.zeros_like(x_t)
        head.loss(torch.zeros(4096, 2), torch.zeros(4096, 1), torch.Generator().manual_seed(0))
        seen[shift] = torch.cat(times)
    assert seen[1.0].mean() == pytest.approx(0.5, abs=0.02)  # uniform
    assert (seen[12.0] < 0.2).float().mean() > 0.6  # most draws near the noise
