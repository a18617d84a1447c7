"""Rotary embeddings in real numbers (the decoder's) against complex numbers.

:func:`omni_edu.model.rope.apply_rope` rotates each pair ``(a, b)`` of a query or key in
real arithmetic, ``x * cos + turned * sin`` with ``turned = (-b, a)``. Read as the complex
number ``a + 1j * b``, the same rotation is one complex multiplication by ``cos + 1j *
sin`` (:func:`rotate_complex`), one kernel instead of about six in eager PyTorch.

Two measurements, both after checking that the two forms agree:

* ``per_call``: one rotation of the queries and keys of one attention layer, read from
  the fused QKV projection the way :class:`~omni_edu.model.transformer.Attention` reads
  them, forward only and forward + backward (microseconds; best and median of
  ``--repeats`` interleaved calls, the best being the least disturbed by other jobs);
* ``training_step``: whole training steps of the decoder of ``benchmarks/throughput.py``
  (same sizes, same loss and optimiser) with each form, in alternating rounds: tokens/s
  and the median of the per-round ratios ``real / complex``.

Run: ``python benchmarks/rope.py [--device cpu|cuda] [--compile] ...``. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
from throughput import DEFAULTS, OursLM, cpu_model, make_step, sync, time_steps

import omni_edu.model.transformer as transformer
from omni_edu.model.rope import apply_rope, rope_angles, rope_cos_sin, rope_frequencies
from omni_edu.model.transformer import DecoderConfig


def rotate_complex(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rope` as a complex multiplication: ``(a + ib) * (cos + i sin)``.

    ``x`` ``(batch, seq, heads, head_dim)``, ``cos`` and ``sin`` ``(batch, seq, 1,
    head_dim // 2)``. Complex numbers need float32 (under bf16 autocast ``x`` is bf16), and
    ``view_as_complex`` needs each pair side by side in memory.
    """
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(s % 2 for s in x.stride()[:-1]):
        x = x.contiguous()
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    rotated = pairs * torch.complex(cos.float(), sin.float())
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


FORMS = {"real": apply_rope, "complex": rotate_complex}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def per_call(
    config: DecoderConfig, batch: int, seq: int, device: torch.device, repeats: int
) -> dict[str, dict[str, float]]:
    """Microseconds per rotation of one layer's queries and keys (see the module doc)."""
    heads = config.n_heads + 2 * config.n_kv_heads
    qkv = torch.randn(batch, seq, heads * config.head_dim, device=device, requires_grad=True)
    positions = torch.arange(seq, device=device).expand(batch, seq)
    inv_freq = rope_frequencies(config.head_dim).to(device)
    cos, sin = rope_cos_sin(rope_angles(positions, inv_freq))
    n_qk = config.n_heads + config.n_kv_heads
    grad = torch.randn(batch, seq, n_qk, config.head_dim, device=device)

    def call(form: Callable, backward: bool) -> float:
        qk, _ = qkv.view(batch, seq, heads, config.head_dim).split([n_qk, heads - n_qk], dim=2)
        sync(device)
        start = time.perf_counter()
        out = form(qk, cos, sin)
        if backward:
            out.backward(grad)
        sync(device)
        return 1e6 * (time.perf_counter() - start)

    qk = qkv.detach().view(batch, seq, heads, config.head_dim)[:, :, :n_qk]
    torch.testing.assert_close(apply_rope(qk, cos, sin), rotate_complex(qk, cos, sin))
    times = {(name, kind): [] for name in FORMS for kind in ("forward", "forward_backward")}
    for _ in range(repeats):
        for name, form in FORMS.items():
            times[name, "forward"].append(call(form, backward=False))
            times[name, "forward_backward"].append(call(form, backward=True))
    return {
        f"{name}_{kind}_us": {
            "best": round(min(values), 1),
            "median": round(statistics.median(values), 1),
        }
        for (name, kind), values in times.items()
    }


def training_step(
    config: DecoderConfig, args: argparse.Namespace, device: torch.device
) -> dict[str, object]:
    """Tokens/s of whole training steps with each form (see the module doc)."""
    torch.manual_seed(0)
    model = OursLM(config, args.vocab).to(device)
    ids = torch.randint(args.vocab, (args.batch, args.seq + 1), device=device)
    steps = {}
    for name, form in FORMS.items():
        # The decoder looks apply_rope up when it runs, so the swap takes effect at once;
        # a compiled copy is traced (and fixed) with the form in place during its warm-up.
        transformer.apply_rope = form
        step = make_step(torch.compile(model) if args.compile else model, ids, device)
        time_steps(step, args.warmup, device)
        steps[name] = step
    rates: dict[str, list[float]] = {name: [] for name in FORMS}
    tokens = args.batch * args.seq * args.steps
    try:
        for name in FORMS:  # one untimed round in the timed pattern: no first-switch costs
            transformer.apply_rope = FORMS[name]
            time_steps(steps[name], 1, device)
        for round_ in range(args.repeats):
            order = list(FORMS) if round_ % 2 == 0 else list(FORMS)[::-1]
            for name in order:
                transformer.apply_rope = FORMS[name]
                seconds = time_steps(steps[name], args.steps, device, CLOCKS[args.clock])
                rates[name].append(tokens / seconds)
    finally:
        transformer.apply_rope = apply_rope
    ratios = [r / c for r, c in zip(rates["real"], rates["complex"], strict=True)]
    return {
        **{f"{name}_tokens_per_s": round(statistics.median(rates[name]), 1) for name in FORMS},
        "ratio_real_vs_complex": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    for size in ("d-model", "layers", "heads", "seq", "batch", "steps"):
        parser.add_argument(f"--{size}", type=int)
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per form")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per form")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true", help="compile the training steps")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="for the training steps; cpu = process CPU time, as in throughput.py",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    for key, value in DEFAULTS[device.type].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    config = DecoderConfig(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_seq_len=args.seq
    )
    load_before = os.getloadavg()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sizes": {k: getattr(args, k) for k in ("d_model", "layers", "heads", "seq", "batch")},
        "compile": args.compile,
        "clock": args.clock,
        "per_call": per_call(config, args.batch, args.seq, device, args.calls),
        "training_step": training_step(config, args, device),
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
