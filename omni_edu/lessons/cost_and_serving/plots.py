"""Lesson 08's other figures: a roofline with measured steps on it, and the distribution of
job completion times of simulated deployments."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from omni_edu import cost
from omni_edu.viz.plots import detached


def roofline_figure(
    device: cost.Hardware, points: dict[str, cost.StepCost], dtype: str = "fp32"
) -> Figure:
    """The roofline of ``device`` (log-log) with one dot per named :class:`~omni_edu.cost.StepCost`.

    x: arithmetic intensity (FLOP per byte); y: attainable FLOP/s =
    ``min(peak, intensity * bandwidth)``. Dots left of the ridge are memory-bound. Returns
    the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    if not points:
        raise ValueError("points should name at least one StepCost to place on the roofline")
    peak, bandwidth = device.flops(dtype), device.mem_bandwidth
    intensities = [p.intensity for p in points.values()]
    lo = min(min(intensities), device.ridge_point(dtype)) / 10
    hi = max(max(intensities), device.ridge_point(dtype)) * 10
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.loglog(x, np.minimum(peak, x * bandwidth), color="black", label=f"{device.name} roof")
    ax.axvline(device.ridge_point(dtype), color="0.6", linestyle=":", label="ridge point")
    for (label, p), marker in zip(points.items(), "osD^v<>ph*", strict=False):
        ax.loglog(
            p.intensity, min(peak, p.intensity * bandwidth), marker, markersize=8, label=label
        )
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel(f"attainable FLOP/s ({dtype})")
    ax.set_title(f"Roofline of {device.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return detached(fig)


def jct_figure(results: list, title: str = "Job completion time") -> Figure:
    """Cumulative distribution of job completion times, one curve per result.

    ``results``: objects with ``.jct`` (seconds) and ``.name`` or ``.mode``, such as
    :class:`~.queues.ServingResult` and :class:`~.real_run.RealRunResult`.
    Returns the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    if not results:
        raise ValueError("results should hold at least one run")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for r in results:
        jct = np.sort(np.asarray(r.jct)) * 1e3
        label = getattr(r, "name", None) or getattr(r, "mode", "run")
        p99 = np.percentile(jct, 99)
        ax.plot(jct, np.arange(1, len(jct) + 1) / len(jct), label=f"{label} (p99 {p99:.0f} ms)")
    ax.set_xlabel("job completion time (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return detached(fig)
