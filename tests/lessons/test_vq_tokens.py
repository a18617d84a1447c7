"""Lesson 03: Discrete Representation Inconsistency measured in one space (the claim check)."""

import pytest
import torch
from torch import nn

from omni_edu.lessons.vq_tokens import dri
from omni_edu.model.heads.vq import VQVAE, VQVAEConfig


class ReadsTheMeanColour(nn.Module):
    """A stand-in judge: every attribute is the picture's brightest channel (0, 1, 2)."""

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        channel = images.mean(dim=(2, 3)).argmax(dim=1)
        return channel[:, None].expand(-1, 4)


def pictures(n: int = 4, size: int = 8) -> torch.Tensor:
    """Dark pictures with one bright 4x4 square in the top-left patch of each."""
    x = torch.full((n, 3, size, size), 0.08)
    x[:, 0, :4, :4] = 0.9
    return x


def autoencoder(quantizer: str, seed: int = 0, **settings) -> VQVAE:
    torch.manual_seed(seed)
    config = VQVAEConfig(image_size=8, downsample=2, channels=8, quantizer=quantizer, **settings)
    return VQVAE(config).eval()


def test_object_patches_are_the_bright_ones_row_by_row():
    x = pictures(2)
    x[1, :, :, :] = 0.08
    x[1, 1, 4:, 4:] = 0.5  # the bottom-right patch of the second picture
    on = dri.object_patches(x, 4)
    assert on.tolist() == [[True, False, False, False], [False, False, False, True]]
    pixels = dri.patch_pixels(on, 8)
    assert pixels.shape == (2, 1, 8, 8)
    assert pixels[0, 0, :4, :4].all() and pixels[0].sum() == 16
    assert pixels[1, 0, 4:, 4:].all() and pixels[1].sum() == 16
    with pytest.raises(ValueError, match="multiples of 3"):
        dri.object_patches(x, 3)
    with pytest.raises(ValueError, match="square grid"):
        dri.patch_pixels(torch.ones(1, 3, dtype=torch.bool), 8)


def test_the_decoder_reads_codes_or_latents_from_one_space():
    model = autoencoder("fsq", fsq_levels=(4, 4, 4))
    x = pictures()
    codes = dri.decoder_inputs(model, x, quantize=True)
    latents = dri.decoder_inputs(model, x, quantize=False)
    assert codes.shape == latents.shape == (4, model.tokens_per_image, 3)
    # FSQ's codes are its latents rounded onto the grid of levels: the same space
    assert (codes - latents).abs().max() <= 1 / 3 + 1e-6  # at most half a step of 2/3
    assert torch.allclose(
        dri.decode(model, codes), model.decode_from_indices(model.encode_to_indices(x))
    )


def test_a_path_that_does_not_move_shows_no_change():
    model = autoencoder("vq", codebook_size=16, code_dim=4)
    x = pictures()
    on = dri.object_patches(x, 4)
    same = dri.path_change(model, True, x, x.clone(), on, ReadsTheMeanColour())
    for key in ("vector", "decoded", "flips"):
        assert torch.equal(same[key], torch.zeros(4)), key
    assert same["recon"].shape == (4,) and (same["recon"] > 0).all()


def test_path_change_measures_on_the_object_and_relative_to_the_vectors_length():
    model = autoencoder("none", code_dim=4)
    x = pictures()
    moved = x.clone()
    moved[:, :, 4:, 4:] += 0.3  # only the background patch at the bottom right moves
    on = dri.object_patches(x, 4)
    change = dri.path_change(model, False, x, moved, on, ReadsTheMeanColour())
    # only the object's token (the top-left one) is averaged, whatever the convolutions
    # carried to it from the moved patch
    v, v_new = dri.decoder_inputs(model, x, False), dri.decoder_inputs(model, moved, False)
    length = v.pow(2).sum(-1).mean().sqrt()
    expected = ((v_new - v).norm(dim=-1) / length)[:, 0]  # token 0: the object's patch
    assert torch.allclose(change["vector"], expected, atol=1e-6)
    drawn, drawn_new = dri.decode(model, v), dri.decode(model, v_new)
    rms = (drawn_new - drawn)[:, :, :4, :4].pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(change["decoded"], rms, atol=1e-6)
    with pytest.raises(ValueError, match="one token per patch"):
        dri.path_change(
            model, False, x, moved, torch.ones(4, 9, dtype=torch.bool), ReadsTheMeanColour()
        )


def test_measure_sets_every_path_beside_the_inputs_own_change():
    tokenizer = autoencoder("fsq", fsq_levels=(4, 4, 4), quantizer_dropout=0.5)
    continuous = autoencoder("none", seed=1, code_dim=3)
    x = pictures()
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    run = dri.measure(tokenizer, continuous, x, noisy, 4, ReadsTheMeanColour())
    assert set(run) == {*dri.PATHS, "input"}
    rms = (noisy - x)[:, :, :4, :4].pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(run["input"]["decoded"], rms)
    for path in dri.PATHS:
        assert set(run[path]) == {"vector", "decoded", "flips", "recon", "attributes"}
        assert run[path]["attributes"].shape == (4, 4)
        assert run[path]["decoded"].shape == (4,)
    # the continuous autoencoder is a model of its own
    assert not torch.equal(run["latents"]["recon"], run["continuous autoencoder"]["recon"])


def test_paired_and_ratio():
    a, b = torch.tensor([3.0, 4.0, 5.0]), torch.tensor([1.0, 2.0, 3.0])
    assert dri.paired(a, b) == pytest.approx({"mean": 2.0, "low": 2.0, "high": 2.0})
    runs = [{"codes": {"decoded": a}, "continuous autoencoder": {"decoded": b}}]
    assert dri.ratio(runs, "decoded") == pytest.approx([2.0])
    with pytest.raises(ValueError, match="n >= 2"):
        dri.paired(a[:1], b[:1])
