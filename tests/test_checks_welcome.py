import torch

from omni_edu import grading
from omni_edu.checks.welcome import check_to_unit_range, to_unit_range


def stub(images):
    raise NotImplementedError


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
