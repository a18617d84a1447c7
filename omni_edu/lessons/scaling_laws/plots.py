"""Lesson 07's figures: the sweep with its fitted laws, IsoFLOP curves, the compute-optimal
frontier, the mixed-modal interaction, one law in compute against one per modality, and the
mixed runs predicted from total compute and from their own compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from omni_edu.lessons.scaling_laws.budget import MODALITIES
from omni_edu.lessons.scaling_laws.chinchilla import FitResult, compute_optimal_split
from omni_edu.lessons.scaling_laws.compute_law import ComputePoints, LawComparison
from omni_edu.lessons.scaling_laws.mixed_modal import BimodalFitResult
from omni_edu.lessons.scaling_laws.records import settings_of, sweep_points
from omni_edu.lessons.scaling_laws.total_compute import TotalComputeTest
from omni_edu.stats import percentile_interval

# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

UNITS = {"text": "nats/token", "image": "MSE, standardised", "audio": "MSE, standardised"}


def plot_sweep(records: Sequence[dict], fits: dict[str, FitResult] | None = None):
    """Validation loss against tokens, one panel per unimodal setting, one line per size.

    With ``fits``, the fitted law is drawn dashed through each size's points.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    settings = [s for s in MODALITIES if s in settings_of(records)]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        n, d, loss = sweep_points(records, setting)
        for k, size in enumerate(sorted(set(n))):
            here = n == size
            colour = plt.cm.viridis(k / max(1, len(set(n)) - 1))
            ax.plot(d[here], loss[here], "o-", color=colour, label=f"N = {size:,.0f}")
            if fits and setting in fits:
                grid = np.geomspace(d[here].min(), d[here].max(), 50)
                ax.plot(grid, fits[setting].predict(size, grid), "--", color=colour, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{setting} only")
        ax.set_xlabel(f"training tokens D ({setting})")
        ax.set_ylabel(f"validation loss ({UNITS[setting]})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Sweep: loss falls with parameters N and tokens D (dashed: fitted law)")
    fig.tight_layout()
    return detached(fig)


def plot_isoflops(fit: FitResult, budgets: Sequence[float], title: str = ""):
    """Predicted loss along ``C = 6 N D`` for each compute budget, minimum marked at N*."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, c in enumerate(budgets):
        n_opt, _ = fit.compute_optimal(c)
        n = float(n_opt) * np.geomspace(0.1, 10, 200)
        colour = plt.cm.plasma(k / max(1, len(budgets) - 1))
        ax.plot(n, fit.predict(n, c / (6 * n)), color=colour, label=f"C = {c:.1e} FLOPs")
        ax.plot(n_opt, fit.predict(n_opt, c / (6 * n_opt)), "o", color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N (decoder)")
    ax.set_ylabel("predicted loss")
    ax.set_title(title or "IsoFLOP curves: each budget has a best model size (dots)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return detached(fig)


def plot_frontier(fits: dict[str, FitResult], budgets: Sequence[float]):
    """Compute-optimal N*(C) and D*(C) per fit, with bootstrap bands where available."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    c = np.asarray(budgets, dtype=np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, fit in fits.items():
        n_opt, d_opt = fit.compute_optimal(c)
        for ax, value, k in ((axes[0], n_opt, 0), (axes[1], d_opt, 1)):
            (line,) = ax.plot(c, value, label=name)
            draws = [
                compute_optimal_split(c, A=row[1], B=row[2], alpha=row[3], beta=row[4])[k]
                for row in fit.bootstrap
                if np.all(np.isfinite(row)) and min(row[1:]) > 0
            ]
            if draws:
                low, high = percentile_interval(np.array(draws), 0.9)
                ax.fill_between(c, low, high, color=line.get_color(), alpha=0.2)
    for ax, what in zip(axes, ("parameters N*", "tokens D*"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs, 6ND)")
        ax.set_ylabel(f"compute-optimal {what}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal frontier (band: 90% of bootstrap fits)")
    fig.tight_layout()
    return detached(fig)


def plot_interaction(fits: dict[str, BimodalFitResult], n: Sequence[float], d: float):
    """The fitted interaction term against model size at ``d`` total tokens.

    Below zero the two modalities help each other; above, they compete.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    n = np.asarray(n, dtype=np.float64)
    for name, fit in fits.items():
        rows = fit.mixing_report(n, d)
        (line,) = ax.plot(n, [r["interaction"] for r in rows], "o-", label=name)
        ax.fill_between(
            n,
            [r["low"] for r in rows],
            [r["high"] for r in rows],
            color=line.get_color(),
            alpha=0.2,
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (decoder)")
    ax.set_ylabel("interaction (loss units)")
    ax.set_title(f"Mixing: > 0 competition, < 0 synergy (D = {d:,.0f} tokens)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return detached(fig)


def plot_compute_laws(points: ComputePoints, comparison: LawComparison):
    """Normalised loss against total training compute, every modality on one axis.

    Circles: runs of one modality; triangles: that modality's loss in a mixed run. Black
    dashed: the one law fitted to every point; coloured: each modality's own law.
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    colours = {m: plt.cm.tab10(k) for k, m in enumerate(MODALITIES)}
    modality, mixed = np.array(points.modality), np.array(["+" in s for s in points.setting])
    grid = np.geomspace(points.flops.min(), points.flops.max(), 100)
    for m in MODALITIES:
        if m not in comparison.per_modality:
            continue
        for is_mixed, marker, what in ((False, "o", "alone"), (True, "^", "in a mixed run")):
            here = (modality == m) & (mixed == is_mixed)
            if here.any():
                ax.plot(
                    points.flops[here],
                    points.loss[here],
                    marker,
                    color=colours[m],
                    alpha=0.7,
                    label=f"{m} {what}",
                )
        law = comparison.per_modality[m]
        ax.plot(grid, law.predict(grid), "-", color=colours[m], label=f"{m}'s own law")
    ax.plot(grid, comparison.one_law.predict(grid), "k--", lw=2, label="one law for all")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C of the run, all modalities (FLOPs)")
    ax.set_ylabel("loss / best constant prediction's loss")
    ax.set_title("One law in total compute, or one per modality?")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return detached(fig)


def plot_total_compute(test: TotalComputeTest, records: Sequence[dict]):
    """Per modality: its law in compute (line), its single-modality runs (circles), and each
    mixed run's loss on it drawn twice, at the run's total compute (filled triangles) and at
    its own modality's compute (open triangles). The claim puts the mixed runs on the line
    at their total compute."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    modalities = list(test.laws)
    fig, axes = plt.subplots(
        1,
        len(modalities),
        figsize=(4.6 * len(modalities), 3.8),
        squeeze=False,
        layout="constrained",
    )
    for ax, m in zip(axes[0], modalities, strict=True):
        single = [r for r in records if r["setting"] == m]
        c = np.array([r["flops"] for r in single])
        here = test.modality == m
        lo = min(c.min(), test.c_own[here].min())
        hi = max(c.max(), test.c_total[here].max())
        grid = np.geomspace(lo, hi, 100)
        ax.plot(grid, test.laws[m].predict(grid), "k-", lw=1, label=f"{m}'s law (alone)")
        ax.plot(c, [r["loss"][m] for r in single], "o", color="grey", alpha=0.6, label="alone")
        ax.plot(test.c_total[here], test.measured[here], "^", color="C3", label="mixed, at C total")
        ax.plot(
            test.c_own[here],
            test.measured[here],
            "^",
            mfc="none",
            color="C0",
            label=f"mixed, at C of its {m}",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(f"validation loss ({UNITS[m]})")
        ax.set_title(f"{m}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Mixed runs against each modality's law: at total compute or at their own?")
    return detached(fig)


def plot_mixing(records: Sequence[dict]):
    """Measured: each mixed run's loss on each of its modalities against the run of that
    modality alone (same size, same length), as a relative change, against model size.

    One panel per (mixed setting, modality), one line per run length. Above zero the mixed
    run is worse (competition), below it better (synergy).
    """
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    alone = {
        (r["setting"], r["params_nonembedding"], r["step"]): r["loss"][r["setting"]]
        for r in records
        if "+" not in r["setting"]
    }
    panels = [(s, m) for s in settings_of(records) if "+" in s for m in s.split("+")]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False, layout="constrained"
    )
    steps = sorted({r["step"] for r in records})
    for ax, (setting, m) in zip(axes[0], panels, strict=True):
        for k, length in enumerate(steps):
            rows = [r for r in records if r["setting"] == setting and r["step"] == length]
            rows = [r for r in rows if (m, r["params_nonembedding"], length) in alone]
            if not rows:
                continue
            n = np.array([r["params_nonembedding"] for r in rows], dtype=np.float64)
            change = [
                100 * (r["loss"][m] / alone[(m, r["params_nonembedding"], length)] - 1)
                for r in rows
            ]
            colour = plt.cm.viridis(k / max(1, len(steps) - 1))
            ax.plot(n, change, "o-", color=colour, label=f"{length} steps")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("parameters N (decoder)")
        ax.set_ylabel(f"{m} loss, mixed vs alone (%)")
        ax.set_title(f"{m} in {setting}")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle("Mixing, measured: above 0 the mixed run is worse on that modality")
    return detached(fig)
