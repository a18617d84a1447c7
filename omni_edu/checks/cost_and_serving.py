"""Checks for lesson 08's exercises: KV-cache size, Qwen2-VL image tokens, one serving step.

The references are the course's own functions in :mod:`omni_edu.cost` and
:mod:`omni_edu.serving`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from omni_edu import cost, serving
from omni_edu.grading import Case, CheckResult, check_function

kv_cache_bytes = cost.kv_cache_bytes
qwen2vl_image_tokens = cost.qwen2vl_image_tokens
step = serving.step


def check_kv_cache_bytes(learner_fn: Callable[..., int]) -> CheckResult:
    """Does ``learner_fn(n_layers, n_kv_heads, head_dim, n_tokens, batch, bytes_per_value)``
    give the bytes a KV cache holds?"""
    cases = [
        Case((2, 4, 16, 10, 1, 4), label="tiny: 2 layers, 4 KV heads of 16, 10 tokens, fp32"),
        Case((28, 4, 128, 32_768, 1, 2), label="Qwen2-7B, 32k tokens, bf16 (GQA: 4 KV heads)"),
        Case((32, 8, 128, 8192, 16, 2), label="Llama-3-8B, batch 16 x 8k tokens, bf16"),
        Case((24, 2, 64, 4096, 3, 1), label="Qwen2-0.5B, batch 3, an 8-bit cache"),
    ]
    return check_function(
        "kv_cache_bytes",
        learner_fn,
        kv_cache_bytes,
        cases,
        hint="Every layer stores one key AND one value vector per KV head per token, for every "
        "sequence of the batch: 2 * n_layers * n_kv_heads * head_dim * n_tokens * batch "
        "* bytes_per_value.",
        atol=0.5,
        rtol=0.0,
    )


def check_qwen2vl_image_tokens(learner_fn: Callable[..., int]) -> CheckResult:
    """Does ``learner_fn(height, width, min_pixels, max_pixels)`` count Qwen2-VL's tokens?"""
    default = {"min_pixels": cost.QWEN_MIN_PIXELS, "max_pixels": cost.QWEN_MAX_PIXELS}
    cases = [
        Case((224, 224), default, label="224x224 (a classic ViT input)"),
        Case((448, 448), default, label="448x448"),
        Case((375, 500), default, label="375x500 (sides not multiples of 28: round)"),
        Case((1080, 1920), default, label="1080x1920 (too many pixels: scale down)"),
        Case((20, 30), default, label="20x30 (too few pixels: scale up)"),
        Case(
            (1080, 1920),
            {"min_pixels": cost.QWEN_MIN_PIXELS, "max_pixels": 256 * 28 * 28},
            label="1080x1920 with max_pixels = 256 tokens",
        ),
    ]
    return check_function(
        "qwen2vl_image_tokens",
        learner_fn,
        qwen2vl_image_tokens,
        cases,
        hint="Round each side to the NEAREST multiple of 28 (one token = 14-px patches merged "
        "2x2). If the area is above max_pixels, scale both sides by sqrt(h*w/max_pixels) and "
        "round DOWN; below min_pixels, scale up and round UP. Tokens = (h/28) * (w/28).",
        atol=0.5,
        rtol=0.0,
    )


def _finish_times(step_fn: Callable, requests: list, deployment: serving.Deployment) -> np.ndarray:
    return serving.simulate(requests, deployment, step_fn=step_fn).finish


def check_step(learner_fn: Callable[[serving.SimState], None]) -> CheckResult:
    """Does ``learner_fn(state)`` process one event of the serving simulation correctly?

    We run whole simulations with it and compare every request's finish time.
    """
    one = serving.poisson_workload(1, rate=1.0, stage_means=(0.03, 0.07))
    busy = serving.poisson_workload(12, rate=20.0, stage_means=(0.04, 0.03), jitter=0.5, seed=1)
    cases = [
        Case((one, serving.colocated()), label="one request, colocated"),
        Case((one, serving.disaggregated(transfer_time=0.01)), label="one request, two devices"),
        Case((busy, serving.colocated()), label="12 requests under load, colocated"),
        Case(
            (busy, serving.disaggregated(transfer_time=0.005, speedup=(2.0, 1.0))),
            label="12 requests under load, two devices, 5 ms transfer",
        ),
    ]
    return check_function(
        "step",
        lambda requests, deployment: _finish_times(learner_fn, requests, deployment),
        lambda requests, deployment: _finish_times(step, requests, deployment),
        cases,
        hint="Pop the earliest event and move state.now to its time. ARRIVE: append (rid, stage) "
        "to the server's waiting queue. DONE: mark the server idle, then either push the next "
        "stage's ARRIVE at now + deployment.handoff_time(stage) or record state.finish[rid]. "
        "In both cases finish with state.start_next(server).",
        atol=1e-9,
        rtol=1e-9,
    )
