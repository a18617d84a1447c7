"""Costs of the three fusion variants at each profile's size, and the frozen-encoder claim.

For every profile asked for (default: ci, cpu, gpu) this builds the variants of lesson 05
at that profile's sizes (no training: costs do not depend on the weights) and measures,
on one batch of the ``colour`` task at the profile's training batch size:

* forward FLOPs per example (counted from matmul shapes, ``count_flops``);
* the memory of one training step: weights + gradients + AdamW moments + saved
  activations (``training_memory``; on CUDA also the allocator's peak);
* trainable parameters;

and the saving of each freezing recipe of lesson 05 (``FREEZE_RECIPES``) against the same
model trained end to end, at batch 1, the profile's batch and 4x it. Chapter 001's claim:
"Late fusion models let you freeze the vision encoder and only train the cross-attention
layers, cutting GPU memory requirements by 40 to 60%." Its recipe is the cross-attention
variant with the media encoders and the language model frozen; the LLaVA-style row
freezes only late fusion's image encoder.

Run: ``python benchmarks/fusion_memory.py [--profiles ci cpu gpu] [--device cpu|cuda]``.
Prints one JSON object. On a CPU the bytes are counted (parameters and autograd's saved
tensors), so they are the same as on a GPU except for the allocator's workspace.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from omni_edu.lessons.fusion_strategies.costs import (
    FREEZE_RECIPES,
    count_flops,
    frozen_memory,
    training_memory,
)
from omni_edu.lessons.fusion_strategies.tasks import make_fusion_data, task_config
from omni_edu.model.fusion import VARIANTS, build_fusion_model
from omni_edu.profiles import get_profile


def measure(profile_name: str, device: torch.device, batch_size: int | None) -> dict:
    profile = get_profile(profile_name)
    size = batch_size or profile.batch_size
    batch = make_fusion_data("colour", size, "train", profile=profile)
    config = task_config("colour", profile)
    rows = {}
    for kind in VARIANTS:
        torch.manual_seed(0)
        model = build_fusion_model(kind, config).to(device)
        memory = training_memory(model, batch)
        rows[kind] = {
            "MFLOPs/example": round(count_flops(model, batch[:4]) / 1e6, 2),
            "train memory (MiB)": memory.as_mib(),
            "trainable params": model.num_parameters(trainable_only=True),
            "params": model.num_parameters(),
        }
    frozen = frozen_memory((1, size, 4 * size), profile=profile, device=device)
    savings = {
        recipe: {f"batch {r['batch']}": r["saving (%)"] for r in frozen if r["recipe"] == recipe}
        for recipe in FREEZE_RECIPES
    }
    return {
        "profile": profile_name,
        "batch_size": size,
        "seq_len": batch.seq_len,
        "variants": rows,
        "frozen": frozen,
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
