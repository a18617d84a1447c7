"""Lesson 04's race: how should OmniLM write a picture when the prompt leaves a choice?

The same decoder, data, batches and budget draw pictures from captions with five arms,
raced twice: on captions that name every attribute (the control: a picture given its
caption is nearly one picture) and on captions that leave some free ("a small circle":
any colour, anywhere). Two questions, each with its own pair of arms:

* *which head?* on pixel patches: ``linear regression`` and ``MLP regression`` (the flow
  head's own network, trained with mean squared error) against the ``flow head`` (steps,
  temperature and classifier-free guidance to choose);
* *which token?* through **one** autoencoder, lesson 03's, with and without its
  quantiser: ``discrete codes`` (a softmax, greedy or sampled) against ``flow head, latents``
  (the same flow head on the autoencoder's continuous vectors), so "codes against
  latents" compares token kinds behind the same decoder, not a lossy tokenizer against
  raw pixels.

The heads race on pixels because the autoencoder is lossy at the course's sizes (its
reconstructions are the ceiling of both of its arms, and lesson 04 prints it): on its
outputs no head could show what it adds.

Each arm draws K pictures per held-out prompt under each of its sampler settings, and
:func:`omni_edu.parts.judges.metrics.sample_metrics` scores them: fidelity, validity, coverage,
ghost mass, precision and recall. The race itself (pools, training, scoring, fronts) is the
shared :mod:`omni_edu.generation.race`, which lesson 04b runs too; this module holds lesson
04's arms and budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from omni_edu.generation.race import (
    DIRECTION,
    TEST_PROMPTS,
    TRAIN_PROMPTS,
    Arm,
    RacePools,
    fixed_share,
    pareto_front,
    race_pools,
    run_race,
    train_arm,
)

__all__ = [
    "ARMS",
    "DIRECTION",
    "SEEDS",
    "STEPS",
    "TEST_PROMPTS",
    "TRAIN_PROMPTS",
    "Arm",
    "RacePools",
    "fixed_share",
    "flow_samplers",
    "pareto_front",
    "race_pools",
    "run_race",
    "train_arm",
]

# Optimizer steps per arm and training seeds, per profile (gpu-dry cuts them through
# profile.budget). In the ci profile the decoder reads colour words only after ~500 steps;
# 900 leaves room for every head to learn the task. The cpu profile's decoder is wider and
# deeper (d_model 128, 4 layers): an arm of 1500 steps took about 110 s on 2 cores, so
# three seeds of five arms ran past the lesson's ten minutes; one seed of 1000 steps fits.
STEPS = {"ci": 900, "cpu": 1000, "gpu": 3000}
SEEDS = {"ci": 1, "cpu": 1, "gpu": 3}


def flow_samplers(steps: Sequence[int], temperatures: Sequence[float], guidance: Sequence[float]):
    """The flow head's settings: the default (8 steps, temperature 1, no guidance) first,
    then one knob at a time."""
    default = {"steps": 8, "temperature": 1.0, "guidance": 1.0}
    out = {"8 steps": default}
    out |= {f"{s} steps": {**default, "steps": s} for s in steps if s != 8}
    out |= {f"T={t}": {**default, "temperature": t} for t in temperatures if t != 1.0}
    out |= {f"CFG {w}": {**default, "guidance": w} for w in guidance if w != 1.0}
    return out


ARMS = (
    Arm("linear regression", "linear", "pixels"),
    Arm("MLP regression", "regression", "pixels"),
    Arm("flow head", "flow", "pixels", flow_samplers((1, 4, 16), (0.7,), (2.0,))),
    Arm(
        "discrete codes",
        "codes",
        "codes",
        {"greedy": {"temperature": 0.0}, "T=1": {"temperature": 1.0}},
    ),
    Arm("flow head, latents", "flow", "latents", {"8 steps": {"steps": 8}}),
)
