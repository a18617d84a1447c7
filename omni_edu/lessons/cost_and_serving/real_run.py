"""A real run: worker processes connected by queues, serving any :class:`ServedModel` on the
CPU - the course's trained model speaking captions (:class:`SpokenCaptions`: its decoding
loop, then a vocoder), or two tiny stand-ins (:class:`StageModels`, the default).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from omni_edu import cost

if TYPE_CHECKING:  # type hints only: the workers import what they need when they build
    from omni_edu.modalities.audio import MelConfig
    from omni_edu.model.omni_lm import OmniLMConfig
    from omni_edu.parts.any_to_any import AnyToAnyData, Generations


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
        from omni_edu.modalities import Modality, TextTokenizer, mel_to_waveform, unframe_audio
        from omni_edu.model.interleave import SpecialTokens
        from omni_edu.model.omni_lm import OmniLM
        from omni_edu.parts.any_to_any import make_document

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
    an :class:`~omni_edu.parts.any_to_any.Generations`). A cascade's second pass reads these
    instead of the true captions: ``generate(model, with_generated_captions(data,
    described), "text->audio", described.indices)`` speaks what the model *said* it saw.
    Everything else (pictures, sounds, the scenes the outputs are scored against) is
    ``data``'s own.
    """
    import copy
    import dataclasses

    if not all(isinstance(text, str) for text in described.outputs):
        raise ValueError(f"described should hold generated captions; got {described.direction}.")
    captions, said = list(data.batch.captions), list(data.batch.prompts.texts)
    for i, text in zip(described.indices, described.outputs, strict=True):
        captions[i] = said[i] = text  # a direction reads its caption from the prompts
    retold = copy.copy(data)  # a shallow copy: the same tensors, a new batch of captions
    prompts = dataclasses.replace(data.batch.prompts, texts=said)
    retold.batch = dataclasses.replace(data.batch, captions=captions, prompts=prompts)
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
    return real_runs(mode, n_requests, rate, models, (seed,), timeout, workers)[0]


def real_runs(
    mode: str = "disaggregated",
    n_requests: int = 20,
    rate: float = 20.0,
    models: ServedModel | None = None,
    seeds: tuple[int, ...] = (0,),
    timeout: float = 60.0,
    workers: int = 1,
) -> list[RealRunResult]:
    """:func:`real_run` repeated once per arrival seed on the same worker processes.

    The workers start once (starting a process costs seconds); each repeat sends its own
    Poisson arrivals (``seeds``) and waits until every one of its requests has finished, so
    the repeats never overlap and each starts with empty queues. One result per seed.
    ``timeout`` bounds the whole call.
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
    if not seeds:
        raise ValueError("seeds should name at least one repeat; got none.")
    model = models or StageModels()
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

    rounds = []
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=max(0.01, deadline - time.monotonic()))
        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        prompts = [model.prompt(i).numpy() for i in range(n_requests)]
        for k, seed in enumerate(seeds):
            gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n_requests)
            rids = [k * n_requests + i for i in range(n_requests)]
            start = time.perf_counter()
            for rid, prompt, t_arrive in zip(rids, prompts, np.cumsum(gaps), strict=True):
                time.sleep(max(0.0, start + t_arrive - time.perf_counter()))
                sent[rid] = time.perf_counter()
                inbox.put((rid, prompt, ()))
            while not all(r in done for r in rids):  # the next repeat starts on empty queues
                if time.monotonic() > deadline or not collector.is_alive():
                    break
                time.sleep(0.005)
            rounds.append(rids)
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
    expected = n_requests * len(seeds)
    if len(done) != expected:
        raise TimeoutError(f"only {len(done)} of {expected} requests finished within {timeout} s")
    results = []
    for rids in rounds:
        arrival = np.array([sent[i] for i in rids])
        jct = np.array([done[i] - sent[i] for i in rids])
        stages = np.array([stage_seconds[i] for i in rids])
        results.append(RealRunResult(mode, jct, arrival - arrival[0], stages, workers))
    return results
