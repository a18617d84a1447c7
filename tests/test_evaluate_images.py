"""Attribute classifier: reads real OmniWorld pictures far above chance."""

import pytest
import torch

from omni_edu.data import OmniWorld
from omni_edu.evaluate_images import (
    attribute_accuracy,
    chance_accuracy,
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
