"""Helper of ``benchmarks/gpu_check.sh``: a short MFU measurement, and the one JSON.

``python benchmarks/gpu_check.py mfu`` trains the course's decoder at the ``gpu``
profile's width and depth with the course's one training loop (``omni_edu.train.fit``:
autocast, and the gradient scaler under fp16) for a few steps, and reports tokens per
second and model FLOPs utilisation (MFU): ``6 * trainable parameters * tokens`` per second
(:func:`omni_edu.train.run_stats`), divided by the device's datasheet peak for the dtype
(when :mod:`omni_edu.cost` lists the device) and by a peak measured with a large matmul.

``python benchmarks/gpu_check.py merge ...`` joins the lesson runs, the throughput
benchmark and the MFU measurement into one JSON, with one line per lesson: wall time,
peak memory and MFU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from throughput import OursLM, measure_peak_flops

from omni_edu import train
from omni_edu.model.transformer import DecoderConfig
from omni_edu.profiles import amp_dtype, get_device, get_profile
from omni_edu.tools.machine import machine_info
from omni_edu.tools.run_lessons import datasheet_peak


@dataclass
class TokenBatch:
    """Token ids with a mask of real tokens, so that run_stats counts every token."""

    ids: torch.Tensor  # (batch, seq + 1) int64
    real: torch.Tensor  # (batch, seq) bool, all True: no padding here

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.ids.to(device), self.real.to(device))


def measure_mfu(profile_name: str, seq: int, batch: int, steps: int, warmup: int) -> dict:
    """Train the decoder for ``warmup`` then ``steps`` steps; MFU of the timed steps."""
    profile = get_profile(profile_name)
    device = get_device(profile)
    vocab = 512
    config = DecoderConfig(
        d_model=profile.d_model,
        n_layers=profile.n_layers,
        n_heads=profile.n_heads,
        max_seq_len=seq,
    )
    torch.manual_seed(0)
    model = OursLM(config, vocab)
    ids = torch.randint(vocab, (batch, seq + 1))
    data = TokenBatch(ids, torch.ones(batch, seq, dtype=torch.bool))

    def loss_fn(m: torch.nn.Module, b: TokenBatch) -> dict[str, torch.Tensor]:
        logits = m(b.ids[:, :-1])
        return {"loss": F.cross_entropy(logits.flatten(0, 1).float(), b.ids[:, 1:].flatten())}

    settings = {"device": str(device), "progress": False, "log_every": max(1, steps)}
    train.fit(model, loss_fn, lambda step: data, steps=warmup, desc="warm-up", **settings)
    before = train.run_stats()
    train.fit(model, loss_fn, lambda step: data, steps=steps, desc="timed", **settings)
    after = train.run_stats()
    seconds = after["seconds"] - before["seconds"]
    flops = after["flops"] - before["flops"]
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype(device), "fp32")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    achieved = flops / seconds
    sheet = datasheet_peak(name, dtype)
    measured, how = measure_peak_flops(device)
    return {
        "device": name,
        "dtype": dtype,
        "sizes": {"d_model": config.d_model, "layers": config.n_layers, "seq": seq, "batch": batch},
        "steps": steps,
        "tokens_per_s": batch * seq * steps / seconds,
        "achieved_flops_per_s": achieved,
        "datasheet_peak_flops_per_s": sheet,
        "mfu_datasheet": achieved / sheet if sheet else None,
        "measured_peak_flops_per_s": measured,
        "measured_peak_how": how,
        "mfu_measured_peak": achieved / measured,
    }


def merge(lessons: Path, throughput: Path, mfu: Path, wall_s: float, budget_s: float) -> dict:
    """One JSON: per-lesson wall time, peak memory and MFU, then the two benchmarks."""
    report = json.loads(lessons.read_text())
    rows = []
    for run in report["lessons"]:
        stats = run["stats"]
        rows.append(
            {
                "lesson": Path(run["notebook"]).stem,
                "ok": run["ok"],
                "wall_s": run["wall_s"],
                "peak_cuda_mib": stats.get("peak_cuda_mib"),
                "peak_rss_mib": stats.get("peak_rss_mib"),
                "train_steps": stats.get("steps"),
                "train_s": stats.get("seconds"),
                "mfu": stats.get("mfu"),
                "mfu_peak_source": stats.get("peak_source"),
                # Stopped at the end of its share of the budget: not a bug, a lesson too
                # long for a 10-minute check (its wall time is a lower bound).
                "over_budget": bool(run["error"] and "ran past" in run["error"]),
                "error": run["error"],
            }
        )
    return {
        "profile": report["profile"],
        "machine": report["machine"],
        "date": report["date"],
        "total_wall_s": round(wall_s, 1),
        "within_budget": wall_s <= budget_s if budget_s else None,
        "budget_s": budget_s or None,
        "lessons": rows,
        "lessons_wall_s": report["total_wall_s"],
        "throughput": json.loads(throughput.read_text()) if throughput.exists() else None,
        "mfu_check": json.loads(mfu.read_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mfu", help="a short training run of the decoder; prints JSON")
    m.add_argument("--profile", default="gpu")
    m.add_argument("--seq", type=int, default=512)
    m.add_argument("--batch", type=int, default=64)
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--warmup", type=int, default=5)
    j = sub.add_parser("merge", help="join the parts into one JSON; prints it")
    j.add_argument("--lessons", type=Path, required=True)
    j.add_argument("--throughput", type=Path, required=True)
    j.add_argument("--mfu", type=Path, required=True)
    j.add_argument("--started", type=float, required=True, help="time.time() at the start")
    j.add_argument("--budget", type=float, default=600, help="seconds the check may take")
    args = parser.parse_args()
    if args.command == "mfu":
        result = measure_mfu(args.profile, args.seq, args.batch, args.steps, args.warmup)
        result["machine"] = machine_info()
    else:
        wall = time.time() - args.started
        result = merge(args.lessons, args.throughput, args.mfu, wall, args.budget)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
