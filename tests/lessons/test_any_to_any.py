"""Lesson 06: the rule that chooses the capstone's heads, fixed before any run."""

import math

import torch

from omni_edu.lessons.any_to_any import heads
from omni_edu.parts.judges.metrics import Metric


def results(fidelity: float, validity: float, tv: float) -> dict:
    """Sample metrics of one candidate, the same in every direction."""

    def metric(name, value):
        return Metric(name, torch.full((4,), value))

    out = {}
    for direction in heads.GENERATING:
        out[direction, "full"] = {"fidelity": metric("fidelity", fidelity)}
        out[direction, "open"] = {
            "validity": metric("validity", validity),
            "coverage_tv": metric("coverage_tv", tv),
        }
    return out


def test_a_modality_scores_fidelity_validity_and_coverage_alike():
    scores = heads.modality_scores(results(0.9, 0.6, 0.3))
    assert math.isclose(scores["image"], (0.9 + 0.6 + 0.7) / 3, rel_tol=1e-6)
    assert scores["image"] == scores["audio"]


def test_the_simpler_head_keeps_its_place_unless_clearly_beaten():
    linear = heads.modality_scores(results(0.95, 0.2, 0.7))  # the mean: clean only when decided
    flow = heads.modality_scores(results(0.90, 0.8, 0.3))  # samples: valid and diverse
    assert heads.choose({"linear": linear, "flow": flow}, "linear") == {
        "image": "flow",
        "audio": "flow",
    }
    close = {m: v + heads.TIE / 2 for m, v in linear.items()}  # within the tie margin
    assert heads.choose({"linear": linear, "flow": close}, "linear")["image"] == "linear"
    worse = {m: v - 0.1 for m, v in linear.items()}
    assert heads.choose({"linear": linear, "flow": worse}, "linear")["audio"] == "linear"
