"""The data of a sweep: OmniWorld scenes as text, image and audio tokens, packed into
batches of one setting, and each modality's best constant prediction (the baseline that
puts every modality's loss on one scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from omni_edu.data import OmniWorld
from omni_edu.lessons.scaling_laws.budget import MODALITIES, SweepConfig, heldout_size
from omni_edu.modalities import Modality, TextTokenizer, frame_audio, patchify
from omni_edu.model.interleave import audio_segment, image_segment, pack, text_segment
from omni_edu.profiles import get_profile


@dataclass
class _Pool:
    """Training or evaluation scenes, turned into each modality's tokens."""

    text: list[list[int]]
    image: torch.Tensor  # (n, patches, image_dim), standardised per feature
    audio: torch.Tensor  # (n, audio_tokens, audio_dim), standardised per feature
    grid: tuple[int, int]


def _make_pool(config: SweepConfig, split: str, n: int, stats: dict | None) -> tuple[_Pool, dict]:
    """Generate ``n`` scenes and tokenize them; features are standardised with ``stats``.

    Standardising makes an image or audio MSE a fraction of the feature variance (1.0
    for a model that predicts the mean), on a scale like a text loss in nats: without
    it, a mixed run's total loss would be nearly all text and its image part would
    barely train.
    """
    profile = get_profile(config.profile)
    world = OmniWorld(split, seed=config.seed, profile=profile)
    tokenizer = TextTokenizer()
    text, images, audio = [], [], []
    for start in range(0, n, 512):
        batch = world.sample(min(512, n - start))
        text += [tokenizer.encode(c, bos=True, eos=True) for c in batch.captions]
        images.append(patchify(batch.images, profile.patch_size))
        audio.append(frame_audio(batch.mels, config.frames_per_token))
    image, sound = torch.cat(images), torch.cat(audio)
    if stats is None:
        stats = {
            name: (x.mean((0, 1)), x.std((0, 1)).clamp_min(1e-3))
            for name, x in (("image", image), ("audio", sound))
        }
    image = (image - stats["image"][0]) / stats["image"][1]
    sound = (sound - stats["audio"][0]) / stats["audio"][1]
    side = profile.image_size // profile.patch_size
    return _Pool(text, image, sound, (side, side)), stats


def _document(pool: _Pool, modality: str, k: int) -> list:

    if modality == "text":
        return [text_segment(pool.text[k])]
    if modality == "image":
        return [image_segment(pool.image[k], pool.grid)]
    return [audio_segment(pool.audio[k])]


def _batches(pool: _Pool, setting: str, batch_size: int, image_dim: int, audio_dim: int) -> list:
    """Packed batches of ``setting``, one pass over the pool.

    A mixed run's batch holds ``batch_size`` documents of *each* of its modalities, so
    that at every step it sees as many tokens of each as the matching single-modality
    run: the two differ only in what else the model learns, not in steps or tokens.
    Every document holds one modality, and the second modality's scenes are shifted by
    half the pool, so no caption meets its own picture: a modality can only help
    another through what the shared weights learn.
    """

    n = len(pool.text)
    shifts = (0, n // 2)
    batches = []
    for start in range(0, n - batch_size + 1, batch_size):
        docs = [
            _document(pool, modality, (k + shift) % n)
            for modality, shift in zip(setting.split("+"), shifts, strict=False)
            for k in range(start, start + batch_size)
        ]
        batches.append(pack(docs, image_dim=image_dim, audio_dim=audio_dim))
    return batches


def modality_tokens(packed, modality: str) -> int:

    return int((packed.modality == Modality[modality.upper()]).sum())


class SweepData:
    """Packed batches per setting, built once per sweep and shared by all sizes."""

    def __init__(self, config: SweepConfig, progress: bool) -> None:
        self.config = config
        # Enough scenes for one pass of the longest run, the held-out one included.
        steps = max(*config.budgets, heldout_size(config.profile)[1])
        n_train = min(config.pool, steps * config.batch_size)
        with tqdm(total=2, desc="generating OmniWorld", disable=not progress, leave=False) as bar:
            self.train, stats = _make_pool(config, "train", n_train, None)
            bar.update()
            self.val, _ = _make_pool(config, "test", config.n_eval, stats)
            bar.update()
        self.image_dim = self.train.image.shape[-1]
        self.audio_dim = self.train.audio.shape[-1]
        self._cache: dict[str, tuple[list, dict[str, list]]] = {}
        self._val: dict[str, list] = {}

    def batches(self, setting: str) -> tuple[list, dict[str, list]]:
        """Training batches of ``setting`` and validation batches per modality it has."""
        if setting not in self._cache:
            cfg = self.config
            dims = (self.image_dim, self.audio_dim)
            train = _batches(self.train, setting, cfg.batch_size, *dims)
            self._cache[setting] = (train, {m: self.val_batches(m) for m in setting.split("+")})
        return self._cache[setting]

    def val_batches(self, modality: str) -> list:
        """Validation batches of one modality (the same for every setting that has it)."""
        key = f"val {modality}"
        if key not in self._val:
            dims = (self.image_dim, self.audio_dim)
            self._val[key] = _batches(self.val, modality, self.config.batch_size, *dims)
        return self._val[key]


def measure_baselines(data: SweepData) -> dict[str, float]:
    """The best constant prediction's loss on each modality's validation targets."""
    baselines = {}
    for modality in MODALITIES:
        batches = data.val_batches(modality)
        mask = [b.loss_mask(Modality[modality.upper()]) for b in batches]
        if modality == "text":
            targets = torch.cat([b.text_targets[m] for b, m in zip(batches, mask, strict=True)])
            freq = torch.bincount(targets).to(torch.float64)
            freq = freq[freq > 0] / freq.sum()
            baselines[modality] = float(-(freq * freq.log()).sum())
        else:
            name = f"{modality}_targets"
            x = torch.cat([getattr(b, name)[m] for b, m in zip(batches, mask, strict=True)])
            baselines[modality] = float(((x - x.mean(0)) ** 2).mean())
    return baselines
