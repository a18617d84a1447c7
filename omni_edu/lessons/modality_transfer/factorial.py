"""Lesson 06b: the grounding test as a 2x2 factorial, its baselines and its statistics.

One model first learns the task on its own (stage A, shared by every arm): text questions
about captions in the taught words, and captions paired with their sounds and pictures in
those words, so it knows what red sounds and looks like. Each arm then trains on from
that model (stage B) with the same questions and the same caption documents, whose
captions now use the grounded words too; the arms differ only in whether the sounds and
the pictures beside those captions are the scene's own (*paired*) or another scene's
(*shuffled*):

=============================  ==========  ===========
arm                            sound       picture
=============================  ==========  ===========
sound paired, picture paired   paired      paired
sound paired, picture shuffled paired      shuffled
sound shuffled, picture paired shuffled    paired
neither paired                 shuffled    shuffled
=============================  ==========  ===========

Every seed trains all four arms on the same batches (the same scenes and tasks at every
step), so the arms are compared seed by seed. Scores are exact-match accuracies of greedy
answers, and effects are differences of log-odds, ``log(p / (1 - p))``, paired by seed:
the **transfer** of sound is (sound paired) - (neither paired) with pictures shuffled; the
**interaction** is PP - PS - SP + SS, zero when the two media add up on the log-odds scale.
Baselines are scored the same way: a blind model (the questions without their captions)
and the commonest training answer per kind of question.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from omni_edu.lessons.modality_transfer.budget import BUDGET
from omni_edu.lessons.modality_transfer.grounding import (
    MEDIA_TASKS,
    GroundingData,
    GroundingWorld,
    TestSet,
    answers_of,
    test_sets,
)
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import Profile, get_profile
from omni_edu.stats import t_interval

ARMS: dict[str, tuple[str, str]] = {
    "sound paired, picture paired": ("paired", "paired"),
    "sound paired, picture shuffled": ("paired", "shuffled"),
    "sound shuffled, picture paired": ("shuffled", "paired"),
    "neither paired": ("shuffled", "shuffled"),
}
PP, PS, SP, SS = ARMS
# Stage A: the task, in the taught words; stage B: the same with every caption's words.
STAGE_A_MIX = {a2a.QUESTION: 0.5, **dict.fromkeys(MEDIA_TASKS, 0.125)}
STAGE_B_MIX = {a2a.QUESTION: 0.25, **dict.fromkeys(MEDIA_TASKS, 0.1875)}
TRANSFER = {PS: 1.0, SS: -1.0}  # sound paired against neither, pictures shuffled in both
PICTURE = {SP: 1.0, SS: -1.0}
INTERACTION = {PP: 1.0, PS: -1.0, SP: -1.0, SS: 1.0}


@dataclass(frozen=True)
class SeedInterval:
    """A mean over seeds with its standard error and 95 % t interval (``n`` seeds)."""

    mean: float
    se: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """The smallest effect the design can detect: the interval's half-width."""
        return (self.high - self.low) / 2

    def sign(self) -> int:
        """+1 when the interval lies above zero, -1 below, 0 when it straddles zero."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def seed_interval(values: Sequence[float]) -> SeedInterval:
    """Mean, standard error and 95 % t interval (:func:`omni_edu.stats.t_interval`) of
    per-seed values (paired differences)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_interval needs at least one value.")
    n = len(values)
    mean, low, high = t_interval(values)
    se = math.inf if n < 2 else math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
    return SeedInterval(mean, se, low, high, n)


def logit(p: float, n: int) -> float:
    """Log-odds of an accuracy ``p`` over ``n`` questions, half a question added to both
    sides so that 0 and 1 stay finite."""
    right = p * n
    return math.log((right + 0.5) / (n - right + 0.5))


def points(base: float, log_odds: float) -> float:
    """What a log-odds change ``log_odds`` means in accuracy points, from ``base``."""
    p = min(max(base, 1e-6), 1 - 1e-6)
    moved = 1 / (1 + math.exp(-(math.log(p / (1 - p)) + log_odds)))
    return moved - p


@dataclass
class GroundingRun:
    """What the factorial measured: every arm's answers per seed and test set, and the
    baselines'. ``tests`` names and holds the test sets; ``answers[arm, seed][test]`` are
    greedy answers; ``blind[test]`` the blind model's; ``majority[kind]`` the commonest
    training answer per kind of question."""

    tests: dict[str, TestSet]
    seeds: list[int]
    answers: dict[tuple[str, int], dict[str, list[str]]]
    blind: dict[str, list[str]]
    majority: dict[str, str]
    steps: dict[str, int]
    scenes: int
    profile: Profile
    state: dict = field(repr=False, default_factory=dict)  # the stage-A model's weights
    loss_weights: dict[str, float] = field(default_factory=dict)

    def names(self, words: str | None = None, kind: str | None = None) -> list[str]:
        """Test-set names with these words ("grounded", "taught") and kind of question."""
        return [
            name
            for name, t in self.tests.items()
            if (words is None or t.words == words) and (kind is None or t.kind == kind)
        ]

    def _pooled(self, answers: Mapping[str, Sequence[str]], names: Sequence[str]) -> list[bool]:
        return [
            a == b
            for name in names
            for a, b in zip(answers[name], self.tests[name].answers, strict=True)
        ]

    def questions(self, names: Sequence[str]) -> int:
        return sum(len(self.tests[name]) for name in names)

    def score(self, answers: Mapping[str, Sequence[str]], names: Sequence[str]) -> float:
        """Exact-match accuracy of ``answers`` (``{test: answers}``) on the pooled sets."""
        right = self._pooled(answers, names)
        return sum(right) / len(right)

    def accuracy(self, arm: str, seed: int, names: Sequence[str]) -> float:
        return self.score(self.answers[arm, seed], names)

    def mean_accuracy(self, arm: str, names: Sequence[str]) -> float:
        return sum(self.accuracy(arm, s, names) for s in self.seeds) / len(self.seeds)

    def blind_accuracy(self, names: Sequence[str]) -> float:
        right = self._pooled(self.blind, names)
        return sum(right) / len(right)

    def majority_accuracy(self, names: Sequence[str]) -> float:
        right = [
            self.majority[self.tests[name].kind] == answer
            for name in names
            for answer in self.tests[name].answers
        ]
        return sum(right) / len(right)

    def predictions(self, arm: str, names: Sequence[str]) -> list[str]:
        """Every answer of ``arm`` (all seeds) to the questions of ``names``."""
        return [a for s in self.seeds for name in names for a in self.answers[arm, s][name]]

    def contrast(self, weights: Mapping[str, float], names: Sequence[str]) -> list[float]:
        """Per seed, ``sum(weight * log-odds of the arm)`` on the pooled questions."""
        n = self.questions(names)
        return [
            sum(w * logit(self.accuracy(arm, s, names), n) for arm, w in weights.items())
            for s in self.seeds
        ]


def _train(model, data, mix, steps, seed, batch_size):
    a2a.train_stage(model, data, mix, steps, seed=seed, batch_size=batch_size, progress=False)
    return model


def run_grounding(profile: Profile | str | None = None, progress: bool = True) -> GroundingRun:
    """Train the shared stage-A model, the four arms for every seed and the blind
    baseline, and answer every test set. Sizes: :data:`BUDGET` of the profile."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    b = BUDGET[profile.name]["grounding"]
    scenes, n_test = profile.budget(b["scenes"], dry=64), profile.budget(b["test"], dry=8)
    steps = {
        "stage A": profile.budget(b["stage_a"], dry=3),
        "stage B": profile.budget(b["stage_b"], dry=2),
        "blind": profile.budget(b["blind"], dry=2),
    }
    seeds = list(range(profile.budget(b["seeds"], dry=2)))
    batch = b["batch_size"] or profile.batch_size
    world = GroundingWorld("train", seed=0, profile=profile)
    tests = test_sets(profile, n_test)
    pre = GroundingData(world, scenes, "paired", "paired", wording="taught")
    weights = a2a.balanced_loss_weights(pre)
    bar = tqdm(total=1 + len(ARMS) * len(seeds) + 1, desc="grounding runs", disable=not progress)

    model = _train(
        a2a.build_model(pre, seed=0, loss_weights=weights),
        pre,
        STAGE_A_MIX,
        steps["stage A"],
        0,
        batch,
    )
    state = copy.deepcopy(model.state_dict())
    bar.update(1)
    pools = {arm: GroundingData(world, scenes, *pairing) for arm, pairing in ARMS.items()}
    answers = {}
    for seed in seeds:
        for arm, data in pools.items():
            model = a2a.build_model(pre, seed=0, loss_weights=weights)
            model.load_state_dict(state)
            _train(model, data, STAGE_B_MIX, steps["stage B"], 100 + seed, batch)
            answers[arm, seed] = {name: answers_of(model, t) for name, t in tests.items()}
            bar.update(1)
    blind_data = GroundingData(world, scenes, blind=True)
    model = _train(
        a2a.build_model(blind_data, seed=0, loss_weights=weights),
        blind_data,
        {a2a.QUESTION: 1.0},
        steps["blind"],
        0,
        batch,
    )
    blind = {name: answers_of(model, t, blind=True) for name, t in tests.items()}
    bar.update(1)
    bar.close()
    return GroundingRun(
        tests=tests,
        seeds=seeds,
        answers=answers,
        blind=blind,
        majority=pre.majority_answers(),
        steps=steps,
        scenes=scenes,
        profile=profile,
        state=state,
        loss_weights=weights,
    )


def train_arm(run: GroundingRun, arm: str, steps: int, seed: int = 0) -> dict[str, list[str]]:
    """One arm again from the run's stage-A model, for ``steps`` stage-B updates (a knob to
    turn); returns its answers per test set."""
    b = BUDGET[run.profile.name]["grounding"]
    world = GroundingWorld("train", seed=0, profile=run.profile)
    data = GroundingData(world, run.scenes, *ARMS[arm])
    model = a2a.build_model(data, seed=0, loss_weights=run.loss_weights)
    model.load_state_dict(run.state)
    _train(model, data, STAGE_B_MIX, steps, 100 + seed, b["batch_size"] or run.profile.batch_size)
    return {name: answers_of(model, t) for name, t in run.tests.items()}
