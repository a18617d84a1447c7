"""Claim-check boxes and headline figures: rendered from values, recorded for the README."""

import json
import math

import numpy as np
import pytest
import torch

from omni_edu import report
from omni_edu.report import claim_check, headline
from omni_edu.viz.source import show_source, source_of


def test_claim_check_renders_every_part():
    box = claim_check(
        "05",
        claim='"cutting GPU memory requirements by 40 to 60%"',
        chapter="001",
        experiment="frozen encoders",
        result="saved 31 %",
        verdict="not supported",
        rule="supported if the saving lies in 40-60 %",
        note="the image encoder is small here",
    )
    text = box._repr_markdown_()
    assert '"cutting GPU memory requirements by 40 to 60%"' in text  # one pair of quotes
    assert "chapter 001" in text and "Multimodal" in text
    for part in ("frozen encoders", "saved 31 %", "**not supported**", "40-60 %", "small here"):
        assert part in text
    assert "> " not in str(box)


@pytest.mark.parametrize("field", ["claim", "result", "verdict"])
def test_claim_check_refuses_empty_parts(field):
    kwargs = dict(claim="c", chapter="000", experiment="e", result="r", verdict="v")
    kwargs[field] = " "
    with pytest.raises(ValueError, match=field):
        claim_check("01", **kwargs)


def test_claim_check_names_a_known_chapter():
    with pytest.raises(ValueError, match="chapter"):
        claim_check("01", claim="c", chapter="11.3", experiment="e", result="r", verdict="v")


def test_figures_are_recorded_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(report.FIGURES_ENV, raising=False)
    headline("01", "nothing recorded")
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(report.FIGURES_ENV, str(path))
    assert headline("01", "a token carries 4.6 characters") == "a token carries 4.6 characters"
    claim_check("01", claim="c", chapter="000", experiment="e", result="0.0 %", verdict="yes")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["headline", "claim"]
    assert rows[0] == {
        "profile": "ci",
        "lesson": "01",
        "kind": "headline",
        "text": "a token carries 4.6 characters",
    }
    assert rows[1]["verdict"] == "yes" and rows[1]["result"] == "0.0 %"


def test_show_source_is_the_package_code(capsys):
    from omni_edu.model.projector import OmniTokenProjector

    assert show_source(OmniTokenProjector.embed) is None  # it displays (here: prints) only
    text = source_of(OmniTokenProjector.embed)
    assert text.startswith("# omni_edu/model/projector.py: OmniTokenProjector.embed\ndef embed(")
    assert "self.modality(" in text and capsys.readouterr().out == text + "\n"
    with pytest.raises(ValueError, match="function, class or method"):
        source_of(3)


# === power before verdict (issue 19) ================================================


@pytest.fixture
def fresh_evidence():
    """Each test starts a new lesson run: no numbers recorded yet."""
    report.reset_evidence()
    yield
    report.reset_evidence()


def check(power=None, verdict="partly supported", **options):
    return claim_check(
        "05",
        claim="Early fusion enables deeper cross-modal reasoning",
        chapter="001",
        experiment="three arms, 3 seeds",
        result="early 0.503, late 0.503",
        verdict=verdict,
        rule="supported if early beats late by 3 standard errors",
        power=power,
        **options,
    )


def test_constant_predictor():
    assert report.constant_predictor(torch.tensor([1] * 96 + [0] * 4))
    assert report.constant_predictor(["yes"] * 19 + ["no"])  # exactly 95 %
    assert not report.constant_predictor(["yes"] * 18 + ["no"] * 2)
    assert not report.constant_predictor(np.array([0, 1, 2, 0, 1]))
    assert report.constant_predictor([0, 0, 1, 0], share=0.75)
    with pytest.raises(ValueError, match="argmax"):
        report.constant_predictor(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="empty"):
        report.constant_predictor([])


def test_within_noise():
    assert report.within_noise({"early": 0.51, "late": 0.49}, baseline=0.50, detectable=0.02)
    assert not report.within_noise({"early": 0.60, "late": 0.49}, baseline=0.50, detectable=0.02)
    per_arm = {"early": 0.62, "late": 0.60}
    assert report.within_noise({"early": 0.63, "late": 0.60}, per_arm, detectable=0.02)
    with pytest.raises(ValueError, match="late"):
        report.within_noise({"early": 0.6, "late": 0.6}, {"early": 0.6}, 0.1)


def test_runs_agreeing():
    assert report.runs_agreeing(["supported", "not supported", "supported"]) == (
        "supported in 2 of 3 runs"
    )
    assert report.runs_agreeing(["supported"] * 3) == "supported in 3 of 3 runs"
    assert report.runs_agreeing(["yes", "no"]) == "yes in 1 of 2 runs, no in 1 of 2 runs"
    with pytest.raises(ValueError):
        report.runs_agreeing([])


def test_a_healthy_design_keeps_its_verdict_and_prints_what_it_can_detect(fresh_evidence):
    box = check(report.Power(detectable=0.031, unit="accuracy"))
    assert box.verdict == box.measured_verdict == "partly supported" and not box.reasons
    text = box.markdown()
    assert "**partly supported**" in text and report.NOT_TESTED not in text
    assert "smallest detectable effect: 0.031 accuracy" in text
    assert "smallest detectable effect" not in check().markdown()  # only when power is given


@pytest.mark.parametrize(
    "power, words",
    [
        (report.Power(0.02, "accuracy", constant_arms=("early", "late")), "early, late predict"),
        (report.Power(0.02, "accuracy", near_baseline=True), "within noise"),
        (report.Power(0.02, borrowed="audio helps text"), '"audio helps text"'),
        (report.Power(0.0, structural_zero=True), "zero by construction"),
    ],
    ids=["constant predictors", "within noise", "borrowed", "structural zero"],
)
def test_a_degenerate_design_is_not_tested(fresh_evidence, tmp_path, monkeypatch, power, words):
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(report.FIGURES_ENV, str(path))
    box = check(power)
    assert box.verdict == report.NOT_TESTED and box.measured_verdict == "partly supported"
    text = box.markdown()
    assert f"**{report.NOT_TESTED}**" in text and words in text
    assert "numbers alone would have said *partly supported*" in text  # both verdicts show
    assert "**partly supported**" not in text
    assert "smallest detectable effect" in text
    row = json.loads(path.read_text().splitlines()[-1])
    assert row["verdict"] == report.NOT_TESTED  # what the README's headline says
    assert row["measured_verdict"] == "partly supported" and row["reasons"]


def test_reused_numbers_are_found_without_being_named(fresh_evidence):
    first = claim_check(
        "06",
        claim="training on audio helps text reasoning",
        chapter="000",
        experiment="e",
        result="+0.013",
        verdict="supported",
        power=report.Power(0.026, "accuracy"),
        evidence={"transfer gain": torch.tensor(0.0131)},
    )
    assert first.verdict == "supported"
    again = claim_check(  # the same check run again (a re-run cell) borrows nothing
        "06",
        claim="training on audio helps text reasoning",
        chapter="000",
        experiment="e",
        result="+0.013",
        verdict="supported",
        evidence={"transfer gain": torch.tensor(0.0131)},
    )
    assert again.verdict == "supported"
    other_lesson = claim_check(
        "07",
        claim="c",
        chapter="000",
        experiment="e",
        result="0.013",
        verdict="additive",
        evidence={"gain": torch.tensor(0.0131).item()},
    )
    assert other_lesson.verdict == "additive"
    borrowed = claim_check(
        "06",
        claim="Emergent Synesthesia is multiplicative",
        chapter="000",
        experiment="e",
        result="0.013",
        verdict="additive",
        power=report.Power(0.026, "accuracy"),
        evidence={"interaction": torch.tensor(0.0131).item()},
    )
    assert borrowed.verdict == report.NOT_TESTED and borrowed.measured_verdict == "additive"
    assert "training on audio helps text reasoning" in borrowed.power.borrowed
    assert "borrowed" in borrowed.markdown() and "transfer gain" in borrowed.markdown()
    named = claim_check(
        "06",
        claim="a third claim",
        chapter="000",
        experiment="e",
        result="0.013",
        verdict="additive",
        power=report.Power(0.026, borrowed="the transfer check"),
        evidence={"interaction": 0.0131},
    )
    assert named.power.borrowed == "the transfer check"  # its own words are kept


def test_structural_zeros_and_constant_arms_are_found_from_the_data(fresh_evidence):
    zero = check(report.Power(0.01), verdict="not supported", differences=torch.zeros(40))
    assert zero.verdict == report.NOT_TESTED and "zero by construction" in zero.markdown()
    assert check(report.Power(0.01), differences=[0.0, 0.1, 0.0]).verdict == "partly supported"
    flat = {"early": torch.ones(50), "late": torch.tensor([0, 1] * 25)}
    box = check(report.Power(0.01, "accuracy"), predictions=flat)
    assert box.verdict == report.NOT_TESTED and box.power.constant_arms == ("early",)
    unstated = check(differences=np.zeros(3))  # no Power given: found, and said so
    assert unstated.verdict == report.NOT_TESTED
    assert "smallest detectable effect: not stated" in unstated.markdown()


def test_power_refuses_a_negative_effect_and_names_an_infinite_one():
    with pytest.raises(ValueError, match="detectable"):
        report.Power(-0.1)
    assert report.Power(math.inf).reasons and not report.Power(0.1).reasons
    assert report.Power(0.1, constant_arms="early").constant_arms == ("early",)


def test_power_from_an_interval_or_a_standard_error():
    assert report.Power.from_interval(-0.02, 0.06, "accuracy").detectable == pytest.approx(0.04)
    assert report.Power.from_standard_error(0.013, near_baseline=True).reasons
    with pytest.raises(ValueError, match="low <= high"):
        report.Power.from_interval(0.1, 0.0)


def test_majority_baseline_is_a_blind_model_per_question_type():
    answers = ["one", "one", "one", "red", "blue", "blue"]
    types = ["count", "count", "count", "colour", "colour", "colour"]
    assert report.majority_baseline(answers) == pytest.approx(3 / 6)
    assert report.majority_baseline(answers, types) == pytest.approx(5 / 6)
    # Majorities from training answers: "colour" answered "red" in training.
    train = ["one", "two", "one", "red", "red"]
    train_types = ["count", "count", "count", "colour", "colour"]
    assert report.majority_baseline(answers, types, train, train_types) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="lengths"):
        report.majority_baseline(answers, types[:2])
