"""The set-up report: what this machine has, and what may go wrong with it.

``python -m omni_edu doctor`` in a terminal, ``omni_edu.doctor()`` in a notebook.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import torch

from omni_edu.profiles import ENV_VAR, PROFILES, amp_dtype, default_profile_name


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _major(version: str | None) -> int | None:
    if not version:
        return None
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


def autocast_text(dtype: torch.dtype | None) -> str:
    """How the Trainer's mixed precision runs with ``dtype`` (see ``profiles.amp_dtype``)."""
    if dtype is None:
        return "float32 (no autocast)"
    if dtype == torch.float16:
        return "fp16 autocast with loss scaling"
    return "bf16 autocast" if dtype == torch.bfloat16 else f"{dtype} autocast"


def collect_report() -> dict:
    """Facts about this environment, as a dict of plain values."""
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "autocast": autocast_text(amp_dtype(torch.device("cuda", 0))),
        }
    requested = os.environ.get(ENV_VAR, "").strip()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu": gpu,
        "cpu_threads": torch.get_num_threads(),
        "numpy": _version("numpy"),
        "matplotlib": _version("matplotlib"),
        "ipywidgets": _version("ipywidgets"),
        "jupyterlab": _version("jupyterlab"),
        "jupyterlab_widgets": _version("jupyterlab_widgets"),
        "profile_requested": requested or None,
        "profile": requested.lower() if requested else default_profile_name(),
        "in_colab": "google.colab" in sys.modules,
    }


def find_problems(report: dict) -> list[str]:
    """Warnings for known problems, each saying what to do about it."""
    warnings = []
    if report["profile"] not in PROFILES:
        warnings.append(
            f"{ENV_VAR}={report['profile_requested']!r} is not a profile; "
            f"use one of {', '.join(sorted(PROFILES))}."
        )
    if report["profile"] == "gpu" and not report["cuda_available"]:
        warnings.append(
            "The gpu profile is selected but no CUDA GPU is visible: lessons will run the "
            "large settings on the CPU and take very long. Set OMNI_PROFILE=cpu, or on "
            "Colab choose Runtime > Change runtime type > GPU."
        )
    widgets, lab = _major(report["ipywidgets"]), _major(report["jupyterlab"])
    if widgets is None:
        warnings.append("ipywidgets is not installed: widgets fall back to static figures.")
    elif widgets >= 8 and lab is not None and lab < 3:
        warnings.append(
            "ipywidgets 8 needs JupyterLab 3 or newer; upgrade JupyterLab "
            "(pip install -U jupyterlab) or widgets will not render."
        )
    elif widgets == 7 and lab is not None and lab >= 4 and report["jupyterlab_widgets"] is None:
        warnings.append(
            "ipywidgets 7 with JupyterLab 4 needs the jupyterlab_widgets extension; "
            "run pip install 'ipywidgets>=8,<9'."
        )
    if _major(report["torch"]) is not None and _major(report["torch"]) < 2:
        warnings.append("PyTorch 2 or newer is needed (scaled_dot_product_attention).")
    return warnings


def format_report(report: dict) -> str:
    """The report as aligned text lines, warnings last."""
    gpu = report["gpu"]
    gpu_text = "none"
    if gpu:
        gpu_text = (
            f"{gpu['name']} ({gpu['memory_gib']} GiB, compute capability {gpu['capability']}, "
            f"{gpu['autocast']})"
        )
    rows = [
        ("Python", report["python"]),
        ("Platform", report["platform"]),
        ("PyTorch", report["torch"]),
        ("CUDA", report["cuda_version"] if report["cuda_available"] else "not available"),
        ("GPU", gpu_text),
        ("CPU threads", report["cpu_threads"]),
        ("NumPy", report["numpy"]),
        ("matplotlib", report["matplotlib"]),
        ("ipywidgets", report["ipywidgets"] or "not installed"),
        ("JupyterLab", report["jupyterlab"] or "not installed"),
        ("Running in Colab", "yes" if report["in_colab"] else "no"),
        (
            "Active profile",
            report["profile"] + ("" if report["profile_requested"] else " (default)"),
        ),
    ]
    lines = ["Omni from Scratch - set-up report", ""]
    lines += [f"  {name:<17} {value}" for name, value in rows]
    problems = find_problems(report)
    lines.append("")
    if problems:
        lines += [f"  WARNING: {p}" for p in problems]
    else:
        lines.append("  No problems found. You are ready to start.")
    return "\n".join(lines)


def print_report() -> None:
    print(format_report(collect_report()))
