"""Compute, memory and time on a device: the roofline of one step.

* :class:`ModelShape` (with real families in :data:`MODEL_SHAPES`), :func:`flops_per_token`
  and :func:`kv_cache_bytes`: what a model does per token and holds per token;
* :class:`Hardware` (presets :data:`HARDWARE`, or :func:`calibrate_this_machine`): peak
  FLOP/s and memory bandwidth;
* :func:`predict_time`: the roofline, ``max(FLOPs / peak, bytes / bandwidth)``, a lower
  bound on a step's time; :class:`StepCost` and the step costs :func:`decode_step_cost`,
  :func:`prefill_cost` and :func:`diffusion_step_cost`.

Decoding is memory-bound (one step reads every weight and the KV cache for one token per
sequence); a diffusion step is compute-bound (the same weights update hundreds of tokens).
The formulas are plain arithmetic on Python numbers, so they can be read top to bottom.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from omni_edu.cost.validate import positive


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a decoder that FLOP and memory estimates need.

    ``n_params`` counts the weights read per token (embeddings included: the output
    projection reads them). ``n_kv_heads < n_heads`` means grouped-query attention, which
    shrinks the KV cache by ``n_heads / n_kv_heads``.
    """

    name: str
    n_params: float
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        for f in ("n_params", "n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim"):
            positive(f, getattr(self, f))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) should be a multiple of n_kv_heads ({self.n_kv_heads})"
            )


MODEL_SHAPES: dict[str, ModelShape] = {
    # Qwen2 technical report (arXiv 2407.10671), Table 1; Qwen2.5-7B and the Qwen2.5-Omni-7B
    # "Thinker" use the same shape.
    "qwen2-7b": ModelShape("qwen2-7b", 7.6e9, 28, 3584, 28, 4, 128),
    # The Llama 3 Herd of Models (arXiv 2407.21783), Table 3.
    "llama3-8b": ModelShape("llama3-8b", 8.0e9, 32, 4096, 32, 8, 128),
    # Qwen2 technical report, Table 1 (the 0.5B model: a "small first model").
    "qwen2-0.5b": ModelShape("qwen2-0.5b", 0.49e9, 24, 896, 14, 2, 64),
    # The Talker of Qwen2.5-Omni-7B, the small model that writes its speech tokens from the
    # Thinker's hidden states. The technical report (arXiv 2503.20215) describes it as a
    # dual-track autoregressive decoder but gives no size; the shape is the released
    # checkpoint's ``talker_config`` (Qwen/Qwen2.5-Omni-7B ``config.json``): 24 layers, width
    # 896, 12 query and 4 KV heads of 128, MLP 18944, a codec vocabulary of 8448 embedded at
    # width 3584. Counted layer by layer that is 1.35B parameters, a fifth of the Thinker.
    "qwen2.5-omni-talker": ModelShape("qwen2.5-omni-talker", 1.35e9, 24, 896, 12, 4, 128),
    # DiT-XL/2 (Peebles & Xie, arXiv 2212.09748, Table 1): a diffusion transformer; 256 tokens
    # for a 256x256 image (32x32 latent, patch 2).
    "dit-xl-2": ModelShape("dit-xl-2", 675e6, 28, 1152, 16, 16, 72),
}


def get_model_shape(name: str) -> ModelShape:
    """A preset from :data:`MODEL_SHAPES` by name, with a helpful error for unknown names."""
    if name not in MODEL_SHAPES:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(sorted(MODEL_SHAPES))}")
    return MODEL_SHAPES[name]


def flops_per_token(
    n_params: float,
    *,
    n_layers: int = 0,
    context: int = 0,
    d_model: int = 0,
    training: bool = False,
) -> float:
    """FLOPs to process one token: ``2N`` forward (one multiply-add per weight), ``6N`` training.

    The attention term adds ``2 * n_layers * context * d_model`` per token in the forward pass
    (scores ``q.k`` and the weighted sum of values over ``context`` earlier tokens; Kaplan et
    al. 2020, arXiv 2001.08361, Table 1). Training is forward + backward = 3 x forward.
    Leave ``n_layers``/``context``/``d_model`` at 0 for the weights-only estimate.
    """
    positive("n_params", n_params)
    for name, value in (("n_layers", n_layers), ("context", context), ("d_model", d_model)):
        positive(name, value, allow_zero=True)
    forward = 2.0 * n_params + 2.0 * n_layers * context * d_model
    return 3.0 * forward if training else forward


def kv_cache_bytes(
    n_layers: int,
    n_kv_heads: int,
    head_dim: int,
    n_tokens: int,
    batch: int = 1,
    bytes_per_value: float = 2,
) -> int:
    """Bytes the KV cache holds: ``2 * layers * kv_heads * head_dim * tokens * batch * bytes``.

    The leading 2 is one key and one value vector per head, per layer, per cached token.
    ``bytes_per_value`` is 2 for bf16/fp16, 4 for fp32, 1 for an 8-bit cache.
    Example: Qwen2-7B (28 layers, 4 KV heads of 128) in bf16 holds 57,344 bytes per token,
    so a 32k-token context costs 1.75 GiB per sequence.
    """
    for name, value in (("n_layers", n_layers), ("n_kv_heads", n_kv_heads), ("head_dim", head_dim)):
        positive(name, value)
    positive("n_tokens", n_tokens, allow_zero=True)
    positive("batch", batch)
    positive("bytes_per_value", bytes_per_value)
    return int(2 * n_layers * n_kv_heads * head_dim * n_tokens * batch * bytes_per_value)


# ---------------------------------------------------------------------------------------------
# Roofline
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    """What the roofline model needs to know about a chip.

    Attributes:
        peak_flops: peak dense FLOP/s per dtype name (``"fp32"``, ``"bf16"``, ...).
        mem_bandwidth: bytes per second between memory and the compute units.
        memory_bytes: how much fits (for "does the KV cache fit?" questions).
        price_per_hour: a typical on-demand price in USD per device-hour (changes often).
    """

    name: str
    peak_flops: dict[str, float]
    mem_bandwidth: float
    memory_bytes: float = 0.0
    price_per_hour: float = 0.0
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.peak_flops:
            raise ValueError(f"Hardware {self.name!r} needs at least one peak_flops entry")
        for dtype, flops in self.peak_flops.items():
            positive(f"peak_flops[{dtype!r}]", flops)
        positive("mem_bandwidth", self.mem_bandwidth)
        positive("memory_bytes", self.memory_bytes, allow_zero=True)
        positive("price_per_hour", self.price_per_hour, allow_zero=True)

    def flops(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; a clear error when the device has no such entry."""
        if dtype not in self.peak_flops:
            raise ValueError(
                f"Hardware {self.name!r} has no peak for dtype {dtype!r}; "
                f"known: {', '.join(sorted(self.peak_flops))}"
            )
        return self.peak_flops[dtype]

    def ridge_point(self, dtype: str = "fp32") -> float:
        """Arithmetic intensity (FLOP/byte) above which a kernel is compute-bound."""
        return self.flops(dtype) / self.mem_bandwidth


GB = 1e9
TB = 1e12

HARDWARE: dict[str, Hardware] = {
    # NVIDIA T4 datasheet: 8.1 TFLOPS fp32, 65 TFLOPS fp16 tensor cores, 320 GB/s GDDR6, 16 GB.
    "T4": Hardware(
        "T4",
        {"fp32": 8.1e12, "fp16": 65e12},
        320 * GB,
        16 * GB,
        price_per_hour=0.35,
        source="NVIDIA T4 datasheet",
    ),
    # NVIDIA A100 datasheet (SXM4 80GB): 19.5 TFLOPS fp32, 156 TF32, 312 bf16/fp16 dense,
    # 2,039 GB/s HBM2e.
    "A100": Hardware(
        "A100",
        {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12},
        2039 * GB,
        80 * GB,
        price_per_hour=1.8,
        source="NVIDIA A100 datasheet (SXM4 80GB)",
    ),
    # NVIDIA H100 datasheet (SXM5 80GB), dense numbers (the datasheet's headline figures
    # assume 2:4 sparsity and are twice these): 67 TFLOPS fp32, 495 TF32, 989 bf16/fp16,
    # 1,979 fp8, 3.35 TB/s HBM3.
    "H100": Hardware(
        "H100",
        {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12, "fp8": 1979e12},
        3.35 * TB,
        80 * GB,
        price_per_hour=3.0,
        source="NVIDIA H100 datasheet (SXM5 80GB), dense",
    ),
}


def get_hardware(name: str) -> Hardware:
    """A preset from :data:`HARDWARE` (``"T4"``, ``"A100"``, ``"H100"``) by name."""
    key = name.strip().upper() if isinstance(name, str) else name
    if key not in HARDWARE:
        raise ValueError(
            f"Unknown hardware {name!r}. Known presets: {', '.join(sorted(HARDWARE))}, or call "
            "calibrate_this_machine() to measure the one you are on."
        )
    return HARDWARE[key]


def calibrate_this_machine(
    size: int = 512, copy_mib: int = 32, repeats: int = 3, device: str | None = None
) -> Hardware:
    """Measure this machine's fp32 matmul FLOP/s and memory-copy bandwidth (about a second).

    * compute: the best of ``repeats`` timings of a ``size x size`` fp32 matmul
      (``2 * size**3`` FLOPs);
    * bandwidth: the best of ``repeats`` copies of a ``copy_mib`` MiB tensor (each copy reads
      and writes it, ``2 * bytes``).

    ``device``: ``"cpu"`` or ``"cuda"``, where the modules you compare with will run (by
    default CUDA when it is available, else the CPU with torch's current thread count).
    These are achievable peaks for large, simple kernels; a tiny model reaches less.
    """
    positive("size", size)
    positive("copy_mib", copy_mib)
    positive("repeats", repeats)
    device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device should be 'cpu' or 'cuda'; got {device!r}")

    def best_time(fn) -> float:
        fn()  # warm-up: allocations, kernel selection
        if device == "cuda":
            torch.cuda.synchronize()
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return max(best, 1e-9)

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    flops = 2.0 * size**3 / best_time(lambda: torch.mm(a, b, out=out))

    src = torch.empty(copy_mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2.0 * src.numel() * 4 / best_time(lambda: dst.copy_(src))

    name = torch.cuda.get_device_name() if device == "cuda" else "this CPU"
    return Hardware(
        f"{name} (measured)",
        {"fp32": flops},
        bandwidth,
        source=f"calibrate_this_machine(size={size}, copy_mib={copy_mib})",
        notes={"threads": str(torch.get_num_threads()), "backend": device},
    )


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOPs per byte moved: the x-axis of the roofline plot."""
    positive("flops", flops, allow_zero=True)
    positive("bytes_moved", bytes_moved)
    return flops / bytes_moved


def predict_time(
    flops: float, bytes_moved: float, hardware: Hardware, dtype: str = "fp32"
) -> float:
    """Roofline prediction in seconds: ``max(flops / peak_flops, bytes / bandwidth)``.

    A kernel can not run faster than its compute nor faster than its memory traffic; the
    roofline assumes it reaches whichever limit binds. Real kernels land above this bound
    (launch overheads, small matrices), so read it as "at best".
    """
    if not isinstance(hardware, Hardware):
        raise ValueError(
            f"hardware should be a Hardware (e.g. get_hardware('A100')); got {hardware!r}"
        )
    positive("flops", flops, allow_zero=True)
    positive("bytes_moved", bytes_moved, allow_zero=True)
    return max(flops / hardware.flops(dtype), bytes_moved / hardware.mem_bandwidth)


# Bytes one value takes in memory, per dtype name (the same names as ``Hardware.peak_flops``).
BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def bytes_per_value(dtype: str) -> int:
    """Bytes of one ``dtype`` value: 4 for fp32 (and tf32, stored as fp32), 2 for bf16/fp16."""
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype should be one of {sorted(BYTES_PER_VALUE)}; got {dtype!r}")
    return BYTES_PER_VALUE[dtype]


@dataclass(frozen=True)
class StepCost:
    """FLOPs and bytes of one model step in ``dtype``, and what the roofline makes of them.

    The dtype is stored once: the byte count was computed with its value size, and
    :meth:`time` and :meth:`bound` use its peak, so the two can never disagree.
    """

    flops: float
    bytes_moved: float
    tokens: int  # tokens produced or updated by the step
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        bytes_per_value(self.dtype)  # a clear error for an unknown dtype

    @property
    def intensity(self) -> float:
        """FLOPs per byte."""
        return arithmetic_intensity(self.flops, self.bytes_moved)

    def time(self, hardware: Hardware) -> float:
        """Roofline seconds for this step on ``hardware``, at the peak of its ``dtype``."""
        return predict_time(self.flops, self.bytes_moved, hardware, self.dtype)

    def bound(self, hardware: Hardware) -> str:
        """``"memory"`` or ``"compute"``: which roof this step hits on ``hardware``."""
        return "compute" if self.intensity >= hardware.ridge_point(self.dtype) else "memory"


def decode_step_cost(
    model: ModelShape, context: int, batch: int = 1, dtype: str = "bf16"
) -> StepCost:
    """One autoregressive decode step in ``dtype``: each of ``batch`` sequences adds a token.

    FLOPs: ``batch * (2N + 2 * layers * context * d_model)`` (:func:`flops_per_token`).
    Bytes: every weight once (``N * bytes``, shared by the batch) plus each sequence's KV
    cache of ``context`` tokens (:func:`kv_cache_bytes`). Activations are tiny by comparison.
    The intensity is about ``2 * batch / bytes_per_value`` FLOP/byte, far below any GPU's ridge
    point: decoding is memory-bound.
    """
    positive("context", context, allow_zero=True)
    positive("batch", batch)
    size = bytes_per_value(dtype)
    flops = batch * flops_per_token(
        model.n_params, n_layers=model.n_layers, context=context, d_model=model.d_model
    )
    weights = model.n_params * size
    kv = kv_cache_bytes(model.n_layers, model.n_kv_heads, model.head_dim, context, batch, size)
    return StepCost(flops, weights + kv, tokens=batch, dtype=dtype)


def prefill_cost(
    model: ModelShape,
    prompt_tokens: int,
    batch: int = 1,
    dtype: str = "bf16",
    cached_tokens: int = 0,
) -> StepCost:
    """Reading a prompt of ``prompt_tokens`` in one pass (the *prefill*), per ``batch`` rows.

    FLOPs: every prompt token costs ``2N`` plus attention to the ``cached_tokens`` already in
    the KV cache and, on average, half of the prompt before it (causal attention).
    Bytes: every weight once, plus the KV cache written for the prompt (and read for the
    ``cached_tokens``). The weights are reused ``batch * prompt_tokens`` times per read, so
    a long prompt is compute-bound like a diffusion step, while the decode steps after it
    are memory-bound.
    """
    positive("prompt_tokens", prompt_tokens)
    positive("batch", batch)
    positive("cached_tokens", cached_tokens, allow_zero=True)
    size = bytes_per_value(dtype)
    context = cached_tokens + prompt_tokens // 2
    flops = (
        batch
        * prompt_tokens
        * flops_per_token(
            model.n_params, n_layers=model.n_layers, context=context, d_model=model.d_model
        )
    )
    kv = kv_cache_bytes(
        model.n_layers,
        model.n_kv_heads,
        model.head_dim,
        cached_tokens + prompt_tokens,
        batch,
        size,
    )
    return StepCost(flops, model.n_params * size + kv, tokens=batch * prompt_tokens, dtype=dtype)


def diffusion_step_cost(
    model: ModelShape, n_tokens: int, batch: int = 1, dtype: str = "bf16"
) -> StepCost:
    """One diffusion / flow-matching step that updates all ``n_tokens`` of each image at once.

    FLOPs: ``batch * n_tokens * (2N + 2 * layers * n_tokens * d_model)`` (bidirectional
    attention over the image's own tokens). Bytes: every weight once plus the activations
    each layer reads and writes (``2 * batch * n_tokens * d_model`` values per layer).
    The weights are reused ``batch * n_tokens`` times per read, so the intensity grows with the
    image size: diffusion is compute-bound.
    """
    positive("n_tokens", n_tokens)
    positive("batch", batch)
    size = bytes_per_value(dtype)
    flops = (
        batch
        * n_tokens
        * flops_per_token(
            model.n_params, n_layers=model.n_layers, context=n_tokens, d_model=model.d_model
        )
    )
    weights = model.n_params * size
    activations = 2 * model.n_layers * batch * n_tokens * model.d_model * size
    return StepCost(flops, weights + activations, tokens=batch * n_tokens, dtype=dtype)
