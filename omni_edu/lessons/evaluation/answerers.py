"""Answerers of lesson 09 that look at the picture and listen to the sound.

* :func:`omnilm_answerer` - lesson 06's OmniLM scores each option by its own likelihood;
* :class:`OmniAnswerer` and :func:`train_answerer` - a small fusion model trained on
  OmniWorld questions, free to learn whatever pattern its training items carry (a letter
  that is often right, say): that is the point of lesson 09.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from omni_edu.lessons.evaluation.benchmark import MAX_OPTIONS, Answerer, Benchmark, MCItem
from omni_edu.lessons.evaluation.budget import BUDGET
from omni_edu.modalities import MelConfig, TextTokenizer, log_mel, patchify
from omni_edu.profiles import Profile, get_device, get_profile


def omnilm_answerer(model: torch.nn.Module, data, batch_size: int = 64) -> Answerer:
    """Lesson 06's OmniLM as an answerer: each option scored by the model itself.

    Every option becomes a document in the format the model learned its questions in
    (``<answer>``, the picture and/or the sound the question is about, the question,
    ``<sep>``, then the option's words), and its score is the log-probability the model
    gives those words and the ``<eos>`` that ends them
    (:func:`omni_edu.parts.any_to_any.text_log_likelihood`). The option letters never enter:
    such a model cannot prefer a slot.

    Args:
        model: an :class:`~omni_edu.model.omni_lm.OmniLM` trained with questions.
        data: the :class:`~omni_edu.parts.any_to_any.AnyToAnyData` it was trained on (its
            tokenizer, markers and picture/sound tokens).
    """
    from omni_edu.model.interleave import audio_segment, image_segment, text_segment
    from omni_edu.parts.any_to_any import text_log_likelihood

    tok = data.tokenizer

    def documents(item: MCItem) -> list[list]:
        prompt = [text_segment([tok["<answer>"]], predict=False)]
        if item.modality in ("image", "image+audio"):
            prompt.append(image_segment(data.tokens("image", item.image[None])[0], predict=False))
        if item.modality in ("audio", "image+audio"):
            prompt.append(audio_segment(data.tokens("audio", item.mel[None])[0], predict=False))
        prompt.append(text_segment([*tok.encode(item.question), tok["<sep>"]], predict=False))
        return [[*prompt, text_segment(tok.encode(option))] for option in item.options]

    def answer(items: Sequence[MCItem]) -> torch.Tensor:
        docs = [doc for item in items for doc in documents(item)]
        scores = torch.cat(
            [
                text_log_likelihood(model, data.pack(docs[i : i + batch_size]))
                for i in range(0, len(docs), batch_size)
            ]
        )
        out = torch.full((len(items), MAX_OPTIONS), float("-inf"))
        start = 0
        for row, item in enumerate(items):
            out[row, : len(item.options)] = scores[start : start + len(item.options)]
            start += len(item.options)
        return out

    return answer


def capstone_items(data, n: int | None = None) -> Benchmark:
    """The questions lesson 06's capstone was tested on, as multiple-choice items.

    ``data``: the capstone's test :class:`~omni_edu.parts.any_to_any.AnyToAnyData` (single-object
    scenes). Each item shows what the capstone's question documents showed in training, the
    picture (its ``question_modality``), and keeps the question's own options: scoring these
    with :func:`omnilm_answerer` differs from lesson 06's measure only in how an answer is
    read (the likeliest option instead of free generation), not in the questions.
    """
    shown = data.question_modality
    if shown not in ("image", "audio"):
        raise ValueError(
            f"capstone_items reads questions asked about a picture or a sound; this data asks "
            f"them about {shown!r}."
        )
    batch = data.batch
    n = len(data) if n is None else min(n, len(data))
    items = []
    for i in range(n):
        q = batch.questions[i]
        image, mel = batch.images[i], batch.mels[i]
        if shown == "image":
            mel = torch.zeros_like(mel)
        else:
            image = torch.zeros_like(image)
        answer = q.options.index(q.answer)
        items.append(MCItem(q.text, tuple(q.options), answer, q.ability, shown, image, mel))
    return Benchmark("lesson 06's test questions", items)


# --- a small model that looks -----------------------------------------------------------


@dataclass
class AnswererConfig:
    """Sizes of :class:`OmniAnswerer`; ``from_profile`` fills them from the active profile."""

    d_model: int = 64
    hidden: int = 256
    image_size: int = 16
    patch_size: int = 4
    n_frames: int = 32
    n_mels: int = 32

    @classmethod
    def from_profile(cls, profile: Profile | None = None) -> AnswererConfig:
        p = profile or get_profile()
        silence = torch.zeros(1, round(p.sample_rate * p.audio_seconds))
        n_frames = log_mel(silence, MelConfig.from_profile(p)).shape[1]
        return cls(p.d_model, 4 * p.d_model, p.image_size, p.patch_size, n_frames, p.n_mels)


class OmniAnswerer(nn.Module):
    """A small fusion model that answers by looking: picture + sound + question -> option scores.

    Picture patches, sound frames and question words are each embedded (the patches and
    frames keep their place in the flattened vector, so *where* and *when* survive), an
    MLP fuses the three into one vector ``h``, and every option is scored by how well
    its embedding matches ``h``. An option's embedding is the mean of its word
    embeddings plus a learned vector for its letter, so the model *can* learn a
    preference for a letter if its training data rewards one.
    """

    def __init__(self, config: AnswererConfig, tokenizer: TextTokenizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer or TextTokenizer()
        d, n_patches = config.d_model, (config.image_size // config.patch_size) ** 2
        self.patch = nn.Linear(3 * config.patch_size**2, d // 4)  # one small vector per patch
        self.frame = nn.Linear(config.n_mels, d // 4)  # and per audio frame
        self.words = nn.Embedding(self.tokenizer.vocab_size, d, padding_idx=self.tokenizer.pad_id)
        self.fuse = nn.Sequential(
            nn.Linear(n_patches * d // 4 + config.n_frames * d // 4 + d, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, d),
        )
        self.letter = nn.Embedding(MAX_OPTIONS, d)
        self.prior = nn.Linear(d, 1)  # how good an option looks without the inputs

    def encode(self, items: Sequence[MCItem]) -> dict[str, torch.Tensor]:
        """Items -> tensors: ``question (n, q)`` and ``options (n, 4, w)`` word ids,
        ``images (n, 3, H, W)``, ``mels (n, frames, n_mels)``, ``valid (n, 4)`` bool (which
        option slots exist) and ``answer (n,)``."""
        tok = self.tokenizer
        flat = [o for it in items for o in (*it.options, *[""] * (MAX_OPTIONS - len(it.options)))]
        return {
            "question": tok.encode_batch([it.question for it in items]),
            "images": torch.stack([it.image for it in items]),
            "mels": torch.stack([it.mel for it in items]),
            "options": tok.encode_batch(flat).view(len(items), MAX_OPTIONS, -1),
            "valid": torch.tensor(
                [[i < len(it.options) for i in range(MAX_OPTIONS)] for it in items]
            ),
            "answer": torch.tensor([it.answer_index for it in items]),
        }

    def _mean_words(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean word embedding over the non-padding ids: ``(..., w)`` -> ``(..., d)``."""
        present = (ids != self.tokenizer.pad_id).unsqueeze(-1)
        return (self.words(ids) * present).sum(-2) / present.sum(-2).clamp(min=1)

    def forward(
        self,
        question: torch.Tensor,
        images: torch.Tensor,
        mels: torch.Tensor,
        options: torch.Tensor,
        valid: torch.Tensor,
        **_: torch.Tensor,
    ) -> torch.Tensor:
        """Option scores ``(n, 4)``; slots past an item's options are ``-inf``."""
        image = self.patch(patchify(images, self.config.patch_size)).flatten(1)
        audio = self.frame(mels).flatten(1)
        h = self.fuse(torch.cat([image, audio, self._mean_words(question)], dim=1))  # (n, d)
        o = self._mean_words(options) + self.letter.weight  # (n, 4, d)
        # Scaled like attention logits, so wider models start with calm scores too.
        match = (o @ h.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.config.d_model)
        scores = match + self.prior(o).squeeze(-1)
        return scores.masked_fill(~valid, float("-inf"))

    @torch.no_grad()
    def answer(self, items: Sequence[MCItem]) -> torch.Tensor:
        """The answerer interface: option scores ``(n, 4)`` for a list of items."""
        was_training = self.training
        self.eval()
        device = self.letter.weight.device
        scores = self(**{k: v.to(device) for k, v in self.encode(items).items()})
        self.train(was_training)
        return scores.cpu()


# Per profile: training questions per ability and optimizer steps for the answerer of
# lesson 09 (a small MLP: many cheap steps).


def train_answerer(
    items: Sequence[MCItem],
    steps: int | None = None,
    seed: int = 0,
    lr: float = 3e-3,
    profile: Profile | None = None,
    progress: bool = True,
) -> tuple[OmniAnswerer, list[float]]:
    """Train an :class:`OmniAnswerer` with cross-entropy over the options of ``items``.

    steps: default from ``BUDGET`` for the profile. Trains on the profile's
    device (the GPU in the gpu profile). Returns the model and the losses.
    Whatever pattern the training items carry (a letter that is often right, say), the
    model is free to learn it: that is the point of lesson 09.
    """
    from omni_edu.train import fit

    profile = profile or get_profile()
    steps = steps or profile.budget(BUDGET.get(profile.name, (0, 450))[1])
    torch.manual_seed(seed)
    model = OmniAnswerer(AnswererConfig.from_profile(profile))
    data = model.encode(list(items))
    size = profile.batch_size * 4

    def batches(step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(len(items), (size,), generator=g)
        return {k: v[idx] for k, v in data.items()}

    def loss_fn(m: OmniAnswerer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(m(**batch), batch["answer"])}

    # AdamW with a short warm-up and a cosine decay to zero (a one-cycle schedule).
    history = fit(
        model,
        loss_fn,
        batches,
        steps,
        lr,
        seed,
        "training the answerer",
        progress,
        device=str(get_device(profile)),
        weight_decay=0.01,
        warmup_steps=0.1,
        min_lr_ratio=0.0,
    )
    return model, history.losses["loss"]
