"""What lesson 04b trains and scores in each profile (:data:`BUDGET`).

Six arms train at one budget each. In ci the budget is what fits the lesson's four minutes
on a 2-core CPU: 600 steps per arm (lesson 04 trains five arms for 900; measured on the
shared 2-core machine, 600 steps took 33 s for linear regression and 66 s for the per-token
flow head, whose four noise draws per token make it the slowest). At 600 steps the decoder
has only started to read the caption's colour words (lesson 04 notes it takes about 500 in
ci), so the ci race ranks the designs early in training. The cpu profile trains a wider,
deeper decoder (d_model 128, 4 layers) for 700 steps per arm: at 1500 the race alone ran
past 430 s on 2 cores without finishing its six arms (lesson 04's arms cost about 0.08 s a
step there), and the lesson must fit in ten minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from omni_edu.profiles import Profile

BUDGET: dict[str, dict] = {
    # steps per arm, held-out prompts per set, samples per prompt, training seeds, the
    # sampling steps of the quality-vs-steps curves, the DiT's blocks, pictures timed.
    "ci": {"steps": 600, "n_test": 32, "k": 8, "seeds": 1, "sweep": (1, 2, 4, 8, 16)},
    "cpu": {"steps": 700, "n_test": 48, "k": 8, "seeds": 1, "sweep": (1, 2, 4, 8, 16)},
    # Not run on a GPU yet: the sizes lesson 04 uses there, with three seeds.
    "gpu": {"steps": 3000, "n_test": 128, "k": 8, "seeds": 3, "sweep": (1, 2, 4, 8, 16, 32)},
}
DIT_DEPTH = 2  # "a few transformer blocks"; the width is matched to the flow head's size
DEFAULT_STEPS = 8  # every iterative sampler's default, fixed before the run


@dataclass(frozen=True)
class Budget:
    """:data:`BUDGET` for one profile, every count cut by ``profile.budget`` (gpu-dry)."""

    steps: int
    n_test: int
    k: int
    seeds: tuple[int, ...]
    sweep: tuple[int, ...]
    timed_pictures: int
    timing_repeats: int  # each arm's sampling time is the best of this many draws
    ceiling_pictures: int  # test pictures through the codes, for the code arms' ceiling
    batch_size: int  # every arm's training batch (lesson 04's race uses 32 too)


def budget(profile: Profile) -> Budget:
    """The race's sizes in ``profile`` (the gpu numbers for gpu-dry, cut to a few)."""
    b = BUDGET[profile.name]
    sweep = tuple(b["sweep"]) if not profile.dry_run else (1, DEFAULT_STEPS)
    return Budget(
        steps=profile.budget(b["steps"], dry=2),
        n_test=profile.budget(b["n_test"], dry=4),
        k=profile.budget(b["k"], dry=2),
        seeds=tuple(range(profile.budget(b["seeds"], dry=1))),
        sweep=sweep,
        timed_pictures=profile.budget(32, dry=4),
        timing_repeats=profile.budget(3, dry=1),
        ceiling_pictures=profile.budget(256, dry=8),
        batch_size=profile.budget(32, dry=profile.batch_size),
    )
