"""How fast OmniWorld generates data on this machine: samples per second, printed as JSON.

    python benchmarks/omniworld_speed.py --profile ci --n 2000 --threads 1

Each stage is timed separately (best of ``--repeats`` runs): pictures, sound + log-mel
features, captions + questions, and the whole ``OmniWorld.sample`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

import torch

from omni_edu.data import (
    OmniWorld,
    ask,
    caption,
    log_mel,
    render_images,
    sample_attributes,
    synthesize_audio,
    tensor_to_scenes,
)
from omni_edu.profiles import get_profile


def best_rate(fn, n: int, repeats: int) -> dict[str, float]:
    """Samples per second of the fastest of ``repeats`` runs of ``fn`` (one batch of n),
    by wall clock and by CPU time of this process. On a shared machine the CPU-time rate
    is the fairer "one core" number; on an idle one the two agree."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return {"wall": round(n / wall, 1), "cpu": round(n / cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--n", type=int, default=2000, help="samples per batch")
    parser.add_argument("--n-objects", type=int, nargs=2, default=(1, 3))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = one core)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    world = OmniWorld("train", seed=0, profile=profile, n_objects=tuple(args.n_objects))
    generator = torch.Generator().manual_seed(0)
    attributes, mask = sample_attributes(args.n, world.n_objects, "train", generator)
    seconds = profile.audio_seconds

    def sound() -> None:
        waveforms = synthesize_audio(attributes, mask, profile.sample_rate, seconds, generator)
        log_mel(waveforms, world.mel_config)

    def text() -> None:
        rng = random.Random(0)
        for scene in tensor_to_scenes(attributes, mask):
            caption(scene, rng)
            ask(scene, rng)

    n, repeats = args.n, args.repeats
    result = {
        "benchmark": "omniworld_speed",
        "profile": profile.name,
        "image_size": profile.image_size,
        "sample_rate": profile.sample_rate,
        "n_objects": list(world.n_objects),
        "batch": n,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "samples_per_s": {  # {"wall": ..., "cpu": ...} per stage
            "images": best_rate(
                lambda: render_images(attributes, mask, profile.image_size, generator), n, repeats
            ),
            "audio_and_mels": best_rate(sound, n, repeats),
            "captions_and_questions": best_rate(text, n, repeats),
            "full_sample": best_rate(lambda: world.sample(n), n, repeats),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
