"""Multiple-choice evaluation, MMBench style: abilities, circular evaluation, shortcuts.

A benchmark is a list of :class:`MCItem` s: a question about one OmniWorld scene, two to
four lettered options and the inputs the question is about (picture, sound or both).
Anything that maps a list of items to per-option scores (or to chosen option indices)
is a model here, an *answerer*::

    bench = build_benchmark(64, seed=0)                   # 64 questions per ability
    report = evaluate(random_answerer(seed=0), bench)     # per-ability accuracy
    report = evaluate(random_answerer(seed=0), bench, circular=True)

Why the pieces:

* **per ability** (attribute, counting, spatial, matching): one average hides which skill
  is missing; each ability has its own chance level (two or four options).
* **circular evaluation** (MMBench's CircularEval): a question counts as right only if
  it is answered right under every rotation of its options, so a model cannot score by
  preferring a letter.
* **shortcuts**: ``cue_rate`` plants a formatting cue (the right answer listed first);
  :func:`blind` items hide the picture and sound, so a model that still scores above
  chance on them answers from the text alone - the MMMU story, where text-only models
  scored well above chance on a "multimodal" benchmark.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from omni_edu.data import ABILITIES, OmniWorld, ask
from omni_edu.profiles import Profile, get_profile
from omni_edu.stats import wilson_interval

LETTERS = "ABCD"
MAX_OPTIONS = len(LETTERS)
# Objects per scene for each ability: spatial questions need two objects.
_OBJECTS = {"attribute": (1, 2), "counting": (1, 3), "spatial": (2, 2), "matching": (1, 2)}


@dataclass(frozen=True, eq=False)
class MCItem:
    """One multiple-choice question.

    ``image (3, H, W)`` and ``mel (frames, n_mels)`` are what the model may look at; the
    modality the question is *not* about is all zeros (a "matching" question shows both).
    ``options`` holds the answer once, at ``answer_index``.
    """

    question: str
    options: tuple[str, ...]
    answer_index: int
    ability: str
    modality: str
    image: torch.Tensor
    mel: torch.Tensor

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= MAX_OPTIONS:
            raise ValueError(f"an item has 2 to {MAX_OPTIONS} options; got {len(self.options)}")
        if not 0 <= self.answer_index < len(self.options):
            raise ValueError(
                f"answer_index should be in 0..{len(self.options) - 1}; got {self.answer_index}"
            )

    @property
    def answer(self) -> str:
        return self.options[self.answer_index]

    def prompt(self) -> str:
        """The question as a model (or a person) would read it, options lettered A-D."""
        lines = [f"{self.question}?"]
        lines += [f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines)


def rotate(item: MCItem, shift: int) -> MCItem:
    """The item with its options rotated left by ``shift``: option ``shift`` becomes A.

    The answer moves with its option, to ``(answer_index - shift) % n_options``.
    """
    n = len(item.options)
    options = item.options[shift % n :] + item.options[: shift % n]
    return replace(item, options=options, answer_index=(item.answer_index - shift) % n)


def blind(item: MCItem) -> MCItem:
    """The item with its picture and sound blanked: only the text is left to answer from."""
    return replace(item, image=torch.zeros_like(item.image), mel=torch.zeros_like(item.mel))


@dataclass
class Benchmark:
    """A named list of items (iterate, index or ``len`` it like a list)."""

    name: str
    items: list[MCItem]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index: int) -> MCItem:
        return self.items[index]

    @property
    def abilities(self) -> list[str]:
        return [a for a in ABILITIES if any(it.ability == a for it in self.items)]


def _plant_cue(item: MCItem, rng: random.Random, cue_rate: float) -> MCItem:
    """With probability ``cue_rate`` move the right answer to option A (others keep order)."""
    if rng.random() >= cue_rate:
        return item
    others = [o for i, o in enumerate(item.options) if i != item.answer_index]
    return replace(item, options=(item.answer, *others), answer_index=0)


def build_benchmark(
    n_per_ability: int,
    seed: int = 0,
    split: str = "test",
    cue_rate: float = 0.0,
    abilities: Sequence[str] = ABILITIES,
    profile: Profile | None = None,
) -> Benchmark:
    """``n_per_ability`` questions for each ability, the same for the same arguments.

    cue_rate: the share of questions whose right answer is moved to option A (the planted
    shortcut). 0 is the clean benchmark: options come in random order, so A is right
    only by chance. Benchmarks built with the same seed and different ``cue_rate`` hold
    the same questions, so their scores can be compared question by question.
    """
    if isinstance(n_per_ability, bool) or not isinstance(n_per_ability, int) or n_per_ability < 1:
        raise ValueError(f"n_per_ability should be a positive int; got {n_per_ability!r}")
    if not 0.0 <= cue_rate <= 1.0:
        raise ValueError(f"cue_rate should be a probability in [0, 1]; got {cue_rate}")
    unknown = [a for a in abilities if a not in ABILITIES]
    if unknown:
        raise ValueError(f"abilities should come from {ABILITIES}; got {unknown}")
    profile = profile or get_profile()
    rng = random.Random(seed)
    items: list[MCItem] = []
    for k, ability in enumerate(abilities):
        world = OmniWorld(split, seed, profile, n_objects=_OBJECTS[ability])
        if ability == "matching":
            batch = world.matching(n_per_ability, seed=k)
            for i, q in enumerate(batch.questions):
                image, mel = batch.images[i], batch.mels[i]
                items.append(
                    MCItem(q.text, q.options, q.answer_index, ability, q.modality, image, mel)
                )
            continue
        batch = world.sample(n_per_ability, seed=k)
        for i, scene in enumerate(batch.scenes):
            q = ask(scene, rng, ability=ability)
            image, mel = batch.images[i], batch.mels[i]
            if q.modality == "audio":
                image = torch.zeros_like(image)
            else:
                mel = torch.zeros_like(mel)
            items.append(MCItem(q.text, q.options, q.answer_index, ability, q.modality, image, mel))
    return plant_cue(Benchmark("clean", items), cue_rate, seed)


def plant_cue(benchmark: Benchmark, cue_rate: float, seed: int = 0) -> Benchmark:
    """A copy of ``benchmark`` where a share ``cue_rate`` of the right answers is moved to
    option A (the other options keep their order): the planted shortcut.

    The questions stay the same, so scores on the two versions compare question by question.
    """
    if not 0.0 <= cue_rate <= 1.0:
        raise ValueError(f"cue_rate should be a probability in [0, 1]; got {cue_rate}")
    rng = random.Random(seed + 1)  # its own stream: the questions never depend on the cue
    items = [_plant_cue(it, rng, cue_rate) for it in benchmark]
    name = "clean" if cue_rate == 0 else f"biased ({cue_rate:.0%} of answers moved to A)"
    return Benchmark(name, items)


# --- answerers -------------------------------------------------------------------------

Answerer = Callable[[Sequence[MCItem]], "torch.Tensor | Sequence[int] | Sequence[Sequence[float]]"]


def choose(answerer: Answerer, items: Sequence[MCItem], batch_size: int = 256) -> list[int]:
    """The option index ``answerer`` picks for each item.

    An answerer returns, for a list of items, either one chosen index per item or
    per-option scores (a list of score lists, or a ``(n, 4)`` tensor; slots past an
    item's options are ignored). Scores pick their largest option.
    """
    chosen: list[int] = []
    for start in range(0, len(items), batch_size):
        part = list(items[start : start + batch_size])
        out = answerer(part)
        if len(out) != len(part):
            raise ValueError(f"the answerer returned {len(out)} answers for {len(part)} items")
        for item, answer in zip(part, out, strict=True):
            n = len(item.options)
            if isinstance(answer, torch.Tensor) and answer.dim() == 0:
                answer = int(answer)
            if isinstance(answer, numbers.Integral):
                answer = int(answer)
                if not 0 <= answer < n:
                    raise ValueError(f"the answerer chose option {answer}; the item has {n}")
                chosen.append(answer)
            else:
                scores = torch.as_tensor(answer, dtype=torch.float32)[:n]
                chosen.append(int(scores.argmax()))
    return chosen


def random_answerer(seed: int = 0) -> Answerer:
    """Guesses uniformly among each item's options: the chance level, measured."""
    g = torch.Generator().manual_seed(seed)

    def answer(items: Sequence[MCItem]) -> list[int]:
        return [int(torch.randint(len(it.options), (1,), generator=g)) for it in items]

    return answer


def first_option(items: Sequence[MCItem]) -> list[int]:
    """The shortcut model: always answers A. It reads the layout, never the picture or
    the sound, and still looks clever wherever right answers tend to come first."""
    return [0] * len(items)


# --- scoring ---------------------------------------------------------------------------


def circular_correct(answerer: Answerer, item: MCItem) -> bool:
    """True only if ``answerer`` picks the right option under every rotation of the options.

    For n options the question is asked n times, with option s moved to A (s = 0..n-1).
    """
    rotations = [rotate(item, s) for s in range(len(item.options))]
    chosen = choose(answerer, rotations)
    return all(c == r.answer_index for c, r in zip(chosen, rotations, strict=True))


def blind_accuracy(answerer: Answerer, items: Sequence[MCItem]) -> float:
    """Accuracy of ``answerer`` with every picture and sound blanked (zeros).

    The text-only probe: whatever a model scores here it got from the question and the
    options alone. Far above chance means the benchmark leaks its answers through text.
    """
    items = [blind(it) for it in items]
    if not items:
        raise ValueError("items is empty")
    chosen = choose(answerer, items)
    return sum(c == it.answer_index for c, it in zip(chosen, items, strict=True)) / len(items)


def guess_rate(item: MCItem, circular: bool = False) -> float:
    """Probability that uniform guessing gets ``item`` right: 1/n, or (1/n)^n circularly."""
    n = len(item.options)
    return (1 / n) ** n if circular else 1 / n


@dataclass
class AbilityScore:
    """Accuracy on one ability with its 95% interval and the chance level."""

    ability: str
    n: int
    correct: int
    chance: float
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        self.low, self.high = wilson_interval(self.correct, self.n)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


@dataclass
class Report:
    """Per-item correctness and per-ability scores of one answerer on one benchmark."""

    benchmark: str
    circular: bool
    correct: list[bool]
    scores: dict[str, AbilityScore]

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)

    def row(self, **labels: str) -> dict[str, object]:
        """One table row: ``labels`` first, then accuracy per ability and overall."""
        row: dict[str, object] = dict(labels)
        row.update({a: round(s.accuracy, 3) for a, s in self.scores.items()})
        row["overall"] = round(self.accuracy, 3)
        return row


def evaluate(
    answerer: Answerer,
    benchmark: Benchmark | Sequence[MCItem],
    circular: bool = False,
    blind_inputs: bool = False,
) -> Report:
    """Score ``answerer`` on every item, grouped by ability.

    circular: ask every rotation of every item, right only if all are right (the same
    as :func:`circular_correct`, batched). blind_inputs: blank picture and sound first.
    """
    items = list(benchmark)
    if not items:
        raise ValueError("the benchmark is empty")
    if blind_inputs:
        items = [blind(it) for it in items]
    if circular:
        asked = [rotate(it, s) for it in items for s in range(len(it.options))]
    else:
        asked = items
    right = [c == it.answer_index for c, it in zip(choose(answerer, asked), asked, strict=True)]
    if circular:
        correct, start = [], 0
        for it in items:
            correct.append(all(right[start : start + len(it.options)]))
            start += len(it.options)
    else:
        correct = right
    scores = {}
    for ability in ABILITIES:
        mine = [i for i, it in enumerate(items) if it.ability == ability]
        if mine:
            chance = sum(guess_rate(items[i], circular) for i in mine) / len(mine)
            scores[ability] = AbilityScore(
                ability, len(mine), sum(correct[i] for i in mine), chance
            )
    name = getattr(benchmark, "name", "items")
    return Report(name, circular, correct, scores)


MODES = ("vanilla", "circular", "blind")


def score_table(
    answerers: dict[str, Answerer],
    benchmarks: Sequence[Benchmark],
    modes: Sequence[str] = ("vanilla", "circular"),
) -> list[dict[str, object]]:
    """One table row per (model, benchmark, mode): accuracy per ability and overall.

    modes: "vanilla" (ask once), "circular" (every rotation must be right), "blind"
    (ask once with picture and sound blanked).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"modes should come from {MODES}; got {unknown}")
    rows = []
    for name, answerer in answerers.items():
        for bench in benchmarks:
            for mode in modes:
                report = evaluate(
                    answerer, bench, circular=mode == "circular", blind_inputs=mode == "blind"
                )
                rows.append(report.row(model=name, benchmark=bench.name.split(" ")[0], mode=mode))
    return rows
