"""Lesson 04b's race: its arms, the score and the verdict, its figures, its budget; span heads
in the capstone's recipe."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from lessons.test_diffusion_head import TinyAutoencoder
from test_figure_layout import text_collisions

from omni_edu.data import OmniWorld
from omni_edu.lessons.any_to_any import heads
from omni_edu.lessons.diffusion_family import budget, family, plots, verdict
from omni_edu.model.heads.dit import DiTConfig, DiTHead
from omni_edu.model.heads.flow import FlowHead
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import get_profile

CI = get_profile("ci")
WORLD = OmniWorld("train", seed=0, n_objects=1, profile=CI)


@pytest.fixture(scope="module")
def pools():
    pixels = a2a.AnyToAnyData(WORLD, 8, ("text->image",))
    codes = a2a.AnyToAnyData(WORLD, 8, ("text->image",), image_tokenizer=TinyAutoencoder())
    return {"pixels": pixels, "codes": codes}


def test_step_samplers_put_the_default_first():
    samplers = family.step_samplers((1, 4, 8, 16), temperature=1.0)
    assert next(iter(samplers)) == f"{budget.DEFAULT_STEPS} steps"
    assert samplers["1 step"] == {"steps": 1, "temperature": 1.0}
    assert [o["steps"] for o in samplers.values()] == [8, 1, 4, 16]


def test_the_six_arms_and_a_dit_of_matched_parameters(pools):
    arms = family.arms(pools["pixels"], (1, 8))
    assert [a.label for a in arms] == [
        family.REGRESSION,
        family.FLOW,
        family.DIT,
        family.WHOLE_IMAGE,
        family.VQ,
        family.MASKED,
    ]
    assert {a.form for a in arms if a.head in ("codes", "masked_codes")} == {"codes"}
    flow = a2a.model_config(pools["pixels"], image_head="flow", **a2a.FLOW_HEAD)
    head = flow.head_config("image")
    dit = next(a for a in arms if a.label == family.DIT)
    config = DiTConfig.from_flow(head, dit.overrides["head_width"], dit.overrides["head_depth"])
    ratio = DiTHead(config).num_parameters() / FlowHead(head).num_parameters()
    assert 0.85 < ratio < 1.15


def test_span_heads_plug_into_the_capstone_recipe(pools):
    config = a2a.model_config(pools["codes"], image_head="masked_codes", **a2a.FLOW_HEAD)
    assert config.image_head == "masked_codes"
    with pytest.raises(ValueError, match="gives image as features"):
        a2a.model_config(pools["pixels"], image_head="masked_codes")
    recipe = a2a.CapstoneRecipe(8, 8, 10, 4, image_head="dit", audio_head="transfusion")
    assert recipe.model_settings == a2a.FLOW_HEAD
    chosen = heads.candidates(CI, extra=("DiT heads",))
    assert list(chosen) == ["linear heads", "flow heads", "DiT heads"]
    assert set(heads.candidates(get_profile("gpu"))) == set(heads.CANDIDATES)
    with pytest.raises(ValueError, match="extra"):
        heads.candidates(CI, extra=("a head",))


def per_prompt_table(values: dict) -> dict:
    """A race's per_prompt entries, seed 0, from ``{arm: (full fidelity, open validity,
    open coverage TV)}`` per-prompt lists."""
    out = {}
    for arm, (fid, val, tv) in values.items():
        out[arm, "", "full", 0] = {"fidelity": torch.tensor(fid)}
        out[arm, "", "open", 0] = {
            "fidelity": torch.tensor(fid),
            "validity": torch.tensor(val),
            "coverage_tv": torch.tensor(tv),
        }
    return out


def test_score_is_lesson_06s_rule_and_its_interval_is_paired():
    n = 40
    table = per_prompt_table(
        {
            "a": ([0.9] * n, [0.5] * n, [0.3] * n),
            "b": ([0.6] * n, [0.5] * n, [0.3] * n),
            "c": ([0.9, float("nan")] * (n // 2), [0.5] * n, [0.3] * n),
        }
    )
    assert verdict.score(table, ("a", ""), [0]) == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    assert verdict.score(table, ("c", ""), [0]) == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    d, lo, hi = verdict.score_difference(table, ("a", ""), ("b", ""), [0])
    assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    result = verdict.winner(table, [("a", ""), ("b", "")], [0])
    assert result["best"] == "a" and result["wins"]


def test_the_verdict_follows_the_rule():
    won = {"best": "per-token flow head", "wins": True}
    assert verdict.claim_verdict(won, family.APPENDED, True) == "supported at this size"
    other = {"best": "VQ codes", "wins": True}
    assert verdict.claim_verdict(other, family.APPENDED, True) == "not supported at this size"
    tie = {"best": "VQ codes", "wins": False}
    assert verdict.claim_verdict(tie, family.APPENDED, True).startswith("open")
    assert verdict.claim_verdict(won, family.APPENDED, False) == "not tested at this budget"


def test_metric_difference_leaves_out_nan_prompts():
    table = per_prompt_table(
        {
            "a": ([1.0, float("nan"), 1.0], [1.0] * 3, [0.0] * 3),
            "b": ([0.0] * 3, [1.0] * 3, [0.0] * 3),
        }
    )
    d, lo, hi = verdict.metric_difference(table, ("a", ""), ("b", ""), "full", "fidelity", [0])
    assert d == lo == hi == 1.0


def test_the_masks_figure_shows_the_picture_both_ways(pools):
    masks, labels = family.document_masks(pools["pixels"])
    causal, both = masks.values()
    first = labels.index("p0")
    assert not causal[first, first + 1] and both[first, first + 1]
    assert not both[first - 1, first]  # the caption never sees the picture
    fig = plots.masks_figure(masks, labels)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel()
    assert text_collisions(fig) == []


def test_the_steps_figure_has_one_panel_per_metric():
    point = {"full: fidelity": 0.8, "open: validity": 0.5, "open: coverage_tv": 0.3}
    fig = plots.steps_figure({"flow": {1: point, 8: point}}, {"codes": point}, point)
    assert len(fig.axes) == 3
    assert all(ax.get_title() and ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert text_collisions(fig) == []
    fig = plots.cost_figure({"flow": (16, 2.0, 0.6), "dit": (2, 0.5, 0.5)})
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    assert text_collisions(fig) == []


def test_the_budget_is_cut_in_a_dry_run():
    dry = budget.budget(get_profile("gpu-dry"))
    assert dry.steps <= 2 and dry.seeds == (0,) and budget.DEFAULT_STEPS in dry.sweep
    ci = budget.budget(CI)
    assert ci.steps == budget.BUDGET["ci"]["steps"] and budget.DEFAULT_STEPS in ci.sweep
