"""Checks for lesson 08's exercises: KV-cache size, Qwen2-VL image tokens, one serving step,
and one update of the Trainer (the core-build exercise).

The references are the course's own functions in :mod:`omni_edu.cost` and this lesson's
:mod:`.queues`, and the course's :class:`~omni_edu.train.Trainer` itself
(:class:`.train_step.ReferenceTrainStep`). Every check takes ``show_recipe=True`` (show the
full recipe now) and
``time_limit`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from omni_edu import cost
from omni_edu.grading import Case, CheckResult, Hints, check_function
from omni_edu.lessons.cost_and_serving import queues
from omni_edu.lessons.cost_and_serving.train_step import ReferenceTrainStep, run_steps

kv_cache_bytes = cost.kv_cache_bytes
qwen2vl_image_tokens = cost.qwen2vl_image_tokens
step = queues.step
TrainStep = ReferenceTrainStep

KV_CACHE_BYTES = Hints(
    "kv_cache_bytes",
    nudge="Count the numbers a KV cache holds - for every layer, every KV head and every "
    "token of every sequence in the batch - then multiply by the bytes each number takes.",
    failed="Keys AND values are stored (a factor of 2), for every sequence of the batch: all "
    "six arguments appear in the product.",
    recipe="2 * n_layers * n_kv_heads * head_dim * n_tokens * batch * bytes_per_value "
    "(one key and one value vector per KV head, per token, per layer, per sequence).",
)

QWEN2VL_IMAGE_TOKENS = Hints(
    "qwen2vl_image_tokens",
    nudge="Qwen2-VL resizes the image so that both sides are multiples of 28 pixels (one "
    "token per 28x28 block) and the area stays between min_pixels and max_pixels; the "
    "tokens follow from the new size. Start by rounding each side to a multiple of 28.",
    failed="Check each rule in turn: round each side to the NEAREST multiple of 28; compare "
    "the area h*w with the limits; when scaling, round down to shrink and up to grow.",
    recipe="h = max(28, round(height / 28) * 28), w likewise. If h * w > max_pixels: beta = "
    "sqrt(height * width / max_pixels), h = max(28, floor(height / beta / 28) * 28), w "
    "likewise. Elif h * w < min_pixels: beta = sqrt(min_pixels / (height * width)), h = "
    "ceil(height * beta / 28) * 28, w likewise. Tokens = (h // 28) * (w // 28).",
)

STEP = Hints(
    "step",
    nudge="Take the earliest event off state.events and move the clock to it. An ARRIVE "
    "joins its server's queue; a DONE frees its server and sends the request on to its "
    "next stage (or records it as finished). Either way the server may then start its "
    "next job.",
    failed="A DONE sends the request's next stage an ARRIVE after the hand-off time, "
    "deployment.handoff_time(stage); the last stage records state.finish[rid] instead.",
    recipe="Pop the earliest event and move state.now to its time. ARRIVE: append (rid, "
    "stage) to the server's waiting queue. DONE: mark the server idle, then either push the "
    "next stage's ARRIVE at now + deployment.handoff_time(stage) or record "
    "state.finish[rid]. In both cases finish with state.start_next(server).",
)


def check_kv_cache_bytes(
    learner_fn: Callable[..., int], *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(n_layers, n_kv_heads, head_dim, n_tokens, batch, bytes_per_value)``
    give the bytes a KV cache holds?"""
    cases = [
        Case((2, 4, 16, 10, 1, 4), label="tiny: 2 layers, 4 KV heads of 16, 10 tokens, fp32"),
        Case((28, 4, 128, 32_768, 1, 2), label="Qwen2-7B, 32k tokens, bf16 (GQA: 4 KV heads)"),
        Case(
            (32, 8, 128, 8192, 16, 2),
            label="Llama-3-8B, batch 16 x 8k tokens, bf16",
            hint="Every sequence of the batch has its own cache: multiply by batch.",
        ),
        Case((24, 2, 64, 4096, 3, 1), label="Qwen2-0.5B, batch 3, an 8-bit cache"),
    ]
    return check_function(
        "kv_cache_bytes",
        learner_fn,
        kv_cache_bytes,
        cases,
        atol=0.5,
        rtol=0.0,
        hints=KV_CACHE_BYTES,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def _qwen_cases() -> list[Case]:
    default = {"min_pixels": cost.QWEN_MIN_PIXELS, "max_pixels": cost.QWEN_MAX_PIXELS}
    nearest = (
        "Round each side to the NEAREST multiple of 28: round(side / 28) * 28, not int() or //."
    )
    area = "Compare the area h * w (both sides) with the limit, not one side squared."
    shrink = "When shrinking, round each scaled side DOWN (math.floor), so the area stays <= max."
    grow = (
        "When growing, scale the ORIGINAL sides by beta = sqrt(min_pixels / (height * width)) "
        "and round UP (math.ceil), so the area reaches min_pixels."
    )
    boundary = (
        "Off by one at the limit: an area exactly equal to max_pixels (or min_pixels) is "
        "allowed. Scale only when h * w > max_pixels or h * w < min_pixels (strictly)."
    )
    banner = (
        "Every side is at least 28 pixels, also after shrinking: max(28, ...) around each "
        "rounded side. A thin banner's short side would otherwise become 0."
    )
    return [
        Case((224, 224), default, label="224x224 (a classic ViT input)"),
        Case((448, 448), default, label="448x448"),
        Case((375, 500), default, label="375x500 (sides not multiples of 28: round)", hint=nearest),
        Case((1080, 1920), default, label="1080x1920 (too many pixels: scale down)", hint=shrink),
        Case((20, 30), default, label="20x30 (too few pixels: scale up)", hint=grow),
        Case((40, 40), default, label="40x40 (scale up from the original size)", hint=grow),
        Case((25, 60), default, label="25x60 (scale up, round the scaled sides up)", hint=grow),
        Case(
            (1080, 1920),
            {"min_pixels": cost.QWEN_MIN_PIXELS, "max_pixels": 256 * 28 * 28},
            label="1080x1920 with max_pixels = 256 tokens",
            hint=shrink,
        ),
        Case((2400, 600), default, label="2400x600 (tall, over max_pixels)", hint=area),
        Case((600, 1500), default, label="600x1500 (wide, under max_pixels)", hint=area),
        Case((1500, 600), default, label="1500x600 (tall, under max_pixels)", hint=area),
        Case((20, 80), default, label="20x80 (wide, under min_pixels)", hint=area),
        Case((80, 20), default, label="80x20 (tall, under min_pixels)", hint=area),
        Case((150, 40), default, label="150x40 (tall, just over min_pixels)", hint=area),
        # Elongated pictures scaled up a long way: the long side grows to hundreds of pixels,
        # so dividing by anything but 28 before rounding up changes the count (31x372 gives
        # 75 tokens; divide the height by 29 and it gives 50).
        Case(
            (31, 372),
            {**default, "min_pixels": 40_000},
            label="31x372 with min_pixels = 40000 (wide, scaled up a long way)",
            hint=grow,
        ),
        Case(
            (372, 31),
            {**default, "min_pixels": 40_000},
            label="372x31 with min_pixels = 40000 (tall, scaled up a long way)",
            hint=grow,
        ),
        Case(
            (900, 1110),
            default,
            label="900x1110 (rounds to exactly max_pixels: keep)",
            hint=boundary,
        ),
        Case((50, 60), default, label="50x60 (rounds to exactly min_pixels: keep)", hint=boundary),
        Case((10, 1000), default, label="10x1000 banner (short side rounds to 0)", hint=banner),
        Case(
            (60, 12000),
            {"min_pixels": cost.QWEN_MIN_PIXELS, "max_pixels": 16 * 28 * 28},
            label="60x12000 banner with max_pixels = 16 tokens (shrinks below 28)",
            hint=banner,
        ),
    ]


def check_qwen2vl_image_tokens(
    learner_fn: Callable[..., int], *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """Does ``learner_fn(height, width, min_pixels, max_pixels)`` count Qwen2-VL's tokens?

    The cases cover both limits from both sides and exactly at them, the rounding of each
    path (nearest, down when shrinking, up when growing) and thin banners.
    """
    return check_function(
        "qwen2vl_image_tokens",
        learner_fn,
        qwen2vl_image_tokens,
        _qwen_cases(),
        atol=0.5,
        rtol=0.0,
        hints=QWEN2VL_IMAGE_TOKENS,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def _finish_times(step_fn: Callable, requests: list, deployment: queues.Deployment) -> np.ndarray:
    return queues.simulate(requests, deployment, step_fn=step_fn).finish


def check_step(
    learner_fn: Callable[[queues.SimState], None],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_fn(state)`` process one event of the serving simulation correctly?

    We run whole simulations with it and compare every request's finish time.
    """
    one = queues.poisson_workload(1, rate=1.0, stage_means=(0.03, 0.07))
    busy = queues.poisson_workload(12, rate=20.0, stage_means=(0.04, 0.03), jitter=0.5, seed=1)
    # Light load: the shared server often waits for the hand-off, so a wrong delay shows
    # (under heavy load it is busy with other requests meanwhile and hides it).
    light = queues.poisson_workload(6, rate=5.0, stage_means=(0.04, 0.03), jitter=0.5, seed=2)
    handoff = (
        "When a stage finishes, the next stage's ARRIVE comes after the hand-off time, "
        "deployment.handoff_time(stage): transfer_time between two servers, 0 on one server."
    )
    cases = [
        Case((one, queues.colocated()), label="one request, colocated"),
        Case(
            (one, queues.disaggregated(transfer_time=0.01)),
            label="one request, two devices",
            hint=handoff,
        ),
        Case((busy, queues.colocated()), label="12 requests under load, colocated"),
        Case(
            (busy, queues.disaggregated(transfer_time=0.005, speedup=(2.0, 1.0))),
            label="12 requests under load, two devices, 5 ms transfer",
            hint=handoff,
        ),
        Case(
            (light, queues.Deployment("shared", ("gpu0", "gpu0"), transfer_time=0.01)),
            label="6 requests, light load, both stages on one shared server, transfer_time 10 ms",
            hint="Both stages run on the same server here, so nothing is transferred: use "
            "deployment.handoff_time(stage) (0 on one server), not deployment.transfer_time.",
        ),
    ]
    return check_function(
        "step",
        learner_fn,
        step,
        cases,
        atol=1e-9,
        rtol=1e-9,
        call=_finish_times,
        hints=STEP,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


TRAIN_STEP = Hints(
    "TrainStep",
    nudge="Three pieces: in __init__ build AdamW over two groups (weight matrices decayed, "
    "everything else not); learning_rate(step) is a linear warm-up then a cosine; "
    "train_step(batch, step) sets that learning rate, computes the loss, backpropagates it "
    "through the scaler, clips the true gradients' global norm and lets the scaler step the "
    "optimizer. Start with learning_rate: the check compares it first.",
    failed="Compare the first thing that differs: the learning rate at each step (the "
    "schedule), the gradient norm (what you return: before clipping, of the unscaled "
    "gradients), or the parameters (which groups decay, when gradients are cleared, whether "
    "clipping happens before the update).",
    on={
        "values": "The message names what differs. 'learning rate': warm-up reaches lr at step "
        "n_warmup - 1 (it starts at lr / n_warmup, not 0) and the cosine ends at lr * "
        "min_lr_ratio on the last step. 'gradient norm': return the norm clip_grad_norm_ "
        "gives back (before clipping), of gradients the scaler has unscaled. 'parameters "
        "after the first update': weight decay on biases or norm gains, or clipping after "
        "the update. 'after the last update' only: gradients left over from the previous "
        "update, or the scaler's new scale never taken (scaler.update()).",
    },
    recipe="__init__: decay = [p for p in model.parameters() if p.ndim >= 2 and p is not an "
    "nn.Embedding's weight], no_decay = the rest; self.optimizer = torch.optim.AdamW([{'params': "
    "decay, 'weight_decay': config.weight_decay}, {'params': no_decay, 'weight_decay': 0.0}], "
    "lr=config.lr, betas=config.betas). learning_rate: w = config.n_warmup; if step < w: "
    "return config.lr * (step + 1) / w; else progress = (step - w) / (config.steps - 1 - w) "
    "(the peak if that is 0), floor = config.lr * config.min_lr_ratio, return floor + 0.5 * "
    "(1 + cos(pi * progress)) * (config.lr - floor). train_step: set every group's 'lr'; "
    "optimizer.zero_grad(); loss = loss_fn(model, batch)['loss']; "
    "scaler.scale(loss).backward(); scaler.unscale_(optimizer); norm = "
    "clip_grad_norm_(model.parameters(), config.grad_clip or inf); scaler.step(optimizer); "
    "scaler.update(); return loss.detach(), norm.",
)


def _steps_of(step_class: Callable, settings: dict, n_steps: int, loss_scale: float | None):
    return run_steps(step_class, settings, n_steps, loss_scale)


def check_train_step(
    learner_class: Callable,
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner_class`` update a model exactly as the course's Trainer does?

    ``learner_class(model, loss_fn, config, scaler)`` must offer ``optimizer``,
    ``learning_rate(step)`` and ``train_step(batch, step) -> (loss, grad_norm)``. Each case
    trains a small model (:class:`~.train_step.TinyLM`, an embedding, biases and a
    LayerNorm) with the same seed and batches under the learner's class and under the
    Trainer, and compares the learning rate of every step, the loss and the gradient norm
    before clipping of every update, and every parameter after the first and the last.
    """
    base = {"lr": 0.05, "weight_decay": 0.1, "min_lr_ratio": 0.1}
    cases = [
        Case(
            ({**base, "steps": 8, "warmup_steps": 3, "grad_clip": 0.5}, 8, None),
            label="8 updates: 3 warm-up steps, then a cosine; gradients clipped to norm 0.5",
        ),
        Case(
            ({**base, "steps": 6, "warmup_steps": 2, "grad_clip": 0.5}, 6, 1024.0),
            label="the same with fp16's loss scaling (a GradScaler at 1024, doubling every 2 "
            "steps)",
            hint="With a loss scaler, backward gives gradients multiplied by the scale: "
            "scaler.unscale_(optimizer) must come before you measure or clip them.",
        ),
        Case(
            ({**base, "steps": 5, "warmup_steps": 0, "grad_clip": None}, 5, None),
            label="no warm-up and no clipping (grad_clip=None)",
            hint="grad_clip=None switches clipping off; warmup_steps=0 starts the cosine at "
            "step 0.",
        ),
        Case(
            ({**base, "steps": 12, "warmup_steps": 0.25, "grad_clip": 1.0}, 12, None),
            label="warm-up given as a fraction (0.25 of 12 steps): config.n_warmup is 3",
            hint="warmup_steps may be a fraction of the run; config.n_warmup is always the "
            "number of warm-up steps.",
        ),
    ]
    return check_function(
        "TrainStep",
        learner_class,
        TrainStep,
        cases,
        atol=1e-6,
        rtol=1e-5,
        call=_steps_of,
        hints=TRAIN_STEP,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
