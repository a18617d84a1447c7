"""Planted shortcuts of two kinds and strengths, and how much a model relies on them.

Chapter 001 warns that "models will exploit any shortcut available, whether textual or
visual". Lesson 09 plants one cue of each kind in the answerer's *training* questions and
measures what the model learned from it:

* ``"slot"`` - a cue in the question's layout (textual): on a share ``strength`` of the
  items the right answer is moved to option A;
* ``"corner"`` - a cue in the picture (visual): a 2x2 block in the picture's top-left corner
  is coloured by the slot it points to (A red, B green, C blue, D yellow); on a share
  ``strength`` of the items that slot holds the right answer, on the rest it is drawn at
  random. Every item carries the mark, so the picture alone never tells which items are cued.

**Reliance** is measured on **cue-conflict** items (:func:`conflict_items`), where the cue
points to a *wrong* option: the share of them on which a model picks the cued option. A
model that ignores the cue picks it only when it errs towards that option; a model that
follows the cue picks it always. The difference between a cue-trained model and the same
model trained without the cue, on the same items, is the reliance the cue taught it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch

from omni_edu.lessons.evaluation.benchmark import LETTERS, Answerer, Benchmark, MCItem, choose

CUE_TYPES = ("slot", "corner")
# The colour of each slot's corner mark (RGB in [0, 1]), and the mark's size in pixels.
SLOT_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
MARK = 2


def mark_corner(image: torch.Tensor, slot: int, mark: int = MARK) -> torch.Tensor:
    """A copy of ``image (3, H, W)`` with its top-left ``mark x mark`` pixels in slot
    ``slot``'s colour (:data:`SLOT_COLOURS`)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image should be (3, H, W); got {tuple(image.shape)}.")
    if not 0 <= slot < len(SLOT_COLOURS):
        raise ValueError(f"slot should be in 0..{len(SLOT_COLOURS) - 1}; got {slot}.")
    if not 1 <= mark <= min(image.shape[1:]):
        raise ValueError(f"mark should be 1 to {min(image.shape[1:])} pixels; got {mark}.")
    out = image.clone()
    out[:, :mark, :mark] = torch.tensor(SLOT_COLOURS[slot], dtype=image.dtype)[:, None, None]
    return out


def corner_slot(image: torch.Tensor) -> int:
    """The slot a corner mark points to (the nearest :data:`SLOT_COLOURS`)."""
    colour = image[:, :MARK, :MARK].mean((1, 2))
    distances = [float(((colour - torch.tensor(c)) ** 2).sum()) for c in SLOT_COLOURS]
    return min(range(len(distances)), key=distances.__getitem__)


def _cue_one(item: MCItem, cue: str, strength: float, rng: random.Random, mark: int) -> MCItem:
    planted = rng.random() < strength
    if cue == "slot":
        if not planted:
            return item
        others = [o for i, o in enumerate(item.options) if i != item.answer_index]
        return replace(item, options=(item.answer, *others), answer_index=0)
    slot = item.answer_index if planted else rng.randrange(len(item.options))
    return replace(item, image=mark_corner(item.image, slot, mark))


def _check(cue: str, strength: float) -> None:
    if cue not in CUE_TYPES:
        raise ValueError(f"cue should be one of {CUE_TYPES}; got {cue!r}.")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength should be a share in [0, 1]; got {strength}.")


def plant(
    benchmark: Benchmark, cue: str, strength: float, seed: int = 0, mark: int = MARK
) -> Benchmark:
    """A copy of ``benchmark`` with ``cue`` planted at ``strength``.

    ``"slot"``: a share ``strength`` of the right answers moved to option A (the others
    keep their random slot). ``"corner"``: every picture marked in its corner with a
    slot's colour; that slot holds the right answer on a share ``strength`` of the items
    and is drawn at random on the rest (``strength=0``: an uninformative mark). The
    questions stay the same, so scores compare item by item. ``mark``: the corner mark's
    side in pixels.
    """
    _check(cue, strength)
    rng = random.Random(seed + 17)  # its own stream: the questions never depend on the cue
    items = [_cue_one(it, cue, strength, rng, mark) for it in benchmark]
    return Benchmark(f"{cue} cue {strength:.0%}", items)


@dataclass
class ConflictSet:
    """Items whose cue points to a wrong option: ``items`` and ``cued`` (the cued option's
    index in each item)."""

    cue: str
    items: list[MCItem]
    cued: list[int]

    def __len__(self) -> int:
        return len(self.items)


def conflict_items(benchmark: Benchmark, cue: str, seed: int = 0, mark: int = MARK) -> ConflictSet:
    """Cue-conflict versions of ``benchmark``'s items.

    ``"slot"``: the items whose right answer is not option A (the cue says A); the slots
    are the benchmark's own random ones. ``"corner"``: every item, its picture marked with
    a wrong option's colour, the wrong option drawn at random.
    """
    _check(cue, 0.0)
    if cue == "slot":
        items = [it for it in benchmark if it.answer_index != 0]
        return ConflictSet(cue, items, [0] * len(items))
    rng = random.Random(seed + 29)
    items, cued = [], []
    for it in benchmark:
        wrong = rng.choice([k for k in range(len(it.options)) if k != it.answer_index])
        items.append(replace(it, image=mark_corner(it.image, wrong, mark)))
        cued.append(wrong)
    return ConflictSet(cue, items, cued)


def uninformative(benchmark: Benchmark, cue: str, seed: int = 0, mark: int = MARK) -> Benchmark:
    """``benchmark`` as a model trained with ``cue`` expects to see it, with the cue
    carrying no information: the clean slots for ``"slot"``, a random corner mark for
    ``"corner"``."""
    return plant(benchmark, cue, 0.0, seed, mark)


def marked(answerer: Answerer, seed: int = 0, mark: int = MARK) -> Answerer:
    """``answerer`` shown every item with a random (uninformative) corner mark first.

    The answerers of :func:`train_arms` all trained on marked pictures; this is how they
    take a benchmark whose pictures carry no mark, without a change of input they never
    saw. The mark is drawn at random per item, so it says nothing about the answer.
    """
    rng = random.Random(seed + 41)

    def answer(items):
        shown = [
            replace(it, image=mark_corner(it.image, rng.randrange(len(it.options)), mark))
            for it in items
        ]
        return answerer(shown)

    return answer


def describe(cue: str) -> str:
    """One phrase for a cue type, for tables and claim boxes."""
    _check(cue, 0.0)
    if cue == "slot":
        return "textual: the right answer moved to option A"
    colours = ", ".join(
        f"{LETTERS[k]} {name}" for k, name in enumerate(("red", "green", "blue", "yellow"))
    )
    return f"visual: a corner mark whose colour names the right slot ({colours})"


def follows_cue(answerer: Answerer, conflict: ConflictSet) -> list[bool]:
    """For each cue-conflict item: did ``answerer`` pick the cued (wrong) option?"""
    picks = choose(answerer, conflict.items)
    return [p == c for p, c in zip(picks, conflict.cued, strict=True)]


def train_arms(
    train: Benchmark,
    strengths: tuple[float, ...],
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    cues: tuple[str, ...] = CUE_TYPES,
    mark: int = MARK,
) -> dict[tuple[str, float], object]:
    """One answerer per (cue, strength), and the control: ``{(cue, strength): model}``.

    Every arm trains on the same questions (``train``) with one cue planted at one strength;
    the control, under the key ``("none", 0.0)``, trains on them with the slots left random
    and an uninformative corner mark on every picture (so it has seen marks, just no
    information in them); a slot-cue arm's pictures carry uninformative marks too. Same
    seed, steps and schedule for every arm
    (:func:`~omni_edu.lessons.evaluation.answerers.train_answerer`). ``cues=()`` trains the
    control alone.
    """
    from tqdm.auto import tqdm

    from omni_edu.lessons.evaluation.answerers import train_answerer

    plans = {("none", 0.0): uninformative(train, "corner", seed, mark)}
    for cue in cues:
        for strength in strengths:
            cued = plant(train, cue, strength, seed, mark)
            if cue == "slot":  # the other cue is present but says nothing
                cued = uninformative(cued, "corner", seed, mark)
            plans[(cue, strength)] = cued
    models = {}
    for key, items in tqdm(plans.items(), desc="training the answerers", disable=not progress):
        models[key], _ = train_answerer(items, steps=steps, seed=seed, progress=False)
    return models


@dataclass
class Reliance:
    """How often one arm picks the cued option on cue-conflict items, against the control.

    ``rate``: the arm's share of cue-conflict items answered with the cued option;
    ``control``: the control's share on the same items; ``excess`` = ``rate - control``,
    with its 95 % paired bootstrap interval ``(low, high)`` over the items.
    """

    cue: str
    strength: float
    rate: float
    control: float
    excess: float
    low: float
    high: float
    n: int


def reliance(arm: Answerer, control: Answerer, conflict: ConflictSet, strength: float) -> Reliance:
    """The arm's reliance on ``conflict``'s cue, beyond the control's, paired over items."""
    from omni_edu.stats import bootstrap_difference

    mine = [float(x) for x in follows_cue(arm, conflict)]
    theirs = [float(x) for x in follows_cue(control, conflict)]
    excess, low, high = bootstrap_difference(mine, theirs)
    rate, base = sum(mine) / len(mine), sum(theirs) / len(theirs)
    return Reliance(conflict.cue, strength, rate, base, excess, low, high, len(mine))


def reliance_figure(rows: list[Reliance]):
    """Reliance beyond the control against the cue's strength, one line per cue type, with
    the 95 % intervals. Returns the figure, detached from pyplot."""
    import matplotlib.pyplot as plt

    from omni_edu.viz.plots import detached

    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for cue in dict.fromkeys(r.cue for r in rows):
        mine = sorted((r for r in rows if r.cue == cue), key=lambda r: r.strength)
        x = [100 * r.strength for r in mine]
        y = [r.excess for r in mine]
        err = [[r.excess - r.low for r in mine], [r.high - r.excess for r in mine]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=describe(cue).split(":")[0])
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("cue strength in training (% of items the cue points to the answer)")
    ax.set_ylabel("picks the cued wrong option,\nbeyond the control (share)")
    ax.set_title("Reliance on a planted cue, on cue-conflict items")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return detached(fig)
