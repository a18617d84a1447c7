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
    from omni_edu import any_to_any as a2a
    from omni_edu.data import OmniWorld
    from omni_edu.lessons.evaluation.answerers import omnilm_answerer
    from omni_edu.lessons.evaluation.benchmark import build_benchmark, rotate
    from omni_edu.modalities import Modality
    from omni_edu.model.interleave import text_segment

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
