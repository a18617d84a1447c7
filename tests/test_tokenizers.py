"""The course's tokenizers: trained through the Trainer, cached, with both interfaces a
language model needs (code ids and continuous latents through one decoder); and the
measurements of Discrete Representation Inconsistency."""

import math

import pytest
import torch
from test_vq import boxes  # coloured rectangles: a tiny picture set

from omni_edu.data import OmniWorld
from omni_edu.lessons.vq_tokens.dri import add_noise, representation_change, shift_along
from omni_edu.modalities import frame_audio
from omni_edu.model.heads.vq import VQVAE, AudioVQVAE, VQVAEConfig, evaluate_autoencoder
from omni_edu.parts import course_cache, tokenizers
from omni_edu.parts.judges import AttributeClassifier, attribute_accuracy
from omni_edu.parts.tokenizers import (
    TOKENIZER_SETTINGS,
    audio_tokenizer,
    image_tokenizer,
    latent_stats,
    path_scores,
    scene_tensors,
    train_autoencoder,
)
from omni_edu.profiles import get_profile


def vocab(modality: str) -> int:
    """The codebook size the recipe of ``modality`` asks for."""
    settings = TOKENIZER_SETTINGS[modality]
    if settings.get("quantizer", "vq") == "fsq":
        return math.prod(settings["fsq_levels"])
    return settings["codebook_size"]


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
    assert model.vocab_size == vocab("image") and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    g = profile.image_size // profile.patch_size  # one code per patch: 8 x 8 at 32 pixels
    images = scene_tensors("test", 4, profile).images
    ids = model.encode_to_indices(images)
    assert ids.shape == (4, g * g) and ids.dtype == torch.int64 and 0 <= ids.min()
    assert ids.max() < model.vocab_size
    assert model.decode_from_indices(ids).shape == images.shape
    # The continuous path: one latent per patch, the same decoder.
    latents = model.encode_latents(images)
    assert latents.shape == (4, g * g, model.latent_dim)
    decoded = model.decode_latents(latents)
    assert decoded.shape == images.shape and 0 <= decoded.min() and decoded.max() <= 1
    assert model.config.quantizer_dropout == TOKENIZER_SETTINGS["image"]["quantizer_dropout"] > 0
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
    assert torch.equal(again.model.encode_latents(images), latents)
    assert set(again.extra) >= {
        "test_recon_mse",
        "test_continuous_recon_mse",
        "test_usage",
        "test_perplexity",
    }
    assert len(again.extra["latent_mean"]) == len(again.extra["latent_std"]) == model.latent_dim


def test_a_tokenizer_of_an_older_recipe_is_retrained(capsys):
    """The checkpoint holds only tensors and plain values (weights_only=True loads it) and
    names its recipe version; one of an older recipe is not used but trained again."""
    profile = get_profile("gpu-dry")
    part = image_tokenizer(profile, verbose=False)
    state = torch.load(part.path, map_location="cpu", weights_only=True)
    assert state["config"]["recipe"] == tokenizers.RECIPE_VERSION
    assert state["config"]["model"]["quantizer_dropout"] > 0
    old_config = {**state["config"], "recipe": tokenizers.RECIPE_VERSION - 1}
    course_cache.save(part.path, part.model, part.name, profile, old_config, {}, 0.0)
    again = image_tokenizer(profile)
    assert again.status == "trained" and "recipe" in again.reason
    assert "recipe" in capsys.readouterr().out


def test_audio_tokenizer_at_gpu_shapes_has_one_code_per_audio_token():
    profile = get_profile("gpu-dry")
    part = audio_tokenizer(profile, retrain=True, verbose=False)
    model = part.model
    mels = scene_tensors("test", 3, profile).mels  # (3, 32 frames, 64 mels)
    ids = model.encode_to_indices(mels)
    assert ids.shape == frame_audio(mels, 4).shape[:2] == (3, 8)
    assert ids.dtype == torch.int64 and model.vocab_size == vocab("audio")
    decoded = model.decode_from_indices(ids)
    assert decoded.shape == mels.shape and decoded.min() >= -1 and decoded.max() <= 1
    latents = model.encode_latents(mels)
    assert latents.shape == (3, 8, model.latent_dim)
    decoded = model.decode_latents(latents)
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
    assert (image.image_size, image.grid_size) == (32, 8)
    assert image.quantizer_dropout == TOKENIZER_SETTINGS["image"]["quantizer_dropout"]
    assert tokenizers.image_tokenizer_config("ci", quantizer_dropout=0.0).quantizer_dropout == 0
    audio = tokenizers.audio_tokenizer_config("ci", quantizer="none")
    assert (audio.n_mels, audio.frames_per_token, audio.quantizer) == (32, 4, "none")
    assert tokenizers.audio_tokenizer_config("ci").quantizer == "vq"


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_the_continuous_path_reconstructs_held_out_scenes_better(modality):
    """The course's recipe at a small budget: decoding the latents loses less than decoding
    the codes, on scenes it never saw (a quantiser that throws nothing away, or a
    continuous path that decodes the codes, would tie)."""
    field = "images" if modality == "image" else "mels"
    train = getattr(scene_tensors("train", 512, "ci"), field)
    test = getattr(scene_tensors("test", 256, "ci"), field)
    torch.manual_seed(0)
    if modality == "image":
        model, steps = VQVAE(tokenizers.image_tokenizer_config("ci", channels=16)), 100
    else:
        model, steps = AudioVQVAE(tokenizers.audio_tokenizer_config("ci", channels=64)), 150
    train_autoencoder(model, train, steps=steps, batch_size=32, progress=False)
    quantised = evaluate_autoencoder(model, test)["recon_mse"]
    continuous = evaluate_autoencoder(model, test, quantize=False)["recon_mse"]
    assert continuous < quantised < test.var().item()


def test_path_scores_and_latent_stats_measure_what_the_decoder_draws():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(channels=8, codebook_size=16, quantizer_dropout=0.5)).eval()
    data = scene_tensors("test", 16, "ci")
    judge = AttributeClassifier().eval()  # untrained: any judge is scored the same way
    for quantize in (True, False):
        if quantize:
            drawn = model.decode_from_indices(model.encode_to_indices(data.images))
        else:
            drawn = model.decode_latents(model.encode_latents(data.images))
        scores = path_scores(model, data.images, judge, data.attributes, quantize=quantize)
        assert scores["recon_mse"] == pytest.approx((drawn - data.images).pow(2).mean().item())
        expected = attribute_accuracy(judge, drawn, data.attributes)["mean"]
        assert scores["attr_acc"] == pytest.approx(expected)
    stats = latent_stats(model, data.images, batch_size=5)
    latents = model.encode_latents(data.images).reshape(-1, model.latent_dim)
    torch.testing.assert_close(torch.tensor(stats["mean"]), latents.mean(0))
    torch.testing.assert_close(torch.tensor(stats["std"]), latents.std(0))


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_the_recipe_follows_its_measurement(modality):
    """TOKENIZER_SETTINGS is what the rules of benchmarks/tokenizer_paths.py chose."""
    measured = tokenizers.RECIPE_MEASUREMENT[modality]
    config = (
        tokenizers.image_tokenizer_config("ci")
        if modality == "image"
        else tokenizers.audio_tokenizer_config("ci")
    )
    expected = {"vq256": "VQ K=256", "fsq64": "FSQ 64 (4,4,4)"}[measured["quantiser"]]
    assert config.describe() == f"{expected}, quantiser dropout {measured['share']:g}"
    if config.quantizer == "vq":  # the cures of section 4 come with VQ
        assert config.ema and config.kmeans_init and config.dead_code_steps > 0
