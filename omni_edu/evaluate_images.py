"""Moved to :mod:`omni_edu.judges` (the picture and sound judges live together now).

These names stay importable from here only while lesson 03 still imports them from this
module; new code imports from :mod:`omni_edu.judges`.
"""

from omni_edu.judges import (
    AttributeClassifier,
    attribute_accuracy,
    chance_accuracy,
    frechet_distance,
    train_attribute_classifier,
)

__all__ = [
    "AttributeClassifier",
    "attribute_accuracy",
    "chance_accuracy",
    "frechet_distance",
    "train_attribute_classifier",
]
