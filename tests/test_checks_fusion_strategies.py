import pytest
import torch

from omni_edu import grading
from omni_edu.lessons.fusion_strategies.checks import (
    check_gated_cross_attention,
    check_media_visibility_mask,
    gated_cross_attention,
    media_visibility_mask,
)


def stub(*args):
    raise NotImplementedError


# ----------------------------------------------------------------------------- the mask


def mask_every_earlier_item(text_positions, media_positions, media_items):
    # Plausible mistake (the rule before Flamingo's): every media token before the text.
    return media_visibility_mask(text_positions, media_positions, rule="all")


def mask_including_padding(text_positions, media_positions, media_items):
    # Plausible mistake: forgets that position -1 marks padding (-1 is "before" everything).
    before = media_positions[:, None, :] < text_positions[:, :, None]
    latest = torch.where(before, media_positions[:, None, :], -2).argmax(-1)
    return before & (media_items[:, None, :] == media_items.gather(1, latest)[:, :, None])


def mask_transposed(text_positions, media_positions, media_items):
    # Plausible mistake: (batch, n_media, n_text) instead of queries x keys.
    return media_visibility_mask(text_positions, media_positions, media_items).transpose(1, 2)


def mask_future(text_positions, media_positions, media_items):
    # Plausible mistake: the comparison the wrong way round (media *after* the text).
    valid = (media_positions >= 0)[:, None, :]
    return (media_positions[:, None, :] > text_positions[:, :, None]) & valid


def mask_latest_token_only(text_positions, media_positions, media_items):
    # Plausible mistake: the most recent media *token* instead of the whole item.
    before = media_visibility_mask(text_positions, media_positions, rule="all")
    latest = torch.where(before, media_positions[:, None, :], -1).argmax(-1, keepdim=True)
    return before & torch.zeros_like(before).scatter(-1, latest, True)


def mask_first_item(text_positions, media_positions, media_items):
    # Plausible mistake: the first item before the text instead of the most recent one.
    before = media_visibility_mask(text_positions, media_positions, rule="all")
    big = torch.iinfo(media_positions.dtype).max
    first = torch.where(before, media_positions[:, None, :], big).argmin(-1)
    return before & (media_items[:, None, :] == media_items.gather(1, first)[:, :, None])


def test_mask_reference_passes():
    assert check_media_visibility_mask(media_visibility_mask).passed


def test_mask_stub_is_not_implemented():
    assert check_media_visibility_mask(stub).status == grading.NOT_IMPLEMENTED


@pytest.mark.parametrize(
    "wrong",
    [
        mask_every_earlier_item,
        mask_including_padding,
        mask_transposed,
        mask_future,
        mask_latest_token_only,
        mask_first_item,
    ],
)
def test_mask_mistakes_are_rejected(wrong):
    with grading.lenient():
        assert check_media_visibility_mask(wrong).status == grading.FAILED, wrong.__name__


def test_mask_hints_are_graduated():
    with grading.lenient():
        stub_hint = check_media_visibility_mask(stub).hint
        wrong_rule = check_media_visibility_mask(mask_every_earlier_item)
        padding = check_media_visibility_mask(mask_including_padding)
        recipe = check_media_visibility_mask(mask_every_earlier_item, show_recipe=True).recipe
    assert "gather" not in stub_hint  # an untouched stub gets a nudge, not the code
    assert "most recent item" in wrong_rule.hint  # the hint of the case it failed
    assert "padding" in padding.hint
    assert "gather" in recipe


# ----------------------------------------------------------------------------- the layer


def no_tanh(layer, x, media, visible):
    # Plausible mistake: scale by the raw gate instead of tanh(gate).
    x = x + layer.attn_gate * layer.xattn(layer.attn_norm(x), media, visible)
    return x + layer.mlp_gate * layer.mlp(layer.mlp_norm(x))


def no_norm(layer, x, media, visible):
    # Plausible mistake: attends from the raw residual stream (no pre-norm).
    x = x + torch.tanh(layer.attn_gate) * layer.xattn(x, media, visible)
    return x + torch.tanh(layer.mlp_gate) * layer.mlp(layer.mlp_norm(x))


def ungated_mlp(layer, x, media, visible):
    # Plausible mistake: gates the cross-attention but not the feed-forward, so a fresh
    # layer is not the identity.
    x = x + torch.tanh(layer.attn_gate) * layer.xattn(layer.attn_norm(x), media, visible)
    return x + layer.mlp(layer.mlp_norm(x))


def parallel_branches(layer, x, media, visible):
    # Plausible mistake: both branches read the *input* x instead of running in sequence.
    a = torch.tanh(layer.attn_gate) * layer.xattn(layer.attn_norm(x), media, visible)
    return x + a + torch.tanh(layer.mlp_gate) * layer.mlp(layer.mlp_norm(x))


def test_layer_reference_passes():
    assert check_gated_cross_attention(gated_cross_attention).passed


def test_layer_stub_is_not_implemented():
    assert check_gated_cross_attention(stub).status == grading.NOT_IMPLEMENTED


def test_layer_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (no_tanh, no_norm, ungated_mlp, parallel_branches):
            assert check_gated_cross_attention(wrong).status == grading.FAILED, wrong.__name__
