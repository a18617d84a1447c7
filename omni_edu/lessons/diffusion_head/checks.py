"""Checks for lesson 04's exercises: the flow-matching loss, one Euler sampling step, and
the flow head built whole - its adaLN block, its conditioned network, its loss and sampler
(the reference's weights loaded into the learner's modules).

Every check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from omni_edu.grading import (
    Case,
    CheckResult,
    Hints,
    LearnerMistake,
    check_function,
    check_module,
)
from omni_edu.model.heads.flow import (
    AdaLNBlock,
    ConditionedMLP,
    FlowHead,
    FlowHeadConfig,
    euler_step,
    flow_matching_loss,
    timestep_embedding,
)

FLOW_MATCHING_LOSS = Hints(
    "flow_matching_loss",
    nudge="Put each token on the straight path between its noise and its data point at its "
    "time t, ask velocity_fn for the velocity there, and compare it with the path's own "
    "velocity (a mean squared error).",
    failed="The path x_t = (1 - t) * noise + t * x runs from noise (t = 0) to data (t = 1), "
    "so its velocity is x - noise; the loss is the MEAN squared error.",
    on={
        "shape": "The loss is one number: a 0-d tensor, the mean over tokens and dimensions. "
        "t has one entry per token; use it as a column (t[:, None]) to mix the (n, dim) "
        "tensors.",
    },
    recipe="x_t = (1 - t) * noise + t * x (t as a column: t[:, None]); the target is the "
    "velocity of that straight path, x - noise; return the mean squared error between "
    "velocity_fn(x_t, t, cond) and the target.",
)

EULER_STEP = Hints(
    "euler_step",
    nudge="One Euler step moves x_t along the velocity for a time dt: ask velocity_fn for "
    "the velocity at the current point and time, then take the step.",
    failed="Evaluate the velocity at the current point and time (x_t, t), then "
    "x_next = x_t + dt * velocity.",
    on={
        "shape": "velocity_fn wants t as a tensor with one entry per token: "
        "torch.full((x_t.shape[0],), t).",
    },
    recipe="Evaluate the velocity at the *current* point and time, with t as a tensor of "
    "shape (n,): torch.full((x_t.shape[0],), t); then x_next = x_t + dt * velocity.",
)


def linear_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A made-up velocity field that uses all three inputs, so mix-ups show in the result."""
    return 0.5 * x_t - 2.0 * t[:, None] + cond.sum(-1, keepdim=True)


def wavy_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A non-linear field: it changes with ``t``, so evaluating at the wrong time shows."""
    return torch.sin(3 * x_t + 5 * t[:, None]) + cond[:, :1]


def per_token_time_velocity(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A field that reads one time per token through a sinusoidal embedding, as the flow
    head's network does. It refuses any ``t`` but ``(n,)``: a ``(1,)`` tensor would
    broadcast silently here, and give the wrong shape to a network that embeds ``t`` per row.
    """
    if not isinstance(t, torch.Tensor) or t.shape != (x_t.shape[0],):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise LearnerMistake(
            f"velocity_fn got t of shape {got}; it needs one time per token, shape "
            f"({x_t.shape[0]},) for x_t of shape {tuple(x_t.shape)}.",
            kind="shape",
        )
    return timestep_embedding(t, x_t.shape[1]) * x_t + cond[:, :1]


def _loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, dim, field, label, hint in (
        (4, 2, linear_velocity, "4 tokens in 2-D, a linear field", ""),
        (
            16,
            5,
            wavy_velocity,
            "16 tokens in 5-D, a non-linear field",
            "This field changes with t: pass the same t you used to build x_t.",
        ),
    ):
        cases.append(
            Case(
                (
                    field,
                    torch.randn(n, dim, generator=g),
                    torch.randn(n, 3, generator=g),
                    torch.randn(n, dim, generator=g),
                    torch.rand(n, generator=g),
                ),
                label=label,
                hint=hint,
            )
        )
    return cases


def check_flow_matching_loss(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(velocity_fn, x, cond, noise, t) -> loss`` (a scalar tensor)."""
    return check_function(
        "flow_matching_loss",
        learner_fn,
        flow_matching_loss,
        _loss_cases(),
        hints=FLOW_MATCHING_LOSS,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def _euler_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)

    def case(
        field: Callable, n: int, dim: int, t: float, dt: float, width: int, label: str, hint=""
    ):
        """``n`` tokens of ``dim`` at time ``t``, a step of ``dt``, conditions of ``width``."""
        x, cond = torch.randn(n, dim, generator=g), torch.randn(n, width, generator=g)
        return Case((field, x, t, dt, cond), label=label, hint=hint)

    return [
        case(linear_velocity, 3, 2, 0.0, 0.25, 2, "3 tokens at t=0, dt=0.25, a linear field"),
        case(
            wavy_velocity,
            *(8, 4, 0.5, 0.125, 2),
            "8 tokens at t=0.5, dt=0.125, a non-linear field",
            hint="This field changes with t: evaluate it at the current time t, not at t + dt.",
        ),
        case(
            per_token_time_velocity,
            *(5, 4, 0.75, 0.25, 3),
            "5 tokens at t=0.75, a field that embeds t per token (needs t of shape (5,))",
        ),
    ]


def check_euler_step(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(velocity_fn, x_t, t, dt, cond) -> x_next``."""
    return check_function(
        "euler_step",
        learner_fn,
        euler_step,
        _euler_cases(),
        hints=EULER_STEP,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ---------------------------------------------------------------------------------------
# The flow head's network and the head itself: whole modules, reference weights loaded
# ---------------------------------------------------------------------------------------


def perturbed(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """``module`` with every parameter redrawn from a seeded normal: weights that look
    trained. A fresh adaLN block's modulation is zero (the block is the identity), which
    would hide any mistake on the path the condition takes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return module


def _named(factory: Callable, name: str) -> Callable:
    factory.__name__ = name
    return factory


ADALN_BLOCK = Hints(
    "AdaLNBlock",
    nudge="A residual MLP block whose LayerNorm is steered by the condition c: from c, one "
    "linear map (after a SiLU) gives a shift, a scale and a gate, each of the block's width; "
    "the normalised h is scaled by (1 + scale) and shifted, goes through the MLP, and the "
    "gated result is added to h.",
    failed="Compare the order of the modulation's three chunks (shift, scale, gate), the "
    "1 + scale, the gate on the MLP's output and the residual with the spec. If only a new "
    "block's change to h differs: a new block must leave h unchanged (adaLN-Zero), so the "
    "modulation's Linear starts at zero, weight and bias.",
    on={
        "weights": "Name the parts as the spec does - norm (a LayerNorm without its own "
        "weights), mlp (Linear, SiLU, Linear), modulation (SiLU, Linear to 3 x width) - so "
        "that the reference's weights load into yours.",
    },
    recipe="__init__: self.norm = nn.LayerNorm(width, elementwise_affine=False); self.mlp = "
    "nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)); "
    "self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width)) with "
    "nn.init.zeros_ on its Linear's weight and bias. forward(h, c): shift, scale, gate = "
    "self.modulation(c).chunk(3, dim=-1); return h + gate * self.mlp(self.norm(h) * (1 + "
    "scale) + shift).",
)


def _block_forward(module: nn.Module, h: torch.Tensor, c: torch.Tensor) -> dict:
    """The block's output, and what a *new* block of the same class does to ``h`` (nothing,
    for an adaLN-Zero block)."""
    fresh = type(module)(h.shape[-1])
    return {"output": module(h, c), "a new block's change to h (0: adaLN-Zero)": fresh(h, c) - h}


def _block_cases(width: int) -> dict[str, Callable]:
    return {
        f"6 tokens of width {width}": lambda g: (
            torch.randn(6, width, generator=g),
            torch.randn(6, width, generator=g),
        ),
        f"a batch of sequences (2, 5, {width})": lambda g: (
            torch.randn(2, 5, width, generator=g),
            torch.randn(2, 5, width, generator=g),
        ),
    }


def check_adaln_block(
    learner_cls: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_cls(width)``: an ``nn.Module`` with ``forward(h, c) -> h'``, all
    ``(..., width)``. The reference's weights (redrawn, so the modulation is not zero) are
    loaded into it; outputs and gradients must match, and a new block must be the identity."""
    width = 8
    return check_module(
        learner_cls,
        _named(lambda w: perturbed(AdaLNBlock(w)), "AdaLNBlock"),
        width,
        _block_cases(width),
        forward=_block_forward,
        hints=ADALN_BLOCK,
        name="AdaLNBlock",
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


CONDITIONED_MLP = Hints(
    "ConditionedMLP",
    nudge="An input projection to the block width, depth adaLN blocks that all read the "
    "same condition c, then a last LayerNorm steered by c (a shift and a scale, no gate) and "
    "an output projection.",
    failed="Check that every block reads c (not x), that the last norm is modulated by "
    "(1 + scale) and shift from its own SiLU + Linear of c, and that the output projection "
    "comes last.",
    on={
        "weights": "Name the parts as the spec does - inp, blocks (an nn.ModuleList of "
        "AdaLNBlock), norm, final_modulation (SiLU, Linear to 2 x width), out - so that the "
        "reference's weights load into yours.",
    },
    recipe="__init__: self.inp = nn.Linear(in_dim, width); self.blocks = "
    "nn.ModuleList(AdaLNBlock(width) for _ in range(depth)); self.norm = "
    "nn.LayerNorm(width, elementwise_affine=False); self.final_modulation = "
    "nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width)); self.out = nn.Linear(width, "
    "out_dim). forward(x, c): h = self.inp(x); for each block h = block(h, c); shift, scale "
    "= self.final_modulation(c).chunk(2, dim=-1); return self.out(self.norm(h) * (1 + scale) "
    "+ shift).",
)


def check_conditioned_mlp(
    learner_cls: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_cls(in_dim, out_dim, width, depth)``: ``forward(x, c)`` with x
    ``(..., in_dim)`` and c ``(..., width)`` -> ``(..., out_dim)``."""
    config = (3, 5, 8, 2)  # in_dim, out_dim, width, depth: all different on purpose
    in_dim, _, width, _ = config
    return check_module(
        _named(lambda cfg: learner_cls(*cfg), getattr(learner_cls, "__name__", "yours")),
        _named(lambda cfg: perturbed(ConditionedMLP(*cfg), seed=1), "ConditionedMLP"),
        config,
        {
            f"4 tokens: x (4, {in_dim}), c (4, {width})": lambda g: (
                torch.randn(4, in_dim, generator=g),
                torch.randn(4, width, generator=g),
            ),
            f"a batch of sequences: x (2, 3, {in_dim}), c (2, 3, {width})": lambda g: (
                torch.randn(2, 3, in_dim, generator=g),
                torch.randn(2, 3, width, generator=g),
            ),
        },
        hints=CONDITIONED_MLP,
        name="ConditionedMLP",
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


FLOW_HEAD = Hints(
    "FlowHead",
    nudge="loss: rows of tokens in the head's units ((x - shift) / scale), each repeated "
    "config.repeats times, one noise draw and one time per row (uniform or logit-normal, "
    "then moved towards the noise by config.time_shift), and the flow-matching loss of "
    "self.velocity. sample: noise times the temperature, then Euler steps along a time grid "
    "moved by the same shift, back to the data's units, in the leading shape of cond.",
    failed="Go through the config's fields one by one: repeats, time_sampling, time_shift "
    "(in training and in the sampler's grid), shift and scale (in and out), sampling_steps "
    "(the default number of steps), and the temperature.",
    on={
        "shape": "sample returns one token per condition: (..., token_dim) in the leading "
        "shape of cond, e.g. (2, 4, token_dim) for cond of shape (2, 4, cond_dim).",
        "values": "The check draws the same random numbers as the reference only in the "
        "same order: the noise first (x's shape, after the repeats), then the times, both "
        "from the generator you are given. If yours match that, look at the config's fields "
        "one by one.",
    },
    recipe="loss: x = x.reshape(-1, token_dim); cond = cond.reshape(-1, cond_dim); x = "
    "((x - shift) / scale).repeat(repeats, 1); cond = self._drop_condition(cond.repeat("
    "repeats, 1), generator); noise = torch.randn(x.shape, generator=generator); t = "
    "torch.rand(n, generator=generator) or torch.sigmoid(torch.randn(n, generator=...)) "
    "for 'logit_normal'; t = shift_time(t, time_shift); return flow_matching_loss("
    "self.velocity, x, cond, noise, t). sample: flat cond; x = temperature * torch.randn(n, "
    "token_dim, generator=generator); grid = shift_time(torch.linspace(0, 1, steps + 1, "
    "dtype=torch.float64), time_shift); one euler_step(self.velocity, x, t, t_next - t, "
    "cond) per pair of neighbours; return (x * scale + shift).reshape(*lead, token_dim).",
)


def _head_forward(module: nn.Module, x: torch.Tensor, cond: torch.Tensor, case: dict) -> dict:
    """The head's loss and samples under one setting of its config (fixed generators)."""
    module.config = replace(module.config, **case["config"])
    loss = module.loss(x, cond, generator=torch.Generator().manual_seed(1))
    samples = module.sample(cond, generator=torch.Generator().manual_seed(2), **case["sample"])
    return {"loss": loss, "samples": samples}


def _head_cases(config: FlowHeadConfig) -> dict[str, Callable]:
    d, c = config.token_dim, config.cond_dim

    def tokens(*lead: int) -> Callable:
        def make(g: torch.Generator) -> tuple:
            return torch.randn(*lead, d, generator=g), torch.randn(*lead, c, generator=g)

        return make

    cases = {}
    for label, lead, settings, sample in (
        (
            "uniform times, 2 repeats, time shift 3; default steps",
            (6,),
            {"time_sampling": "uniform", "repeats": 2, "time_shift": 3.0},
            {},
        ),
        (
            "logit-normal times, time shift 1; 3 steps at temperature 0.5",
            (2, 4),
            {"time_sampling": "logit_normal", "repeats": 1, "time_shift": 1.0},
            {"steps": 3, "temperature": 0.5},
        ),
        (
            "uniform times, time shift 6; 4 steps at temperature 0 (no noise)",
            (3,),
            {"time_sampling": "uniform", "repeats": 1, "time_shift": 6.0},
            {"steps": 4, "temperature": 0.0},
        ),
    ):
        make = tokens(*lead)
        shapes = f"x {(*lead, d)}, cond {(*lead, c)}"
        cases[f"{label}: {shapes}"] = lambda g, make=make, s=settings, k=sample: (
            *make(g),
            {"config": s, "sample": k},
        )
    return cases


# The head the check builds: tokens of 3 numbers whose data sit around 0.2 with spread 0.5.
HEAD_CONFIG = FlowHeadConfig(
    token_dim=3, cond_dim=5, width=16, depth=2, sampling_steps=5, shift=0.2, scale=0.5
)


def check_flow_head(
    learner_cls: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_cls(config)``: a :class:`~omni_edu.model.heads.flow.FlowHead` whose
    ``loss(x, cond, generator)`` and ``sample(cond, steps, generator, temperature)`` are
    the learner's, compared with the package's head under three settings of its config."""
    return check_module(
        learner_cls,
        _named(lambda cfg: perturbed(FlowHead(cfg), seed=2), "FlowHead"),
        HEAD_CONFIG,
        _head_cases(HEAD_CONFIG),
        forward=_head_forward,
        hints=FLOW_HEAD,
        name="FlowHead",
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
