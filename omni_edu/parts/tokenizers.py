"""The course's image and sound tokenizers: trained once (lesson 03), reused by later lessons.

A language model reads and writes pictures and sounds as code ids once a tokenizer turns
them into ids and back, or as continuous latents once an autoencoder turns them into
vectors and back. The course's two tokenizers are both at once: one autoencoder whose
single decoder reads the quantiser's codes *and* the encoder's continuous latents
(trained with quantiser dropout: a share of every batch skips the quantiser). Lesson 04
can then race a head that writes code ids against heads that write latents through the
same decoder, so "discrete vs continuous" is not "a lossy tokenizer vs raw pixels".
Lesson 03 builds them and the rest of the course shares them through the course cache
(:mod:`omni_edu.parts.course_cache`):

* :func:`image_tokenizer` - one code (or one latent) per image patch, the same grid as
  the patch tokens, trained on single-object OmniWorld training pictures;
* :func:`audio_tokenizer` - the same recipe for sounds: one code (or latent) per audio
  token of four log-mel frames (:func:`omni_edu.modalities.frame_audio`), so a discrete
  sound has as many tokens as a continuous one.

Both return a :class:`~omni_edu.parts.course_cache.CachedPart` whose ``model`` offers
``encode_to_indices``, ``decode_from_indices`` and ``vocab_size`` (the codes) and
``encode_latents``, ``decode_latents`` and ``latent_dim`` (the continuous path): loaded
from the cache when a valid checkpoint is there, otherwise trained (with a progress bar)
and saved. :data:`TOKENIZER_SETTINGS` is the recipe, and :data:`RECIPE_MEASUREMENT` says
which measurement chose its quantiser and its dropout share.

Also here: :func:`train_autoencoder`, the one way the course trains an autoencoder (it
runs the :class:`~omni_edu.train.Trainer` through :func:`omni_edu.train.fit`);
:func:`train_tokenizer`, the course's recipe with other settings or seeds (the variants
lesson 03 and ``benchmarks/tokenizer_paths.py`` compare); :func:`path_scores` and
:func:`latent_stats`, what a path keeps and what its latents look like. The measurements
of lesson 03's claim check on *Discrete Representation Inconsistency* (does nearly the
same input keep the same tokens?) live in :mod:`omni_edu.lessons.vq_tokens.dri`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn
from tqdm.auto import tqdm

from omni_edu.data import OmniWorld
from omni_edu.model.heads.vq import (
    VQVAE,
    AudioVQVAE,
    AudioVQVAEConfig,
    QuantizedAutoencoder,
    QuantizerConfig,
    VQVAEConfig,
    evaluate_autoencoder,
)
from omni_edu.parts.course_cache import CachedPart, load_or_train
from omni_edu.parts.judges import attribute_accuracy
from omni_edu.profiles import Profile, get_device, get_profile, seed_everything
from omni_edu.train import History, fit

# The recipe of the course's tokenizers, per modality. Changing any of these, or anything
# below that the cache config lists, retrains the cached tokenizers. The quantiser and the
# quantiser-dropout share were chosen by rules fixed before measuring (RECIPE_MEASUREMENT).
TOKENIZER_SETTINGS: dict[str, dict] = {
    "image": {"quantizer": "fsq", "fsq_levels": (4, 4, 4), "quantizer_dropout": 0.5},
    "audio": {
        "quantizer": "vq",
        "codebook_size": 256,
        "ema": True,
        "kmeans_init": True,
        "dead_code_steps": 10,
        "quantizer_dropout": 0.5,
    },
}
# What chose the recipe: `python benchmarks/tokenizer_paths.py` (its RULES were fixed before
# it first ran). Per modality, the quantiser (VQ K=256 or FSQ 64 (4,4,4), at dropout 0) and
# the dropout share it chose; the quantised path's attribute accuracy and reconstruction MSE
# on held-out scenes (seed means, then the mean of the two profiles); the largest spread
# (max - min over the seeds) of that accuracy in one profile; what the chosen share changed
# the quantised path's accuracy by, per profile (negative: dropout helped); and what it
# changed the continuous path's accuracy by (positive: dropout helped).
RECIPE_MEASUREMENT: dict = {
    "command": "python benchmarks/tokenizer_paths.py --profiles ci cpu --seeds 0 1 2",
    "machine": "a 2-core AMD EPYC (one thread per run, other jobs sharing the machine)",
    "profiles": ("ci", "cpu"),
    "seeds": 3,
    "n_test": 1024,
    "image": {
        "quantiser": "fsq64",
        "share": 0.5,
        "quantised_acc": {"vq256": 0.8589, "fsq64": 0.8608},
        "quantised_mse": {"vq256": 0.002746, "fsq64": 0.002659},
        "quantised_mse_by_profile": {
            "vq256": {"ci": 0.003896, "cpu": 0.001596},
            "fsq64": {"ci": 0.003634, "cpu": 0.001684},
        },
        "quantised_acc_spread": {"vq256": 0.093, "fsq64": 0.108},
        "loss_at_share": {"ci": -0.0003, "cpu": -0.0037},
        "latent_gain_at_share": {"ci": 0.0009, "cpu": 0.0066},
    },
    "audio": {
        "quantiser": "vq256",
        "share": 0.5,
        "quantised_acc": {"vq256": 0.9175, "fsq64": 0.6262},
        "quantised_mse": {"vq256": 0.00796, "fsq64": 0.036898},
        "quantised_mse_by_profile": {
            "vq256": {"ci": 0.014392, "cpu": 0.001527},
            "fsq64": {"ci": 0.071208, "cpu": 0.002588},
        },
        "quantised_acc_spread": {"vq256": 0.049, "fsq64": 0.035},
        "loss_at_share": {"ci": -0.082, "cpu": -0.0012},
        "latent_gain_at_share": {"ci": 0.1024, "cpu": 0.0003},
    },
}
TOKENIZER_LR = 2e-3
TOKENIZER_SEED = 0
FRAMES_PER_TOKEN = 4  # log-mel frames per audio token: 1/16 s of sound
RECIPE_VERSION = 2  # raise when the training code changes what the weights become
# OmniWorld scenes are generated this many at a time: large sets (the gpu profile's
# 65,536) would otherwise hold every waveform in memory at once.
CHUNK = 8192


def _profile(profile: Profile | str | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


# --------------------------------------------------------------------------------------
# Training an autoencoder
# --------------------------------------------------------------------------------------


def train_autoencoder(
    model: QuantizedAutoencoder,
    data: torch.Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = TOKENIZER_LR,
    seed: int = 0,
    progress: bool = True,
    desc: str = "autoencoder",
    device: str | None = None,
) -> History:
    """Train ``model`` to reconstruct ``data`` (pictures ``(n, 3, H, W)`` or log-mel clips
    ``(n, frames, n_mels)``) with the course's Trainer; return its history.

    Every step draws ``batch_size`` random examples (a function of ``seed`` and the step,
    so a run repeats exactly). The history logs per step ``loss`` (reconstruction plus
    the quantiser's loss), ``recon`` (mean squared error), ``perplexity`` (effective
    number of codes in the batch) and ``usage`` (fraction of codes used in the batch;
    NaN without a codebook): ``history.losses["perplexity"]``.
    """
    if data.dim() < 2 or len(data) == 0:
        raise ValueError(
            f"data should be a batch of examples (n, ...) with n >= 1; got {tuple(data.shape)}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size should be a positive int; got {batch_size}.")

    def batches(step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return data[torch.randint(len(data), (batch_size,), generator=generator)]

    def loss_fn(model: QuantizedAutoencoder, batch: torch.Tensor) -> dict:
        out = model(batch)
        return {
            "loss": out.loss,
            "recon": out.recon_loss,
            "perplexity": out.quant.perplexity,
            "usage": out.quant.usage,
        }

    overrides = {"device": device} if device is not None else {}
    return fit(
        model, loss_fn, batches, steps, lr=lr, seed=seed, desc=desc, progress=progress, **overrides
    )


# --------------------------------------------------------------------------------------
# The data the tokenizers learn from
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneTensors:
    """The tensors of ``n`` single-object OmniWorld scenes (no waveforms, captions or
    questions): images ``(n, 3, H, W)``, mels ``(n, frames, n_mels)``, attributes
    ``(n, 1, 4)`` and mask ``(n, 1)``."""

    images: torch.Tensor
    mels: torch.Tensor
    attributes: torch.Tensor
    mask: torch.Tensor


@lru_cache(maxsize=4)
def _scene_tensors(split: str, n: int, profile_key: str) -> SceneTensors:
    profile = get_profile(profile_key)  # a key names a profile ("gpu-dry" included)
    world = OmniWorld(split, seed=0, n_objects=1, profile=profile)
    parts = []
    for start in tqdm(range(0, n, CHUNK), desc=f"OmniWorld {split} scenes", leave=False):
        batch = world.sample(min(CHUNK, n - start))  # continues the world's stream
        parts.append((batch.images, batch.mels, batch.attributes, batch.mask))
    return SceneTensors(*(torch.cat(column) for column in zip(*parts, strict=True)))


def scene_tensors(split: str, n: int, profile: Profile | str | None = None) -> SceneTensors:
    """Pictures and sounds of ``n`` single-object scenes ``OmniWorld(split, seed=0,
    n_objects=1)``, the data of the course's tokenizers.

    For ``n`` up to :data:`CHUNK` they are exactly ``OmniWorld(split, seed=0,
    n_objects=1).sample(n)``'s tensors. Kept in memory for the session (a lesson that
    trains several tokenizers generates them once): do not modify them in place.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n should be a positive number of scenes; got {n!r}.")
    return _scene_tensors(split, n, _profile(profile).key)


# --------------------------------------------------------------------------------------
# The two shared parts
# --------------------------------------------------------------------------------------


def tokenizer_budget(profile: Profile | str | None = None) -> dict[str, int]:
    """Steps, batch size and data sizes of a tokenizer run in ``profile``.

    Twice the profile's base budget of steps (a tokenizer is small; its codes must be
    good before a language model learns them); the profile's training and evaluation
    set sizes.
    """
    profile = _profile(profile)
    return {
        "steps": profile.budget(2 * profile.train_steps, dry=2),
        "batch_size": profile.batch_size,
        "n_train": profile.budget(profile.n_train, dry=256),
        "n_eval": profile.budget(profile.n_eval, dry=64),
    }


def image_tokenizer_config(profile: Profile | str | None = None, **overrides) -> VQVAEConfig:
    """The course's image tokenizer: one code per patch (:data:`TOKENIZER_SETTINGS`).
    ``overrides`` change single fields (e.g. ``quantizer="none"`` for the continuous twin)."""
    settings = {**TOKENIZER_SETTINGS["image"], **overrides}
    return VQVAEConfig.from_profile(_profile(profile), **settings)


def audio_tokenizer_config(profile: Profile | str | None = None, **overrides) -> AudioVQVAEConfig:
    """The course's audio tokenizer: one code per audio token of four log-mel frames.
    ``overrides`` change single fields (e.g. ``quantizer="none"`` for the continuous twin)."""
    settings = {**TOKENIZER_SETTINGS["audio"], "frames_per_token": FRAMES_PER_TOKEN, **overrides}
    return AudioVQVAEConfig.from_profile(_profile(profile), **settings)


# modality -> (the SceneTensors field it learns from, its autoencoder, its config)
_MODALITIES = {
    "image": ("images", VQVAE, image_tokenizer_config),
    "audio": ("mels", AudioVQVAE, audio_tokenizer_config),
}


def _modality(modality: str) -> tuple[str, type[QuantizedAutoencoder], Callable]:
    if modality not in _MODALITIES:
        raise ValueError(f"modality should be 'image' or 'audio'; got {modality!r}.")
    return _MODALITIES[modality]


def _build(modality: str, config: QuantizerConfig, seed: int) -> QuantizedAutoencoder:
    seed_everything(seed)  # the initial weights are part of the recipe
    return _modality(modality)[1](config)


def _train(
    model: QuantizedAutoencoder,
    modality: str,
    profile: Profile,
    seed: int,
    progress: bool = True,
    desc: str | None = None,
) -> dict[str, float | list[float]]:
    """Train ``model`` by the tokenizer recipe of ``profile``; return what it measured
    right after: losses of both paths on held-out scenes and its latents' statistics."""
    field = _modality(modality)[0]
    budget = tokenizer_budget(profile)
    data = getattr(scene_tensors("train", budget["n_train"], profile), field)
    history = train_autoencoder(
        model,
        data,
        budget["steps"],
        batch_size=budget["batch_size"],
        lr=TOKENIZER_LR,
        seed=seed,
        progress=progress,
        desc=desc or f"{modality} tokenizer",
        device=str(get_device(profile)),
    )
    test = getattr(scene_tensors("test", budget["n_eval"], profile), field)
    scores = evaluate_autoencoder(model, test)
    stats = latent_stats(model, data)
    return {
        "train_recon": history.final("recon"),
        **{f"test_{k}": v for k, v in scores.items()},
        "test_continuous_recon_mse": evaluate_autoencoder(model, test, quantize=False)["recon_mse"],
        "latent_mean": stats["mean"],
        "latent_std": stats["std"],
    }


def train_tokenizer(
    modality: str,
    profile: Profile | str | None = None,
    seed: int = TOKENIZER_SEED,
    progress: bool = True,
    **overrides,
) -> tuple[QuantizedAutoencoder, dict[str, float | list[float]]]:
    """A tokenizer trained exactly like the course's, not cached: the same data, steps,
    batch size and learning rate, with single config fields changed by ``overrides`` and
    another ``seed`` (initial weights and batches).

    ``modality`` is ``"image"`` or ``"audio"``. Returns the trained model (in eval mode,
    on the profile's device) and what :func:`image_tokenizer` stores in ``part.extra``.
    ``train_tokenizer("image", quantizer_dropout=0.0)`` is the quantiser-only twin of the
    course's image tokenizer; ``quantizer="none"`` the continuous one.
    """
    profile = _profile(profile)
    config = _modality(modality)[2](profile, **overrides)
    model = _build(modality, config, seed)
    desc = f"{modality} tokenizer" + (f" {overrides}" if overrides else "")
    extra = _train(model, modality, profile, seed, progress, desc=desc)
    return model, extra


def _tokenizer(modality: str, profile: Profile, retrain: bool, verbose: bool) -> CachedPart:
    """Load or train the course's tokenizer of ``modality`` ("image" or "audio")."""
    field, model_class, make_config = _modality(modality)
    config = make_config(profile)
    name = f"{modality}_tokenizer"
    part = load_or_train(
        name,
        lambda: _build(modality, config, TOKENIZER_SEED),
        lambda model: _train(model, modality, profile, TOKENIZER_SEED),
        config={
            "model": asdict(config),
            "model_class": model_class.__name__,
            "data": {
                "world": "OmniWorld",
                "split": "train",
                "seed": 0,
                "n_objects": 1,
                "field": field,
            },
            "lr": TOKENIZER_LR,
            "seed": TOKENIZER_SEED,
            "recipe": RECIPE_VERSION,
            **tokenizer_budget(profile),
        },
        profile=profile,
        retrain=retrain,
        verbose=verbose,
    )
    # A tokenizer is trained once and then only used: frozen, in eval mode, on the
    # profile's device (a loaded one comes back on the CPU).
    part.model.to(get_device(profile)).eval().requires_grad_(False)
    return part


def image_tokenizer(
    profile: Profile | str | None = None, retrain: bool = False, verbose: bool = True
) -> CachedPart:
    """The course's image tokenizer, from the cache or trained now (and then cached).

    ``part.model`` is a frozen :class:`~omni_edu.model.heads.vq.VQVAE` with two paths
    through one decoder, on the same grid of ``n_tokens`` patches (row by row):

    * codes: ``encode_to_indices(images (B, 3, H, W) in [0, 1]) -> (B, n_tokens)`` int64,
      ``decode_from_indices(ids) -> images``, ``vocab_size`` codes;
    * latents: ``encode_latents(images) -> (B, n_tokens, latent_dim)`` float32,
      ``decode_latents(latents) -> images`` in [0, 1].

    ``part.extra`` holds what was measured right after training: test reconstruction
    error of both paths (``test_recon_mse``, ``test_continuous_recon_mse``), codebook use,
    and the per-dimension mean and standard deviation of the latents over the training
    pictures (``latent_mean``, ``latent_std``: standardise with them before a head learns
    the latents). ``retrain=True`` trains even when the cache holds a valid one.
    """
    return _tokenizer("image", _profile(profile), retrain, verbose)


def audio_tokenizer(
    profile: Profile | str | None = None, retrain: bool = False, verbose: bool = True
) -> CachedPart:
    """The course's audio tokenizer, from the cache or trained now (and then cached).

    ``part.model`` is a frozen :class:`~omni_edu.model.heads.vq.AudioVQVAE`, one token per
    four log-mel frames, in time order: ``encode_to_indices(mels (B, frames, n_mels)) ->
    (B, frames // 4)`` int64 and ``decode_from_indices(ids) -> mels``; ``encode_latents(mels)
    -> (B, frames // 4, latent_dim)`` and ``decode_latents(latents) -> mels`` in [-1, 1].
    ``part.extra`` as for :func:`image_tokenizer`.
    """
    return _tokenizer("audio", _profile(profile), retrain, verbose)


# --------------------------------------------------------------------------------------
# What each path keeps
# --------------------------------------------------------------------------------------


@torch.no_grad()
def latent_stats(
    model: QuantizedAutoencoder, data: torch.Tensor, batch_size: int = 256
) -> dict[str, list[float]]:
    """Per-dimension ``mean`` and ``std`` (lists of ``latent_dim`` floats) of
    ``model.encode_latents`` over ``data`` (every token of every example)."""
    model.eval()
    device = next(model.parameters()).device
    latents = torch.cat(
        [model.encode_latents(chunk.to(device)).cpu() for chunk in data.split(batch_size)]
    ).reshape(-1, model.latent_dim)
    return {"mean": latents.mean(0).tolist(), "std": latents.std(0).tolist()}


@torch.no_grad()
def path_scores(
    model: QuantizedAutoencoder,
    data: torch.Tensor,
    judge: nn.Module,
    attributes: torch.Tensor,
    quantize: bool = True,
    batch_size: int = 256,
) -> dict[str, float]:
    """What one path of ``model`` keeps of ``data`` (pictures ``(n, 3, H, W)`` or mels
    ``(n, frames, n_mels)``), measured on what the decoder draws (clipped to its
    ``output_range``, as ``decode_from_indices`` and ``decode_latents`` return it).

    Returns ``recon_mse`` (mean squared error per value) and ``attr_acc``, the mean
    attribute accuracy of ``judge`` (a picture or sound judge of
    :func:`omni_edu.parts.judges.judges`) on the reconstructions, against ``attributes``
    ``(n, 1, 4)``. ``quantize=False`` decodes the continuous latents instead of the codes.
    """
    model.eval()
    device = next(model.parameters()).device
    low, high = model.output_range
    recon = torch.cat(
        [
            model(chunk.to(device), quantize=quantize).recon.clamp(low, high).float().cpu()
            for chunk in data.split(batch_size)
        ]
    )
    return {
        "recon_mse": (recon - data.float().cpu()).pow(2).mean().item(),
        "attr_acc": attribute_accuracy(judge, recon, attributes)["mean"],
    }
