"""Judges: read real OmniWorld pictures and sounds far above chance; cached per profile."""

import pytest
import torch

from omni_edu.data import OmniWorld
from omni_edu.parts.judges import (
    AttributeClassifier,
    AudioAttributeClassifier,
    attribute_accuracy,
    attribute_scores,
    chance_accuracy,
    frechet_distance,
    judges,
    train_judge,
)


def test_chance_accuracy():
    chance = chance_accuracy()
    assert chance["shape"] == 1 / 4 and chance["colour"] == 1 / 6 and chance["size"] == 1 / 2
    assert chance["mean"] == pytest.approx((1 / 4 + 1 / 6 + 1 / 2 + 1 / 4) / 4)


def test_classifier_reads_real_pictures():
    train = OmniWorld("train", seed=0, n_objects=1).sample(1024)
    test = OmniWorld("test", seed=0, n_objects=1).sample(256)
    torch.manual_seed(0)
    classifier = train_judge(
        AttributeClassifier(), train.images, train.attributes, steps=120, progress=False
    )
    accuracy = attribute_accuracy(classifier, test.images, test.attributes)
    assert accuracy["colour"] > 0.8 and accuracy["position"] > 0.8
    assert accuracy["mean"] > 0.7
    # noise pictures score near chance, far below real ones
    noise = attribute_accuracy(classifier, torch.rand(256, 3, 16, 16), test.attributes)
    assert noise["mean"] < accuracy["mean"] - 0.25
    with pytest.raises(ValueError, match="single-object"):
        attribute_accuracy(classifier, test.images, torch.zeros(256, 2, 4, dtype=torch.long))

    # Frechet distance: zero to itself, small between real sets, large for blurred pictures
    assert frechet_distance(classifier, test.images, test.images) < 1e-6
    real_gap = frechet_distance(classifier, test.images, train.images[:256])
    blurred = torch.nn.functional.avg_pool2d(test.images, 4).repeat_interleave(4, 2)
    blurred = blurred.repeat_interleave(4, 3)
    assert frechet_distance(classifier, test.images, blurred) > 3 * real_gap
    assert frechet_distance(classifier, blurred, test.images) == pytest.approx(
        frechet_distance(classifier, test.images, blurred), rel=1e-3
    )


def test_sound_judge_reads_real_sounds_and_scores_per_example():
    world = OmniWorld("train", seed=0, n_objects=1)
    real, held = world.sample(512, seed=0), world.sample(128, seed=1)
    torch.manual_seed(0)
    judge = AudioAttributeClassifier(real.mels.shape[-1])
    judge = train_judge(judge, real.mels, real.attributes, steps=60, progress=False)
    accuracy = attribute_accuracy(judge, held.mels, held.attributes)
    assert accuracy["mean"] > 0.6
    per_example = attribute_scores(judge, held.mels, held.attributes)
    assert per_example.shape == (128,)
    assert set(per_example.unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert per_example.mean().item() == pytest.approx(accuracy["mean"])


def test_judges_are_trained_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    first = judges("gpu-dry", verbose=False)  # gpu shapes, tiny budget: fast
    assert first.status == "trained" and set(first.extra) == {"image_on_real", "audio_on_real"}
    again = judges("gpu-dry", verbose=False)
    assert again.status == "loaded" and again.extra == first.extra
    for a, b in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())
    big = torch.rand(2, 3, 32, 32)  # the gpu profile's pictures
    assert again.model.image.predict(big).shape == (2, 4)
