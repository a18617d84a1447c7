"""Continuous tokens: a per-token flow-matching head (MAR-style), and a regression baseline.

The decoder produces one hidden state per position, ``(batch, seq, d_model)``. A softmax
head turns it into a distribution over a finite vocabulary. For a *continuous* token
(an image patch of 48 numbers, say) we need a distribution over vectors instead. MAR
(Li et al. 2024) attaches a small MLP to each position that learns to turn noise into a
token, conditioned on the hidden state: a tiny diffusion model per token.

We train it with flow matching (rectified flow), the simplest version of the idea:

* draw noise ``n`` and a time ``t`` in ``[0, 1]``; mix ``x_t = (1 - t) * n + t * x``;
* the straight path from noise to data has constant velocity ``x - n``: regress on it;
* to sample, start from noise at ``t = 0`` and follow the learned velocity to ``t = 1``
  with a few Euler steps.

A plain MSE regression head with the same inputs predicts the *mean* token, which for a
token with two likely values is neither of them (see :mod:`omni_edu.lessons.diffusion_head.toy`).
:class:`RegressionHead` is that baseline with the very same network, so that a comparison
of the two measures the loss and the sampler, not the size of the head.

Both heads plug into :class:`~omni_edu.model.omni_lm.OmniLM` as the output head of
pictures or sounds: ``loss(x, cond)`` and ``sample(cond)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.model.weights import count_parameters

# velocity_fn(x_t (n, token_dim), t (n,), cond (n, cond_dim)) -> velocity (n, token_dim)
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
TIME_SAMPLING = ("uniform", "logit_normal")


# --------------------------------------------------------------------------------------
# Flow matching as plain functions (the lesson's exercises)
# --------------------------------------------------------------------------------------


def flow_matching_loss(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    cond: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """Rectified-flow loss for data ``x`` ``(n, token_dim)`` given noise and times.

    noise: ``(n, token_dim)`` standard normal; t: ``(n,)`` in ``[0, 1]``; cond:
    ``(n, cond_dim)``. Returns the mean squared error between the predicted velocity at
    ``x_t = (1 - t) * noise + t * x`` and the true velocity ``x - noise``.
    """
    t_col = t[:, None]  # (n, 1) broadcasts over the token dimension
    x_t = (1 - t_col) * noise + t_col * x
    target = x - noise
    return F.mse_loss(velocity_fn(x_t, t, cond), target)


def euler_step(
    velocity_fn: VelocityFn, x_t: torch.Tensor, t: float, dt: float, cond: torch.Tensor
) -> torch.Tensor:
    """One Euler step along the learned flow: ``x_{t+dt} = x_t + dt * v(x_t, t)``.

    x_t: ``(n, token_dim)``; cond: ``(n, cond_dim)``; returns ``(n, token_dim)``.
    """
    t_vec = torch.full((x_t.shape[0],), float(t), dtype=x_t.dtype, device=x_t.device)
    return x_t + dt * velocity_fn(x_t, t_vec, cond)


def guide(
    predict: Callable[[torch.Tensor], torch.Tensor],
    cond: torch.Tensor,
    guidance: float,
    uncond: torch.Tensor | None,
) -> torch.Tensor:
    """Classifier-free guidance of a one-pass head: ``p(uncond) + guidance * (p(cond) -
    p(uncond))`` for predictions or logits; just ``p(cond)`` at guidance 1."""
    if guidance == 1.0:
        return predict(cond)
    if uncond is None:
        raise ValueError("guidance != 1 needs uncond: the hidden states of an empty prompt.")
    unconditional = predict(uncond)
    return unconditional + guidance * (predict(cond) - unconditional)


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Times ``t`` in [0, 1] moved towards the noise (``t = 0``) by ``shift`` >= 1.

    The noise level ``s = 1 - t`` becomes ``shift * s / (1 + (shift - 1) * s)``: 0 and 1
    stay put, and in between more of the path is spent at high noise.
    """
    noise = 1 - t
    return 1 - shift * noise / (1 + (shift - 1) * noise)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of times ``t`` ``(n,)`` in ``[0, 1]``; returns ``(n, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = 1000 * t.float()[:, None] * freqs[None, :]  # scale t like a 1000-step DDPM
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


# --------------------------------------------------------------------------------------
# The network: residual MLP blocks with adaptive LayerNorm
# --------------------------------------------------------------------------------------


class AdaLNBlock(nn.Module):
    """Residual MLP block whose LayerNorm scale, shift and output gate come from ``c``.

    Adaptive LayerNorm is how the condition (decoder state + time) steers every block:
    it rescales the normalised features rather than being concatenated once at the input.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        # Zero init ("adaLN-Zero"): every block starts as the identity, which makes deep
        # stacks train stably from the first step.
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class ConditionedMLP(nn.Module):
    """``depth`` :class:`AdaLNBlock` s between an input and an output projection."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)


@dataclass
class FlowHeadConfig:
    """Sizes of a per-token head.

    ``token_dim``: size of one continuous token (2 for the toy, 3 * p * p for a patch);
    ``cond_dim``: size of the condition (the decoder's ``d_model``);
    ``cond_dropout``: probability of replacing the condition by a learned "no condition"
    vector during training, which is what classifier-free guidance needs at sampling.
    ``shift``, ``scale``: the data's centre and spread. The head learns on
    ``(x - shift) / scale`` and samples map back, so that its standard-normal noise has
    the scale of the data (pixels in [0, 1] become [-1, 1] with shift 0.5, scale 0.5).
    ``repeats``: noise draws per token in each loss call. The head is tiny next to the
    decoder that computed ``cond``, so several draws per decoder pass are almost free and
    make the loss much less noisy (MAR uses 4). Only the flow head draws noise; a
    regression head sees each token once.
    ``time_sampling``: how training picks ``t``: ``"uniform"`` in [0, 1], or
    ``"logit_normal"`` (``t = sigmoid(z)``, ``z ~ N(0, 1)``; Esser et al. 2024).
    ``time_shift`` (>= 1) then moves the times towards the noise, in training and in the
    sampler's step grid alike: the noise level ``s = 1 - t`` becomes
    ``shift * s / (1 + (shift - 1) * s)`` (Stable Diffusion 3's shift). Why it matters:
    near ``t = 0`` the best velocity is ``E[x | cond] - noise``, a regression on the
    condition; as ``t`` grows, ``x_t`` itself reveals which token is being drawn, and the
    more numbers a token has, the sooner (a 128-number audio frame gives its scene away
    at a small ``t``). Without a shift most training draws fall where the condition no
    longer matters, and the decoder barely learns to read the prompt.
    """

    token_dim: int
    cond_dim: int
    width: int = 128
    depth: int = 3
    cond_dropout: float = 0.0
    sampling_steps: int = 16  # default number of Euler steps
    shift: float = 0.0
    scale: float = 1.0
    repeats: int = 1
    time_sampling: str = "uniform"
    time_shift: float = 1.0

    def __post_init__(self) -> None:
        if self.scale <= 0 or self.repeats < 1 or self.sampling_steps < 1:
            raise ValueError(
                f"FlowHeadConfig needs scale > 0, repeats >= 1 and sampling_steps >= 1; got "
                f"scale={self.scale}, repeats={self.repeats}, "
                f"sampling_steps={self.sampling_steps}."
            )
        if self.time_sampling not in TIME_SAMPLING:
            raise ValueError(
                f"time_sampling should be one of {TIME_SAMPLING}; got {self.time_sampling!r}."
            )
        if self.time_shift < 1.0:
            raise ValueError(f"time_shift should be >= 1 (1 = no shift); got {self.time_shift}.")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout should be in [0, 1); got {self.cond_dropout}.")


def _flatten(x: torch.Tensor, last: int, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    if x.shape[-1] != last:
        raise ValueError(f"{name} should be (..., {last}); got {tuple(x.shape)}.")
    return x.reshape(-1, last), tuple(x.shape[:-1])


class _HeadBase(nn.Module):
    discrete = False  # predicts feature vectors, not code ids

    def __init__(self, config: FlowHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.cond_proj = nn.Linear(config.cond_dim, config.width)
        self.null_cond = (
            nn.Parameter(torch.zeros(config.cond_dim)) if config.cond_dropout > 0 else None
        )

    def _drop_condition(
        self, cond: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Replace a random ``cond_dropout`` fraction of conditions by the null condition."""
        if self.null_cond is None or not self.training:
            return cond
        u = torch.rand(cond.shape[0], generator=generator).to(cond.device)
        drop = (u < self.config.cond_dropout)[:, None]
        return torch.where(drop, self.null_cond.expand_as(cond), cond)

    def num_parameters(self) -> int:
        return count_parameters(self)

    def _inputs(
        self, x: torch.Tensor, cond: torch.Tensor, repeats: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat ``(n, token_dim)`` targets in the head's units and ``(n, cond_dim)`` conditions,
        each repeated ``repeats`` times."""
        x, lead = _flatten(x, self.config.token_dim, "x")
        cond, cond_lead = _flatten(cond, self.config.cond_dim, "cond")
        if lead != cond_lead:
            raise ValueError(
                f"x and cond need the same leading shape (one condition per token); got "
                f"{lead} and {cond_lead}."
            )
        x = (x - self.config.shift) / self.config.scale
        return x.repeat(repeats, 1), cond.repeat(repeats, 1)

    def _to_data(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.config.scale + self.config.shift


class FlowHead(_HeadBase):
    """Per-token flow-matching head.

    ``loss(x, cond)``: x ``(..., token_dim)``, cond ``(..., cond_dim)`` with the same
    leading shape (e.g. ``(batch, seq)``); ``sample(cond)`` returns ``(..., token_dim)``.
    """

    def __init__(self, config: FlowHeadConfig) -> None:
        super().__init__(config)
        w = config.width
        self.time_embed = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.net = ConditionedMLP(config.token_dim, config.token_dim, w, config.depth)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted velocity; x_t ``(n, token_dim)``, t ``(n,)``, cond ``(n, cond_dim)``."""
        c = self.cond_proj(cond) + self.time_embed(timestep_embedding(t, self.config.width))
        return self.net(x_t, c)

    def loss(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Flow-matching loss, one random time and noise draw per token (and per repeat)."""
        x, cond = self._inputs(x, cond, self.config.repeats)
        cond = self._drop_condition(cond, generator)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        if self.config.time_sampling == "logit_normal":
            t = torch.sigmoid(torch.randn(x.shape[0], generator=generator))
        else:
            t = torch.rand(x.shape[0], generator=generator)
        t = shift_time(t, self.config.time_shift).to(x.device)
        return flow_matching_loss(self.velocity, x, cond, noise, t)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        steps: int | None = None,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        uncond: torch.Tensor | None = None,
        temperature: float = 1.0,
        **ignored: object,
    ) -> torch.Tensor:
        """Draw one token per condition ``(..., cond_dim)`` -> ``(..., token_dim)``.

        ``steps`` Euler steps from noise (t = 0) to data (t = 1). ``temperature`` scales the
        starting noise: 1 samples the learned distribution, below 1 leans towards its
        most likely tokens, 0 starts every token from the noise's centre (deterministic).
        ``guidance`` != 1 uses classifier-free guidance
        ``v = v_uncond + guidance * (v_cond - v_uncond)``. The unconditional velocity uses
        ``uncond`` (same shape as ``cond``: the decoder's state for an empty prompt, which
        :meth:`OmniLM.generate <omni_edu.model.omni_lm.OmniLM.generate>` computes) or else
        the head's learned null condition, which needs a head trained with
        ``cond_dropout > 0``. Options meant for other heads (``top_k``) are ignored, so one
        call can sample any head.
        """
        if temperature < 0:
            raise ValueError(f"temperature should be >= 0 (0 = no noise); got {temperature}.")
        steps = steps or self.config.sampling_steps
        cond, lead = _flatten(cond, self.config.cond_dim, "cond")
        velocity_fn: VelocityFn = self.velocity
        if guidance != 1.0:
            if uncond is not None:
                null, _ = _flatten(uncond, self.config.cond_dim, "uncond")
            elif self.null_cond is not None:
                null = self.null_cond.expand_as(cond)
            else:
                raise ValueError(
                    "guidance != 1 needs an unconditional state: pass uncond=..., or train "
                    "the head with cond_dropout > 0 (a learned null condition)."
                )

            def velocity_fn(x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
                v_cond = self.velocity(x_t, t, c)
                v_uncond = self.velocity(x_t, t, null)
                return v_uncond + guidance * (v_cond - v_uncond)

        x = torch.randn(cond.shape[0], self.config.token_dim, generator=generator).to(cond)
        x = temperature * x
        grid = shift_time(
            torch.linspace(0, 1, steps + 1, dtype=torch.float64), self.config.time_shift
        )
        for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            x = euler_step(velocity_fn, x, t, t_next - t, cond)
        return self._to_data(x).reshape(*lead, self.config.token_dim)


class RegressionHead(_HeadBase):
    """The baseline: predict the token directly with mean-squared error.

    Same network and interface as :class:`FlowHead`, but it sees only the condition, so
    the best it can do is the conditional *mean*.
    """

    def __init__(self, config: FlowHeadConfig) -> None:
        super().__init__(config)
        self.net = ConditionedMLP(config.width, config.token_dim, config.width, config.depth)

    def predict(self, cond: torch.Tensor) -> torch.Tensor:
        c = self.cond_proj(cond)
        return self.net(c, c)

    def loss(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean squared error of the prediction, in the head's units (see ``scale``)."""
        x, cond = self._inputs(x, cond)
        return F.mse_loss(self.predict(self._drop_condition(cond, generator)), x)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        guidance: float = 1.0,
        uncond: torch.Tensor | None = None,
        **ignored: object,
    ) -> torch.Tensor:
        """The prediction ``(..., token_dim)`` for each condition ``(..., cond_dim)``.

        Sampling options of other heads (``steps``, ``temperature``...) are ignored: a
        regression head has nothing to sample, it always gives the conditional mean.
        ``guidance`` != 1 extrapolates from the prediction for ``uncond`` (an empty
        prompt's states), as classifier-free guidance does.
        """
        cond, lead = _flatten(cond, self.config.cond_dim, "cond")
        if uncond is not None:
            uncond, _ = _flatten(uncond, self.config.cond_dim, "uncond")
        prediction = guide(self.predict, cond, guidance, uncond)
        return self._to_data(prediction).reshape(*lead, self.config.token_dim)
