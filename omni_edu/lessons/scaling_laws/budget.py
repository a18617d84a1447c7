"""What lesson 07 trains in each profile: the sweep's model sizes and evaluation steps, the
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

    Each (setting, size) is **one run** at a constant learning rate after warm-up,
    evaluated on held-out data after each of ``eval_steps`` optimizer steps; the last
    entry is the run's length. One run therefore gives a point for every token budget
    D (the Kaplan et al. 2020 shortcut). Hoffmann et al. instead trained one
    cosine-decayed run per budget, which lowers each loss a little; with a constant
    rate every budget is treated alike, which is what a fit across budgets needs.

    ``profile`` sets the data (image size, audio length); ``pool`` caps how many
    training scenes are generated (runs longer than ``pool / batch_size`` steps see
    scenes again).
    """

    profile: str
    sizes: tuple[ModelSize, ...]
    eval_steps: tuple[int, ...]
    settings: tuple[str, ...] = SETTINGS
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    n_eval: int = 128
    pool: int = 4096
    frames_per_token: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"settings should be among {SETTINGS}; got {unknown}.")
        steps = list(self.eval_steps)
        if not steps or steps != sorted(set(steps)) or steps[0] <= self.warmup_steps:
            raise ValueError(
                f"eval_steps should increase strictly and start after warm-up "
                f"({self.warmup_steps} steps); got {self.eval_steps}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """Lesson 07 in one profile: the sweep, the larger run it predicts, the bootstrap.

    ``heldout`` is bigger than every size of ``sweep`` and trains ``heldout_steps`` steps;
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
            eval_steps=(20, 30, 45, 70, 100, 150),
            batch_size=32,
            n_eval=128,
            pool=9600,
        ),
        heldout=ModelSize(64, 3, 4),
        heldout_steps=300,
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
            eval_steps=(25, 40, 65, 100, 160, 250, 400),
            batch_size=32,
            n_eval=256,
            pool=25600,
        ),
        heldout=ModelSize(96, 4, 4),
        heldout_steps=800,
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
            eval_steps=(100, 150, 250, 400, 650, 1000),
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
    # A dry run evaluates 4 times (the fits keep the last two of each run: 8 points per
    # modality), at steps 2, 3, 4, 5: still increasing, and past a one-step warm-up.
    evaluations = base.eval_steps[: p.budget(len(base.eval_steps), dry=4)]
    return replace(
        base,
        profile=p.key,
        eval_steps=tuple(p.budget(s, dry=2 + k) for k, s in enumerate(evaluations)),
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
    return budget.heldout, p.budget(
        budget.heldout_steps, dry=2 * max(sweep_config(p.key).eval_steps)
    )


def bootstrap_resamples(profile: str | None = None) -> int:
    """How many bootstrap refits lesson 07 runs in ``profile`` (:data:`BUDGET`)."""
    p = get_profile(profile)
    return p.budget(BUDGET[p.name].n_bootstrap, dry=2)
