"""Fair baselines and per-stage batching: the same queues as :mod:`.queues`, written as
recursions.

:func:`simulate_stations` also runs colocated devices that finish each request before the
next (one shared queue over several devices, the M/G/c queue) and servers that batch;
:func:`route_randomly` runs replicas; :func:`cuts_over_seeds` compares two deployments over
several arrival seeds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from omni_edu import cost

if TYPE_CHECKING:  # type hints only: the workers import what they need when they build
    pass

from omni_edu.lessons.cost_and_serving.queues import Job, ServingResult

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
    requests: list[Job],
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
    requests: list[Job],
    serve: Callable[[list[Job]], ServingResult],
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
        share = [Job(i, requests[m].arrival, requests[m].service) for i, m in enumerate(members)]
        result = serve(share)
        finish[members] = result.finish
        for server, u in result.utilization.items():
            utilization[server] = utilization.get(server, 0.0) + u / replicas
    arrival = np.array([r.arrival for r in requests])
    return ServingResult(name, arrival, finish, utilization)


def roofline_batch_cost(
    step: Callable[[int], cost.StepCost], device: cost.Hardware
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
# A comparison over arrival seeds
# ---------------------------------------------------------------------------------------------

BUSY_LIMIT = 0.97  # a device busier than this does not keep up with its arrivals


@dataclass
class SeedCuts:
    """How much ``system`` cuts ``baseline``'s mean JCT, once per arrival seed.

    ``cuts[k]`` = ``1 - system mean / baseline mean`` for seed ``seeds[k]`` (positive: the
    system is faster); ``mean``, ``low``, ``high``: their mean and 95 % t interval over the
    seeds (:func:`omni_edu.stats.t_interval`). ``keeps_up``: both kept every device below
    :data:`BUSY_LIMIT` busy in every seed (otherwise the cut is not a steady-state number).
    """

    seeds: tuple[int, ...]
    cuts: list[float]
    mean: float
    low: float
    high: float
    keeps_up: bool

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def cuts_over_seeds(
    system: Callable[[list[Job]], ServingResult],
    baseline: Callable[[list[Job]], ServingResult],
    workload: Callable[[int], list[Job]],
    seeds: Sequence[int],
) -> SeedCuts:
    """Serve ``workload(seed)`` with ``system`` and with ``baseline`` for every seed; the cut
    in mean JCT per seed and its interval over the seeds (:class:`SeedCuts`)."""
    from omni_edu.stats import t_interval

    if not seeds:
        raise ValueError("cuts_over_seeds needs at least one arrival seed; got none.")
    cuts, keeps_up = [], True
    for seed in seeds:
        requests = workload(seed)
        ours, theirs = system(requests), baseline(requests)
        busiest = max(*ours.utilization.values(), *theirs.utilization.values())
        keeps_up &= busiest < BUSY_LIMIT
        cuts.append(1.0 - ours.mean / theirs.mean)
    mean, low, high = t_interval(cuts)
    return SeedCuts(tuple(seeds), cuts, mean, low, high, keeps_up)
