"""The lesson 03 checks pass the reference, flag a stub and reject plausible mistakes."""

import torch

from omni_edu import grading
from omni_edu.lessons.vq_tokens.checks import check_ema_update, check_quantize
from omni_edu.model.heads.vq import ema_codebook_update, quantize_straight_through


def stub(*args):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def no_straight_through(z, codebook):
    # Mistake: return the codes themselves; the encoder never gets a gradient.
    indices = torch.cdist(z, codebook).argmin(dim=1)
    return codebook[indices], indices


def forgot_detach(z, codebook):
    # Mistake: z + (z_q - z) without .detach() is z_q again, gradient included.
    indices = torch.cdist(z, codebook).argmin(dim=1)
    return z + (codebook[indices] - z), indices


def farthest_code(z, codebook):
    # Mistake: argmax instead of argmin.
    indices = torch.cdist(z, codebook).argmax(dim=1)
    z_q = codebook[indices]
    return z + (z_q - z).detach(), indices


def no_smoothing(cluster_size, embed_sum, z, indices, decay, eps):
    # Mistake: divide by the raw running count (no Laplace smoothing).
    one_hot = torch.nn.functional.one_hot(indices, cluster_size.shape[0]).float()
    cluster_size = decay * cluster_size + (1 - decay) * one_hot.sum(0)
    embed_sum = decay * embed_sum + (1 - decay) * one_hot.T @ z
    return cluster_size, embed_sum, embed_sum / cluster_size[:, None]


def decay_swapped(cluster_size, embed_sum, z, indices, decay, eps):
    # Mistake: the new batch gets weight decay, the history 1 - decay.
    return ema_codebook_update(cluster_size, embed_sum, z, indices, 1 - decay, eps)


def test_references_pass():
    assert check_quantize(quantize_straight_through).passed
    assert check_ema_update(ema_codebook_update).passed


def test_stubs_are_not_implemented():
    assert check_quantize(stub).status == grading.NOT_IMPLEMENTED
    assert check_ema_update(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (no_straight_through, forgot_detach, farthest_code):
            result = check_quantize(wrong)
            assert result.status == grading.FAILED, wrong.__name__
        assert "gradient" in str(check_quantize(no_straight_through))
        assert check_ema_update(no_smoothing).status == grading.FAILED
        assert check_ema_update(decay_swapped).status == grading.FAILED
