"""Metrics of K samples per prompt, on known cases: real samples from the data's
conditional distribution score high, blends of two scenes are not valid, copies of one
sample cover nothing, ghosts in two cells carry half the energy."""

import math

import pytest
import torch

from omni_edu.data import OmniWorld, PromptSpec
from omni_edu.parts.judges import judges
from omni_edu.parts.judges.metrics import (
    Metric,
    conditional_samples,
    coverage,
    coverage_reference,
    fidelity,
    ghost_mass,
    ghost_mass_of,
    object_colour_distance,
    precision_recall,
    sample_metrics,
    validity,
)
from omni_edu.profiles import get_profile

K = 8
CI = get_profile("ci")


@pytest.fixture(scope="module")
def judge_pair():
    """The course's judges (the ci profile trains them in about 15 s, once per run)."""
    return judges(CI, verbose=False).model


@pytest.fixture(scope="module")
def world():
    return OmniWorld("test", seed=0, profile=CI, n_objects=1)


@pytest.fixture(scope="module")
def prompts(world):
    """64 held-out prompts, each attribute left free half the time: ``(64, 4)`` each."""
    batch = world.sample(64, seed=3, prompts=PromptSpec.uniform(0.5))
    return batch.attributes[:, 0], batch.prompts.fixed["text"][:, 0]


def _cases(world, prompts, modality):
    """Real samples, a 50/50 blend with another prompt's real samples, and K copies of
    one real sample: each ``(64, K, ...)``."""
    attributes, fixed = prompts
    real = conditional_samples(world, attributes, fixed, K, modality, seed=1)
    others = conditional_samples(world, attributes, fixed, K, modality, seed=2).roll(1, dims=0)
    copies = real[:, :1].expand_as(real).contiguous()
    return real, 0.5 * real + 0.5 * others, copies


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_real_samples_score_high(judge_pair, world, prompts, modality):
    judge = judge_pair.image if modality == "image" else judge_pair.audio
    real, _, _ = _cases(world, prompts, modality)
    metrics = sample_metrics(judge, real, *prompts, world, seed=9)
    assert metrics["fidelity"].mean > 0.9
    assert metrics["validity"].mean > 0.9
    tv, reference = metrics["coverage_tv"], metrics["coverage_tv_reference"]
    assert 0.1 < reference.mean < 0.4  # K = 8 draws are never exactly the distribution
    assert tv.mean == pytest.approx(reference.mean, abs=0.06)
    assert metrics["precision"].mean > 0.85 and metrics["recall"].mean > 0.85
    assert metrics["ghost_mass"].mean < 0.02
    # NaN where a metric does not apply: fidelity of prompts that fix nothing, coverage of
    # prompts that fix everything, ghosts where the position is fixed
    fixed = prompts[1]
    assert torch.equal(metrics["fidelity"].per_prompt.isnan(), ~fixed.any(1))
    assert torch.equal(tv.per_prompt.isnan(), fixed.all(1))
    assert torch.equal(metrics["ghost_mass"].per_prompt.isnan(), fixed[:, 3])
    assert metrics["fidelity"].n == int(fixed.any(1).sum())


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_a_blend_of_two_scenes_is_not_one_clean_object(judge_pair, world, prompts, modality):
    judge = judge_pair.image if modality == "image" else judge_pair.audio
    real, blend, _ = _cases(world, prompts, modality)
    assert validity(judge, blend).mean < 0.2 < 0.9 < validity(judge, real).mean
    precision, _ = precision_recall(judge, blend, real)
    assert precision.mean < 0.4  # outside the real data's manifold
    assert fidelity(judge, blend, *prompts).mean < 0.75


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_copies_of_one_sample_cover_nothing(judge_pair, world, prompts, modality):
    judge = judge_pair.image if modality == "image" else judge_pair.audio
    _, _, copies = _cases(world, prompts, modality)
    attributes, fixed = prompts
    copied = coverage(judge, copies, attributes, fixed, "test")
    reference = coverage_reference(judge, world, attributes, fixed, K, seed=5)
    assert copied.mean > 0.55 and copied.mean > 2 * reference.mean
    for name, distinct in copied.distinct.items():
        free = ~distinct.isnan()
        assert (distinct[free] == 1).all(), name  # one value among the K copies
        assert (reference.distinct[name][free] >= 1).all()
    assert max(v.nanmean().item() for v in reference.distinct.values()) > 3
    fresh = conditional_samples(world, attributes, fixed, K, modality, seed=6)
    precision, recall = precision_recall(judge, copies, fresh)
    assert precision.mean > 0.85 and recall.mean < 0.1  # realistic, but no variety
    assert validity(judge, copies).mean > 0.85  # each copy is still a clean object


def test_ghost_mass_counts_energy_outside_the_brightest_cell(world):
    base = torch.tensor([[[1, 4, 1, 0]]])  # a large blue square at the top left
    cells = [base.clone() for _ in range(4)]
    for position, scene in enumerate(cells):
        scene[0, 0, 3] = position
    mask = torch.ones(1, 1, dtype=torch.bool)
    pictures = [world.render(scene, mask, seed=1) for scene in cells]
    images = torch.cat([p.images for p in pictures])
    mels = torch.cat([p.mels for p in pictures])
    assert ghost_mass_of(images).max() < 0.02 and ghost_mass_of(mels).max() < 0.02
    two, four = images[:2].mean(0, keepdim=True), images.mean(0, keepdim=True)
    assert ghost_mass_of(two).item() == pytest.approx(0.5, abs=0.03)
    assert ghost_mass_of(four).item() == pytest.approx(0.75, abs=0.03)
    assert ghost_mass_of(mels[:2].mean(0, keepdim=True)).item() == pytest.approx(0.5, abs=0.03)
    assert ghost_mass_of(torch.full((1, 32, 32), -1.0)).item() == 0  # nothing drawn
    free_position = torch.tensor([[True, True, True, False], [True, True, True, True]])
    ghosts = ghost_mass(torch.stack([two.expand(K, -1, -1, -1)] * 2), free_position)
    assert ghosts.per_prompt[0].item() == pytest.approx(0.5, abs=0.03)
    assert ghosts.per_prompt[1].isnan() and ghosts.n == 1


def test_a_blank_picture_or_a_silent_sound_is_not_valid(judge_pair):
    blank = torch.full((2, K, 3, 16, 16), 0.08)
    silence = torch.full((2, K, 32, 32), -1.0)
    assert validity(judge_pair.image, blank).mean == 0
    assert validity(judge_pair.audio, silence).mean == 0
    assert validity(judge_pair.audio, silence).parts["one_slot"].max() == 0


def test_object_colour_distance_finds_palette_colours(world):
    real = world.sample(200, seed=4).images
    assert (object_colour_distance(real) < 0.15).float().mean() > 0.97
    assert object_colour_distance(torch.full((1, 3, 16, 16), 0.08)).item() == math.inf
    orange = torch.full((1, 3, 16, 16), 0.08)
    orange[0, :, 4:10, 4:10] = torch.tensor([0.95, 0.5, 0.1])[:, None, None]
    assert object_colour_distance(orange).item() > 0.3  # between red and yellow


def test_fidelity_reads_only_the_fixed_attributes(judge_pair, world):
    attributes = torch.tensor([[0, 1, 0, 2], [3, 4, 1, 0]])
    colour_only = torch.tensor([[False, True, False, False]] * 2)
    real = conditional_samples(world, attributes, colour_only, K, "image", seed=0)
    result = fidelity(judge_pair.image, real, attributes, colour_only)
    assert result.mean > 0.9 and set(result.parts) == {"shape", "colour", "size", "position"}
    assert result.parts["shape"].isnan().all() and result.parts["colour"].min() > 0.8
    wrong = attributes.clone()
    wrong[:, 1] = torch.tensor([2, 5])  # the prompts asked for other colours
    assert fidelity(judge_pair.image, real, wrong, colour_only).mean < 0.2


def test_metric_means_skip_prompts_it_does_not_apply_to():
    metric = Metric("m", torch.tensor([0.5, math.nan, 1.0]))
    assert metric.mean == 0.75 and metric.n == 2
    assert math.isnan(Metric("m", torch.tensor([math.nan])).mean)


def test_bad_input_raises_clear_errors(judge_pair, world):
    attributes = torch.tensor([[0, 1, 0, 2]])
    fixed = torch.ones(1, 4, dtype=torch.bool)
    one_each = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(n_prompts, K, 3, H, W\).*samples\[:, None\]"):
        fidelity(judge_pair.image, one_each, attributes, fixed)
    with pytest.raises(ValueError, match=r"log-mels \(n_prompts, K, frames, n_mels\)"):
        validity(judge_pair.audio, torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match="samples are for 2 prompts but attributes has 1"):
        fidelity(judge_pair.image, torch.rand(2, K, 3, 16, 16), attributes, fixed)
    with pytest.raises(ValueError, match="fixed should be a bool tensor"):
        coverage(judge_pair.image, one_each[:, None], attributes, fixed.int(), "test")
    with pytest.raises(TypeError, match=r"picture judge .* or a sound judge"):
        validity(judge_pair, one_each[:, None])
    with pytest.raises(ValueError, match="real should be"):
        precision_recall(judge_pair.image, torch.rand(2, K, 3, 16, 16), torch.rand(3, K, 3, 8, 8))
    with pytest.raises(ValueError, match="no object of split 'test' fits"):
        coverage(judge_pair.image, one_each[:, None], torch.tensor([[0, 2, 0, 0]]), fixed, "test")
