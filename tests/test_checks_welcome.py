import torch

from omni_edu import grading
from omni_edu.lessons.welcome.checks import check_to_unit_range, to_unit_range


def stub(images):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def whole_batch(images):
    # Plausible mistake: one min/max for the whole batch instead of per image.
    return (images - images.min()) / (images.max() - images.min())


def no_eps(images):
    # Plausible mistake: a constant image divides by zero.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low)


def test_reference_passes():
    assert check_to_unit_range(to_unit_range).passed


def test_stub_is_not_implemented():
    assert check_to_unit_range(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        assert check_to_unit_range(whole_batch).status == grading.FAILED
        assert check_to_unit_range(no_eps).status == grading.FAILED


def test_reference_output_spans_unit_range():
    out = to_unit_range(torch.rand(4, 3, 5, 5) * 7 - 2)
    assert torch.allclose(out.amin(dim=(1, 2, 3)), torch.zeros(4))
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(4), atol=1e-6)


def range_clamped_at_eps(images, eps=1e-8):
    # Plausible mistake: max(range, eps) instead of range + eps; equal unless range ~ eps.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(eps)


def eps_only_when_constant(images, eps=1e-8):
    # Plausible mistake: eps replaces a zero range instead of being added to every range.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    span = images.amax(dim=(1, 2, 3), keepdim=True) - low
    return (images - low) / torch.where(span == 0, torch.full_like(span, eps), span)


def eps_ignored(images, eps=1e-8):
    # Plausible mistake: a hard-coded 1e-8 whatever eps the caller passes.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low + 1e-8)


def test_an_image_whose_range_equals_eps_tells_adding_from_clamping():
    with grading.lenient():
        for wrong in (range_clamped_at_eps, eps_only_when_constant, eps_ignored):
            assert check_to_unit_range(wrong).status == grading.FAILED, wrong.__name__


def flattened(images, eps=1e-8):
    # Plausible mistake: flattens each image to find its range and returns it flat.
    flat = images.flatten(1)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    return (flat - low) / (high - low + eps)


def test_hints_are_aimed_at_the_failure():
    grading.reset_attempts()
    with grading.lenient():
        assert "keepdim" in check_to_unit_range(flattened).hint  # the shape hint
        assert "clamp" in check_to_unit_range(range_clamped_at_eps).hint  # that case's hint
        assert "per image" in check_to_unit_range(stub).hint  # the nudge
    grading.reset_attempts()
