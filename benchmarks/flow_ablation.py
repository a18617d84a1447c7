"""Why the flow heads of lesson 06 sat at chance, and what each fix buys (issue 18).

Trains the any-to-any model (all six directions, the capstone's data) with flow heads for
pictures and sounds under the capstone's recipe, then leaves one fix out at a time, and
prints one JSON line per row: the attribute accuracy of every direction on fully
specified prompts (the judges of the course cache), the weights, the final losses and the
training time. A linear-head model with the same budget is the baseline row.

    OMNI_PROFILE=ci python benchmarks/flow_ablation.py               # every row, seed 0
    OMNI_PROFILE=ci python benchmarks/flow_ablation.py --rows recipe --seeds 0 1 2

Rows are run one after another on one torch thread; expect about two minutes per row in
the ci profile on a quiet core. (The recipe drew uniform times until this ablation found
logit-normal ones better over three seeds; the row "uniform times" now measures that.)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from omni_edu.parts import any_to_any as a2a
from omni_edu.parts.judges import judges
from omni_edu.train import EMA

# Each row: (changes to the recipe's model config, changes to training, changes to sampling).
ROWS: dict[str, tuple[dict, dict, dict]] = {
    "recipe": ({}, {}, {}),
    "no time shift": ({"flow_time_shift": 1.0}, {}, {}),
    "old loss weights": ({}, {"weights": "old"}, {}),
    "pixels in [-1, 1]": ({"image_scale": (0.5, 0.5)}, {}, {}),
    "narrow head (d_model wide, 2 blocks)": ({"head_width": None, "head_depth": 2}, {}, {}),
    "half the updates": ({}, {"steps": 0.5}, {}),
    "EMA 0.999": ({}, {"ema": 0.999}, {}),
    "uniform times": ({"flow_time_sampling": "uniform"}, {}, {}),
    "16 noise draws": ({"flow_repeats": 16}, {}, {}),
    "lr 1e-3": ({}, {"lr": 1e-3}, {}),
    "temperature 0.7": ({}, {}, {"temperature": 0.7}),
    "linear heads": ({}, {"heads": "linear"}, {}),
}


def old_weights(data: a2a.AnyToAnyData, config) -> dict[str, float]:
    """The formula the course used before: 1 / (variance / scale**2 + 1) for a flow head."""
    weights = {"text": 1.0}
    for name, tokens in (("image", data.patches), ("audio", data.audio)):
        scale = config.head_config(name).scale
        variance = tokens.reshape(-1, tokens.shape[-1]).var(0).mean().item()
        weights[name] = float(f"{1 / (variance / scale**2 + 1):.2g}")
    return weights


def run(row: str, seed: int) -> dict:
    model_changes, train_changes, sample_changes = ROWS[row]
    recipe = a2a.capstone_recipe()
    data, test = a2a.capstone_data(recipe)
    heads = (train_changes.get("heads", "flow"),) * 2
    overrides = {**(a2a.FLOW_HEAD if heads[0] == "flow" else {}), **model_changes}
    if overrides.get("head_width", 0) is None:
        overrides.pop("head_width")
    weights = a2a.balanced_loss_weights(data, *heads, **overrides)
    if train_changes.get("weights") == "old":
        weights = old_weights(data, a2a.model_config(data, None, None, *heads, **overrides))
    model = a2a.build_model(data, seed, weights, None, *heads, **overrides)
    ema = EMA(model, train_changes["ema"]) if "ema" in train_changes else None
    unified = recipe.stages[0]
    steps = round(unified.steps * train_changes.get("steps", 1.0))
    start = time.perf_counter()
    history = a2a.train_stage(
        model,
        data,
        unified.mix,
        steps,
        seed,
        lr=train_changes.get("lr", 3e-3),
        batch_size=recipe.batch_size,
        progress=False,
        ema=ema,
    )
    seconds = time.perf_counter() - start
    if ema is not None:
        ema.copy_to(model)
    options = {"steps": 8, "generator": torch.Generator().manual_seed(0), **sample_changes}
    scores = a2a.score_directions(model, test, judges(verbose=False).model, **options)
    generating = [d for d in a2a.DIRECTIONS if not d.endswith("->text")]
    return {
        "row": row,
        "seed": seed,
        "profile": data.profile.name,
        "steps": steps,
        "weights": weights,
        "scores": {d: round(v, 3) for d, v in scores.items()},
        "generating_mean": round(sum(scores[d] for d in generating) / len(generating), 3),
        "final_losses": {k: round(history.final(k), 4) for k in history.losses},
        "train_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        for row in args.rows:
            print(json.dumps(run(row, seed)), flush=True)


if __name__ == "__main__":
    main()
