"""Measured seconds: a call, a decode step of the course's decoder, a flow head's sampling,
and the fixed cost of one torch operation.

What the roofline predicts (:mod:`.roofline`) is a lower bound; these measure the same
steps on this machine. A tiny model is mostly overhead: :func:`count_torch_calls` and
:func:`seconds_per_torch_call` price what it is really made of, a fixed cost per operation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

from omni_edu.cost.validate import positive


def time_call(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Synchronises CUDA around each run so that GPU work is counted. The median resists the
    occasional hiccup of a shared machine better than the mean.
    """
    positive("repeats", repeats)
    positive("warmup", warmup, allow_zero=True)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def decode_driver(
    decoder: torch.nn.Module, context: int, batch: int = 1, steps: int = 1
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(prefill, step)`` of ``decoder`` with a KV cache, on random embeddings.

    ``prefill()`` empties the cache and feeds ``context`` embeddings per row; each
    ``step()`` then feeds one more token per row, up to ``steps`` steps per prefill. The
    weights do not matter for speed, so an untrained decoder measures the same as a trained
    one. The one driver behind :func:`measure_decode_step` (timed) and
    :func:`seconds_per_torch_call` (counted).
    """
    from omni_edu.model.kv_cache import KVCache

    positive("context", context)
    positive("steps", steps)
    config = decoder.config
    device = next(decoder.parameters()).device
    dtype = next(decoder.parameters()).dtype
    cache = KVCache(config, batch, max_len=context + steps, device=device, dtype=dtype)
    prompt = torch.randn(batch, context, config.d_model, device=device, dtype=dtype)
    token = torch.randn(batch, 1, config.d_model, device=device, dtype=dtype)

    @torch.no_grad()
    def prefill() -> None:
        cache.reset()
        decoder(prompt, cache=cache)

    @torch.no_grad()
    def step() -> None:
        decoder(token, cache=cache)

    return prefill, step


def measure_decode_step(
    decoder: torch.nn.Module, context: int, batch: int = 1, steps: int = 8, repeats: int = 3
) -> float:
    """Measured seconds per decode step of ``decoder`` with a KV cache.

    Prefills ``context`` random embeddings (not timed), then times each of ``steps``
    one-token steps on its own, ``repeats`` times over (after one warm-up pass), and returns
    the median of those step times. Timing each step (rather than a whole run minus a
    separate prefill) keeps a busy machine's hiccups out of most samples.
    """
    positive("repeats", repeats)
    prefill, step = decode_driver(decoder, context, batch, steps)
    device = next(decoder.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for run in range(repeats + 1):  # run 0 warms up (allocations, kernel choice)
        prefill()
        for _ in range(steps):
            sync()
            start = time.perf_counter()
            step()
            sync()
            if run:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure_flow_sampling(
    head: torch.nn.Module, n_tokens: int, steps: int | None = None, repeats: int = 3
) -> float:
    """Measured seconds to sample one image of ``n_tokens`` tokens with a flow head."""
    positive("n_tokens", n_tokens)
    device = next(head.parameters()).device
    cond = torch.randn(n_tokens, head.config.cond_dim, device=device)
    return time_call(lambda: head.sample(cond, steps=steps), repeats=repeats)


class _CountCalls(TorchFunctionMode):
    """Counts every call from Python into torch (functions and tensor methods)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") != "__get__":  # attribute reads (x.shape) are free
            self.calls += 1
        return func(*args, **(kwargs or {}))


def count_torch_calls(fn: Callable[[], object]) -> int:
    """How many torch operations ``fn()`` asks for from Python (``linear``, ``add``,
    ``view``, ``__getitem__``...). Each one pays a fixed cost - Python, dispatch, on a GPU a
    kernel launch - whatever the size of its tensors."""
    with torch.no_grad(), _CountCalls() as counter:
        fn()
    return counter.calls


def narrowest_copy(decoder: torch.nn.Module) -> torch.nn.Module:
    """A fresh decoder with ``decoder``'s layers, heads and device, but every matrix as
    narrow as it can be (2 numbers per head): the same operations, almost no arithmetic
    and almost no bytes. What one of its steps costs is the fixed cost of those operations.
    """
    c = decoder.config
    device = next(decoder.parameters()).device
    narrow = type(c)(
        d_model=2 * c.n_heads,
        n_layers=c.n_layers,
        n_heads=c.n_heads,
        n_kv_heads=c.n_kv_heads,
        max_seq_len=c.max_seq_len,
    )
    return type(decoder)(narrow).to(device).eval()


def seconds_per_torch_call(decoder: torch.nn.Module, context: int = 16, repeats: int = 5) -> float:
    """Measured fixed cost of one torch operation in ``decoder``'s decode step (seconds).

    Times a decode step of :func:`narrowest_copy` (the same operations on matrices 2 numbers
    per head wide, where FLOPs and bytes are negligible) and divides by the number of
    operations it asks for (:func:`count_torch_calls`). Multiply by a stage's operation count
    to predict what that stage costs when overhead, not arithmetic, sets its time.
    """
    narrow = narrowest_copy(decoder)
    seconds = measure_decode_step(narrow, context, 1, repeats=repeats)
    prefill, step = decode_driver(narrow, context)
    prefill()  # outside what is counted
    return seconds / count_torch_calls(step)
