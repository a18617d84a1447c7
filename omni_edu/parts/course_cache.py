"""The course cache: what one lesson trains, the next one loads.

The course builds one system, and later lessons use parts that earlier lessons trained:
lesson 04 draws with the image tokenizer of lesson 03, lessons 08 and 09 measure the
any-to-any model of lesson 06. Every lesson must still run alone, in any order, on a fresh
machine. So each shared part has a *recipe* (a function that builds and trains it), and
:func:`load_or_train` either loads the part from the cache or runs the recipe and saves it::

    part = load_or_train(
        "image_tokenizer",                       # the file name in the cache
        build=lambda: VQVAE(config),             # a fresh, untrained module
        train=lambda model: train_it(model),     # trains in place (progress bar), returns extras
        config={"vqvae": asdict(config), "steps": 600, "seed": 0},
    )
    part.model, part.status ("loaded" or "trained"), part.reason, part.extra

Where: ``$OMNI_CACHE_DIR/<profile>/`` if that variable is set (the test suite points it at
a temporary folder), else ``~/.cache/omni_edu/<profile>/``. Each profile (and the gpu dry
run) has its own folder, so a small ``ci`` model never stands in for a ``gpu`` one.

What makes it safe: a checkpoint stores a format version, the profile and a hash of
``config`` (everything that decides the weights: sizes, steps, seeds, data). A file from
another profile or configuration, an older format, or a truncated file is detected; the
reason is printed and the part is retrained and saved again - never a crash, never a
silent mismatch. Files hold only tensors and plain values and load with
``torch.load(..., weights_only=True)``, which never runs code from the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omni_edu.profiles import Profile, get_profile

ENV_VAR = "OMNI_CACHE_DIR"
FORMAT_VERSION = 1


def cache_dir(profile: Profile | str | None = None) -> Path:
    """The folder that holds the active (or given) profile's trained parts."""
    if not isinstance(profile, Profile):
        profile = get_profile(profile)
    root = os.environ.get(ENV_VAR, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "omni_edu"
    return base / profile.key


def _plain(value: Any) -> Any:
    """``value`` as JSON-able plain data (tuples become lists), or a clear error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    raise ValueError(
        f"a cache config holds plain values (numbers, strings, lists, dicts); got a "
        f"{type(value).__name__}: {value!r}. Use dataclasses.asdict(...) for a config object."
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """A short fingerprint of ``config``: equal configs give equal hashes, any change another."""
    text = json.dumps(_plain(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """The keys (dotted paths) where two plain configs differ."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(stored) | set(wanted)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in stored or key not in wanted:
                out.append(path)
            else:
                out += _differences(stored[key], wanted[key], path)
        return out
    return [] if stored == wanted else [prefix or "(the whole config)"]


@dataclass
class CachedPart:
    """A part of the system, loaded from the cache or just trained.

    ``status`` is ``"loaded"`` or ``"trained"``; ``reason`` says why it was trained (or
    where it was loaded from); ``extra`` holds the plain values the recipe returned when
    it trained (losses, scores measured right after training).
    """

    name: str
    model: nn.Module
    status: str
    reason: str
    path: Path
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"


def _read(path: Path, name: str, profile: Profile, config: Mapping[str, Any]) -> tuple[dict, str]:
    """The stored checkpoint and ``""``, or ``{}`` and the reason it cannot be used."""
    if not path.exists():
        return {}, f"no checkpoint of {name!r} in {path.parent} yet"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt, or not a torch file at all
        return {}, f"{path.name} could not be read ({type(error).__name__}: {error})"
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else None
        return {}, f"{path.name} has format version {found}; this code reads {FORMAT_VERSION}"
    if state.get("profile") != profile.key:
        return {}, f"{path.name} was made in profile {state.get('profile')!r}, not {profile.key!r}"
    if state.get("config_hash") != config_hash(config):
        changed = _differences(state.get("config"), _plain(config))
        return {}, f"{path.name} was made with another configuration (differs in: {changed})"
    return state, ""


def load_or_train(
    name: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], Mapping[str, Any] | None],
    config: Mapping[str, Any],
    profile: Profile | str | None = None,
    retrain: bool = False,
    verbose: bool = True,
) -> CachedPart:
    """Load part ``name`` from the cache, or build and train it and save it there.

    Args:
        name: the part's file name (``"capstone"`` -> ``capstone.pt``).
        build: makes a fresh module (seed it inside if its initial weights matter).
        train: trains that module in place, with a progress bar; may return plain extras
            (losses, measured scores) to store beside the weights.
        config: plain values that decide the trained weights; any change retrains.
        profile: whose cache (default: the active profile).
        retrain: train even when a valid checkpoint exists (and overwrite it).
        verbose: print what happened and why.
    """
    if not isinstance(profile, Profile):
        profile = get_profile(profile)
    path = cache_dir(profile) / f"{name}.pt"
    config = _plain(config)
    # One process trains a part at a time: another one (a second lesson running in
    # parallel) waits here, then finds the finished file and loads it.
    with _exclusive(path):
        return _load_or_train(name, build, train, config, profile, path, retrain, verbose)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path``'s lock file (POSIX; elsewhere no lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: parallel runs may train a part twice, never corrupt it
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_or_train(
    name: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], Mapping[str, Any] | None],
    config: Mapping[str, Any],
    profile: Profile,
    path: Path,
    retrain: bool,
    verbose: bool,
) -> CachedPart:
    state, reason = ({}, "retrain=True") if retrain else _read(path, name, profile, config)
    model = build()
    if state:
        try:
            model.load_state_dict(state["weights"])
        except (RuntimeError, KeyError) as error:  # same config, different code
            state, reason = {}, f"{path.name} does not fit this model ({error})"
    if state:
        if verbose:
            print(f"Loaded {name!r} from the course cache ({path}).")
        seconds = float(state.get("seconds", 0.0))
        return CachedPart(
            name, model, "loaded", f"loaded from {path}", path, seconds, state["extra"]
        )
    if verbose:
        print(f"Training {name!r}: {reason}. It is saved to the course cache afterwards.")
    start = time.perf_counter()
    extra = _plain(dict(train(model) or {}))
    seconds = time.perf_counter() - start
    save(path, model, name, profile, config, extra, seconds)
    if verbose:
        print(f"Trained {name!r} in {seconds:.0f} s and saved it to {path}.")
    return CachedPart(name, model, "trained", reason, path, seconds, extra)


def save(
    path: Path,
    model: nn.Module,
    name: str,
    profile: Profile,
    config: Mapping[str, Any],
    extra: Mapping[str, Any],
    seconds: float,
) -> Path:
    """Write a checkpoint that :func:`load_or_train` accepts (atomically: a crash mid-write
    leaves no half file under the real name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT_VERSION,
        "name": name,
        "profile": profile.key,
        "config_hash": config_hash(config),
        "config": _plain(config),
        "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": _plain(dict(extra)),
        "seconds": float(seconds),
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path
