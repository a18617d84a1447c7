"""What lesson 07 trains in each profile: the sweep's model sizes and run lengths, the
larger held-out run it predicts, and how many bootstrap refits its intervals take.

Every number goes through :meth:`Profile.budget`, so the gpu dry run keeps the gpu shapes
and trains each run a few steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from omni_edu.profiles import get_profile

MODALITIES = ("text", "image", "audio")
SETTINGS = ("text", "image", "audio", "text+image", "text+audio")


@dataclass(frozen=True)
class ModelSize:
    """One decoder shape of the sweep."""

    d_model: int
    n_layers: int
    n_heads: int

    @property
    def label(self) -> str:
        return f"d{self.d_model}xL{self.n_layers}"


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep trains. Every field goes into the cache key of each run.

    Each (setting, size, budget) is **one run**, ``budget`` optimizer steps long, with a
    learning-rate schedule matched to that length (linear warm-up, then a cosine that
    ends at the run's last step at ``lr * min_lr_ratio``), and evaluated **once**, at its
    end. That is how Hoffmann et al. (2022) measured each point of their fits: a point
    read off the middle of a longer run has not had its learning rate annealed, and the
    points of one run are not independent of each other.

    ``profile`` sets the data (image size, audio length); ``pool`` caps how many
    training scenes are generated (runs longer than ``pool / batch_size`` steps see
    scenes again).
    """

    profile: str
    sizes: tuple[ModelSize, ...]
    budgets: tuple[int, ...]
    settings: tuple[str, ...] = SETTINGS
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    n_eval: int = 128
    pool: int = 4096
    frames_per_token: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"settings should be among {SETTINGS}; got {unknown}.")
        steps = list(self.budgets)
        if not steps or steps != sorted(set(steps)) or steps[0] <= self.warmup_steps:
            raise ValueError(
                f"budgets (the steps of each run) should increase strictly and every run "
                f"should be longer than its warm-up ({self.warmup_steps} steps); got "
                f"{self.budgets}."
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio should be in [0, 1]; got {self.min_lr_ratio}.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """Lesson 07 in one profile: the sweep, the larger run it predicts, the bootstrap.

    ``heldout`` is bigger than every size of ``sweep`` and trains ``heldout_steps`` steps
    (twice the sweep's longest run), with the same schedule matched to its length;
    ``n_bootstrap`` refits give the intervals of the fitted laws.
    """

    sweep: SweepConfig
    heldout: ModelSize
    heldout_steps: int
    n_bootstrap: int


# Bootstrap resamples: enough for a rough 95% interval on a 2-core CPU in ci, a steadier one
# where there is time.
BUDGET: dict[str, Budget] = {
    "ci": Budget(
        SweepConfig(
            profile="ci",
            sizes=(
                ModelSize(16, 1, 2),
                ModelSize(32, 1, 2),
                ModelSize(32, 2, 2),
                ModelSize(48, 2, 4),
            ),
            budgets=(30, 45, 70, 105, 160, 240),
            batch_size=32,
            n_eval=128,
            pool=9600,
        ),
        heldout=ModelSize(64, 3, 4),
        heldout_steps=480,
        n_bootstrap=20,
    ),
    "cpu": Budget(
        SweepConfig(
            profile="cpu",
            sizes=(
                ModelSize(16, 1, 2),
                ModelSize(32, 1, 2),
                ModelSize(32, 2, 2),
                ModelSize(64, 2, 4),
                ModelSize(64, 4, 4),
            ),
            budgets=(30, 45, 70, 105, 160, 240),
            batch_size=32,
            n_eval=256,
            pool=16384,
        ),
        heldout=ModelSize(96, 4, 4),
        heldout_steps=480,
        n_bootstrap=100,
    ),
    "gpu": Budget(
        SweepConfig(
            profile="gpu",
            sizes=(
                ModelSize(64, 2, 4),
                ModelSize(128, 4, 4),
                ModelSize(192, 4, 6),
                ModelSize(256, 6, 8),
            ),
            budgets=(100, 150, 250, 400, 650, 1000),
            batch_size=128,
            lr=2e-3,
            warmup_steps=50,
            n_eval=1024,
            pool=32768,
        ),
        heldout=ModelSize(384, 6, 8),
        heldout_steps=2000,
        n_bootstrap=400,
    ),
}


def sweep_config(profile: str | None = None) -> SweepConfig:
    """The sweep of ``profile`` (default: the active one).

    Its step counts and data sizes go through :meth:`Profile.budget`: the same as
    :data:`BUDGET` except in the gpu dry run, which keeps the gpu shapes and trains each
    run a few steps. ``profile`` of the result is the profile's ``key`` (``"gpu-dry"``), so
    a dry run's runs never share a cache entry with real ones.
    """
    p = get_profile(profile)
    base = BUDGET[p.name].sweep
    # A dry run trains 4 budgets per size (the fits keep the last three: 12 points per
    # modality), of 2, 3, 4, 5 steps: still increasing, and past a one-step warm-up.
    lengths = base.budgets[: p.budget(len(base.budgets), dry=4)]
    return replace(
        base,
        profile=p.key,
        budgets=tuple(p.budget(s, dry=2 + k) for k, s in enumerate(lengths)),
        warmup_steps=p.budget(base.warmup_steps, dry=1),
        batch_size=p.budget(base.batch_size, dry=4),
        n_eval=p.budget(base.n_eval, dry=8),
        pool=p.budget(base.pool, dry=64),
    )


def heldout_size(profile: str | None = None) -> tuple[ModelSize, int]:
    """The larger run that lesson 07 predicts before training it: ``(size, steps)``.

    Twice as long as the sweep's longest run (in the dry run too)."""
    p = get_profile(profile)
    budget = BUDGET[p.name]
    return budget.heldout, p.budget(budget.heldout_steps, dry=2 * max(sweep_config(p.key).budgets))


def bootstrap_resamples(profile: str | None = None) -> int:
    """How many bootstrap refits lesson 07 runs in ``profile`` (:data:`BUDGET`)."""
    p = get_profile(profile)
    return p.budget(BUDGET[p.name].n_bootstrap, dry=2)
