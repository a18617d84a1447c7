"""Lesson 06b's code: the grounding test's data (which words appear where), its pairings
and statistics, and the text-dominance check's swapped inputs."""

from __future__ import annotations

import math
import random

import pytest
import torch

from omni_edu.data import OmniWorld
from omni_edu.data.scene import Scene, SceneObject
from omni_edu.lessons.modality_transfer import dominance, factorial, grounding
from omni_edu.lessons.modality_transfer.budget import BUDGET
from omni_edu.modalities import Modality, TextTokenizer
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import PROFILES, get_profile

CI = get_profile("ci")
GROUNDED = set(grounding.GROUNDED_WORDS)


def words(text: str) -> set[str]:
    return set(text.split())


@pytest.fixture(scope="module")
def world():
    return grounding.GroundingWorld("train", seed=0, profile=CI)


@pytest.fixture(scope="module")
def arms(world):
    return {
        arm: grounding.GroundingData(world, 48, *pairing) for arm, pairing in factorial.ARMS.items()
    }


def test_every_profile_has_a_budget():
    for name in ("ci", "cpu", "gpu"):
        assert {"curriculum_base", "dominance", "grounding"} <= set(BUDGET[name])
    assert PROFILES["gpu-dry"].name in BUDGET


def test_scenes_hold_one_or_two_objects_of_different_shapes(world):
    batch = world.sample(64, seed=3)
    counts = [len(s) for s in batch.scenes]
    assert set(counts) == {1, 2}
    assert all(len({o.shape for o in s.objects}) == len(s) for s in batch.scenes)


def test_a_caption_uses_the_grounded_words_only_where_asked():
    scene = Scene(
        (
            SceneObject("circle", "red", "small", "top left"),
            SceneObject("square", "blue", "large", "bottom right"),
        )
    )
    rng = random.Random(0)
    for _ in range(20):
        assert not words(grounding.caption_of(scene, "taught", "canonical", rng)) & GROUNDED
    text = grounding.caption_of(scene, "taught", "canonical", rng, grounded_colour=0)
    assert "crimson" in text and "navy" not in text
    text = grounding.caption_of(scene, "taught", "grounded", rng)
    assert {"upper", "lower"} <= words(text) and not words(text) & {"top", "bottom"}
    assert grounding.describe(scene.objects[0], "crimson", "upper") == (
        "a small crimson circle at the upper left"
    )


def test_training_questions_never_read_a_grounded_word(world):
    data = grounding.GroundingData(world, 256)
    for caption, q in zip(data.qa_captions, data.questions, strict=True):
        assert not words(caption) & GROUNDED
        assert q.answer in (*grounding.COLOURS, *grounding.POSITIONS)
    # ... while the caption documents do (every word style is drawn)
    assert set().union(*(words(c) for c in data.media_captions)) >= GROUNDED


def test_the_arms_differ_only_in_whose_sound_and_picture(arms):
    pp, ss = arms[factorial.PP], arms[factorial.SS]
    assert pp.qa_captions == ss.qa_captions and pp.media_captions == ss.media_captions
    assert torch.equal(pp.audio, ss.audio) and torch.equal(pp.patches, ss.patches)
    n = len(pp)
    assert torch.equal(pp.partner["audio"], torch.arange(n))
    for media in ("audio", "image"):
        partner = ss.partner[media]
        assert sorted(partner.tolist()) == list(range(n))  # a permutation...
        assert not (partner == torch.arange(n)).any()  # ...that moves every scene
    sp = arms[factorial.SP]
    assert torch.equal(sp.partner["image"], torch.arange(n))
    assert not (sp.partner["audio"] == torch.arange(n)).any()


def test_a_shuffled_document_carries_another_scenes_sound(arms):
    pp, ss = arms[factorial.PP], arms[factorial.SS]
    i = 0
    j = int(ss.partner["audio"][i])
    own, other = pp.document("text->audio", i), ss.document("text->audio", i)
    assert torch.equal(own[0].data, other[0].data)  # the same caption
    assert torch.equal(own[-1].data, pp.audio[i]) and torch.equal(other[-1].data, pp.audio[j])
    question = pp.document(a2a.QUESTION, i)
    assert [s.predict for s in question] == [False, True]  # only the answer is trained
    packed = pp.pool
    assert packed.loss_mask(Modality.AUDIO).any() and packed.loss_mask(Modality.IMAGE).any()


def test_a_blind_pool_asks_without_the_caption(world):
    seeing = grounding.GroundingData(world, 8)
    blind = grounding.GroundingData(world, 8, blind=True)
    assert blind.questions == seeing.questions
    assert len(blind.document(a2a.QUESTION, 0)[0]) < len(seeing.document(a2a.QUESTION, 0)[0])


def test_test_sets_ask_with_grounded_and_taught_words():
    tests = grounding.test_sets(CI, 12, objects=(1, 2))
    assert len(tests) == 8
    tok = TextTokenizer()
    for name, t in tests.items():
        assert len(t) == 12 and len(t.blind_prompts) == 12
        for prompt, blind_prompt in zip(t.prompts, t.blind_prompts, strict=True):
            said = words(tok.decode(prompt[0].data.tolist(), skip_special=True))
            asked = words(tok.decode(blind_prompt[0].data.tolist(), skip_special=True))
            assert asked < said  # the blind prompt is the question alone
            if t.words == "taught":
                assert not said & GROUNDED
            elif t.kind == "where":
                assert said & {"upper", "lower"} and not said & {"top", "bottom"}
            else:
                assert said & set(grounding.GROUNDED_COLOUR.values())
        assert name.startswith(f"{t.words} {t.kind}, {t.objects} object")


def test_seed_interval_is_a_t_interval():
    iv = factorial.seed_interval([1.0, 2.0, 3.0])
    assert iv.mean == pytest.approx(2.0) and iv.se == pytest.approx(1 / math.sqrt(3))
    assert iv.high - iv.mean == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert iv.sign() == 0 and factorial.seed_interval([2.0, 2.1, 1.9]).sign() == 1
    one = factorial.seed_interval([0.5])
    assert math.isinf(one.half_width) and one.sign() == 0
    big = factorial.seed_interval([0.0, 1.0] * 50)  # many seeds: the normal's 1.96
    assert big.high - big.mean == pytest.approx(1.96 * big.se, rel=1e-6)


def test_logit_and_points_are_inverse_views_of_one_scale():
    assert factorial.logit(0.5, 100) == pytest.approx(0.0)
    assert math.isfinite(factorial.logit(1.0, 10)) and math.isfinite(factorial.logit(0.0, 10))
    assert factorial.points(0.5, math.log(3)) == pytest.approx(0.25)
    assert factorial.points(0.2, 0.0) == 0.0


def _run(accuracy: dict[str, float], n: int = 100) -> factorial.GroundingRun:
    """A made-up run whose arms answer the first ``accuracy * n`` questions right."""
    test = grounding.TestSet("grounded where, 1 object", "where", "grounded", 1, [], [], [])
    test.answers = ["top left"] * n
    answers = {
        (arm, 0): {test.name: ["top left"] * round(p * n) + ["no"] * (n - round(p * n))}
        for arm, p in accuracy.items()
    }
    return factorial.GroundingRun(
        tests={test.name: test},
        seeds=[0],
        answers=answers,
        blind={test.name: ["no"] * n},
        majority={"where": "top left", "colour": "red"},
        steps={},
        scenes=0,
        profile=CI,
    )


def test_contrasts_measure_log_odds_and_the_interaction():
    def odds(p):
        return p / (1 - p)

    # additive on the log-odds scale: PP's odds are PS's times SP's over SS's
    ss, ps, sp = 0.2, 0.5, 0.4
    pp = odds(ps) * odds(sp) / odds(ss)
    run = _run({factorial.PP: pp / (1 + pp), factorial.PS: ps, factorial.SP: sp, factorial.SS: ss})
    names = run.names("grounded")
    assert run.contrast(factorial.INTERACTION, names)[0] == pytest.approx(0.0, abs=0.05)
    assert run.contrast(factorial.TRANSFER, names)[0] == pytest.approx(math.log(4), abs=0.05)
    assert run.accuracy(factorial.PS, 0, names) == pytest.approx(0.5)
    assert run.blind_accuracy(names) == 0.0 and run.majority_accuracy(names) == 1.0
    assert run.names("taught") == [] and run.questions(names) == 100


def test_swapped_inputs_keep_the_words_and_move_every_picture_and_sound():
    world = OmniWorld("test", seed=0, n_objects=1, caption_style="canonical", profile=CI)
    data = a2a.AnyToAnyData(world, 16, tasks=dominance.MEDIA_INPUT)
    swapped = dominance.swapped_inputs(data)
    assert swapped.batch is data.batch  # scored against the same scenes
    for name in ("image", "audio"):
        own, other = data.prompt_items[name], swapped.prompt_items[name]
        assert not any(torch.equal(own[i], other[i]) for i in range(len(data)))
        assert sorted(other.sum(dim=(1, 2)).tolist()) == pytest.approx(
            sorted(own.sum(dim=(1, 2)).tolist())
        )
    doc = swapped.document("image->text", 0)
    assert not torch.equal(doc[1].data, data.document("image->text", 0)[1].data)
    assert swapped.prompt("text", 0) == data.prompt("text", 0)


def test_variants_change_one_thing_each():
    w = {"text": 1.0, "image": 50.0, "audio": 10.0}
    balanced = dominance.variant_setting("balanced", w)
    assert dominance.variant_setting("equal loss weights", w) == (balanced[0], dominance.EQUAL)
    heavy_mix, heavy_w = dominance.variant_setting("text-heavy mix", w)
    assert heavy_w == w and heavy_mix["image->text"] == 4 * heavy_mix["text->image"]
    with pytest.raises(ValueError, match="variant"):
        dominance.variant_setting("louder", w)
