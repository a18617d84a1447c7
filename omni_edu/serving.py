"""Serving a two-stage omni model: colocated on one device or split across two.

An any-to-any model that answers with an image runs two very different stages per request:
an **autoregressive** stage (the decoder writes the text/plan tokens one at a time,
memory-bound) and a **diffusion** stage (a flow head refines all image tokens at once,
compute-bound). vLLM-Omni (arXiv 2602.02204) *disaggregates* them: each stage runs on its
own engine and devices, with its own request batching, and requests flow between them like
an assembly line; its abstract reports up to 91.4 % lower job completion time (JCT)
"compared to baseline methods".

This module measures that idea, against baselines chosen to be fair:

* :func:`simulate` - a discrete-event simulation (a ``heapq`` event queue) of a chain of stages
  under a Poisson stream of requests. Each device is a server that runs one job at a time,
  first come first served. *Colocated*: every stage shares one server, so a request's
  diffusion work queues behind other requests' decoding. *Disaggregated*: one server per
  stage (each may be faster at its stage), plus a transfer time at every hand-off.
* :func:`simulate_stations` - the same queues as a recursion, which also runs colocated
  devices that finish each request before the next (one shared queue over several devices,
  the M/G/c queue) and servers that batch; :func:`route_randomly` runs replicas.
* :func:`real_run` - real worker processes connected by queues, serving any
  :class:`ServedModel` on the CPU: the course's trained model speaking captions
  (:class:`SpokenCaptions`: its decoding loop, then a vocoder), or two tiny stand-ins
  (:class:`StageModels`, the default).

It also compares a **cascade** (speech recognition -> text model -> speech synthesis, three
models, each waiting for the previous one's whole output) with one **native** any-to-any
model that hears the question and speaks the answer itself: with the course's trained
model (a second pass through text, :func:`with_generated_captions`), extrapolated to real
model sizes with the roofline (:func:`voice_assistant_estimate`), and what the hand-off
through text throws away (:func:`handoff_loss`).
"""

from __future__ import annotations

import heapq
import itertools
import math
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from omni_edu import cost
from omni_edu.modalities.audio import LOG_EPS

if TYPE_CHECKING:  # type hints only: the workers import what they need when they build
    from omni_edu.any_to_any import AnyToAnyData, Generations
    from omni_edu.modalities.audio import MelConfig
    from omni_edu.model.omni_lm import OmniLMConfig

STAGES = ("autoregressive", "diffusion")

# ---------------------------------------------------------------------------------------------
# Workload and deployments
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request: when it arrives and how many seconds of work each stage needs.

    ``service[k]`` is stage ``k``'s time on a reference device; a deployment may run a stage
    faster (:attr:`Deployment.speedup`).
    """

    rid: int
    arrival: float
    service: tuple[float, ...]


@dataclass(frozen=True)
class Deployment:
    """Where each stage runs.

    Attributes:
        name: a label for plots.
        placement: the server (device) name of each stage; equal names share one server.
        transfer_time: seconds to hand a request between two *different* servers
            (e.g. moving the decoder's hidden states over NVLink or the network).
        speedup: per stage, how much faster its server runs it than the reference device
            (``None`` means 1 for every stage).
    """

    name: str
    placement: tuple[str, ...]
    transfer_time: float = 0.0
    speedup: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.placement) == 0:
            raise ValueError("placement should name a server for at least one stage")
        if self.transfer_time < 0:
            raise ValueError(f"transfer_time should be >= 0 seconds; got {self.transfer_time}")
        if self.speedup is not None:
            if len(self.speedup) != len(self.placement):
                raise ValueError(
                    f"speedup should have one entry per stage ({len(self.placement)}); "
                    f"got {len(self.speedup)}"
                )
            if any(s <= 0 for s in self.speedup):
                raise ValueError(f"speedup entries should be > 0; got {self.speedup}")

    @property
    def n_stages(self) -> int:
        return len(self.placement)

    def service_time(self, request: Request, stage: int) -> float:
        """Seconds ``stage`` of ``request`` occupies its server."""
        speed = 1.0 if self.speedup is None else self.speedup[stage]
        return request.service[stage] / speed

    def handoff_time(self, stage: int) -> float:
        """Delay between the end of ``stage`` and the start of ``stage + 1`` queueing."""
        same = self.placement[stage] == self.placement[stage + 1]
        return 0.0 if same else self.transfer_time


def colocated(n_stages: int = 2) -> Deployment:
    """Every stage on one device (``"gpu0"``), no transfer."""
    return Deployment("colocated", ("gpu0",) * n_stages)


def disaggregated(
    n_stages: int = 2, transfer_time: float = 0.0, speedup: tuple[float, ...] | None = None
) -> Deployment:
    """One device per stage, ``transfer_time`` seconds per hand-off."""
    return Deployment(
        "disaggregated", tuple(f"gpu{k}" for k in range(n_stages)), transfer_time, speedup
    )


def poisson_workload(
    n_requests: int,
    rate: float,
    stage_means: tuple[float, ...] = (0.05, 0.05),
    jitter: float = 0.0,
    seed: int = 0,
) -> list[Request]:
    """``n_requests`` arriving as a Poisson process of ``rate`` requests per second.

    Inter-arrival gaps are exponential with mean ``1 / rate``. Stage ``k`` needs
    ``stage_means[k]`` seconds, multiplied by a log-normal factor with spread ``jitter``
    (``0`` = every request the same; the factor has mean 1, so the average work is kept).
    """
    if n_requests < 1:
        raise ValueError(f"n_requests should be >= 1; got {n_requests}")
    if not rate > 0:
        raise ValueError(f"rate should be > 0 requests per second; got {rate}")
    if len(stage_means) == 0 or any(m < 0 for m in stage_means):
        raise ValueError(f"stage_means should be non-negative seconds; got {stage_means}")
    if jitter < 0:
        raise ValueError(f"jitter should be >= 0; got {jitter}")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n_requests))
    factors = rng.lognormal(-0.5 * jitter**2, jitter, size=(n_requests, len(stage_means)))
    return [
        Request(
            i,
            float(arrivals[i]),
            tuple(float(m * f) for m, f in zip(stage_means, factors[i], strict=True)),
        )
        for i in range(n_requests)
    ]


# ---------------------------------------------------------------------------------------------
# The discrete-event simulation
# ---------------------------------------------------------------------------------------------

ARRIVE = "arrive"  # a request reaches the queue of one stage's server
DONE = "done"  # a server finishes one stage of one request


@dataclass
class SimState:
    """Everything the simulation knows at time ``now``.

    ``events`` is a heap of ``(time, tie_break, kind, rid, stage)``; ``tie_break`` keeps the
    order of equal times deterministic. ``waiting[server]`` holds ``(rid, stage)`` jobs in
    arrival order; ``busy[server]`` says whether it is working.
    """

    requests: list[Request]
    deployment: Deployment
    now: float = 0.0
    events: list[tuple[float, int, str, int, int]] = field(default_factory=list)
    waiting: dict[str, deque] = field(default_factory=dict)
    busy: dict[str, bool] = field(default_factory=dict)
    busy_time: dict[str, float] = field(default_factory=dict)
    finish: dict[int, float] = field(default_factory=dict)
    _counter: itertools.count = field(default_factory=itertools.count)

    def push(self, at: float, kind: str, rid: int, stage: int) -> None:
        """Schedule an event."""
        heapq.heappush(self.events, (at, next(self._counter), kind, rid, stage))

    def start_next(self, server: str) -> None:
        """If ``server`` is idle and has a waiting job, start it and schedule its ``DONE``."""
        if self.busy[server] or not self.waiting[server]:
            return
        rid, stage = self.waiting[server].popleft()
        seconds = self.deployment.service_time(self.requests[rid], stage)
        self.busy[server] = True
        self.busy_time[server] += seconds
        self.push(self.now + seconds, DONE, rid, stage)


def init_state(requests: list[Request], deployment: Deployment) -> SimState:
    """A fresh simulation: every request's arrival at stage 0 is scheduled."""
    for r in requests:
        if len(r.service) != deployment.n_stages:
            raise ValueError(
                f"request {r.rid} has {len(r.service)} stage times but the deployment places "
                f"{deployment.n_stages} stages"
            )
    state = SimState(list(requests), deployment)
    for position, r in enumerate(requests):
        if r.rid != position:
            raise ValueError(f"requests should be numbered 0..n-1 in order; got rid {r.rid}")
    for server in deployment.placement:
        state.waiting[server] = deque()
        state.busy[server] = False
        state.busy_time[server] = 0.0
    for r in requests:
        state.push(r.arrival, ARRIVE, r.rid, 0)
    return state


def step(state: SimState) -> None:
    """Process the next event: one step of the serving simulation.

    * ``ARRIVE`` of request ``rid`` at ``stage``: join the queue of that stage's server, and
      start it if the server is idle.
    * ``DONE`` of ``stage``: free the server; if there is a next stage, schedule the request's
      ``ARRIVE`` there after the hand-off time, else record its finish time; then let the
      freed server start its next waiting job.
    """
    at, _, kind, rid, stage = heapq.heappop(state.events)
    state.now = at
    server = state.deployment.placement[stage]
    if kind == ARRIVE:
        state.waiting[server].append((rid, stage))
    else:
        state.busy[server] = False
        if stage + 1 < state.deployment.n_stages:
            state.push(at + state.deployment.handoff_time(stage), ARRIVE, rid, stage + 1)
        else:
            state.finish[rid] = at
    state.start_next(server)


@dataclass(frozen=True)
class ServingResult:
    """Per-request arrival and finish times of one run, and the usual summaries (seconds)."""

    name: str
    arrival: np.ndarray
    finish: np.ndarray
    utilization: dict[str, float] = field(default_factory=dict)

    @property
    def jct(self) -> np.ndarray:
        """Job completion time of each request: finish - arrival."""
        return self.finish - self.arrival

    @property
    def mean(self) -> float:
        return float(self.jct.mean())

    @property
    def p50(self) -> float:
        return float(np.percentile(self.jct, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.jct, 99))

    @property
    def throughput(self) -> float:
        """Completed requests per second over the whole run."""
        span = float(self.finish.max() - self.arrival.min())
        return len(self.jct) / span if span > 0 else math.inf

    def mean_in_system(self) -> float:
        """Time-averaged number of requests in the system (arrived, not yet finished).

        Computed by sweeping arrival (+1) and finish (-1) times; Little's law says it equals
        arrival rate x mean JCT.
        """
        times = np.concatenate([self.arrival, self.finish])
        deltas = np.concatenate([np.ones_like(self.arrival), -np.ones_like(self.finish)])
        order = np.lexsort((deltas, times))  # at equal times, leave before arriving
        times, counts = times[order], np.cumsum(deltas[order])
        area = float(np.sum(counts[:-1] * np.diff(times)))
        return area / float(times[-1] - times[0])

    def summary(self) -> dict[str, float]:
        """Mean, p50, p99 JCT (ms) and throughput (requests/s), ready to print."""
        return {
            "mean_ms": 1e3 * self.mean,
            "p50_ms": 1e3 * self.p50,
            "p99_ms": 1e3 * self.p99,
            "throughput_rps": self.throughput,
        }


def simulate(
    requests: list[Request], deployment: Deployment, step_fn: Callable[[SimState], None] = step
) -> ServingResult:
    """Run the event loop to the end and collect every request's job completion time.

    ``step_fn`` processes one event (the default is :func:`step`; the lesson's exercise
    passes its own). Each request causes two events per stage, so a loop that runs longer
    than that stops with an error instead of hanging.
    """
    state = init_state(requests, deployment)
    budget = 2 * len(requests) * deployment.n_stages
    for _ in range(budget):
        if not state.events:
            break
        step_fn(state)
    if state.events:
        raise RuntimeError(
            f"after {budget} steps (two per request and stage) events are still queued: "
            "does your step pop exactly one event and schedule only what follows from it?"
        )
    if len(state.finish) != len(requests):
        raise RuntimeError(
            f"simulation ended with {len(state.finish)} of {len(requests)} requests finished: "
            "is every freed server told to start its next waiting job?"
        )
    arrival = np.array([r.arrival for r in requests])
    finish = np.array([state.finish[r.rid] for r in requests])
    span = float(finish.max() - arrival.min()) or 1.0
    utilization = {s: t / span for s, t in state.busy_time.items()}
    return ServingResult(deployment.name, arrival, finish, utilization)


# ---------------------------------------------------------------------------------------------
# Fair baselines and per-stage batching: the same queues, written as recursions
# ---------------------------------------------------------------------------------------------
#
# The event simulation above schedules one job at a time: a colocated server puts a request's
# second stage at the back of its queue, behind whatever arrived meanwhile. Two fairer ways to
# run colocated hardware, and the batching a dedicated stage server can do, need the server to
# see its whole queue at once. For first-come-first-served servers that is a short recursion
# over the requests in the order they become ready (Lindley's for one server, Kiefer and
# Wolfowitz's for several), so these baselines are written that way. With one server per stage
# and no batching, :func:`simulate_stations` reproduces :func:`simulate` of
# :func:`disaggregated` exactly (a test checks it).


@dataclass(frozen=True)
class Station:
    """A group of identical servers that runs some consecutive stages of each request.

    Attributes:
        stages: the stages it runs, back to back on one server (run to completion).
        servers: identical servers sharing one first-come-first-served queue.
        max_batch: at most this many waiting requests run together as one batch.
        speedup: how much faster than the reference device its servers are.
    """

    stages: tuple[int, ...]
    servers: int = 1
    max_batch: int = 1
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if not self.stages or list(self.stages) != list(
            range(self.stages[0], self.stages[0] + len(self.stages))
        ):
            raise ValueError(f"stages should be consecutive stage numbers; got {self.stages}")
        if self.servers < 1 or self.max_batch < 1:
            raise ValueError(
                f"servers and max_batch should be >= 1; got {self.servers}, {self.max_batch}"
            )
        if not self.speedup > 0:
            raise ValueError(f"speedup should be > 0; got {self.speedup}")


def _unit_cost(batch: int) -> float:
    """A batch takes as long as its longest member: the memory-bound ideal."""
    return 1.0


def simulate_stations(
    requests: list[Request],
    stations: list[Station],
    batch_cost: tuple[Callable[[int], float], ...] | None = None,
    transfer_time: float = 0.0,
    name: str = "stations",
) -> ServingResult:
    """Serve ``requests`` through a chain of :class:`Station` s, first come first served.

    Requests reach each station in the order they became ready there (arrival, or the end of
    the previous station plus ``transfer_time``). Whenever one of its servers is free, the
    station starts the oldest waiting request together with every other request already
    waiting, up to ``max_batch`` (greedy batching: it never waits to fill a batch). A batch of
    ``b`` requests occupies its server for, per stage ``k`` it runs,
    ``max(member service[k]) * batch_cost[k](b) / speedup``. ``batch_cost[k](1)`` should be 1;
    the default (every stage) is 1 for any batch, the ideal of a memory-bound step;
    :func:`roofline_batch_cost` gives a device's real curve.

    Examples: ``[Station((0, 1), servers=2)]`` is colocated hardware with one shared queue
    (the M/G/2 queue) running each request to completion; ``[Station((0,)), Station((1,))]``
    is :func:`disaggregated`; ``Station((0,), max_batch=8)`` batches the decoding stage.
    """
    n_stages = len(requests[0].service) if requests else 0
    covered = [k for s in stations for k in s.stages]
    if covered != list(range(n_stages)):
        raise ValueError(
            f"stations should run stages 0..{n_stages - 1} in order, each once; got {covered}"
        )
    costs = batch_cost or (_unit_cost,) * n_stages
    if len(costs) != n_stages:
        raise ValueError(f"batch_cost should have one entry per stage ({n_stages})")
    if transfer_time < 0:
        raise ValueError(f"transfer_time should be >= 0 seconds; got {transfer_time}")
    service = np.array([r.service for r in requests], dtype=float)
    arrival = np.array([r.arrival for r in requests], dtype=float)
    ready = arrival.copy()
    utilization = {}
    for index, station in enumerate(stations):
        if index:
            ready = ready + transfer_time
        order = sorted(range(len(requests)), key=lambda i: (ready[i], i))
        free = [0.0] * station.servers  # when each server is next free (a heap)
        done = np.empty(len(requests))
        busy, i = 0.0, 0
        while i < len(order):
            start = max(heapq.heappop(free), ready[order[i]])
            j = i + 1
            while j < len(order) and j - i < station.max_batch and ready[order[j]] <= start:
                j += 1
            members = order[i:j]
            seconds = sum(
                service[members, k].max() * costs[k](len(members)) for k in station.stages
            )
            seconds /= station.speedup
            busy += seconds
            done[members] = start + seconds
            heapq.heappush(free, start + seconds)
            i = j
        ready = done
        span = float(done.max() - arrival.min()) or 1.0
        utilization[f"station {index}"] = busy / (station.servers * span)
    return ServingResult(name, arrival, ready, utilization)


def shared_queue(n_stages: int = 2, servers: int = 2, max_batch: int = 1) -> list[Station]:
    """Colocated serving on ``servers`` devices with one shared queue, run to completion.

    Each request runs all its stages back to back on whichever device frees up first (the
    M/G/c queue). With ``max_batch > 1`` a device runs several requests' stages together.
    """
    return [Station(tuple(range(n_stages)), servers, max_batch)]


def pipeline(n_stages: int = 2, max_batch: tuple[int, ...] | None = None) -> list[Station]:
    """Disaggregated serving: one device per stage; ``max_batch[k]`` batches stage ``k``."""
    batches = max_batch or (1,) * n_stages
    if len(batches) != n_stages:
        raise ValueError(f"max_batch should have one entry per stage ({n_stages})")
    return [Station((k,), 1, b) for k, b in enumerate(batches)]


def route_randomly(
    requests: list[Request],
    serve: Callable[[list[Request]], ServingResult],
    replicas: int = 2,
    seed: int = 0,
    name: str = "replicas",
) -> ServingResult:
    """Send each request to one of ``replicas`` identical copies at random; serve each copy.

    ``serve`` runs one replica, e.g. ``lambda rs: simulate(rs, colocated())``. The replicas
    share nothing, so each is simulated on its own share of the requests (renumbered
    0..m-1, as :func:`simulate` wants) and the results are put back in request order.
    Utilization is averaged over the replicas.
    """
    if replicas < 1:
        raise ValueError(f"replicas should be >= 1; got {replicas}")
    choice = np.random.default_rng(seed).integers(replicas, size=len(requests))
    finish = np.empty(len(requests))
    utilization: dict[str, float] = {}
    for copy in range(replicas):
        members = np.flatnonzero(choice == copy)
        if not len(members):
            continue
        share = [
            Request(i, requests[m].arrival, requests[m].service) for i, m in enumerate(members)
        ]
        result = serve(share)
        finish[members] = result.finish
        for server, u in result.utilization.items():
            utilization[server] = utilization.get(server, 0.0) + u / replicas
    arrival = np.array([r.arrival for r in requests])
    return ServingResult(name, arrival, finish, utilization)


def roofline_batch_cost(
    step: Callable[[int], cost.StepCost], device: cost.Device
) -> Callable[[int], float]:
    """How much longer a batch of ``b`` takes than one request, by the roofline.

    ``step(b)`` gives the :class:`~omni_edu.cost.StepCost` of one step at batch ``b``, e.g.
    ``lambda b: cost.decode_step_cost(model, 1024, b)``. A memory-bound decode step gives a
    curve near 1 (the batch shares each weight read); a compute-bound diffusion step a curve
    near ``b`` (nothing to share).
    """
    one = step(1).time(device)
    return lambda b: step(b).time(device) / one


# ---------------------------------------------------------------------------------------------
# A real run: worker processes connected by queues
# ---------------------------------------------------------------------------------------------


class ServedModel(Protocol):
    """What :func:`real_run` serves: a two-stage model that each worker process builds.

    It is sent to every worker (so it must pickle: a dataclass of plain fields and NumPy
    arrays, such as a config and trained weights) and built there, once per process.
    :class:`SpokenCaptions` serves the course's trained model; :class:`StageModels` is a
    tiny stand-in for tests.
    """

    def build(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
        """The stages, in order: each maps the previous stage's output to its own."""
        ...

    def prompt(self, index: int = 0) -> torch.Tensor:
        """Request ``index``'s input to the first stage."""
        ...


@dataclass(frozen=True)
class StageModels:
    """Two tiny stand-in models the real run serves (CPU, one thread each): a :class:`ServedModel`.

    The autoregressive stage runs ``ar_tokens`` sequential steps of a small MLP on one
    token (one small matmul chain per step: latency-bound); the diffusion stage runs
    ``flow_steps`` steps of an MLP over ``image_tokens`` tokens at once (one big matmul per
    step: compute-bound). Only a one-token summary of the image travels back, so the
    hand-off cost stays small.
    """

    d_model: int = 128
    ar_tokens: int = 32
    image_tokens: int = 64
    flow_steps: int = 8
    seed: int = 0

    def build(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
        torch.manual_seed(self.seed)
        ar, flow = _ARStage(self).eval(), _FlowStage(self).eval()
        return ar, lambda h: flow(h)[:1]

    def prompt(self, index: int = 0) -> torch.Tensor:
        return torch.ones(1, self.d_model)  # every request asks the same


class _ARStage(nn.Module):
    def __init__(self, cfg: StageModels) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )

    @torch.no_grad()
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h``: (1, d_model) -> the last state after ``ar_tokens`` sequential steps."""
        for _ in range(self.cfg.ar_tokens):
            h = h + self.mlp(h)
        return h


class _FlowStage(nn.Module):
    def __init__(self, cfg: StageModels) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(
            nn.Linear(2 * cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )

    @torch.no_grad()
    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """``cond``: (1, d_model) -> an "image" (image_tokens, d_model) by Euler steps."""
        x = torch.zeros(self.cfg.image_tokens, self.cfg.d_model)
        c = cond.expand(self.cfg.image_tokens, -1)
        dt = 1.0 / self.cfg.flow_steps
        for _ in range(self.cfg.flow_steps):
            x = x + dt * self.mlp(torch.cat([x, c], dim=-1))
        return x


@dataclass(frozen=True)
class SpokenCaptions:
    """The course's any-to-any model serving "speak this caption": a :class:`ServedModel`.

    * Stage 1, **autoregressive**: the OmniLM reads ``<speak>`` and a caption and writes the
      sound as log-mel tokens, one per step (:meth:`~omni_edu.model.omni_lm.OmniLM.generate`:
      a prefill, then for every token a decode step and the output head - ``steps`` Euler
      steps of a flow head, one matrix product of a linear head - which must finish before
      the next token can be read back).
    * Stage 2, **vocoder**: Griffin-Lim turns the whole log-mel spectrogram into a waveform
      (:func:`~omni_edu.modalities.mel_to_waveform`): ``vocoder_iters`` rounds of an inverse
      and a forward STFT over every frame at once, with nothing sequential between frames.

    The split is where a real speaking model splits too (Qwen2.5-Omni's Talker writes codec
    tokens, a separate ``code2wav`` model makes the waveform): the output head cannot be cut
    out of stage 1, since each token it writes is the next step's input.

    Workers receive the trained weights (``weights``: NumPy arrays, which pickle by value)
    and rebuild the model from ``config``; nothing is trained again. Build one with
    :meth:`from_model`. A request's input is its caption as text token ids.
    """

    config: OmniLMConfig
    weights: dict[str, np.ndarray]
    captions: tuple[str, ...]
    n_tokens: int  # audio tokens of one sound
    frames_per_token: int
    mel: MelConfig  # how the sounds were turned into log-mels
    steps: int = 8
    vocoder_iters: int = 32

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        data: AnyToAnyData,
        captions: list[str],
        steps: int = 8,
        vocoder_iters: int = 32,
    ) -> SpokenCaptions:
        """Serve ``model`` (an OmniLM trained on ``data``, an ``AnyToAnyData``) speaking
        ``captions`` (request ``i`` speaks ``captions[i % len(captions)]``)."""
        if not captions:
            raise ValueError("captions should hold at least one caption to speak.")
        if "audio" in getattr(data, "tokenizers", {}):
            raise ValueError("SpokenCaptions serves a model that writes log-mel features.")
        weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        return cls(
            model.config,
            weights,
            tuple(captions),
            int(data.audio.shape[1]),
            int(data.frames_per_token),
            data.world.mel_config,
            steps,
            vocoder_iters,
        )

    def prompt(self, index: int = 0) -> torch.Tensor:
        from omni_edu.modalities import TextTokenizer

        caption = self.captions[index % len(self.captions)]
        return torch.tensor(TextTokenizer().encode(caption), dtype=torch.long)

    def build(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
        from omni_edu.any_to_any import make_document
        from omni_edu.modalities import Modality, TextTokenizer, mel_to_waveform, unframe_audio
        from omni_edu.model.interleave import SpecialTokens
        from omni_edu.model.omni_lm import OmniLM

        model = OmniLM(self.config).eval()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
        tokenizer = TextTokenizer()
        specials = SpecialTokens.from_vocab(tokenizer.ids)

        def speak(ids: torch.Tensor) -> torch.Tensor:
            """Caption ids ``(n,)`` -> log-mels ``(1, frames, n_mels)`` in [-1, 1]."""
            document = make_document("text->audio", tokenizer, tokenizer.decode(ids.tolist()))
            (tokens,) = model.generate(
                [document], Modality.AUDIO, self.n_tokens, specials=specials, steps=self.steps
            )
            return unframe_audio(tokens[None], self.frames_per_token).clamp(-1, 1)

        def vocode(mels: torch.Tensor) -> torch.Tensor:
            """Log-mels ``(1, frames, n_mels)`` -> a waveform ``(1, samples)``."""
            return mel_to_waveform(mels, self.mel, n_iter=self.vocoder_iters)

        return speak, vocode


def with_generated_captions(data: AnyToAnyData, described: Generations) -> AnyToAnyData:
    """``data`` with the captions of ``described``'s scenes replaced by the generated ones.

    ``described`` is the output of a direction that writes text (e.g. ``"image->text"``,
    an :class:`~omni_edu.any_to_any.Generations`). A cascade's second pass reads these
    instead of the true captions: ``generate(model, with_generated_captions(data,
    described), "text->audio", described.indices)`` speaks what the model *said* it saw.
    Everything else (pictures, sounds, the scenes the outputs are scored against) is
    ``data``'s own.
    """
    import copy
    import dataclasses

    if not all(isinstance(text, str) for text in described.outputs):
        raise ValueError(f"described should hold generated captions; got {described.direction}.")
    captions = list(data.batch.captions)
    for i, text in zip(described.indices, described.outputs, strict=True):
        captions[i] = text
    retold = copy.copy(data)  # a shallow copy: the same tensors, a new batch of captions
    retold.batch = dataclasses.replace(data.batch, captions=captions)
    return retold


def measure_stages(model: ServedModel, repeats: int = 5) -> tuple[float, ...]:
    """Median seconds of each stage of ``model`` for one request, in this process.

    Times what a :func:`real_run` worker runs, on one CPU thread as the workers do (the
    thread count is restored afterwards). Feed the result to :func:`poisson_workload` as
    ``stage_means`` to simulate serving this model.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stages = model.build()
        inputs = [model.prompt(0)]
        with torch.no_grad():
            for stage in stages:  # the input of each stage is the output of the one before
                inputs.append(stage(inputs[-1]))
            return tuple(
                cost.time_call(lambda s=stage, x=x: s(x), repeats=repeats)
                for stage, x in zip(stages, inputs, strict=False)
            )
    finally:
        torch.set_num_threads(threads)


def _worker(role: str, model: ServedModel, inbox, outbox, ready) -> None:
    """One serving process. ``role``: ``"both"`` (colocated), ``"ar"`` or ``"flow"``.

    Messages are ``(rid, array, seconds)`` with NumPy arrays (torch tensors would travel as shared
    memory handles that die with the process that made them); ``None`` means shut down (and
    is passed on). Top-level so that the ``spawn`` start method can import it.
    """
    torch.set_num_threads(1)  # one "device" = one core; also stops oversubscription
    first, second = model.build()
    with torch.no_grad():
        second(first(model.prompt(0)))  # warm-up before we say we are ready
    ready.put(role)
    while True:
        msg = inbox.get()
        if msg is None:
            outbox.put(None)
            return
        rid, array, seconds = msg  # seconds: the stage times measured so far
        x = torch.from_numpy(array)
        with torch.no_grad():
            for stage, runs in ((first, ("both", "ar")), (second, ("both", "flow"))):
                if role in runs:
                    start = time.perf_counter()
                    x = stage(x)
                    seconds = (*seconds, time.perf_counter() - start)
        outbox.put((rid, x.numpy(), seconds))


@dataclass(frozen=True)
class RealRunResult:
    """JCTs measured in seconds by the main process, one per request.

    ``stage_seconds[i]`` holds request ``i``'s measured (autoregressive, diffusion) compute
    times inside the workers: feed their means to :func:`simulate` to compare.
    """

    mode: str
    jct: np.ndarray
    arrival: np.ndarray
    stage_seconds: np.ndarray
    workers: int = 1

    @property
    def name(self) -> str:
        """A label for tables and plots, e.g. ``"colocated, 2 workers"``."""
        devices = 2 if self.mode == "disaggregated" else self.workers
        return f"{self.mode}, {devices} worker{'s' if devices > 1 else ''}"

    def summary(self) -> dict[str, float]:
        return {
            "mean_ms": 1e3 * float(self.jct.mean()),
            "p50_ms": 1e3 * float(np.percentile(self.jct, 50)),
            "p99_ms": 1e3 * float(np.percentile(self.jct, 99)),
        }


def real_run(
    mode: str = "disaggregated",
    n_requests: int = 20,
    rate: float = 20.0,
    models: ServedModel | None = None,
    seed: int = 0,
    timeout: float = 60.0,
    workers: int = 1,
) -> RealRunResult:
    """Serve ``n_requests`` Poisson arrivals with real processes and measure each JCT.

    ``mode="colocated"``: ``workers`` processes take requests from one shared queue, each
    running both stages of a request back to back (``workers=2`` is the real M/G/2 queue:
    two devices, colocated). ``mode="disaggregated"``: an autoregressive worker feeds a
    diffusion worker through a ``multiprocessing`` queue (two devices). Each worker uses one
    CPU thread: one worker is one "device".

    Arrival and completion are both timed by the main process (completion by a collector
    thread), so no clock is shared across processes. Workers start with the ``spawn``
    method (safe in notebooks and on every OS) and are always joined or terminated, even
    after an error; waiting longer than ``timeout`` seconds in total raises ``TimeoutError``.
    """
    if mode not in ("colocated", "disaggregated"):
        raise ValueError(f"mode should be 'colocated' or 'disaggregated'; got {mode!r}")
    if not 1 <= n_requests <= 1000:
        raise ValueError(f"n_requests should be between 1 and 1000; got {n_requests}")
    if not rate > 0:
        raise ValueError(f"rate should be > 0 requests per second; got {rate}")
    if mode == "disaggregated" and workers != 1:
        raise ValueError("workers applies to mode='colocated' (disaggregated has one per stage)")
    if not 1 <= workers <= 8:
        raise ValueError(f"workers should be between 1 and 8; got {workers}")
    model = models or StageModels()
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n_requests)
    ctx = mp.get_context("spawn")
    ready, inbox, outbox = ctx.Queue(), ctx.Queue(), ctx.Queue()
    if mode == "colocated":
        roles = [("both", inbox, outbox)] * workers
    else:
        middle = ctx.Queue()
        roles = [("ar", inbox, middle), ("flow", middle, outbox)]
    procs = [
        ctx.Process(target=_worker, args=(role, model, src, dst, ready), daemon=True)
        for role, src, dst in roles
    ]
    deadline = time.monotonic() + timeout
    sent: dict[int, float] = {}
    done: dict[int, float] = {}
    stage_seconds: dict[int, tuple[float, ...]] = {}

    def collect() -> None:
        finished = 0  # each last-stage worker sends one None when it shuts down
        while finished < workers:
            try:
                msg = outbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return
            if msg is None:
                finished += 1
                continue
            done[msg[0]] = time.perf_counter()
            stage_seconds[msg[0]] = msg[2]

    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=max(0.01, deadline - time.monotonic()))
        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        prompts = [model.prompt(rid).numpy() for rid in range(n_requests)]
        start = time.perf_counter()
        for rid, t_arrive in enumerate(np.cumsum(gaps)):
            time.sleep(max(0.0, start + t_arrive - time.perf_counter()))
            sent[rid] = time.perf_counter()
            inbox.put((rid, prompts[rid], ()))
        for _ in range(workers):  # one shutdown message per worker reading the inbox
            inbox.put(None)
        collector.join(timeout=max(0.01, deadline - time.monotonic()))
    except queue.Empty as err:
        raise TimeoutError(f"workers did not start within {timeout} s") from err
    finally:
        for p in procs:
            p.join(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            if p.is_alive():
                p.terminate()
                p.join()
    if len(done) != n_requests:
        raise TimeoutError(f"only {len(done)} of {n_requests} requests finished within {timeout} s")
    arrival = np.array([sent[i] for i in range(n_requests)])
    jct = np.array([done[i] - sent[i] for i in range(n_requests)])
    stages = np.array([stage_seconds[i] for i in range(n_requests)])
    return RealRunResult(mode, jct, arrival - arrival[0], stages, workers)


# ---------------------------------------------------------------------------------------------
# Pipeline versus native
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationStage:
    """One model call of a serving pipeline, for the roofline estimate.

    It reads ``prompt_tokens`` new tokens at once (the prefill: compute-bound), then writes
    ``output_tokens`` one at a time (decode steps: memory-bound). ``cached_tokens`` are
    already in the model's KV cache from an earlier call (they cost no prefill, but every
    new token attends to them).
    """

    name: str
    model: cost.ModelShape
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0

    def seconds(self, device: cost.Device, dtype: str = "bf16") -> float:
        """Roofline seconds of the whole call on ``device`` with ``dtype`` weights and cache."""
        total = 0.0
        if self.prompt_tokens:
            prefill = cost.prefill_cost(
                self.model, self.prompt_tokens, 1, dtype, cached_tokens=self.cached_tokens
            )
            total += prefill.time(device)
        start = self.cached_tokens + self.prompt_tokens
        for k in range(self.output_tokens):
            total += cost.decode_step_cost(self.model, start + k, 1, dtype).time(device)
        return total


# Real sizes for the extrapolation. Whisper large-v3: encoder and decoder of 32 layers, width
# 1280, 20 heads, 1.55B parameters in all (Radford et al. 2022, Table 1), about 0.64B each
# plus the embeddings. The speech synthesiser: CosyVoice 2 uses a Qwen2.5-0.5B language model
# to write 25 Hz speech tokens (arXiv 2412.10117); we give it the Qwen2-0.5B shape.
WHISPER_ENCODER = cost.ModelShape("whisper-large encoder", 0.64e9, 32, 1280, 20, 20, 64)
WHISPER_DECODER = cost.ModelShape("whisper-large decoder", 0.91e9, 32, 1280, 20, 20, 64)
# Speech tokens per second of answer, for both systems: CosyVoice 2's documented 25 Hz.
# Qwen2.5-Omni's report does not state its Talker's codec rate in what we read; a 50 Hz
# codec would double the speech steps of the native column.
SPEECH_TOKENS_PER_SECOND = 25


def voice_assistant_estimate(
    device: cost.Device,
    dtype: str = "bf16",
    question_seconds: float = 5.0,
    transcript_tokens: int = 20,
    system_tokens: int = 100,
    answer_tokens: int = 60,
    first_text_tokens: int = 10,
    first_audio_seconds: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Roofline time to the first second of spoken answer: cascade versus native.

    *Cascade*: Whisper-large transcribes the question (its encoder always reads a padded
    30 s window, 1500 tokens), a 7B text model (Qwen2-7B shape) writes the **whole** answer
    of ``answer_tokens`` before a 0.5B speech model can start, which then writes
    ``first_audio_seconds`` of speech tokens.

    *Native* (Qwen2.5-Omni's Thinker-Talker design): the 7B Thinker reads the question as
    25 Hz audio tokens and writes ``first_text_tokens`` of its answer; the Talker
    (:data:`~omni_edu.cost.MODEL_SHAPES` ``"qwen2.5-omni-talker"``, about 1.35B) reads the
    Thinker's hidden states of that context and writes the speech tokens. The speech tokens
    never pass through the 7B model.

    Returns seconds per stage for each, plus ``"total"``. These are lower bounds at batch 1:
    no network, no voice-activity detection waiting for the end of the question, no queueing,
    and neither system's vocoder (speech tokens -> waveform) is counted.
    """
    llm = cost.get_model_shape("qwen2-7b")
    tts = cost.get_model_shape("qwen2-0.5b")
    talker = cost.get_model_shape("qwen2.5-omni-talker")
    audio_in = cost.qwen_omni_audio_tokens(question_seconds)
    speech = math.ceil(SPEECH_TOKENS_PER_SECOND * first_audio_seconds)
    heard = system_tokens + audio_in
    cascade = [
        GenerationStage(
            "ASR encoder", WHISPER_ENCODER, cost.whisper_audio_tokens(question_seconds), 0
        ),
        GenerationStage("ASR decoder", WHISPER_DECODER, 4, transcript_tokens),
        GenerationStage("text model", llm, system_tokens + transcript_tokens, answer_tokens),
        GenerationStage("speech model", tts, answer_tokens, speech),
    ]
    native = [
        GenerationStage("Thinker reads question", llm, heard, 0),
        GenerationStage("Thinker first words", llm, 0, first_text_tokens, cached_tokens=heard),
        GenerationStage("Talker speaks", talker, heard + first_text_tokens, speech),
    ]
    out = {}
    for name, stages in (("cascade", cascade), ("native", native)):
        times = {s.name: s.seconds(device, dtype) for s in stages}
        times["total"] = sum(times.values())
        out[name] = times
    return out


def mel_log_power(mels: torch.Tensor) -> torch.Tensor:
    """The natural log of each mel band's power, up to one constant, from log-mel features.

    :func:`~omni_edu.modalities.audio.log_mel` maps log power linearly so that silence (power
    ``LOG_EPS``) becomes -1 and power 1 becomes +1; undoing that slope gives
    ``log(power) = mels * (-log(LOG_EPS) / 2) + constant``. Shape-preserving.
    """
    return mels * (-math.log(LOG_EPS) / 2)


def handoff_loss(batch, train_fraction: float = 0.5) -> dict[str, float]:
    """How much of an audio-only attribute survives the hand-off through a transcript.

    The attribute: each clip's exact loudness (log RMS of the waveform). The caption says
    "big" or "small", so a perfect transcript still tells the size class; the loudness
    *within* a class (OmniWorld jitters it by up to 10%) lives only in the audio, like tone of
    voice in real speech. We fit two linear predictors of the within-class loudness on half
    the batch and report R^2 on the other half:

    * ``r2_from_transcript``: from the transcript, i.e. the size class (0 by construction:
      the class mean is all a transcript allows);
    * ``r2_from_audio``: from the log-mel features the native model reads (their total
      energy).

    ``batch``: an :class:`~omni_edu.data.OmniBatch` of one-object scenes.
    """
    if batch.mask.sum(1).max() > 1:
        raise ValueError("handoff_loss expects one-object scenes (OmniWorld(n_objects=1))")
    n = len(batch)
    n_train = int(n * train_fraction)
    if n_train < 8 or n - n_train < 8:
        raise ValueError(f"need at least 16 samples to fit and test; got {n}")
    loudness = batch.waveforms.pow(2).mean(1).sqrt().log().double()
    size = batch.attributes[:, 0, 2]
    # What the transcript allows: one value per size class (fitted on the training half).
    class_mean = torch.zeros(int(size.max()) + 1, dtype=torch.float64)
    for k in size.unique():
        class_mean[k] = loudness[:n_train][size[:n_train] == k].mean()
    residual = loudness - class_mean[size]  # the part no transcript carries
    # The clip's total mel energy: undo the log-mel scaling and sum the power over frames
    # and channels (one value per size class as well, as the transcript gets).
    energy = torch.logsumexp(mel_log_power(batch.mels.double()), dim=(1, 2))
    features = torch.cat([energy[:, None], nn.functional.one_hot(size).double()], dim=1)
    weights = torch.linalg.lstsq(features[:n_train], residual[:n_train, None]).solution
    test = residual[n_train:]

    def r2(prediction: torch.Tensor) -> float:
        return float(1 - ((test - prediction) ** 2).sum() / ((test - test.mean()) ** 2).sum())

    return {
        "r2_from_transcript": r2(torch.zeros_like(test)),
        "r2_from_audio": r2((features[n_train:] @ weights).squeeze(1)),
        "within_class_spread": float(test.std()),
    }
