"""The machine a number was measured on: CPU, cores, RAM, GPU and versions.

The lesson runner, the run records of nbval's executed lessons and the rendered course all
say where their numbers come from with :func:`machine_info` and :func:`describe_machine`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, GPU and versions: what a measured number depends on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        ram_gib = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def describe_machine(machine: dict[str, Any]) -> str:
    """One line, e.g. ``"AMD EPYC 7B13, 2 cores, 8.0 GiB RAM, no GPU, torch 2.13.0"``."""
    gpu = machine.get("gpu") or "no GPU"
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, {gpu}, "
        f"torch {machine['torch']}"
    )
