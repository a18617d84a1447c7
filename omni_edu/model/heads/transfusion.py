"""Whole-image diffusion inside the decoder (Transfusion, Zhou et al. 2024; lesson 04b).

No separate network draws the picture: the decoder itself does. In training, a picture's
patches enter the sequence *noised*, all at one time ``t`` (``x_t = (1 - t) * noise + t *
x``), its span attends both ways (every patch sees every other, as in a diffusion
transformer), and a linear read-out of each patch's hidden state predicts that patch's
velocity ``x - noise``. The same model trains on the text loss of the other positions in
the same pass. Causal attention everywhere else means text *before* the picture never
sees the noised patches.

To sample, the prompt runs once into the KV cache; then the span of pure noise is run
through the decoder ``steps`` times, each time moved one Euler step along the velocities
it reads out, with the prompt's cache kept and the span's own keys and values dropped
after each pass (:meth:`OmniLM.generate <omni_edu.model.omni_lm.OmniLM.generate>`). One
decoder pass per step: the most expensive way to draw, and the only one where every layer
of the big model works on the picture.

This module holds the few parameters whole-image diffusion adds to OmniLM - a time
embedding added to the noised patches' input and the velocity read-out - and the noising
of a span. OmniLM places them around its decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.heads.flow import FlowHeadConfig, timestep_embedding
from omni_edu.model.heads.span import SpanDenoiser, SpanState, euler_sample, training_times
from omni_edu.model.weights import count_parameters


class TransfusionHead(nn.Module):
    """The parts of whole-image diffusion outside the decoder.

    ``corrupt(x)`` noises spans ``(n, L, token_dim)`` (data units); ``embed(h, state)``
    adds the time's embedding to the decoder's input ``(n, L, d_model)`` over those
    spans; ``span_loss(hidden, state)`` compares the read-out of the decoder's output
    ``(n, L, d_model)`` with the velocities; ``sample(velocity_of, shape)`` runs the
    Euler loop with a callback that runs the decoder.
    """

    discrete = False
    writes_span = True
    in_decoder = True  # the decoder denoises; this head only embeds the time and reads out

    def __init__(self, d_model: int, config: FlowHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.time_embed = nn.Sequential(
            nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model)
        )
        self.readout = nn.Linear(d_model, config.token_dim)  # hidden state -> its velocity

    def num_parameters(self) -> int:
        return count_parameters(self)

    def to_head_units(self, x: Tensor) -> Tensor:
        return (x - self.config.shift) / self.config.scale

    def to_data(self, x: Tensor) -> Tensor:
        return x * self.config.scale + self.config.shift

    def time_embedding(self, t: Tensor) -> Tensor:
        """``(n, d_model)`` for times ``(n,)``, added to every token of a noised span."""
        return self.time_embed(timestep_embedding(t, self.readout.in_features))

    def corrupt(
        self, x: Tensor, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> SpanState:
        """Clean spans ``(n, L, token_dim)`` (data units) -> their noised versions (data
        units, what the decoder reads), one time per span, and the velocities to predict
        (head units)."""
        c = self.config
        x = self.to_head_units(x)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        t = training_times(len(x), c.time_sampling, c.time_shift, generator).to(x.device)
        t_span = t[:, None, None]
        x_t = (1 - t_span) * noise + t_span * x
        return SpanState(contents=self.to_data(x_t), target=x - noise, t=t, grid=grid)

    def embed(self, h: Tensor, state: SpanState) -> Tensor:
        """The decoder's input over the spans ``(n, L, d_model)``, told each span's time."""
        return h + self.time_embedding(state.t)[:, None]

    def velocity(self, hidden: Tensor) -> Tensor:
        """The decoder's output over spans ``(n, L, d_model)`` -> velocities ``(n, L,
        token_dim)``: one linear map per token, no network of its own."""
        return self.readout(hidden)

    def span_loss(self, hidden: Tensor, state: SpanState) -> Tensor:
        """Mean squared error of the read-out velocities against ``state.target``."""
        return F.mse_loss(self.velocity(hidden), state.target)

    @torch.no_grad()
    def sample(
        self,
        velocity_of: SpanDenoiser,
        shape: tuple[int, int, int],
        steps: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        **ignored: object,
    ) -> Tensor:
        """Spans ``shape`` = ``(n, L, token_dim)`` in data units. ``velocity_of(x_t, t)``
        runs the decoder over the noised spans (head units) at times ``t`` ``(n,)`` and
        returns their velocities: one decoder pass per step."""
        c = self.config
        x = euler_sample(
            velocity_of,
            shape,
            steps or c.sampling_steps,
            c.time_shift,
            temperature,
            generator,
            device,
        )
        return self.to_data(x)
