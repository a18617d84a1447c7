"""Costs of the three fusion variants at each profile's size, and the frozen-encoder claim.

For every profile asked for (default: ci, cpu, gpu) this builds the variants of lesson 05
at that profile's sizes (no training: costs do not depend on the weights) and measures,
on one batch of the ``colour`` task at the profile's training batch size:

* forward FLOPs per example (counted from matmul shapes, ``count_flops``);
* the memory of one training step: weights + gradients + AdamW moments + saved
  activations (``training_memory``; on CUDA also the allocator's peak);
* trainable parameters;

and, for late fusion, the saving from freezing the image encoder and both encoders:
the chapter's "a frozen vision encoder cuts training memory by 40-60 %".

Run: ``python benchmarks/fusion_memory.py [--profiles ci cpu gpu] [--device cpu|cuda]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace

import torch

from omni_edu.fusion_tasks import count_flops, make_fusion_data, task_config, training_memory
from omni_edu.model.fusion import MEDIA, VARIANTS, build_fusion_model
from omni_edu.profiles import get_profile


def measure(profile_name: str, device: torch.device, batch_size: int | None) -> dict:
    profile = get_profile(profile_name)
    size = batch_size or profile.batch_size
    batch = make_fusion_data("colour", size, "train", profile=profile)
    config = task_config("colour", profile)
    setups = {kind: config for kind in VARIANTS}
    setups["late, frozen image"] = replace(config, frozen_encoders=("image",))
    setups["late, frozen image+audio"] = replace(config, frozen_encoders=MEDIA)
    rows = {}
    for name, cfg in setups.items():
        torch.manual_seed(0)
        model = build_fusion_model(name.split(",")[0], cfg).to(device)
        memory = training_memory(model, batch)
        rows[name] = {
            "MFLOPs/example": round(count_flops(model, batch[:4]) / 1e6, 2),
            "train memory (MiB)": memory.as_mib(),
            "trainable params": model.num_parameters(trainable_only=True),
            "params": model.num_parameters(),
        }
    end_to_end = rows["late"]["train memory (MiB)"]["total"]
    savings = {
        name: round(100 * (1 - rows[name]["train memory (MiB)"]["total"] / end_to_end), 1)
        for name in ("late, frozen image", "late, frozen image+audio")
    }
    return {
        "profile": profile_name,
        "batch_size": size,
        "seq_len": batch.seq_len,
        "variants": rows,
        "frozen saving (%)": savings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["ci", "cpu", "gpu"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = [measure(name, device, args.batch_size) for name in args.profiles]
    print(
        json.dumps(
            {
                "device": str(device),
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
