"""What a sweep's records say: the points each law is fitted to, and the fits of a sweep.

A record is one run, evaluated once at its end (see :func:`~.sweeps.run_sweep`).
:func:`sweep_points` and :func:`mixed_points` give the ``(N, D, L)`` of a setting,
:func:`compute_points` every modality on one scale of compute; :func:`fit_sweep` and
:func:`fit_mixed` fit every setting at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from omni_edu.lessons.scaling_laws.budget import MODALITIES, SweepConfig
from omni_edu.lessons.scaling_laws.chinchilla import FitResult, fit_chinchilla
from omni_edu.lessons.scaling_laws.compute_law import ComputePoints
from omni_edu.lessons.scaling_laws.mixed_modal import BimodalFitResult, fit_bimodal


def past_transient(records: Sequence[dict], config: SweepConfig) -> list[dict]:
    """The runs a fit should use: all but those of the shortest budget.

    A run barely longer than its warm-up is still in the transient no power law
    describes: the model first learns the data's simplest statistics (which words are
    common, the mean image), and its loss drops far faster than later on. Kaplan et al.
    also fitted only after such an initial phase.
    """
    first = config.budgets[min(1, len(config.budgets) - 1)]
    return [r for r in records if r["step"] >= first]


def compute_points(records: Sequence[dict], baselines: dict[str, float]) -> ComputePoints:
    """Every ``(run, modality)`` of ``records`` on one scale.

    The loss is divided by its modality's ``baselines`` (:func:`modality_baselines`) and
    set against the run's total training compute (``flops``, all modalities together).
    A mixed run gives one point per modality at the same compute.
    """
    flops, loss, modality, run, setting = [], [], [], [], []
    for r in records:
        for m, value in r["loss"].items():
            if m not in baselines:
                raise ValueError(f"no baseline for modality {m!r}; got {sorted(baselines)}.")
            flops.append(r["flops"])
            loss.append(value / baselines[m])
            modality.append(m)
            run.append(f"{r['setting']} d{r['d_model']}xL{r['n_layers']} {r['step']} steps")
            setting.append(r["setting"])
    if not flops:
        raise ValueError("compute_points needs records; got none.")
    return ComputePoints(np.array(flops), np.array(loss), modality, run, setting)


def _runs_of(records: Sequence[dict], setting: str) -> tuple[list[dict], np.ndarray]:
    """The records of ``setting`` and their ``N`` (decoder parameters), or a clear error."""
    rows = [r for r in records if r["setting"] == setting]
    if not rows:
        raise ValueError(f"no records of setting {setting!r}; settings: {settings_of(records)}.")
    return rows, np.array([r["params_nonembedding"] for r in rows], dtype=np.float64)


def sweep_points(
    records: Sequence[dict], setting: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D, L)`` of a unimodal setting: decoder parameters, tokens, validation loss."""
    if setting not in MODALITIES:
        raise ValueError(f"sweep_points takes a unimodal setting {MODALITIES}; got {setting!r}.")
    rows, n = _runs_of(records, setting)
    d = np.array([r["tokens"][setting] for r in rows], dtype=np.float64)
    loss = np.array([r["loss"][setting] for r in rows], dtype=np.float64)
    return n, d, loss


def mixed_points(
    records: Sequence[dict], setting: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D_i, D_j, L)`` of a mixed setting ``"i+j"``; ``L`` is the mean of its two
    per-modality validation losses, as in Aghajanyan et al."""
    i, j = mixed_pair(setting)
    rows, n = _runs_of(records, setting)
    d_i = np.array([r["tokens"][i] for r in rows], dtype=np.float64)
    d_j = np.array([r["tokens"][j] for r in rows], dtype=np.float64)
    loss = np.array([(r["loss"][i] + r["loss"][j]) / 2 for r in rows], dtype=np.float64)
    return n, d_i, d_j, loss


def settings_of(records: Sequence[dict]) -> list[str]:
    return sorted({r["setting"] for r in records})


def mixed_pair(setting: str) -> tuple[str, str]:
    parts = setting.split("+")
    if len(parts) != 2 or not set(parts) <= set(MODALITIES):
        raise ValueError(f"a mixed setting looks like 'text+image'; got {setting!r}.")
    return parts[0], parts[1]


def fit_sweep(
    records: Sequence[dict], n_bootstrap: int = 0, seed: int = 0, progress: bool = True
) -> dict[str, FitResult]:
    """A Chinchilla fit per unimodal setting found in ``records``."""
    return {
        setting: fit_chinchilla(
            *sweep_points(records, setting), n_bootstrap=n_bootstrap, seed=seed, progress=progress
        )
        for setting in MODALITIES
        if setting in settings_of(records)
    }


def fit_mixed(
    records: Sequence[dict],
    laws: dict[str, FitResult],
    n_bootstrap: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, BimodalFitResult]:
    """The mixed-modal law of each mixed setting in ``records``, on the unimodal ``laws``."""
    fits = {}
    for setting in settings_of(records):
        if "+" not in setting:
            continue
        i, j = mixed_pair(setting)
        fits[setting] = fit_bimodal(
            *mixed_points(records, setting),
            laws[i],
            laws[j],
            n_bootstrap=n_bootstrap,
            seed=seed,
            progress=progress,
        )
    return fits
