from dataclasses import replace

import torch

from omni_edu import grading
from omni_edu.lessons.evaluation.benchmark import blind_accuracy, choose, circular_correct, rotate
from omni_edu.lessons.evaluation.checks import check_blind_accuracy, check_circular_correct


def stub(*args):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def any_rotation(answerer, item):
    # Plausible mistake: right if *some* rotation is right (too lenient).
    rotations = [rotate(item, s) for s in range(len(item.options))]
    return any(
        c == r.answer_index for c, r in zip(choose(answerer, rotations), rotations, strict=True)
    )


def answer_not_moved(answerer, item):
    # Plausible mistake: rotate the options but compare with the original answer_index.
    n = len(item.options)
    rotations = [replace(item, options=item.options[s:] + item.options[:s]) for s in range(n)]
    return all(c == item.answer_index for c in choose(answerer, rotations))


def only_one_rotation(answerer, item):
    # Plausible mistake: vanilla evaluation (ask once).
    return choose(answerer, [item])[0] == item.answer_index


def image_only_blanked(answerer, items):
    # Plausible mistake: blank the picture but leave the sound.
    items = [replace(it, image=torch.zeros_like(it.image)) for it in items]
    return sum(
        c == it.answer_index for c, it in zip(choose(answerer, items), items, strict=True)
    ) / len(items)


def not_blanked(answerer, items):
    # Plausible mistake: plain accuracy, nothing hidden.
    return sum(
        c == it.answer_index for c, it in zip(choose(answerer, items), items, strict=True)
    ) / len(items)


def test_references_pass():
    assert check_circular_correct(circular_correct).passed
    assert check_blind_accuracy(blind_accuracy).passed


def test_stubs_are_not_implemented():
    assert check_circular_correct(stub).status == grading.NOT_IMPLEMENTED
    assert check_blind_accuracy(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (any_rotation, answer_not_moved, only_one_rotation):
            assert check_circular_correct(wrong).status == grading.FAILED, wrong.__name__
        for wrong in (image_only_blanked, not_blanked):
            assert check_blind_accuracy(wrong).status == grading.FAILED, wrong.__name__


def blanked_with(fill):
    """blind_accuracy, but the inputs are replaced by ``fill(x)`` instead of zeros."""

    def blind_accuracy_filled(answerer, items):
        items = [replace(it, image=fill(it.image), mel=fill(it.mel)) for it in items]
        chosen = choose(answerer, items)
        return sum(c == it.answer_index for c, it in zip(chosen, items, strict=True)) / len(items)

    return blind_accuracy_filled


def test_blanking_with_ones_or_noise_is_rejected():
    with grading.lenient():
        for fill in (torch.ones_like, torch.rand_like, torch.randn_like):
            result = check_blind_accuracy(blanked_with(fill))
            assert result.status == grading.FAILED, fill.__name__
