"""Lesson 09: the multiple-choice harness, circular evaluation, shortcuts and answerers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from omni_edu.data import ABILITIES
from omni_edu.lessons.evaluation.answerers import AnswererConfig, OmniAnswerer
from omni_edu.lessons.evaluation.benchmark import (
    MCItem,
    blind,
    blind_accuracy,
    build_benchmark,
    choose,
    circular_correct,
    evaluate,
    first_option,
    guess_rate,
    plant_cue,
    random_answerer,
    rotate,
    score_table,
)


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(48, seed=3)


def _item(n_options, answer):
    options = ("red", "green", "blue", "cyan")[:n_options]
    return MCItem(
        "q", options, answer, "attribute", "image", torch.zeros(3, 4, 4), torch.zeros(8, 4)
    )


def test_guess_rate_is_one_over_the_options_or_all_rotations_right():
    assert guess_rate(_item(4, 0)) == 0.25
    assert guess_rate(_item(2, 0), circular=True) == 0.25


def test_benchmark_is_balanced_deterministic_and_lettered(bench):
    assert [sum(it.ability == a for it in bench) for a in ABILITIES] == [48] * 4
    again = build_benchmark(48, seed=3)
    assert [it.prompt() for it in again] == [it.prompt() for it in bench]
    assert torch.equal(again[5].image, bench[5].image)
    assert bench[0].prompt().splitlines()[1].startswith("A. ")
    for it in bench:
        assert 2 <= len(it.options) <= 4 and it.options[it.answer_index] == it.answer
        # The modality a question is not about is blank.
        if it.modality == "image":
            assert it.mel.abs().sum() == 0 and it.image.abs().sum() > 0
        if it.modality == "audio":
            assert it.image.abs().sum() == 0


def test_planted_cue_keeps_questions_and_moves_answers_to_a(bench):
    biased = plant_cue(bench, cue_rate=1.0)
    assert [it.question for it in biased] == [it.question for it in bench]
    assert [it.answer for it in biased] == [it.answer for it in bench]
    assert all(it.answer_index == 0 for it in biased)
    assert sorted(biased[7].options) == sorted(bench[7].options)


@given(st.integers(2, 4), st.data())
def test_rotation_moves_the_answer_with_its_option(n, data):
    answer = data.draw(st.integers(0, n - 1))
    shift = data.draw(st.integers(0, 10))
    item = _item(n, answer)
    turned = rotate(item, shift)
    assert turned.answer == item.answer
    assert sorted(turned.options) == sorted(item.options)
    assert rotate(turned, n - shift % n).options == item.options


def test_circular_marks_wrong_when_any_rotation_is_wrong():
    def wrong_when_answer_is_b(items):
        return [
            1 - (it.answer_index == 1) if it.answer_index == 1 else it.answer_index for it in items
        ]

    item = _item(4, 2)
    assert choose(wrong_when_answer_is_b, [item]) == [2]  # vanilla: right
    assert not circular_correct(wrong_when_answer_is_b, item)  # one rotation puts it at B
    assert circular_correct(lambda items: [it.answer_index for it in items], item)
    report = evaluate(wrong_when_answer_is_b, [item, _item(4, 0)], circular=True)
    assert report.correct == [False, False]


def test_batched_circular_agrees_with_the_one_item_scorer(bench):
    answerer = random_answerer(seed=1)
    report = evaluate(random_answerer(seed=1), bench, circular=True)
    assert sum(report.correct) > 0
    # Same answers in the same order: the batched version equals the item-by-item one.
    assert report.correct == [circular_correct(answerer, it) for it in bench]


def test_random_model_scores_chance_per_ability():
    bench = build_benchmark(300, seed=7)
    report = evaluate(random_answerer(seed=0), bench)
    for ability, score in report.scores.items():
        # 4 binomial standard deviations: fails by accident about once in 15000 runs.
        sd = math.sqrt(score.chance * (1 - score.chance) / score.n)
        assert abs(score.accuracy - score.chance) < 4 * sd, ability
    assert report.scores["matching"].chance == 0.5
    circular = evaluate(random_answerer(seed=0), bench, circular=True)
    assert circular.scores["counting"].chance == pytest.approx(0.25**4)


def test_shortcut_model_is_high_on_biased_and_chance_on_clean(bench):
    biased = plant_cue(bench, cue_rate=0.9)
    high = evaluate(first_option, biased)
    assert high.accuracy > 0.85
    clean = evaluate(first_option, bench)
    for score in clean.scores.values():
        assert abs(score.accuracy - score.chance) < 4 * math.sqrt(score.chance / score.n)
    assert evaluate(first_option, biased, circular=True).accuracy == 0.0
    # The blind probe sees it: no inputs needed to score high.
    assert blind_accuracy(first_option, biased) == high.accuracy


def test_per_ability_grouping_counts_the_right_items():
    items = [_item(4, 0), _item(2, 1), _item(4, 3)]
    items[1] = MCItem(
        "q", ("yes", "no"), 1, "matching", "image+audio", items[1].image, items[1].mel
    )
    report = evaluate(first_option, items)
    assert report.scores["attribute"].n == 2 and report.scores["attribute"].correct == 1
    assert report.scores["matching"].correct == 0 and report.scores["matching"].chance == 0.5
    assert set(report.scores) == {"attribute", "matching"}
    assert report.row(model="A")["attribute"] == 0.5


def test_blind_blanks_both_inputs(bench):
    item = next(it for it in bench if it.ability == "matching")
    assert item.image.abs().sum() > 0 and item.mel.abs().sum() > 0
    hidden = blind(item)
    assert hidden.image.abs().sum() == 0 and hidden.mel.abs().sum() == 0


def test_answerer_scores_only_real_options(bench):
    torch.manual_seed(0)
    model = OmniAnswerer(AnswererConfig.from_profile())
    scores = model.answer(bench.items[:8])
    assert scores.shape == (8, 4)
    for row, it in zip(scores, bench.items[:8], strict=True):
        assert (
            torch.isinf(row[len(it.options) :]).all()
            and torch.isfinite(row[: len(it.options)]).all()
        )
    assert all(
        0 <= c < len(it.options)
        for c, it in zip(choose(model.answer, bench.items), bench, strict=True)
    )


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="cue_rate"):
        build_benchmark(4, cue_rate=1.5)
    with pytest.raises(ValueError, match="answer_index"):
        _item(2, 3)
    assert choose(lambda items: np.array([1, 0]), [_item(4, 0), _item(2, 1)]) == [1, 0]
    with pytest.raises(ValueError, match="chose option 3"):
        choose(lambda items: [3], [_item(2, 0)])
    with pytest.raises(ValueError, match="returned"):
        choose(lambda items: [0], [_item(4, 0), _item(4, 1)])


def test_compare_gives_one_row_per_model_benchmark_and_mode(bench):
    biased = plant_cue(bench, cue_rate=1.0)
    rows = score_table({"A": first_option}, [biased, bench], modes=("vanilla", "circular", "blind"))
    assert [(r["benchmark"], r["mode"]) for r in rows] == [
        (b, m) for b in ("biased", "clean") for m in ("vanilla", "circular", "blind")
    ]
    assert rows[0]["overall"] == 1.0 and rows[1]["overall"] == 0.0 and rows[2]["overall"] == 1.0
    with pytest.raises(ValueError, match="modes"):
        score_table({"A": first_option}, [bench], modes=("sideways",))


def test_omnilm_answerer_scores_option_content_not_letters():
    """An OmniLM scores each option by its words: rotating the options rotates the scores,
    so the model cannot prefer a letter, and the score is the model's own likelihood."""
    from omni_edu.data import OmniWorld
    from omni_edu.lessons.evaluation.answerers import omnilm_answerer
    from omni_edu.lessons.evaluation.benchmark import build_benchmark, rotate
    from omni_edu.modalities import Modality
    from omni_edu.model.interleave import text_segment
    from omni_edu.parts import any_to_any as a2a

    world = OmniWorld("train", seed=0, n_objects=1, caption_style="canonical")
    data = a2a.AnyToAnyData(world, 8)
    model = a2a.build_model(data, seed=0)
    bench = build_benchmark(2, seed=3)
    answer = omnilm_answerer(model, data, batch_size=5)
    scores = answer(list(bench))
    assert scores.shape == (len(bench), 4)
    for item, row in zip(bench, scores, strict=True):
        n = len(item.options)
        assert torch.isfinite(row[:n]).all() and torch.isinf(row[n:]).all()
        turned = answer([rotate(item, 1)])[0, :n]
        torch.testing.assert_close(turned, row[:n].roll(-1), rtol=1e-4, atol=1e-4)
    # The score is the log-likelihood of the trained tokens: -(mean CE) x (their count).
    doc = [[text_segment([data.tokenizer["<answer>"]], predict=False), text_segment([7, 8, 9])]]
    packed = data.pack(doc)
    n_trained = int(packed.loss_mask(Modality.TEXT).sum())
    expected = -model.loss(packed)["text"].item() * n_trained
    assert a2a.text_log_likelihood(model, packed).item() == pytest.approx(expected, rel=1e-4)


# --- planted cues of two kinds, and reliance on cue-conflict items --------------------------

from omni_edu.lessons.evaluation import cues  # noqa: E402


def follow_the_mark(items):
    """A cue-follower: answers whatever slot the corner mark names."""
    return [min(cues.corner_slot(it.image), len(it.options) - 1) for it in items]


def test_a_slot_cue_moves_a_share_of_answers_to_a_and_keeps_the_questions(bench):
    for strength in (0.0, 0.5, 1.0):
        cued = cues.plant(bench, "slot", strength, seed=2)
        assert [it.question for it in cued] == [it.question for it in bench]
        assert [it.answer for it in cued] == [it.answer for it in bench]
        moved = sum(it.answer_index == 0 for it in cued) - sum(it.answer_index == 0 for it in bench)
        if strength == 0.0:
            assert moved == 0
        if strength == 1.0:
            assert all(it.answer_index == 0 for it in cued)
    half = cues.plant(bench, "slot", 0.5, seed=2)
    share = sum(it.answer_index == 0 for it in half) / len(half)
    assert 0.5 < share < 0.95  # half moved, and the rest at A by chance now and then


def test_a_corner_cue_marks_every_picture_and_names_the_answer_at_its_strength(bench):
    full = cues.plant(bench, "corner", 1.0)
    assert all(cues.corner_slot(it.image) == it.answer_index for it in full)
    assert all(
        torch.equal(a.image[:, 2:, :], b.image[:, 2:, :]) for a, b in zip(full, bench, strict=True)
    )
    none = cues.plant(bench, "corner", 0.0)
    right = sum(cues.corner_slot(it.image) == it.answer_index for it in none) / len(none)
    chance = sum(1 / len(it.options) for it in bench) / len(bench)
    assert abs(right - chance) < 0.15  # uninformative: right about as often as chance
    for it in none:  # the mark is in the corner and nowhere else
        assert cues.corner_slot(it.image) < len(it.options)


def test_a_mark_is_its_slots_colour_and_checks_its_input():
    image = torch.zeros(3, 8, 8)
    for slot, colour in enumerate(cues.SLOT_COLOURS):
        marked = cues.mark_corner(image, slot)
        assert torch.equal(marked[:, 0, 0], torch.tensor(colour))
        assert cues.corner_slot(marked) == slot
        assert marked[:, cues.MARK :, :].abs().sum() == 0 and image.abs().sum() == 0
    assert cues.mark_corner(image, 2, mark=1)[:, 1, 1].abs().sum() == 0
    with pytest.raises(ValueError, match="slot should be"):
        cues.mark_corner(image, 4)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cues.mark_corner(torch.zeros(8, 8), 0)
    with pytest.raises(ValueError, match="cue should be one of"):
        cues.plant(build_benchmark(2, seed=0), "colour", 0.5)
    with pytest.raises(ValueError, match="strength"):
        cues.plant(build_benchmark(2, seed=0), "slot", 1.5)


def test_cue_conflict_items_always_point_to_a_wrong_option(bench):
    slot = cues.conflict_items(bench, "slot")
    assert len(slot) == sum(it.answer_index != 0 for it in bench)
    assert all(it.answer_index != c for it, c in zip(slot.items, slot.cued, strict=True))
    corner = cues.conflict_items(bench, "corner", seed=1)
    assert len(corner) == len(bench)
    for it, c in zip(corner.items, corner.cued, strict=True):
        assert c != it.answer_index and cues.corner_slot(it.image) == c


def test_reliance_is_one_for_a_cue_follower_and_zero_for_the_control_itself(bench):
    conflict = cues.conflict_items(bench, "corner")
    assert all(cues.follows_cue(follow_the_mark, conflict))
    full = cues.reliance(follow_the_mark, random_answerer(seed=0), conflict, 1.0)
    assert full.rate == 1.0 and full.low > 0.5
    same = cues.reliance(random_answerer(seed=1), random_answerer(seed=1), conflict, 0.0)
    assert same.excess == 0.0 and same.low == same.high == 0.0
    slot = cues.conflict_items(bench, "slot")
    always_a = cues.reliance(first_option, random_answerer(seed=0), slot, 1.0)
    assert always_a.rate == 1.0 and always_a.control < 0.6


def test_marked_shows_an_uninformative_mark_without_touching_the_benchmark(bench):
    seen = []
    before = [it.image.clone() for it in bench]

    def spy(items):
        seen.extend(items)
        return [0] * len(items)

    cues.marked(spy)(list(bench))
    assert len(seen) == len(bench)
    for shown, it in zip(seen, bench, strict=True):
        assert cues.corner_slot(shown.image) < len(it.options)
        assert torch.equal(shown.image[:, cues.MARK :, :], it.image[:, cues.MARK :, :])
    right = sum(
        cues.corner_slot(s.image) == it.answer_index for s, it in zip(seen, bench, strict=True)
    )
    assert right / len(bench) < 0.7  # the mark says nothing about the answer
    assert all(torch.equal(it.image, b) for it, b in zip(bench, before, strict=True))


def test_trained_arms_learn_their_cue_and_the_control_does_not():
    train = build_benchmark(48, seed=0, split="train")
    arms = cues.train_arms(train, (1.0,), steps=60, progress=False)
    assert set(arms) == {("none", 0.0), ("slot", 1.0), ("corner", 1.0)}
    test = build_benchmark(16, seed=1)
    conflict = cues.conflict_items(test, "corner")
    follower = cues.reliance(
        arms[("corner", 1.0)].answer, arms[("none", 0.0)].answer, conflict, 1.0
    )
    assert follower.excess > 0.3 and follower.low > 0  # a cue right every time is learned


def test_capstone_items_keep_the_questions_and_show_the_picture():
    from omni_edu.lessons.evaluation.answerers import capstone_items
    from omni_edu.parts import any_to_any as a2a

    recipe = a2a.capstone_recipe()
    _, test = a2a.capstone_data(recipe)
    items = capstone_items(test, n=10)
    assert len(items) == 10
    for k, it in enumerate(items):
        q = test.batch.questions[k]
        assert it.question == q.text and it.answer == q.answer and it.options == tuple(q.options)
        assert it.modality == "image" and it.mel.abs().sum() == 0
        assert torch.equal(it.image, test.batch.images[k])
