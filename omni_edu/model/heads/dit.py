"""A small DiT head: a few transformer blocks that denoise all of a picture's patches at
once, conditioned on the decoder's states through adaptive LayerNorm (lesson 04b).

The per-token flow head (:class:`~omni_edu.model.heads.flow.FlowHead`, MAR's) draws each
patch alone, from the decoder state just before it: the decoder runs once per patch, and
a patch knows the others only through what the decoder wrote before it. A DiT head (Peebles
& Xie 2023, the "lightweight Diffusion head (or DiT)" of the chapter) asks the decoder
*once* per picture and lets the patches attend to each other while they are denoised
together:

* the decoder reads the prompt and then one *placeholder* per patch (a learned vector,
  :meth:`DiTHead.embed`): its states at the placeholders, ``(n, L, cond_dim)``, say what
  the prompt wants at each place of the picture;
* the input: the noised patches ``x_t`` ``(n, L, token_dim)`` -> ``width`` features, plus
  fixed 2-D sine-cosine positions of the patch grid;
* the condition ``c``: each patch's decoder state plus the time's embedding; every block
  reads it through adaLN-Zero (a shift, a scale and a gate per branch);
* the output: the velocity of every patch; trained with :func:`span_flow_loss`, sampled
  with the same Euler loop as whole-image diffusion (:func:`euler_sample`).

One decoder pass per picture (the placeholders ride along with the prompt), ``steps`` DiT
passes: the fewest decoder passes of the family. (Conditioning on the single state before
the picture, the first design tried, did not learn to read the prompt within lesson 04b's
ci budget: fidelity stayed at chance, 0.34 after 600 steps, as did variants with the state
also added to the patches' input or a smaller time shift.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.heads.flow import TIME_SAMPLING, FlowHead, FlowHeadConfig, timestep_embedding
from omni_edu.model.heads.span import (
    SpanState,
    euler_sample,
    guided_rows,
    sincos_positions,
    span_flow_loss,
    training_times,
)
from omni_edu.model.weights import count_parameters


@dataclass
class DiTConfig:
    """Sizes and settings of a :class:`DiTHead`.

    ``width`` features per patch (a multiple of ``4`` and of ``n_heads``), ``depth``
    transformer blocks, ``mlp_ratio`` the width of each block's MLP over ``width``. The
    data scale (``shift``, ``scale``), time sampling and ``cond_dropout`` mean what they
    mean for the flow head (:class:`~omni_edu.model.heads.flow.FlowHeadConfig`).
    """

    token_dim: int
    cond_dim: int
    width: int = 64
    depth: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    sampling_steps: int = 8
    shift: float = 0.0
    scale: float = 1.0
    time_sampling: str = "uniform"
    time_shift: float = 1.0
    cond_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width % 4 or self.width % self.n_heads:
            raise ValueError(
                f"DiT width should be a multiple of 4 and of n_heads={self.n_heads}; "
                f"got {self.width}."
            )
        if self.depth < 1 or self.mlp_ratio < 1 or self.sampling_steps < 1 or self.scale <= 0:
            raise ValueError(
                f"DiTConfig needs depth, mlp_ratio, sampling_steps >= 1 and scale > 0; got "
                f"depth={self.depth}, mlp_ratio={self.mlp_ratio}, "
                f"sampling_steps={self.sampling_steps}, scale={self.scale}."
            )
        if self.time_sampling not in TIME_SAMPLING or self.time_shift < 1.0:
            raise ValueError(
                f"time_sampling should be one of {TIME_SAMPLING} and time_shift >= 1; got "
                f"{self.time_sampling!r}, {self.time_shift}."
            )
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout should be in [0, 1); got {self.cond_dropout}.")

    @classmethod
    def from_flow(cls, flow: FlowHeadConfig, width: int, depth: int, n_heads: int = 4) -> DiTConfig:
        """The DiT with a flow head's token, condition, data scale and sampler settings."""
        return cls(
            token_dim=flow.token_dim,
            cond_dim=flow.cond_dim,
            width=width,
            depth=depth,
            n_heads=n_heads,
            sampling_steps=flow.sampling_steps,
            shift=flow.shift,
            scale=flow.scale,
            time_sampling=flow.time_sampling,
            time_shift=flow.time_shift,
            cond_dropout=flow.cond_dropout,
        )


def matched_width(flow: FlowHeadConfig, depth: int, n_heads: int = 4) -> int:
    """The width (a multiple of 4 and of ``n_heads``) at which a DiT of ``depth`` blocks has
    the parameter count closest to the per-token flow head ``flow``'s: the two heads raced
    at matched parameters."""
    target = count_parameters(FlowHead(flow))
    step = math.lcm(4, n_heads)

    def size(width: int) -> int:
        return count_parameters(DiTHead(DiTConfig.from_flow(flow, width, depth, n_heads)))

    width = step  # the count grows with the width: stop at the first one past the target
    while size(width + step) < target:
        width += step
    return min((width, width + step), key=lambda w: abs(size(w) - target))


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Self-attention over the patches and an MLP, each steered by ``c`` (adaLN-Zero)."""

    def __init__(self, width: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * width, width),
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        # Zero init: each block starts as the identity (gates 0), DiT's adaLN-Zero.
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h ``(n, L, width)``, c ``(n, L, width)`` (one condition per patch) ->
        ``(n, L, width)``."""
        s1, g1, gate1, s2, g2, gate2 = self.modulation(c).chunk(6, dim=-1)
        n, length, width = h.shape
        qkv = self.qkv(_modulate(self.norm1(h), s1, g1))
        q, k, v = qkv.view(n, length, 3, self.n_heads, width // self.n_heads).unbind(2)
        # Every patch sees every other: the picture is denoised as a whole.
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h + gate1 * self.proj(a.transpose(1, 2).reshape(n, length, width))
        return h + gate2 * self.mlp(_modulate(self.norm2(h), s2, g2))


class DiTHead(nn.Module):
    """Denoises a whole span of patches, conditioned on the decoder's state at each.

    ``loss(x, cond, grid)``: x ``(n, L, token_dim)`` clean spans in data units, cond
    ``(n, L, cond_dim)`` (the decoder's states at the span's placeholders);
    ``sample(cond, grid)`` -> ``(n, L, token_dim)``. ``grid`` is the span's patch grid
    ``(rows, cols)`` (``rows * cols = L``; a sound is ``(1, L)``). ``corrupt`` and
    ``embed`` put the placeholders into the decoder's input, as OmniLM trains.
    """

    discrete = False  # writes feature vectors
    writes_span = True  # all tokens of a span at once
    in_decoder = False  # denoises on top of the decoder, not inside it

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.inp = nn.Linear(config.token_dim, w)
        self.cond_proj = nn.Linear(config.cond_dim, w)
        self.time_embed = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(
            DiTBlock(w, config.n_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(w, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, config.token_dim)
        # What the decoder reads at each patch of the picture it is asked for.
        self.placeholder = nn.Parameter(0.02 * torch.randn(config.cond_dim))
        self.null_cond = (
            nn.Parameter(torch.zeros(config.cond_dim)) if config.cond_dropout > 0 else None
        )

    def num_parameters(self) -> int:
        return count_parameters(self)

    def corrupt(
        self, x: Tensor, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> SpanState:
        """The decoder never reads the picture it is asked for: every patch of the span
        becomes a placeholder (``x`` ``(n, L, token_dim)`` is kept for the loss)."""
        return SpanState(contents=x, grid=grid)

    def embed(self, h: Tensor, state: SpanState) -> Tensor:
        """The decoder's input over the spans ``(n, L, d_model)``: the placeholder everywhere."""
        return self.placeholder.to(h).expand_as(h).clone()  # a copy, not a view of the weight

    def span_loss(self, hidden: Tensor, state: SpanState) -> Tensor:
        """The loss of the clean spans ``state.contents`` given the decoder's states at
        their placeholders, ``hidden`` ``(n, L, d_model)``, on the grid ``state.grid``."""
        return self.loss(state.contents, hidden, state.grid)

    def velocity(self, x_t: Tensor, t: Tensor, cond: Tensor, grid: tuple[int, int]) -> Tensor:
        """Velocity ``(n, L, token_dim)`` of every patch; x_t ``(n, L, token_dim)`` in the
        head's units, t ``(n,)``, cond ``(n, L, cond_dim)``."""
        if x_t.shape[1] != grid[0] * grid[1]:
            raise ValueError(
                f"a span of {x_t.shape[1]} tokens does not fill the grid {grid} "
                f"({grid[0] * grid[1]} patches)."
            )
        positions = sincos_positions(grid, self.config.width).to(x_t)
        h = self.inp(x_t) + positions
        time = self.time_embed(timestep_embedding(t, self.config.width))
        c = self.cond_proj(cond) + time[:, None]  # (n, L, width): one condition per patch
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(_modulate(self.norm(h), shift, scale))

    def _check(self, cond: Tensor, length: int) -> None:
        if cond.dim() != 3 or cond.shape[1:] != (length, self.config.cond_dim):
            raise ValueError(
                f"cond should be one decoder state per patch, (n, {length}, "
                f"{self.config.cond_dim}); got {tuple(cond.shape)}."
            )

    def loss(
        self,
        x: Tensor,
        cond: Tensor,
        grid: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching loss of whole spans ``x`` ``(n, L, token_dim)`` (data units)
        given the states ``cond`` ``(n, L, cond_dim)``: one time and noise draw per span."""
        self._check(cond, x.shape[1])
        c = self.config
        x = (x - c.shift) / c.scale
        if self.null_cond is not None and self.training:  # the null state, for guidance
            drop = torch.rand(len(cond), generator=generator).to(cond.device) < c.cond_dropout
            cond = torch.where(drop[:, None, None], self.null_cond.expand_as(cond), cond)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        t = training_times(len(x), c.time_sampling, c.time_shift, generator).to(x.device)
        return span_flow_loss(lambda x_t, tt: self.velocity(x_t, tt, cond, grid), x, noise, t)

    @torch.no_grad()
    def sample(
        self,
        cond: Tensor,
        grid: tuple[int, int],
        steps: int | None = None,
        guidance: float = 1.0,
        uncond: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        **ignored: object,
    ) -> Tensor:
        """Draw one span per row of states ``cond`` ``(n, L, cond_dim)`` -> ``(n, L,
        token_dim)``, data units. ``steps`` Euler steps; ``temperature`` scales the starting
        noise; ``guidance`` != 1 extrapolates from ``uncond`` (the empty prompt's states) or
        the learned null state. Options of other heads are ignored."""
        n, length = len(cond), grid[0] * grid[1]
        self._check(cond, length)
        c = self.config
        if guidance != 1.0:
            if uncond is None and self.null_cond is None:
                raise ValueError(
                    "guidance != 1 needs uncond=... or a DiT head trained with cond_dropout > 0."
                )
            null = uncond if uncond is not None else self.null_cond.expand_as(cond)
            cond = torch.cat([cond, null])

        def velocity(x_t: Tensor, t: Tensor) -> Tensor:
            both = len(cond) // n  # 2 with guidance: each span beside its unconditional twin
            v = self.velocity(x_t.repeat(both, 1, 1), t.repeat(both), cond, grid)
            return guided_rows(v, n, guidance)

        shape = (n, length, c.token_dim)
        x = euler_sample(
            velocity,
            shape,
            steps or c.sampling_steps,
            c.time_shift,
            temperature,
            generator,
            cond.device,
        )
        return x * c.scale + c.shift
