"""Does *total* compute drive a modality's loss? A held-out test on the mixed runs.

Chapter 000 says that in unified models "model performance is often driven by total compute
across all modalities". A mixed run of the sweep (``text+image``, ``text+audio``) sees, at
every step, exactly the tokens of each modality that the matching single-modality run sees,
plus the other modality's: about twice the compute for the same tokens of each. Two
predictions of its loss on modality ``m`` follow from a law ``L_m(C) = E + A / C**gamma``
fitted on the runs of ``m`` alone:

* **total compute**: ``L_m(C_total)``, the law read at the mixed run's whole compute - what
  the claim predicts (the other modality's compute counts as much as ``m``'s own);
* **own compute**: ``L_m(C_m)``, the law read at the compute of ``m``'s tokens alone - what
  a model predicts in which the other modality neither helps nor hurts ``m``.

Neither law ever saw a mixed run, so both are held-out predictions; the one with the
smaller error (``|log predicted - log measured|``) describes the mixed runs better.
:func:`total_compute_test` computes both, and a bootstrap over runs (the single-modality
runs the laws are refitted on, and the mixed runs they predict) gives the interval of the
difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from omni_edu.lessons.scaling_laws.budget import MODALITIES
from omni_edu.lessons.scaling_laws.compute_law import (
    ComputeLawResult,
    _compute_law_value_and_grad,
    _compute_theta_to_params,
    _fit_compute_theta,
    compute_law_loss,
)
from omni_edu.lessons.scaling_laws.fitting import HUBER_DELTA, check_delta, multistart
from omni_edu.stats import percentile_interval


@dataclass
class TotalComputeTest:
    """The two held-out predictions of the mixed runs, and how far each missed.

    Per ``(mixed run, modality)`` pair, ``(pairs,)`` arrays: ``modality``, ``run`` (its
    label), ``c_total`` and ``c_own`` (FLOPs), ``measured`` (validation loss),
    ``predicted_total`` = ``L_m(c_total)`` and ``predicted_own`` = ``L_m(c_own)``.
    ``laws`` holds each modality's law fitted on its single-modality runs.

    ``error_total`` / ``error_own``: mean ``|log predicted - log measured|`` over the
    pairs (about the relative error); ``difference`` = ``error_total - error_own``
    (negative: total compute predicts better), with its bootstrap interval
    ``difference_ci``; ``ratio`` = ``error_total / error_own`` and ``ratio_ci``.
    ``bias_total`` / ``bias_own``: the mean of ``log predicted - log measured`` (negative:
    the prediction is too optimistic).
    """

    laws: dict[str, ComputeLawResult]
    modality: np.ndarray
    run: list[str]
    c_total: np.ndarray
    c_own: np.ndarray
    measured: np.ndarray
    predicted_total: np.ndarray
    predicted_own: np.ndarray
    difference_ci: tuple[float, float]
    ratio_ci: tuple[float, float]
    n_single: int
    ci_level: float = 0.95

    @property
    def error_total(self) -> float:
        return float(np.abs(np.log(self.predicted_total / self.measured)).mean())

    @property
    def error_own(self) -> float:
        return float(np.abs(np.log(self.predicted_own / self.measured)).mean())

    @property
    def difference(self) -> float:
        return self.error_total - self.error_own

    @property
    def ratio(self) -> float:
        return self.error_total / self.error_own

    @property
    def bias_total(self) -> float:
        return float(np.log(self.predicted_total / self.measured).mean())

    @property
    def bias_own(self) -> float:
        return float(np.log(self.predicted_own / self.measured).mean())

    def by_modality(self) -> dict[str, dict[str, float]]:
        """Per modality: the pairs' count, both mean errors and both mean signed errors."""
        rows = {}
        for m in dict.fromkeys(self.modality.tolist()):
            here = self.modality == m
            log_t = np.log(self.predicted_total[here] / self.measured[here])
            log_o = np.log(self.predicted_own[here] / self.measured[here])
            rows[m] = {
                "pairs": int(here.sum()),
                "error_total": float(np.abs(log_t).mean()),
                "error_own": float(np.abs(log_o).mean()),
                "bias_total": float(log_t.mean()),
                "bias_own": float(log_o.mean()),
            }
        return rows

    def summary(self) -> str:
        """The laws, the errors per modality and the difference with its interval."""
        level = f"{round(100 * self.ci_level)}%"
        n_runs = len(set(self.run))
        # The laws' parameters are not quoted: only their predictions are tested here, and
        # over a narrow range of compute a law's E and A trade off against each other.
        lines = [
            f"laws L_m(C) = E + A / C^gamma fitted on {self.n_single} single-modality runs, "
            f"predicting {len(self.run)} (run, modality) pairs of {n_runs} mixed runs:"
        ]
        lines.append(f"  {'':>5}  {'pairs':>5} {'|error|, C_total':>17} {'|error|, C_own':>15}")
        for m, row in self.by_modality().items():
            lines.append(
                f"  {m:>5}  {row['pairs']:>5} {100 * row['error_total']:>16.1f}% "
                f"{100 * row['error_own']:>14.1f}%"
            )
        lo, hi = self.difference_ci
        lines.append(
            f"  all pairs: {100 * self.error_total:.1f}% with C_total, {100 * self.error_own:.1f}% "
            f"with C_own; difference {100 * self.difference:+.1f} points ({level} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}])"
        )
        return "\n".join(lines)


def _single_and_mixed(records: Sequence[dict]) -> tuple[dict[str, list[dict]], list[dict]]:
    single = {m: [r for r in records if r["setting"] == m] for m in MODALITIES}
    single = {m: rows for m, rows in single.items() if rows}
    mixed = [r for r in records if "+" in r["setting"]]
    return single, mixed


def total_compute_test(
    records: Sequence[dict],
    *,
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    delta: float = HUBER_DELTA,
    seed: int = 0,
    progress: bool = True,
) -> TotalComputeTest:
    """Predict every mixed run's per-modality loss from total compute and from own compute.

    Args:
        records: sweep records (:func:`~.sweeps.run_sweep`), one per run, with
            ``flops`` (all modalities) and ``flops_by_modality``; single-modality runs
            train the laws, mixed runs are predicted.
        n_bootstrap: resamples for the interval: each resamples the single-modality runs
            of every modality (with replacement) and refits their laws, and resamples the
            mixed runs that are predicted.
        ci_level, delta, seed, progress: the interval's level, the Huber threshold of the
            fits, the resampling seed, a progress bar.

    Raises ``ValueError`` when a modality of a mixed run has fewer than 4 runs of its own
    (a 3-parameter law needs more points than parameters) or there is no mixed run.
    """
    delta = check_delta(delta)
    single, mixed = _single_and_mixed(records)
    if not mixed:
        raise ValueError("total_compute_test needs mixed runs (settings like 'text+image').")
    pairs = [(r, m) for r in mixed for m in r["loss"]]
    for m in {m for _, m in pairs}:
        if len(single.get(m, [])) < 4:
            raise ValueError(
                f"modality {m!r} needs at least 4 single-modality runs to fit its law; "
                f"got {len(single.get(m, []))}."
            )
    modalities = sorted({m for _, m in pairs}, key=MODALITIES.index)
    logs = {
        m: (
            torch.tensor(np.log([r["flops"] for r in single[m]]), dtype=torch.float64),
            torch.tensor(np.log([r["loss"][m] for r in single[m]]), dtype=torch.float64),
        )
        for m in modalities
    }
    modality = np.array([m for _, m in pairs])
    run_names = [
        f"{r['setting']} d{r['d_model']}xL{r['n_layers']} {r['step']} steps" for r, _ in pairs
    ]
    c_total = np.array([r["flops"] for r, _ in pairs], dtype=np.float64)
    c_own = np.array([r["flops_by_modality"][m] for r, m in pairs], dtype=np.float64)
    measured = np.array([r["loss"][m] for r, m in pairs], dtype=np.float64)
    run_of = np.array([mixed.index(r) for r, _ in pairs])

    thetas = {m: _fit_compute_theta(*logs[m], delta, 4)[0] for m in modalities}

    def predictions(params: dict[str, dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        total, own = np.empty(len(pairs)), np.empty(len(pairs))
        for m in modalities:
            here = modality == m
            total[here] = compute_law_loss(c_total[here], **params[m])
            own[here] = compute_law_loss(c_own[here], **params[m])
        return total, own

    laws = {}
    for m in modalities:
        value = _compute_law_value_and_grad(*logs[m], delta)(thetas[m])[0]
        laws[m] = ComputeLawResult(
            _compute_theta_to_params(thetas[m]), float(value), len(single[m])
        )
    predicted_total, predicted_own = predictions({m: laws[m].params for m in modalities})

    gen = np.random.default_rng(seed)
    differences, ratios = [], []
    log_measured = np.log(measured)
    for _ in tqdm(
        range(n_bootstrap), desc="bootstrap over runs", disable=not progress, leave=False
    ):
        params = {}
        for m in modalities:
            # A resample's optimum lies near the full fit's: one L-BFGS run from there.
            idx = torch.as_tensor(gen.integers(0, len(single[m]), len(single[m])))
            log_c, log_l = logs[m]
            objective = _compute_law_value_and_grad(log_c[idx], log_l[idx], delta)
            params[m] = _compute_theta_to_params(
                multistart(objective, thetas[m][None], 1, delta)[0]
            )
        total, own = predictions(params)
        chosen = gen.integers(0, len(mixed), len(mixed))
        rows = np.concatenate([np.flatnonzero(run_of == k) for k in chosen])
        e_total = np.abs(np.log(total[rows]) - log_measured[rows]).mean()
        e_own = np.abs(np.log(own[rows]) - log_measured[rows]).mean()
        differences.append(e_total - e_own)
        ratios.append(e_total / e_own)

    def interval(x: list[float]) -> tuple[float, float]:
        if not x:
            return (float("nan"), float("nan"))
        lo, hi = percentile_interval(np.array(x), ci_level)
        return float(lo), float(hi)

    return TotalComputeTest(
        laws=laws,
        modality=modality,
        run=run_names,
        c_total=c_total,
        c_own=c_own,
        measured=measured,
        predicted_total=predicted_total,
        predicted_own=predicted_own,
        difference_ci=interval(differences),
        ratio_ci=interval(ratios),
        n_single=sum(len(single[m]) for m in modalities),
        ci_level=ci_level,
    )
