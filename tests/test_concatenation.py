import pytest
import torch

from omni_edu.data import OmniWorld
from omni_edu.lessons.omni_tokens.concatenation import (
    ORDERS,
    best_possible_accuracy,
    concatenate_by_modality,
    input_keys,
    modality_string,
    order_task_ceiling,
    scene_documents,
)
from omni_edu.modalities import Modality, TextTokenizer
from omni_edu.model.interleave import audio_segment, image_segment, pack, text_segment
from omni_edu.profiles import get_profile


def test_concatenation_groups_modalities_and_keeps_their_inner_order():
    a, b = text_segment([5, 6]), text_segment([7])
    img = image_segment(torch.zeros(4, 3))
    snd = audio_segment(torch.ones(2, 2))
    out = concatenate_by_modality([snd, a, img, b])
    assert [s.modality for s in out] == [
        Modality.TEXT,
        Modality.TEXT,
        Modality.IMAGE,
        Modality.AUDIO,
    ]
    assert out[0] is a and out[1] is b


def test_two_orders_become_one_input_after_concatenation():
    words, img, snd = (
        text_segment([5, 6]),
        image_segment(torch.rand(4, 3)),
        audio_segment(torch.rand(2, 2)),
    )
    by_position = pack([[words, img, snd], [snd, img, words]])
    keys = input_keys(by_position)
    assert keys[0] != keys[1]
    concatenated = pack(
        [concatenate_by_modality(d) for d in ([words, img, snd], [snd, img, words])]
    )
    keys = input_keys(concatenated)
    assert keys[0] == keys[1]
    assert modality_string(concatenated, 0) == "TT IIII AA"


def test_best_possible_accuracy_is_the_majority_per_identical_input():
    assert best_possible_accuracy(["x", "x", "y", "y"], [0, 1, 1, 1]) == pytest.approx(0.75)
    assert best_possible_accuracy(["a", "b", "c"], [0, 1, 2]) == 1.0
    with pytest.raises(ValueError):
        best_possible_accuracy([], [])


def test_the_order_task_is_solvable_only_by_position():
    profile = get_profile("ci")
    batch = OmniWorld("train", seed=0, profile=profile).sample(4, seed=0)
    docs, labels = scene_documents(batch, TextTokenizer(), profile.patch_size)
    assert len(docs) == 4 * len(ORDERS)
    ceiling = order_task_ceiling(docs, labels)
    assert ceiling["interleaved by position"] == 1.0
    assert ceiling["concatenated by modality"] == pytest.approx(1 / len(ORDERS))
