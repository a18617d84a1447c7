"""Training throughput of our decoder against ``torch.nn.TransformerEncoder``.

Both models get the same width, depth, heads, sequence length and batch, the same
embedding table and output head, the same next-token loss, the same AdamW step and the
same autocast (bf16 on a GPU, float32 on a CPU). The torch encoder is the strongest
fair setting of it: ``norm_first=True``, ``batch_first=True``, dropout 0, a causal mask
*and* the ``is_causal=True`` hint (so it may use the causal SDPA kernel too). Its
``dim_feedforward`` is matched to our SwiGLU MLP's parameter count by default
(``--torch-ff param``: ``2 * d * ff = 3 * d * h``, so ``ff = 1.5 * h``), or ``4 * d_model``.
The torch model has no position encoding (ours has RoPE), which only favours torch.

What differs, and which way it pushes: ours has no biases (``mm`` instead of ``addmm``,
no bias gradients) and a thinner attention wrapper; it pays for RMSNorm (the CPU has no
fused kernel for its backward pass, LayerNorm has one), for rotating queries and keys
(RoPE, in real numbers: about six elementwise passes each way where a complex
multiplication takes one; ``benchmarks/rope.py`` times both) and for the SwiGLU gate's
extra elementwise work. The matmuls are the same. In eager mode on a CPU nothing fuses
those elementwise passes, and ours comes out a few percent slower; under
``torch.compile`` (``--compile``, both models compiled) they fuse into few kernels and
the ratio rises above 1. The JSON then also gives our compiled speed against the torch
encoder's *eager* speed, in case compiling happens to slow the torch encoder down on
your machine.

We time whole training steps (forward, backward, AdamW). Warm-up steps run first; then
``--repeats`` timed rounds alternate between the two models (so a noisy neighbour on a
shared machine hits both; every other round runs them in reverse order), each of
``--steps`` steps. We report the median tokens/s, the spread, the median of the
per-round ratios, the load average before and after, and an MFU estimate:

    model FLOPs per token = 6 * N + 12 * n_layers * d_model * seq   (PaLM, appendix B)

with N the matmul parameters (blocks + output head, not the embedding lookup); MFU is
achieved FLOP/s divided by a peak measured here with a large matmul in the same dtype.

Run: ``python benchmarks/throughput.py [--device cpu|cuda] [--d-model 128] ...``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.model.weights import count_parameters
from omni_edu.profiles import amp_dtype, autocast

DEFAULTS = {
    "cpu": {"d_model": 128, "layers": 4, "heads": 4, "seq": 128, "batch": 8, "steps": 3},
    "cuda": {"d_model": 256, "layers": 6, "heads": 8, "seq": 512, "batch": 64, "steps": 10},
}


class OursLM(nn.Module):
    """Embedding -> our Decoder (RoPE, SwiGLU, RMSNorm, causal SDPA) -> head."""

    def __init__(self, config: DecoderConfig, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, config.d_model)
        self.decoder = Decoder(config)
        self.head = nn.Linear(config.d_model, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.embed(ids)))


class TorchLM(nn.Module):
    """Embedding -> nn.TransformerEncoder (pre-norm, causal) -> LayerNorm -> head.

    ``bias`` and ``causal_hint`` exist for the ablations: without the hint the encoder
    gets only the explicit float mask, so attention cannot skip the upper triangle.
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        ff: int,
        vocab: int,
        bias: bool = True,
        causal_hint: bool = True,
    ) -> None:
        super().__init__()
        self.causal_hint = causal_hint
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=ff,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
            bias=bias,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model, bias=bias)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        seq = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(seq, device=ids.device)
        h = self.encoder(self.embed(ids), mask=mask, is_causal=self.causal_hint)
        return self.head(self.norm(h))


def matmul_params(model: nn.Module) -> int:
    """Parameters used in matmuls: everything except the embedding table."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embed."))


def cpu_model() -> str:
    """The processor's name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_peak_flops(
    device: torch.device, clock=time.perf_counter, repeats: int = 5
) -> tuple[float, str]:
    """Best FLOP/s of a large square matmul in the dtype training uses on ``device``."""
    dtype = amp_dtype(device) or torch.float32
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = clock()
        for _ in range(3):
            a @ b
        sync(device)
        best = min(best, (clock() - start) / 3)
    return 2 * n**3 / best, f"measured: best of {repeats} {n}x{n} {dtype} matmuls"


def make_step(model: nn.Module, ids: torch.Tensor, device: torch.device):
    """One training step (forward, backward, AdamW) as a closure."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def step() -> None:
        with autocast(device):
            logits = model(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(step, steps: int, device: torch.device, clock=time.perf_counter) -> float:
    sync(device)
    start = clock()
    for _ in range(steps):
        step()
    sync(device)
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--seq", type=int, help="tokens per sequence")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--steps", type=int, help="training steps per timed round")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--torch-ff", choices=["param", "4d"], default="param")
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also time the torch encoder without biases and without the is_causal hint",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both models (warm-up compiles)"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu = process CPU time: with --threads 1 on a CPU shared with other jobs it "
        "ignores the time spent waiting for a core (on a quiet machine both agree)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    # Unset sizes follow the device: the `cpu` profile's model on a CPU, the `gpu`
    # profile's on a GPU with longer sequences and a batch big enough to fill it.
    for key, value in DEFAULTS[device.type].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DecoderConfig(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_seq_len=args.seq
    )
    ff = 3 * config.mlp_hidden // 2 if args.torch_ff == "param" else 4 * args.d_model
    sizes = (args.d_model, args.layers, args.heads, ff, args.vocab)
    models = {"ours": OursLM(config, args.vocab), "torch_encoder": TorchLM(*sizes)}
    if args.ablations:
        models["torch_encoder_no_bias"] = TorchLM(*sizes, bias=False)
        models["torch_encoder_mask_only"] = TorchLM(*sizes, causal_hint=False)
    models = {name: model.to(device) for name, model in models.items()}
    # seq + 1 tokens so that inputs and targets are both seq long.
    ids = torch.randint(args.vocab, (args.batch, args.seq + 1), device=device)
    wrap = torch.compile if args.compile else (lambda model: model)
    steps = {name: make_step(wrap(model), ids, device) for name, model in models.items()}
    if args.compile:
        # The torch encoder's eager speed stays in the race as a baseline of its own.
        models["torch_encoder_eager"] = TorchLM(*sizes).to(device)
        steps["torch_encoder_eager"] = make_step(models["torch_encoder_eager"], ids, device)
    for step in steps.values():
        time_steps(step, args.warmup, device)

    clock = time.perf_counter if args.clock == "wall" else time.process_time
    tokens_per_round = args.batch * args.seq * args.steps
    rates: dict[str, list[float]] = {name: [] for name in models}
    load_before = os.getloadavg()
    for round_ in range(args.repeats):
        # Every other round in reverse order, so that no model always runs right after the
        # same other one (a warm cache, or a neighbour's burst, then hits both sides alike).
        order = list(steps) if round_ % 2 == 0 else list(steps)[::-1]
        for name in order:
            seconds = time_steps(steps[name], args.steps, device, clock)
            rates[name].append(tokens_per_round / seconds)
    load_after = os.getloadavg()
    ratios = {  # per round, so that both sides of a ratio saw the same machine load
        name: [a / b for a, b in zip(rates["ours"], rates[name], strict=True)]
        for name in models
        if name != "ours"
    }

    peak, peak_source = measure_peak_flops(device, clock)
    attn_flops = 12 * args.layers * args.d_model * args.seq
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "platform": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        # 1-minute load average before and after the timed rounds: above the number of
        # threads, other jobs were competing for the cores (the ratios are then noisier).
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": str(amp_dtype(device) or torch.float32),
        "sizes": {
            "d_model": args.d_model,
            "layers": args.layers,
            "heads": args.heads,
            "seq": args.seq,
            "batch": args.batch,
            "vocab": args.vocab,
            "ours_mlp_hidden": config.mlp_hidden,
            "torch_dim_feedforward": ff,
            "torch_ff_rule": "matched to SwiGLU parameter count (1.5 * mlp_hidden)"
            if args.torch_ff == "param"
            else "4 * d_model",
        },
        "compile": args.compile,
        "clock": args.clock,
        "steps_per_round": args.steps,
        "repeats": args.repeats,
        "peak_flops": peak,
        "peak_source": peak_source,
    }
    for name, model in models.items():
        flops_per_token = 6 * matmul_params(model) + attn_flops
        median = statistics.median(rates[name])
        result[name] = {
            "params": count_parameters(model),
            "tokens_per_s": round(median, 1),
            "tokens_per_s_min": round(min(rates[name]), 1),
            "tokens_per_s_max": round(max(rates[name]), 1),
            "mfu": round(median * flops_per_token / peak, 4),
        }
    for name, values in ratios.items():
        result[f"ratio_vs_{name}"] = round(statistics.median(values), 3)
    result["ratio_min"] = round(min(ratios["torch_encoder"]), 3)
    result["ratio_max"] = round(max(ratios["torch_encoder"]), 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
