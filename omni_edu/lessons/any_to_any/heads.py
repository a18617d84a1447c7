"""Lesson 06: which output heads should the assembled model write with? Measured.

One head writes every direction that ends in its modality (the image head serves
text->image and audio->image; the audio head text->audio and image->audio), so heads are
chosen per output modality. Each candidate model is trained with the capstone's recipe,
then every generating direction draws K samples for held-out prompts of two kinds:

* **full** prompts fix every attribute (the caption names all four; the picture or sound
  is the scene's own): scored by *fidelity*;
* **open** prompts leave some free (a caption naming only some attributes, a grey picture
  for image->audio, an untimed sound for audio->image): scored by *validity* (clean
  objects) and *coverage* (total-variation distance of the free attributes to the data's
  distribution) as well as fidelity.

:data:`RULE` states how the scores decide, fixed before any run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts import any_to_any as a2a
from omni_edu.parts.judges import Judges
from omni_edu.parts.judges.metrics import Metric
from omni_edu.profiles import Profile

# Every pair of heads the rule can choose from, label -> (image head, audio head): lesson 04's
# per-token heads and lesson 04b's span heads, all of them OmniLM head kinds that the
# capstone's recipe trains (a2a.recipe_model). Codes need lesson 03's tokenizers.
CANDIDATES: dict[str, tuple[str, str]] = {
    "linear heads": ("linear", "linear"),
    "flow heads": ("flow", "flow"),
    "VQ codes": ("codes", "codes"),
    "DiT heads": ("dit", "dit"),
    "whole-image diffusion": ("transfusion", "transfusion"),
    "masked codes": ("masked_codes", "masked_codes"),
}
# Which candidates each profile trains: each costs a whole capstone run. In ci lesson 04 and
# 04b's races stand for the others, to keep lesson 06 within its time.
RACED = {
    "ci": ("linear heads", "flow heads"),
    "cpu": ("linear heads", "flow heads", "VQ codes"),
    "gpu": tuple(CANDIDATES),
}
GENERATING = tuple(d for d, spec in a2a.DIRECTIONS.items() if spec.target != "text")
PROMPT_SETS = tuple(a2a.TEST_PROMPTS)  # ("full", "open")
RULE = (
    "for each output modality, a candidate's score is the mean over the two directions that "
    "end in it of (fidelity on full prompts + validity on open prompts + 1 - coverage "
    "distance on open prompts) / 3; the highest score wins, and a candidate within 0.02 of "
    "the linear heads' score does not displace them (the simpler head stays)"
)
TIE = 0.02


def candidates(profile: Profile, extra: Sequence[str] = ()) -> dict[str, tuple[str, str]]:
    """The candidates ``profile`` races (:data:`RACED`), plus the labels in ``extra``:
    ``{label: (image head, audio head)}``, the linear baseline first."""
    unknown = [label for label in extra if label not in CANDIDATES]
    if unknown:
        raise ValueError(f"extra should name candidates from {list(CANDIDATES)}; got {unknown}.")
    names = RACED.get(profile.name, RACED["gpu"])
    return {label: CANDIDATES[label] for label in CANDIDATES if label in names or label in extra}


def open_indices(data: a2a.AnyToAnyData, direction: str, n: int) -> list[int]:
    """The first ``n`` scenes whose prompt for ``direction`` leaves something free."""
    free = (~data.fixed(direction).all(dim=1)).nonzero()[:, 0].tolist()
    return free[:n]


def evaluate(
    model: OmniLM,
    tests: Mapping[str, a2a.AnyToAnyData],
    judges: Judges,
    n: int,
    k: int,
    seed: int = 0,
    **sample_options,
) -> dict[tuple[str, str], dict[str, Metric]]:
    """Sample metrics of ``model`` for every generating direction and prompt set:
    ``{(direction, "full" | "open"): {metric: Metric}}``. ``tests`` maps a prompt set to
    its test pool; ``n`` prompts per direction and set, ``k`` samples each."""
    out = {}
    for direction in GENERATING:
        for name in PROMPT_SETS:
            data = tests[name]
            if name == "full":
                indices = list(range(min(n, len(data))))
            else:
                indices = open_indices(data, direction, n)
            out[direction, name] = a2a.sample_scores(
                model, data, judges, direction, indices, k, seed, **sample_options
            )
    return out


def modality_scores(results: Mapping[tuple[str, str], Mapping[str, Metric]]) -> dict[str, float]:
    """A candidate's score per output modality under :data:`RULE`."""
    scores = {}
    for modality in ("image", "audio"):
        parts = []
        for direction in GENERATING:
            if a2a.DIRECTIONS[direction].target != modality:
                continue
            full, open_ = results[direction, "full"], results[direction, "open"]
            parts.append(
                (full["fidelity"].mean + open_["validity"].mean + 1 - open_["coverage_tv"].mean) / 3
            )
        scores[modality] = sum(parts) / len(parts)
    return scores


def choose(scores: Mapping[str, Mapping[str, float]], baseline: str) -> dict[str, str]:
    """The winning candidate per output modality: ``scores`` maps a candidate's label to
    its :func:`modality_scores`; ``baseline`` (the linear heads) keeps its place unless
    beaten by more than :data:`TIE`."""
    chosen = {}
    for modality in ("image", "audio"):
        best = max(scores, key=lambda label: scores[label][modality])
        if scores[best][modality] - scores[baseline][modality] <= TIE:
            best = baseline
        chosen[modality] = best
    return chosen


def summary_rows(
    results: Mapping[str, Mapping[tuple[str, str], Mapping[str, Metric]]],
    directions: Sequence[str] = GENERATING,
) -> list[dict]:
    """One row per candidate and direction: full fidelity, open fidelity, validity,
    coverage distance, ghost mass (means over prompts)."""
    rows = []
    for label, per in results.items():
        for direction in directions:
            full, open_ = per[direction, "full"], per[direction, "open"]
            rows.append(
                {
                    "heads": label,
                    "direction": direction,
                    "full: fidelity": full["fidelity"].mean,
                    "open: fidelity": open_["fidelity"].mean,
                    "open: validity": open_["validity"].mean,
                    "open: coverage TV": open_["coverage_tv"].mean,
                    "(reference TV)": open_["coverage_tv_reference"].mean,
                    "open: ghost mass": open_["ghost_mass"].mean,
                }
            )
    return rows
