"""What quantiser dropout costs each path of the course's tokenizers, and which quantiser.

The course's tokenizers (``omni_edu.parts.tokenizers``) are one autoencoder with two paths
through one decoder: code ids (the quantiser) and continuous latents (the quantiser
skipped). They are trained with *quantiser dropout*: a share of every batch skips the
quantiser. This benchmark trains the variants of the recipe that decide it, for pictures
and sounds, over several seeds, and scores both paths of each on held-out single-object
scenes with the course's judges (``omni_edu.parts.tokenizers.path_scores``):

* ``vq256`` - VQ with K = 256 codes (EMA, k-means, restart) at dropout 0, 0.1, 0.25, 0.5;
* ``fsq64`` - FSQ (4, 4, 4) at the same shares;
* ``continuous`` and ``continuous d=3`` - the same autoencoder without a quantiser, with
  8 numbers per token (the width of VQ's codes) or 3 (FSQ (4, 4, 4)'s).

Dropout 0 is the quantiser-only model; ``continuous`` (or ``continuous d=3``) the
continuous autoencoder of the same size. Then it applies the two rules that were fixed
before the first run (``RULES``) and prints what they choose.
``omni_edu.parts.tokenizers.TOKENIZER_SETTINGS`` follows that choice.

Run: ``python benchmarks/tokenizer_paths.py [--profiles ci cpu] [--seeds 0 1 2]
[--modalities image audio] [--n-test 1024] [--runs runs.jsonl]``. Each finished run is
appended to ``--runs`` (a run already there is not repeated, so an interrupted sweep
resumes); the summary is one JSON object on stdout. Slow: in the cpu profile one picture
tokenizer trains for about 100 s on one core of a laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from omni_edu.parts.judges import judges
from omni_edu.parts.tokenizers import latent_stats, path_scores, scene_tensors, train_tokenizer
from omni_edu.profiles import get_profile

SHARES = (0.0, 0.1, 0.25, 0.5)
VARIANTS: dict[str, dict] = {
    **{f"vq256 p={p}": {"quantizer_dropout": p} for p in SHARES},
    **{
        f"fsq64 p={p}": {"quantizer": "fsq", "fsq_levels": (4, 4, 4), "quantizer_dropout": p}
        for p in SHARES
    },
    # the continuous autoencoder as wide as VQ's codes (8) and as FSQ (4, 4, 4)'s (3)
    "continuous": {"quantizer": "none", "quantizer_dropout": 0.0},
    "continuous d=3": {"quantizer": "none", "quantizer_dropout": 0.0, "code_dim": 3},
}
TIE = 0.01  # attribute accuracy: closer than this counts as equal
RULES = (
    "Rule 1 (which quantiser, per modality): VQ K=256 against FSQ 64 (4,4,4), both at "
    "dropout 0; the quantised path's attribute accuracy averaged over seeds, then over "
    "profiles; ahead by more than 0.01 wins, else the lower mean MSE. Rule 2 (dropout "
    "share, for the winner): the largest of 0.1, 0.25, 0.5 whose quantised-path accuracy "
    "(seed mean) is within 0.01 of share 0 in every profile; if none, the share with the "
    "smallest loss (mean over profiles)."
)


def run_one(modality: str, profile_name: str, seed: int, variant: str, n_test: int) -> dict:
    """Train one variant and score both of its paths on ``n_test`` held-out scenes."""
    profile = get_profile(profile_name)
    judge_part = judges(profile, verbose=False).model
    judge = judge_part.image if modality == "image" else judge_part.audio
    field = "images" if modality == "image" else "mels"
    test = scene_tensors("test", n_test, profile)
    data = getattr(test, field)
    model, extra = train_tokenizer(
        modality, profile, seed=seed, progress=False, **VARIANTS[variant]
    )
    model.cpu()
    stats = latent_stats(model, data)
    row = {
        "modality": modality,
        "profile": profile_name,
        "seed": seed,
        "variant": variant,
        "latent_dim": model.latent_dim,
        "latent_mean": statistics.fmean(stats["mean"]),
        "latent_std": statistics.fmean(stats["std"]),
        "train_recon": extra["train_recon"],
    }
    for path, quantize in (("quantised", True), ("continuous", False)):
        if path == "quantised" and model.vocab_size is None:
            continue
        scores = path_scores(model, data, judge, test.attributes, quantize=quantize)
        row[f"{path}_mse"], row[f"{path}_acc"] = scores["recon_mse"], scores["attr_acc"]
    return row


def _seed_means(runs: list[dict]) -> dict[str, float]:
    """Means over the seeds of one variant, and the spread of its quantised accuracy."""
    keys = [k for k in runs[0] if k.endswith(("_mse", "_acc", "latent_mean", "latent_std"))]
    means = {k: statistics.fmean(r[k] for r in runs) for k in keys}
    accs = [r["quantised_acc"] for r in runs if "quantised_acc" in r]
    means["quantised_acc_spread"] = max(accs) - min(accs) if accs else float("nan")
    return {"seeds": len(runs), **means}


def choose(means: dict[str, dict[str, dict]], profiles: list[str]) -> dict:
    """Apply the two rules (``RULES``) to one modality's seed means per profile."""

    def over_profiles(variant: str, key: str) -> float:
        return statistics.fmean(means[p][variant][key] for p in profiles)

    candidates = {"vq256": "vq256 p=0.0", "fsq64": "fsq64 p=0.0"}
    acc = {name: over_profiles(v, "quantised_acc") for name, v in candidates.items()}
    mse = {name: over_profiles(v, "quantised_mse") for name, v in candidates.items()}
    if abs(acc["vq256"] - acc["fsq64"]) > TIE:
        winner = max(acc, key=acc.get)
    else:
        winner = min(mse, key=mse.get)
    base = candidates[winner]
    loss = {  # what each share costs the quantised path, per profile
        share: {
            prof: means[prof][base]["quantised_acc"]
            - means[prof][f"{winner} p={share}"]["quantised_acc"]
            for prof in profiles
        }
        for share in SHARES[1:]
    }
    qualifying = [share for share, by in loss.items() if max(by.values()) <= TIE]
    mean_loss = {share: statistics.fmean(by.values()) for share, by in loss.items()}
    share = max(qualifying) if qualifying else min(mean_loss, key=mean_loss.get)
    return {
        "quantiser": winner,
        "quantised_acc": acc,
        "quantised_mse": mse,
        "share": share,
        "share_qualified": bool(qualifying),
        "quantised_acc_loss_by_share": loss,
    }


def summarise(rows: list[dict], profiles: list[str]) -> dict:
    """Seed means per (modality, profile, variant) and what the two rules choose."""
    grouped: dict = {}
    for r in rows:
        key = (r["modality"], r["profile"], r["variant"])
        grouped.setdefault(key, []).append(r)
    means: dict = {}
    for (modality, profile, variant), runs in grouped.items():
        means.setdefault(modality, {}).setdefault(profile, {})[variant] = _seed_means(runs)
    summary: dict = {"rules": RULES, "means": means, "choice": {}}
    for modality, by_profile in means.items():
        needed = [f"{q} p={p}" for q in ("vq256", "fsq64") for p in SHARES]
        if all(v in by_profile.get(p, {}) for p in profiles for v in needed):
            summary["choice"][modality] = choose(by_profile, profiles)
    return summary


def machine() -> str:
    """The processor's name (from /proc/cpuinfo where there is one) and the core count."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores, one thread per run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["ci", "cpu"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--modalities", nargs="+", default=["image", "audio"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--n-test", type=int, default=1024)
    parser.add_argument("--runs", type=Path, default=Path("tokenizer_paths_runs.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per run: the numbers do not depend on the machine's load
    done = []
    if args.runs.exists():
        done = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    seen = {(r["modality"], r["profile"], r["seed"], r["variant"]) for r in done}
    for profile in args.profiles:
        for modality in args.modalities:
            for seed in args.seeds:
                for variant in args.variants:
                    if (modality, profile, seed, variant) in seen:
                        continue
                    row = run_one(modality, profile, seed, variant, args.n_test)
                    done.append(row)
                    with args.runs.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
    rows = [r for r in done if r["profile"] in args.profiles and r["modality"] in args.modalities]
    summary = summarise(rows, args.profiles)
    summary["machine"] = machine()
    summary["n_test"] = args.n_test
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
