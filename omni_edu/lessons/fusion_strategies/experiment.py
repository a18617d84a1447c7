"""Lesson 05's experiment: every fusion variant on both tasks at a matched budget, over several
seeds, with a depth-matched control and the blind baselines each arm must leave
(:func:`run_fusion_experiment`, :func:`fusion_setups`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from omni_edu.lessons.fusion_strategies.budget import BUDGET
from omni_edu.lessons.fusion_strategies.costs import (
    count_flops,
    inference_latency,
    training_memory,
)
from omni_edu.lessons.fusion_strategies.tasks import (
    blind_baselines,
    make_fusion_data,
    task_config,
)
from omni_edu.lessons.fusion_strategies.training import predict, train_variant
from omni_edu.model.fusion import (
    FusionConfig,
    build_fusion_model,
)
from omni_edu.profiles import Profile, get_profile
from omni_edu.report import constant_predictor
from omni_edu.train import History

TASK_NAMES = ("binding", "colour")
# Cross-attention fusion with its gates open at the start (tanh(1) = 0.76): the control that
# says whether Flamingo's closed gates, not where the media meet, hold the variant back in a
# run from scratch (in ci their gates had opened only to about 0.05 after 240 steps).
GATES_OPEN = "cross, gates open"


def experiment_settings(profile: Profile | None = None) -> dict:
    """Steps per task, batch size, data sizes and seeds of the lesson's comparison.

    Every count goes through :meth:`Profile.budget`, so the gpu dry run takes a couple of
    steps of each run at the gpu sizes.
    """
    profile = profile or get_profile()
    settings = {
        "steps": {"binding": 2 * profile.train_steps, "colour": profile.train_steps},
        "batch_size": profile.batch_size,
        "n_train": profile.n_train,
        "n_eval": profile.n_eval,
        "seeds": max(3, profile.n_seeds),
        "model": {},  # FusionConfig fields that differ from the profile's sizes
    }
    settings.update(BUDGET.get(profile.name, {}))
    # The dry run keeps the gpu shapes but a CPU must get through it in seconds: a forward
    # and backward pass of 128 gpu-sized examples alone takes minutes on a CPU.
    settings["batch_size"] = profile.budget(settings["batch_size"], dry=4)
    settings["steps"] = {t: profile.budget(n, dry=2) for t, n in settings["steps"].items()}
    settings["n_train"] = profile.budget(settings["n_train"], dry=32)
    settings["n_eval"] = profile.budget(settings["n_eval"], dry=16)
    settings["seeds"] = profile.budget(settings["seeds"], dry=1)
    settings["evals"] = profile.budget(6, dry=1)  # test-accuracy points along each run
    settings["n_probe"] = profile.budget(64, dry=4)  # examples per latency / FLOPs probe
    return settings


def fusion_config(task: str, profile: Profile | None = None, **overrides) -> FusionConfig:
    """The config the experiment builds its models from: ``task``'s under ``profile``, with
    the lesson's model sizes for that profile (``BUDGET[...]["model"]``) and ``overrides``."""
    profile = profile or get_profile()
    model = experiment_settings(profile)["model"]
    return task_config(task, profile, **{**model, **overrides})


def fusion_setups(config: FusionConfig) -> dict[str, tuple[str, dict[str, object]]]:
    """The models the lesson trains: ``label -> (variant, FusionConfig overrides)``.

    The three variants at the matched budget, and two controls: the depth-matched one,
    early fusion with only as many blocks as late fusion's decoder, the layers where late
    fusion's picture and sound meet (it has fewer parameters than late fusion); and
    cross-attention fusion with its gates open at the start (:data:`GATES_OPEN`).
    """
    mixing = config.late_decoder_layers
    return {
        "early": ("early", {}),
        "late": ("late", {}),
        "cross": ("cross", {}),
        f"early, {mixing} blocks": ("early", {"decoder_layers": mixing}),
        GATES_OPEN: ("cross", {"gate_init": 1.0}),
    }


def standard_error(accuracies: list[float], n_eval: int) -> float:
    """Standard error of a setup's mean accuracy over seeds, all scored on the same
    ``n_eval`` test items: the spread between seeds (over their number) plus the binomial
    noise of a test set that size, ``sqrt(s**2 / n + p (1 - p) / n_eval)``."""
    t = torch.tensor(accuracies, dtype=torch.float64)
    seeds = t.var().item() / len(t) if len(t) > 1 else 0.0
    p = t.mean().item()
    return (seeds + p * (1 - p) / n_eval) ** 0.5


def seed_margin(baseline: float, n_eval: int) -> float:
    """How far above ``baseline`` one run's accuracy on ``n_eval`` test items must be to
    count as having left it: two binomial standard errors of a model that scores it."""
    return 2 * (baseline * (1 - baseline) / n_eval) ** 0.5


@dataclass
class FusionResults:
    """What :func:`run_fusion_experiment` measured.

    ``runs``: one dict per (task, setup, seed) with the final test accuracy and whether the
    run's test answers were >= 95 % one class (a constant predictor).
    ``rows``: one dict per (task, setup): mean and spread over seeds, the runs that left
    the best blind baseline, and the costs. ``histories[(task, setup, seed)]``: the
    training run; ``predictions[(task, setup, seed)]``: its test answers ``(n_eval,)``.
    ``baselines[task]``: the blind baselines of :func:`~.tasks.blind_baselines`.
    """

    runs: list[dict[str, object]]
    rows: list[dict[str, object]]
    histories: dict[tuple[str, str, int], History]
    settings: dict
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: dict[tuple[str, str, int], Tensor] = field(default_factory=dict)

    def row(self, task: str, setup: str) -> dict[str, object]:
        return next(r for r in self.rows if r["task"] == task and r["setup"] == setup)

    def accuracies(self, task: str, setup: str) -> list[float]:
        """Final test accuracy of each seed."""
        return [
            float(r["accuracy"]) for r in self.runs if r["task"] == task and r["setup"] == setup
        ]

    def mean(self, task: str, setup: str) -> float:
        """Mean final test accuracy over the seeds (unrounded, unlike the table's rows)."""
        values = self.accuracies(task, setup)
        return sum(values) / len(values)

    def baseline(self, task: str) -> float:
        """The best blind baseline of ``task``: what a model that misses a modality scores."""
        return max(self.baselines[task].values())

    def standard_error(self, task: str, setup: str) -> float:
        """Standard error of ``setup``'s mean accuracy on ``task`` (:func:`standard_error`)."""
        return standard_error(self.accuracies(task, setup), self.settings["n_eval"])

    def constant(self, task: str, setup: str) -> bool:
        """Is every seed of ``setup`` a constant predictor on ``task``?"""
        runs = [r for r in self.runs if r["task"] == task and r["setup"] == setup]
        return all(r["constant"] for r in runs)


def _summary(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values)
    spread = t.std().item() if len(values) > 1 else 0.0
    return {"mean": round(t.mean().item(), 3), "std": round(spread, 3)}


def run_fusion_experiment(
    tasks: tuple[str, ...] = TASK_NAMES,
    setups: dict[str, tuple[str, dict[str, object]]] | None = None,
    seeds: int | None = None,
    progress: bool = True,
    profile: Profile | None = None,
    steps: dict[str, int] | None = None,
) -> FusionResults:
    """Train every setup on every task, over several seeds, at the same budget.

    Seed ``s`` of every setup starts from ``torch.manual_seed(s)`` and sees the same
    batches in the same order. Costs are measured once per setup, on its last trained
    model: FLOPs per example (forward), memory of one training step at the training
    batch size, trainable parameters, and latency per example of a forward pass.
    ``profile`` (default: the active one) is resolved here once and handed down;
    ``steps`` overrides the profile's steps per task (a "change one thing" run).
    """
    from tqdm.auto import tqdm

    profile = profile or get_profile()
    settings = experiment_settings(profile)
    if steps is not None:
        settings["steps"] = {**settings["steps"], **steps}
    n_seeds = settings["seeds"] if seeds is None else seeds
    setups = setups or fusion_setups(fusion_config(tasks[0], profile))
    results = FusionResults([], [], {}, {**settings, "seeds": n_seeds})
    bar = tqdm(total=len(tasks) * len(setups) * n_seeds, desc="fusion runs", disable=not progress)
    for task in tasks:
        train = make_fusion_data(task, settings["n_train"], "train", seed=0, profile=profile)
        test = make_fusion_data(task, settings["n_eval"], "test", seed=0, profile=profile)
        results.baselines[task] = blind_baselines(task, len(train), len(test))
        probe, repeats = test[: settings["n_probe"]], profile.budget(5, dry=1)
        for label, (kind, overrides) in setups.items():
            for seed in range(n_seeds):
                bar.set_postfix_str(f"{task} / {label} / seed {seed}")
                torch.manual_seed(seed)
                model = build_fusion_model(kind, fusion_config(task, profile, **overrides))
                history = train_variant(
                    model,
                    train,
                    test,
                    steps=settings["steps"][task],
                    evals=settings["evals"],
                    seed=seed,
                    batch_size=settings["batch_size"],
                    profile=profile,
                )
                answers = predict(model, test)
                results.histories[(task, label, seed)] = history
                results.predictions[(task, label, seed)] = answers
                results.runs.append(
                    {
                        "task": task,
                        "setup": label,
                        "seed": seed,
                        "accuracy": history.evals["accuracy"][-1],
                        "constant": constant_predictor(answers),
                    }
                )
                bar.update(1)
            finals = results.accuracies(task, label)
            summary = _summary(finals)
            se = results.standard_error(task, label)
            leaves = results.baseline(task) + seed_margin(results.baseline(task), len(test))
            memory = training_memory(model, train[: settings["batch_size"]])
            results.rows.append(
                {
                    "task": task,
                    "setup": label,
                    "accuracy (mean)": summary["mean"],
                    "accuracy (std)": summary["std"],
                    "± 2 s.e.": round(2 * se, 3),
                    "seeds above baseline": sum(a > leaves for a in finals),
                    "constant seeds": sum(
                        r["constant"] for r in results.runs[-n_seeds:] if r["setup"] == label
                    ),
                    "MFLOPs/example": round(count_flops(model, probe[:8]) / 1e6, 2),
                    "train memory (MiB)": round(memory.total / 2**20, 2),
                    "trainable params": model.num_parameters(trainable_only=True),
                    "latency (ms/example)": round(inference_latency(model, probe, repeats), 3),
                }
            )
            if memory.device_peak is not None:  # on a GPU: the allocator's own peak too
                results.rows[-1]["CUDA peak (MiB)"] = round(memory.device_peak / 2**20, 2)
    bar.close()
    return results
