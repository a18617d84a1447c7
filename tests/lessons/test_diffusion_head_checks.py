"""Lesson 04's core-build checks against plausible mistakes: the adaLN block, the
conditioned network and the flow head's loss and sampler, each a module the check loads the
reference's weights into. The rows join the table in ``tests/test_checks.py``; one test per
mistake runs there."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.model.heads.flow import (
    AdaLNBlock,
    ConditionedMLP,
    FlowHead,
    euler_step,
    flow_matching_loss,
    shift_time,
)

# === AdaLNBlock ========================================================================


class AdaLNWritten(nn.Module):
    """Right: the block written out as a learner would."""

    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h, c):
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class AdaLNScaleWithoutOne(AdaLNBlock):
    # Plausible mistake: multiplies by scale, not 1 + scale (a new block zeroes its input).
    def forward(self, h, c):
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * scale + shift)


class AdaLNChunksSwapped(AdaLNBlock):
    # Plausible mistake: reads the chunks as (scale, shift, gate).
    def forward(self, h, c):
        scale, shift, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class AdaLNNoGate(AdaLNBlock):
    # Plausible mistake: adds the MLP's output ungated.
    def forward(self, h, c):
        shift, scale, _ = self.modulation(c).chunk(3, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class AdaLNNoResidual(AdaLNBlock):
    # Plausible mistake: forgets the residual connection.
    def forward(self, h, c):
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class AdaLNModulatesTheOutput(AdaLNBlock):
    # Plausible mistake: modulates after the MLP instead of its input.
    def forward(self, h, c):
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * (self.mlp(self.norm(h)) * (1 + scale) + shift)


class AdaLNNotZero(AdaLNWritten):
    # Plausible mistake: keeps PyTorch's default initialisation of the modulation, so a new
    # block is not the identity (the outputs with the reference's weights still match).
    def __init__(self, width):
        super().__init__(width)
        nn.init.normal_(self.modulation[1].weight, std=0.1)


class AdaLNAffineNorm(AdaLNWritten):
    # Plausible mistake: a LayerNorm with its own scale and bias (adaLN supplies them).
    def __init__(self, width):
        super().__init__(width)
        self.norm = nn.LayerNorm(width)


ADALN_MISTAKES = (
    AdaLNScaleWithoutOne,
    AdaLNChunksSwapped,
    AdaLNNoGate,
    AdaLNNoResidual,
    AdaLNModulatesTheOutput,
    AdaLNNotZero,
    AdaLNAffineNorm,
)

# === ConditionedMLP ====================================================================


class MLPWritten(nn.Module):
    """Right: the network written out with the learner's own block."""

    def __init__(self, in_dim, out_dim, width, depth):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(AdaLNWritten(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, out_dim)

    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)


class MLPNoFinalModulation(ConditionedMLP):
    # Plausible mistake: a plain final norm; final_modulation is never used.
    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        return self.out(self.norm(h))


class MLPBlocksReadH(ConditionedMLP):
    # Plausible mistake: each block is conditioned on the hidden state instead of c.
    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, h)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)


class MLPFinalScaleWithoutOne(ConditionedMLP):
    # Plausible mistake: scale instead of 1 + scale at the end.
    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * scale + shift)


class MLPFinalChunksSwapped(ConditionedMLP):
    # Plausible mistake: reads the final chunks as (scale, shift).
    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        scale, shift = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)


class MLPNoFinalNorm(ConditionedMLP):
    # Plausible mistake: modulates the hidden state without normalising it first.
    def forward(self, x, c):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(h * (1 + scale) + shift)


class MLPLastBlockOnly(ConditionedMLP):
    # Plausible mistake: every block starts again from the input, so only the last counts.
    def forward(self, x, c):
        for block in self.blocks:
            h = block(self.inp(x), c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)


MLP_MISTAKES = (
    MLPNoFinalModulation,
    MLPBlocksReadH,
    MLPFinalScaleWithoutOne,
    MLPFinalChunksSwapped,
    MLPNoFinalNorm,
    MLPLastBlockOnly,
)

# === FlowHead: the loss and the sampler ================================================


def _rows(x, cond, config):
    lead = x.shape[:-1]
    return x.reshape(-1, config.token_dim), cond.reshape(-1, config.cond_dim), lead


class HeadWritten(FlowHead):
    """Right: the loss and the sampler written out as the exercise asks."""

    def loss(self, x, cond, generator=None):
        c = self.config
        x, cond, _ = _rows(x, cond, c)
        x = ((x - c.shift) / c.scale).repeat(c.repeats, 1)
        cond = self._drop_condition(cond.repeat(c.repeats, 1), generator)
        noise = torch.randn(x.shape, generator=generator)
        if c.time_sampling == "logit_normal":
            t = torch.sigmoid(torch.randn(x.shape[0], generator=generator))
        else:
            t = torch.rand(x.shape[0], generator=generator)
        return flow_matching_loss(self.velocity, x, cond, noise, shift_time(t, c.time_shift))

    @torch.no_grad()
    def sample(self, cond, steps=None, generator=None, temperature=1.0, **options):
        c = self.config
        lead = cond.shape[:-1]
        flat = cond.reshape(-1, c.cond_dim)
        x = temperature * torch.randn(flat.shape[0], c.token_dim, generator=generator)
        grid = shift_time(
            torch.linspace(0, 1, (steps or c.sampling_steps) + 1).double(), c.time_shift
        )
        for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            x = euler_step(self.velocity, x, t, t_next - t, flat)
        return (x * c.scale + c.shift).reshape(*lead, c.token_dim)


def _written_loss(
    head, x, cond, generator, *, repeats=None, shift_t=True, standardise=True, logit_normal=True
):
    c = head.config
    r = c.repeats if repeats is None else repeats
    x, cond, _ = _rows(x, cond, c)
    if standardise:
        x = (x - c.shift) / c.scale
    x, cond = x.repeat(r, 1), cond.repeat(r, 1)
    noise = torch.randn(x.shape, generator=generator)
    if logit_normal and c.time_sampling == "logit_normal":
        t = torch.sigmoid(torch.randn(x.shape[0], generator=generator))
    else:
        t = torch.rand(x.shape[0], generator=generator)
    if shift_t:
        t = shift_time(t, c.time_shift)
    return flow_matching_loss(head.velocity, x, cond, noise, t)


def _written_sample(
    head,
    cond,
    steps,
    generator,
    temperature,
    *,
    shift_grid=True,
    to_data=True,
    use_temperature=True,
    reshape=True,
):
    c = head.config
    lead = cond.shape[:-1]
    flat = cond.reshape(-1, c.cond_dim)
    x = torch.randn(flat.shape[0], c.token_dim, generator=generator)
    if use_temperature:
        x = temperature * x
    grid = torch.linspace(0, 1, (steps or c.sampling_steps) + 1).double()
    if shift_grid:
        grid = shift_time(grid, c.time_shift)
    with torch.no_grad():
        for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            x = euler_step(head.velocity, x, t, t_next - t, flat)
    if to_data:
        x = x * c.scale + c.shift
    return x.reshape(*lead, c.token_dim) if reshape else x


def _head(loss_options=None, sample_options=None, name=""):
    class Head(FlowHead):
        def loss(self, x, cond, generator=None):
            return _written_loss(self, x, cond, generator, **(loss_options or {}))

        def sample(self, cond, steps=None, generator=None, temperature=1.0, **options):
            return _written_sample(
                self, cond, steps, generator, temperature, **(sample_options or {})
            )

    Head.__name__ = Head.__qualname__ = name
    return Head


HEAD_MISTAKES = (
    # Plausible mistake: one noise draw per token whatever config.repeats says.
    _head({"repeats": 1}, name="HeadIgnoresRepeats"),
    # Plausible mistake: trains on uniform times, forgetting the shift towards the noise.
    _head({"shift_t": False}, name="HeadTrainsWithoutTimeShift"),
    # Plausible mistake: trains on the data's own units, not (x - shift) / scale.
    _head({"standardise": False}, name="HeadTrainsOnRawTokens"),
    # Plausible mistake: uniform times even when the config asks for logit-normal ones.
    _head({"logit_normal": False}, name="HeadAlwaysUniformTimes"),
    # Plausible mistake: the sampler's time grid is uniform (the shift only in training).
    _head(sample_options={"shift_grid": False}, name="HeadSamplesOnAnUnshiftedGrid"),
    # Plausible mistake: samples stay in the head's units.
    _head(sample_options={"to_data": False}, name="HeadSamplesInItsOwnUnits"),
    # Plausible mistake: the temperature is ignored.
    _head(sample_options={"use_temperature": False}, name="HeadIgnoresTemperature"),
    # Plausible mistake: samples come back as flat rows, not in cond's leading shape.
    _head(sample_options={"reshape": False}, name="HeadSamplesFlatRows"),
)


def test_a_new_block_is_the_identity_and_redrawn_weights_are_not():
    from omni_edu.lessons.diffusion_head.checks import perturbed

    h, c = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    assert torch.equal(AdaLNBlock(8)(h, c), h)
    assert not torch.allclose(perturbed(AdaLNBlock(8))(h, c), h)


# === more mistakes for the two function exercises ======================================


def summed_loss(velocity_fn, x, cond, noise, t):
    # Plausible mistake: a sum of squared errors, not their mean.
    t_col = t[:, None]
    x_t = (1 - t_col) * noise + t_col * x
    return ((velocity_fn(x_t, t, cond) - (x - noise)) ** 2).sum()


def velocity_at_the_data(velocity_fn, x, cond, noise, t):
    # Plausible mistake: asks for the velocity at the clean data point instead of x_t.
    return F.mse_loss(velocity_fn(x, t, cond), x - noise)


def target_noise_minus_data(velocity_fn, x, cond, noise, t):
    # Plausible mistake: the velocity with its sign turned (noise - x).
    t_col = t[:, None]
    x_t = (1 - t_col) * noise + t_col * x
    return F.mse_loss(velocity_fn(x_t, t, cond), noise - x)


LOSS_FUNCTION_MISTAKES = (summed_loss, velocity_at_the_data, target_noise_minus_data)


def step_without_dt(velocity_fn, x_t, t, dt, cond):
    # Plausible mistake: a whole unit of velocity, whatever dt is.
    return x_t + velocity_fn(x_t, torch.full((x_t.shape[0],), float(t)), cond)


def step_returns_the_change(velocity_fn, x_t, t, dt, cond):
    # Plausible mistake: returns dt * velocity, forgetting to add it to x_t.
    return dt * velocity_fn(x_t, torch.full((x_t.shape[0],), float(t)), cond)


EULER_MISTAKES = (step_without_dt, step_returns_the_change)
