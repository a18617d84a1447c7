"""Profiles: one place that decides how big everything is.

A lesson never hard-codes sizes. It asks the active profile, chosen by the
``OMNI_PROFILE`` environment variable:

* ``ci``  - a 2-core CPU without a GPU, the test suite's profile: a notebook in under a
  minute, the lessons that train the most (02-06) in two to four.
* ``cpu`` - a laptop; a lesson takes a few minutes and the effects are clearer.
* ``gpu`` - a Colab T4 up to an H100; larger images, models and runs.
* ``gpu-dry`` - the ``gpu`` profile's sizes with tiny step, data and batch budgets, so
  that a CPU can run every lesson at gpu shapes in seconds (the test suite does, to catch
  shape and size bugs of the gpu profile without a GPU). Its numbers mean nothing.
* ``ci-dry`` - the same cut for the ``ci`` profile's sizes (the suite's exercise runs).

Without ``OMNI_PROFILE`` the default is ``gpu`` when CUDA is available, else ``cpu``.

Every step count and data size a lesson chooses goes through :meth:`Profile.budget`, so
that the dry run can cut it.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

ENV_VAR = "OMNI_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets shared by every lesson.

    Lessons scale their own experiments from these numbers (for example
    ``2 * profile.train_steps``) so that one switch resizes the whole course.
    """

    name: str
    # OmniWorld
    image_size: int  # pixels per side of a rendered scene
    patch_size: int  # pixels per side of one image patch (one image token)
    sample_rate: int  # audio samples per second
    audio_seconds: float  # length of one scene's sound
    n_mels: int  # log-mel channels per audio frame
    # The tiny omni model
    d_model: int
    n_layers: int
    n_heads: int
    # Training budgets
    batch_size: int
    train_steps: int  # the base budget of one training run
    n_train: int  # samples in a generated training set
    n_eval: int  # samples in a generated evaluation set
    n_seeds: int  # repeats for experiments that report an uncertainty
    # Hardware use
    compile: bool  # try torch.compile where a lesson offers it
    # A dry run keeps the sizes of ``name`` but cuts every budget (see ``budget``).
    dry_run: bool = False

    @property
    def key(self) -> str:
        """What tells this profile's results apart: ``"gpu-dry"`` for the dry run, else
        ``name``. Caches are kept per key, so a dry run never overwrites real results."""
        return f"{self.name}-dry" if self.dry_run else self.name

    def budget(self, n: int, dry: int = 2) -> int:
        """A step count or data size a lesson asks for: ``n``, or at most ``dry`` in a dry run.

        >>> get_profile("ci").budget(900)
        900
        >>> get_profile("gpu-dry").budget(900)
        2
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"budget takes a count (an int >= 0); got {n!r}.")
        return min(n, dry) if self.dry_run else n

    def describe(self) -> str:
        """One line per field, for printing in a notebook."""
        return "\n".join(f"{f.name:>14}: {getattr(self, f.name)}" for f in fields(self))


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        image_size=16,
        patch_size=4,
        sample_rate=8000,
        audio_seconds=0.5,
        n_mels=32,
        d_model=64,
        n_layers=2,
        n_heads=4,
        batch_size=32,
        train_steps=150,
        n_train=2048,
        n_eval=256,
        n_seeds=2,
        compile=False,
    ),
    "cpu": Profile(
        name="cpu",
        image_size=16,
        patch_size=4,
        sample_rate=8000,
        audio_seconds=0.5,
        n_mels=32,
        d_model=128,
        n_layers=4,
        n_heads=4,
        batch_size=64,
        train_steps=600,
        n_train=8192,
        n_eval=1024,
        n_seeds=3,
        compile=False,
    ),
    "gpu": Profile(
        name="gpu",
        image_size=32,
        patch_size=4,
        sample_rate=16000,
        audio_seconds=0.5,
        n_mels=64,
        d_model=256,
        n_layers=6,
        n_heads=8,
        batch_size=128,
        train_steps=3000,
        n_train=65536,
        n_eval=4096,
        n_seeds=5,
        compile=True,
    ),
}


def dry_run_of(profile: Profile) -> Profile:
    """``profile``'s dry run: its shapes (pictures, model, sequence lengths), budgets cut to
    the bone. Data sizes stay large enough for a batch and a few test scenes per class. The
    batch is cut too (measured in the 2-core suite: lesson 06's gpu-dry run took 320 s at
    batch 128, 57 s at 8), and every shape a lesson builds per example is the same at 8."""
    return replace(
        profile,
        train_steps=2,
        n_train=256,
        n_eval=64,
        n_seeds=2,
        batch_size=8,
        compile=False,
        dry_run=True,
    )


# gpu-dry: the gpu sizes on a CPU, for the tests. ci-dry: the suite runs the exercise
# notebooks in it, unsolved: they run the code their solutions run at ci's full budgets, so
# what the exercise run adds is that every cell runs with the stubs left open (conftest.py).
PROFILES["gpu-dry"] = dry_run_of(PROFILES["gpu"])
PROFILES["ci-dry"] = dry_run_of(PROFILES["ci"])


def check_overrides(config_class: type, overrides: Mapping[str, Any]) -> None:
    """Raise a ValueError naming every key of ``overrides`` that is not a field of the
    dataclass ``config_class`` (what a config's ``from_profile(..., **overrides)`` takes)."""
    valid = {f.name for f in fields(config_class)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(
            f"Unknown {config_class.__name__} field(s) {sorted(unknown)}; valid: {sorted(valid)}."
        )


def default_profile_name() -> str:
    """``gpu`` when CUDA is available, otherwise ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, or the active one.

    The active profile comes from ``OMNI_PROFILE``; without it, from the hardware.
    """
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or default_profile_name()
    key = name.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(sorted(PROFILES))
        raise ValueError(
            f"Unknown profile {name!r}. Valid profiles are: {valid}. "
            f"Set {ENV_VAR} to one of them (or unset it to pick by hardware)."
        )
    return PROFILES[key]


def get_device(profile: Profile | None = None) -> torch.device:
    """The device lessons train on: CUDA for the ``gpu`` profile when present, else CPU.

    The ``ci`` and ``cpu`` profiles always use the CPU so that their results do not
    depend on which machine runs them.
    """
    profile = profile or get_profile()
    if profile.name == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU of compute capability >= 8.

    Not ``torch.cuda.is_bf16_supported()``: since torch 2.4 it also says yes where bf16 is
    only emulated (a T4, capability 7.5, Colab's free GPU), which runs without tensor
    cores and without the loss scaling that fp16 would get.
    """
    if device.type != "cuda":
        return False
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype worth using on ``device``, or ``None`` for plain float32.

    bf16 on GPUs that compute it in hardware (compute capability >= 8: A100, H100, L4,
    RTX 30xx and later; no loss scaling needed); fp16 on older GPUs such as the T4, where
    the Trainer turns on its gradient scaler (small fp16 gradients would underflow to
    zero). On CPUs float32: bf16 autocast is often slower there and changes results.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` with :func:`amp_dtype`, or a no-op context on CPU."""
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a seeded torch Generator.

    Call it at the top of any cell whose numbers must repeat from run to run.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed should be a non-negative int; got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
