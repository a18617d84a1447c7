"""Attribute classifier: reads real OmniWorld pictures far above chance."""

import pytest
import torch

from omni_edu.data import OmniWorld
from omni_edu.evaluate_images import (
    attribute_accuracy,
    chance_accuracy,
    frechet_distance,
    train_attribute_classifier,
)


def test_chance_accuracy():
    chance = chance_accuracy()
    assert chance["shape"] == 1 / 4 and chance["colour"] == 1 / 6 and chance["size"] == 1 / 2
    assert chance["mean"] == pytest.approx((1 / 4 + 1 / 6 + 1 / 2 + 1 / 4) / 4)


def test_classifier_reads_real_pictures():
    train = OmniWorld("train", seed=0, n_objects=1).sample(1024)
    test = OmniWorld("test", seed=0, n_objects=1).sample(256)
    classifier = train_attribute_classifier(
        train.images, train.attributes, steps=120, progress=False
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
