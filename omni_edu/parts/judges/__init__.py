"""Judges: read generated pictures and sounds back, and score what a generator draws.

* :mod:`omni_edu.parts.judges.classifiers` - the two small classifiers (a CNN for pictures, a
  1-D CNN for log-mel sounds), their training, attribute accuracy, the Fréchet distance
  on their features, and :func:`judges`, the cached part every lesson scores with;
* :mod:`omni_edu.parts.judges.metrics` - metrics of a *distribution* of samples per prompt
  (fidelity, validity, coverage, ghost mass, precision and recall), for prompts that
  leave something to choose.

The classifiers' names are importable from here (``from omni_edu.parts.judges import judges``);
the metrics from their module (``from omni_edu.parts.judges.metrics import sample_metrics``).
"""

from omni_edu.parts.judges.classifiers import (
    JUDGE_SCENES,
    JUDGE_STEPS,
    AttributeClassifier,
    AttributeClassifierConfig,
    AudioAttributeClassifier,
    Judges,
    attribute_accuracy,
    attribute_loss,
    attribute_scores,
    chance_accuracy,
    chance_level,
    frechet_distance,
    judges,
    single_object,
    train_judge,
)

__all__ = [
    "JUDGE_SCENES",
    "JUDGE_STEPS",
    "AttributeClassifier",
    "AttributeClassifierConfig",
    "AudioAttributeClassifier",
    "Judges",
    "attribute_accuracy",
    "attribute_loss",
    "attribute_scores",
    "chance_accuracy",
    "chance_level",
    "frechet_distance",
    "judges",
    "single_object",
    "train_judge",
]
