"""Claim-check boxes and headline figures: rendered from values, recorded for the README."""

import json

import pytest

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
