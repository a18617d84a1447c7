"""The course's tokenizers: trained through the Trainer, cached, and with the interface
the language model needs; and the measurements of Discrete Representation Inconsistency."""

import math

import pytest
import torch
from test_vq import boxes  # coloured rectangles: a tiny picture set

from omni_edu import tokenizers
from omni_edu.data import OmniWorld
from omni_edu.modalities import frame_audio
from omni_edu.model.heads.vq import VQVAE, VQVAEConfig
from omni_edu.profiles import get_profile
from omni_edu.tokenizers import (
    add_noise,
    audio_tokenizer,
    image_tokenizer,
    representation_change,
    scene_tensors,
    shift_along,
    train_autoencoder,
)


@pytest.mark.parametrize("quantizer", ["vq", "fsq", "none"])
def test_autoencoder_reconstruction_loss_falls(quantizer):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(quantizer=quantizer, channels=16, kmeans_init=True, ema=True))
    history = train_autoencoder(model, boxes(128), steps=25, batch_size=16, progress=False)
    recon = history.losses["recon"]
    assert len(recon) == 25 and set(history.losses) == {"loss", "recon", "perplexity", "usage"}
    assert sum(recon[-3:]) / 3 < 0.5 * sum(recon[:3]) / 3
    if quantizer == "none":
        assert all(math.isnan(u) for u in history.losses["usage"])
    else:
        assert all(0 < u <= 1 for u in history.losses["usage"])
    assert not model.training  # fit leaves the model in eval mode


def test_train_autoencoder_repeats_exactly_and_checks_its_input():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VQVAE(VQVAEConfig(channels=8, codebook_size=16))
        runs.append(train_autoencoder(model, boxes(32), steps=4, batch_size=8, progress=False))
    assert runs[0].losses == runs[1].losses
    with pytest.raises(ValueError, match="batch of examples"):
        train_autoencoder(model, torch.zeros(0, 3, 16, 16), steps=2)


def test_scene_tensors_are_the_worlds_samples(monkeypatch):
    profile = get_profile("ci")
    data = scene_tensors("test", 6, profile)
    sample = OmniWorld("test", seed=0, n_objects=1, profile=profile).sample(6)
    for name in ("images", "mels", "attributes", "mask"):
        assert torch.equal(getattr(data, name), getattr(sample, name))
    assert scene_tensors("test", 6, "ci") is data  # generated once per session
    # Larger sets come in chunks that continue the same world's stream.
    monkeypatch.setattr(tokenizers, "CHUNK", 4)
    try:
        chunked = scene_tensors("test", 7, profile)
    finally:
        tokenizers._scene_tensors.cache_clear()  # later tests get unchunked sets again
    world = OmniWorld("test", seed=0, n_objects=1, profile=profile)
    first, second = world.sample(4), world.sample(3)
    assert torch.equal(chunked.images, torch.cat([first.images, second.images]))
    with pytest.raises(ValueError, match="positive number of scenes"):
        scene_tensors("test", 0, profile)


def test_image_tokenizer_at_gpu_shapes_is_cached_and_reads_patches_row_by_row(capsys):
    profile = get_profile("gpu-dry")
    part = image_tokenizer(profile, retrain=True)
    assert part.status == "trained" and "saved" in capsys.readouterr().out
    model = part.model
    assert model.vocab_size == 256 and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    g = profile.image_size // profile.patch_size  # one code per patch: 8 x 8 at 32 pixels
    images = scene_tensors("test", 4, profile).images
    ids = model.encode_to_indices(images)
    assert ids.shape == (4, g * g) and ids.dtype == torch.int64 and 0 <= ids.min()
    assert ids.max() < 256
    assert model.decode_from_indices(ids).shape == images.shape
    # Row-major: repainting the bottom quarter of the picture leaves the first row of
    # tokens (the top patches, out of the encoder's reach) as they were.
    changed, quarter = images.clone(), images.shape[-1] // 4
    changed[:, :, -quarter:, :] = torch.rand_like(changed[:, :, -quarter:, :])
    new_ids = model.encode_to_indices(changed)
    assert torch.equal(new_ids[:, :g], ids[:, :g])
    assert (new_ids[:, -g:] != ids[:, -g:]).any()
    # The second call loads the same weights from the cache.
    again = image_tokenizer(profile)
    assert again.status == "loaded"
    assert torch.equal(again.model.encode_to_indices(images), ids)
    assert set(again.extra) >= {"test_recon_mse", "test_usage", "test_perplexity"}


def test_audio_tokenizer_at_gpu_shapes_has_one_code_per_audio_token():
    profile = get_profile("gpu-dry")
    part = audio_tokenizer(profile, retrain=True, verbose=False)
    model = part.model
    mels = scene_tensors("test", 3, profile).mels  # (3, 32 frames, 64 mels)
    ids = model.encode_to_indices(mels)
    assert ids.shape == frame_audio(mels, 4).shape[:2] == (3, 8)
    assert ids.dtype == torch.int64 and model.vocab_size == 256
    decoded = model.decode_from_indices(ids)
    assert decoded.shape == mels.shape and decoded.min() >= -1 and decoded.max() <= 1


def test_shift_and_noise():
    x = torch.arange(12.0).reshape(1, 3, 4)
    torch.testing.assert_close(
        shift_along(x, dim=-1), torch.tensor([[[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10.0]]])
    )
    torch.testing.assert_close(shift_along(x, dim=1)[0, :, 0], torch.tensor([0, 0, 4.0]))
    torch.testing.assert_close(shift_along(x, dim=1, steps=2)[0, :, 0], torch.tensor([0, 0, 0.0]))
    with pytest.raises(ValueError, match="steps should be in"):
        shift_along(x, dim=-1, steps=4)
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(add_noise(images, 0.0), images)
    noisy = add_noise(images, 0.05, seed=1)
    assert torch.equal(noisy, add_noise(images, 0.05, seed=1))
    assert 0.02 < (noisy - images).std() < 0.06 and noisy.min() >= 0 and noisy.max() <= 1


def test_representation_change_counts_changed_tokens():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(channels=8, codebook_size=16)).eval()
    images = boxes(6)
    same = representation_change(model, images, images.clone())
    assert same == {"latent_change": 0.0, "token_change": 0.0, "sequence_change": 0.0}
    other = boxes(6, seed=1)
    change = representation_change(model, images, other, batch_size=4)
    ids_a, ids_b = model.encode_to_indices(images), model.encode_to_indices(other)
    assert change["token_change"] == pytest.approx((ids_a != ids_b).float().mean().item())
    assert change["sequence_change"] == pytest.approx((ids_a != ids_b).any(1).float().mean().item())
    z_a, z_b = model.encode(images), model.encode(other)
    expected = (z_b - z_a).norm(dim=-1).mean() / z_a.pow(2).sum(-1).mean().sqrt()
    assert change["latent_change"] == pytest.approx(expected.item(), rel=1e-5)
    continuous = VQVAE(VQVAEConfig(channels=8, quantizer="none")).eval()
    result = representation_change(continuous, images, other)
    assert result["latent_change"] > 0 and math.isnan(result["token_change"])
    with pytest.raises(ValueError, match="one shape"):
        representation_change(model, images, images[:3])


def test_tokenizer_configs_follow_the_profile_and_take_overrides():
    image = tokenizers.image_tokenizer_config("gpu")
    assert (image.image_size, image.grid_size, image.codebook_size) == (32, 8, 256)
    assert image.ema and image.kmeans_init and image.dead_code_steps > 0
    audio = tokenizers.audio_tokenizer_config("ci", quantizer="none")
    assert (audio.n_mels, audio.frames_per_token, audio.quantizer) == (32, 4, "none")
    assert tokenizers.audio_tokenizer_config("ci").quantizer == "vq"
