"""Claim check (lesson 01): do modality embeddings stop a model confusing modalities?

The chapter says a learned modality embedding "prevents the model from confusing a text
token and an audio frame that map to similar vectors". We build the worst case on
purpose and measure it:

* **Colliding projections.** ``n_symbols`` symbols each exist as a word (a text id) and
  as a sound (a one-hot audio frame). The audio projector reads the *text embedding
  table* (:class:`SharedTable`), so word ``k`` and sound ``k`` enter the model as exactly
  the same vector. Only the modality embedding, if any, tells them apart.
* **A task that needs the modality.** Every content token must be labelled with its
  symbol *and* its modality: class ``k`` for word ``k``, class ``n_symbols + k`` for
  sound ``k``. A model that confuses the two modalities is wrong on that token.
* **Two layouts.** ``"isolated"``: each token is independently a word or a sound, with
  nothing around it that hints which. ``"marked"``: sounds come in runs wrapped in
  ``<boa> ... <eoa>`` markers (as in the course's interleaved documents), so a model
  *could* work the modality out from context, without any embedding.

:func:`run_experiment` trains the same small decoder with and without modality
embeddings, on both layouts, for the same number of steps and several seeds, and
reports accuracy and the modality-confusion rate on held-out documents.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from omni_edu.modalities import Modality
from omni_edu.model.interleave import (
    PackedBatch,
    Segment,
    SpecialTokens,
    audio_segment,
    pack,
    text_segment,
)
from omni_edu.model.projector import OmniTokenProjector, ProjectorConfig
from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.profiles import Profile, get_device, get_profile

LAYOUTS = ("isolated", "marked")
# Vocabulary: <pad>, the two audio markers, then one word per symbol.
PAD_ID, BOA_ID, EOA_ID = 0, 1, 2
FIRST_SYMBOL = 3
IMAGE_DIM = 4  # no images in this experiment; any width will do


@dataclass
class ConfusionConfig:
    """One run of the experiment. ``None`` sizes come from the profile."""

    layout: str = "isolated"
    modality_embeddings: bool = True
    n_symbols: int = 8
    n_tokens: int = 12  # content tokens (words + sounds) per document
    max_run: int = 4  # longest run of one modality in the "marked" layout
    n_layers: int | None = None  # decoder depth; default the profile's
    steps: int | None = None
    n_train: int | None = None  # documents in the training pool
    batch_size: int | None = None
    n_eval: int | None = None
    lr: float = 3e-3
    seed: int = 0
    # Sounds read the text embedding table, so word k and sound k collide exactly; False
    # gives sounds a projector of their own (lesson 01's "change one thing").
    shared_table: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout should be one of {LAYOUTS}; got {self.layout!r}")
        for name in ("n_symbols", "n_tokens", "max_run"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} should be a positive int; got {value!r}")

    @property
    def vocab_size(self) -> int:
        return FIRST_SYMBOL + self.n_symbols

    def sized(self, profile: Profile) -> ConfusionConfig:
        """A copy with the budget fields the profile decides filled in."""
        return replace(
            self,
            steps=self.steps or profile.train_steps,
            batch_size=self.batch_size or profile.batch_size,
            n_eval=self.n_eval or profile.n_eval,
            n_train=self.n_train or profile.n_train // 4,
            n_layers=self.n_layers or profile.n_layers,
        )


class SharedTable(nn.Module):
    """An audio projector that reads the text embedding table.

    A one-hot audio frame ``(..., vocab_size)`` with its 1 at id ``i`` becomes
    ``table.weight[i]``: the very vector the word with id ``i`` gets. The two stay equal
    during training because they are the same parameters.
    """

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, frames: Tensor) -> Tensor:
        return frames @ self.table.weight


def sample_documents(
    n: int, config: ConfusionConfig, rng: random.Random
) -> tuple[list[list[Segment]], list[list[int]]]:
    """``n`` documents of ``config.n_tokens`` content tokens and their labels.

    Returns the documents (lists of :class:`Segment`) and, per document, the label of
    each content token in order: ``k`` for word ``k``, ``n_symbols + k`` for sound ``k``.
    """
    eye = torch.eye(config.vocab_size)
    docs, labels = [], []
    for _ in range(n):
        if config.layout == "isolated":
            modalities = [rng.random() < 0.5 for _ in range(config.n_tokens)]
        else:
            modalities, is_audio = [], rng.random() < 0.5
            while len(modalities) < config.n_tokens:
                modalities += [is_audio] * rng.randint(1, config.max_run)
                is_audio = not is_audio
            modalities = modalities[: config.n_tokens]
        symbols = [rng.randrange(config.n_symbols) for _ in modalities]
        segments, start = [], 0
        while start < len(modalities):  # one segment per run of equal modality
            stop = start
            while stop < len(modalities) and modalities[stop] == modalities[start]:
                stop += 1
            ids = [FIRST_SYMBOL + s for s in symbols[start:stop]]
            if modalities[start]:
                segments.append(audio_segment(eye[ids]))
            else:
                segments.append(text_segment(ids))
            start = stop
        docs.append(segments)
        labels.append([s + config.n_symbols * a for s, a in zip(symbols, modalities, strict=True)])
    return docs, labels


def make_batch(
    n: int, config: ConfusionConfig, rng: random.Random
) -> tuple[PackedBatch, Tensor, Tensor]:
    """A packed batch, the ``(B, T)`` bool mask of content tokens and their labels ``(N,)``.

    The "marked" layout wraps every sound run in ``<boa> ... <eoa>``; "isolated" adds
    nothing, so the layout of a document says nothing about its modalities.
    """
    docs, labels = sample_documents(n, config, rng)
    specials = SpecialTokens(boa=BOA_ID, eoa=EOA_ID) if config.layout == "marked" else None
    packed = pack(docs, specials=specials, image_dim=IMAGE_DIM)
    is_word = (packed.modality == Modality.TEXT) & (packed.text_ids >= FIRST_SYMBOL)
    content = is_word | (packed.modality == Modality.AUDIO)
    targets = torch.tensor([label for row in labels for label in row], dtype=torch.long)
    return packed, content, targets


class ConfusionModel(nn.Module):
    """Projector (audio tied to the text table, unless ``config.shared_table`` is False) ->
    decoder -> one class per token."""

    def __init__(self, config: ConfusionConfig, profile: Profile) -> None:
        super().__init__()
        self.projector = OmniTokenProjector(
            ProjectorConfig(
                d_model=profile.d_model,
                vocab_size=config.vocab_size,
                image_dim=IMAGE_DIM,
                audio_dim=config.vocab_size,
                modality_embeddings=config.modality_embeddings,
            )
        )
        if config.shared_table:
            self.projector.audio = SharedTable(self.projector.text)
        self.decoder = Decoder(DecoderConfig.from_profile(profile, n_layers=config.n_layers))
        self.classify = nn.Linear(profile.d_model, 2 * config.n_symbols)

    def forward(self, packed: PackedBatch, content: Tensor) -> Tensor:
        """Logits ``(N, 2 * n_symbols)`` for the ``N`` content tokens of the batch."""
        h = self.decoder(self.projector(packed), packed.positions, packed.attn_mask)
        return self.classify(h[content])


@dataclass
class ConfusionData:
    """A packed training pool and held-out batch, shared by the runs being compared."""

    train: PackedBatch
    train_content: Tensor  # (n_train, T) bool: content tokens
    train_labels: Tensor  # (n_train, T) int64: label of each content token, -1 elsewhere
    eval: PackedBatch
    eval_content: Tensor
    eval_targets: Tensor  # (N,) labels of the held-out content tokens

    @classmethod
    def generate(cls, config: ConfusionConfig, profile: Profile | None = None) -> ConfusionData:
        """Documents for ``config.layout`` from ``config.seed`` (the embedding switch is
        irrelevant: runs with and without embeddings see the very same data)."""
        config = config.sized(profile or get_profile())
        train, content, targets = make_batch(config.n_train, config, random.Random(config.seed))
        labels = torch.full(train.modality.shape, -1, dtype=torch.long)
        labels[content] = targets
        held_out = make_batch(config.n_eval, config, random.Random(10_000 + config.seed))
        return cls(train, content, labels, *held_out)

    def to(self, device: torch.device | str) -> ConfusionData:
        """The same data with every tensor on ``device``."""
        return ConfusionData(
            *(x.to(device) for x in (self.train, self.train_content, self.train_labels)),
            *(x.to(device) for x in (self.eval, self.eval_content, self.eval_targets)),
        )


@dataclass
class ConfusionResult:
    """Held-out scores of one run."""

    layout: str
    modality_embeddings: bool
    seed: int
    accuracy: float  # symbol and modality both right
    confusion: float  # modality wrong (word taken for sound or the reverse)
    curve: list[tuple[int, float]]  # (step, held-out accuracy), from step 0
    predictions: list[int] = field(default_factory=list)  # held-out class per token
    majority_confusion: float = float("nan")  # the measured baseline, same tokens


def _score(
    model: ConfusionModel, data: ConfusionData, n_symbols: int, n_docs: int | None = None
) -> tuple[float, float, Tensor]:
    """Held-out (accuracy, confusion rate, predicted classes ``(N,)``), on the first
    ``n_docs`` documents or all."""
    packed, content, targets = data.eval, data.eval_content, data.eval_targets
    if n_docs is not None and n_docs < packed.batch_size:
        packed, content = packed.select(range(n_docs)), content[:n_docs]
        targets = targets[: int(content.sum())]  # content tokens are listed row by row
    with torch.no_grad():
        predicted = model(packed, content).argmax(dim=-1)
    accuracy = (predicted == targets).float().mean().item()
    confusion = ((predicted >= n_symbols) != (targets >= n_symbols)).float().mean().item()
    return accuracy, confusion, predicted


def majority_confusion(data: ConfusionData, n_symbols: int) -> float:
    """The measured baseline of the confusion rate: a model that gives every held-out token
    the modality most common among the training tokens (a majority model, blind to its
    input), scored on the same held-out tokens as the arms."""
    train_audio = (data.train_labels[data.train_content] >= n_symbols).float().mean().item()
    held_out_audio = (data.eval_targets >= n_symbols).float().mean().item()
    return held_out_audio if train_audio < 0.5 else 1.0 - held_out_audio


def train_and_evaluate(
    config: ConfusionConfig,
    profile: Profile | None = None,
    data: ConfusionData | None = None,
    n_curve_points: int = 10,
) -> ConfusionResult:
    """Train one model with ``config``'s budget and score it on held-out documents
    (on the profile's device: a GPU for the ``gpu`` profile when there is one).

    ``data`` defaults to :meth:`ConfusionData.generate`; pass it to reuse one data set
    across runs. The held-out accuracy is also recorded before training and
    ``n_curve_points`` times during it.
    """
    from omni_edu.train import TrainConfig, Trainer

    profile = profile or get_profile()
    config = config.sized(profile)
    device = get_device(profile)
    data = (data or ConfusionData.generate(config, profile)).to(device)
    torch.manual_seed(config.seed)
    model = ConfusionModel(config, profile)
    # The curve reads a quarter of the held-out documents: cheaper, and only a guide.
    curve_docs = max(1, config.n_eval // 4)

    def batches(step: int) -> Tensor:  # which training documents make batch `step`
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        return torch.randint(data.train.batch_size, (config.batch_size,), generator=g)

    def loss_fn(m: ConfusionModel, rows: Tensor) -> dict[str, Tensor]:
        content = data.train_content[rows]
        logits = m(data.train.select(rows), content)
        return {"loss": F.cross_entropy(logits, data.train_labels[rows][content])}

    def eval_fn(m: ConfusionModel) -> dict[str, float]:
        return {"accuracy": _score(m, data, config.n_symbols, curve_docs)[0]}

    # Plain AdamW at a constant rate, no clipping: the task is easy and short.
    settings = TrainConfig(
        steps=config.steps,
        lr=config.lr,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        warmup_steps=0,
        min_lr_ratio=1.0,
        grad_clip=None,
        eval_every=max(1, config.steps // n_curve_points),
        log_every=max(1, min(10, config.steps)),
        seed=config.seed,
        device=str(device),
        progress=False,
    )
    history = Trainer(model, loss_fn, batches, settings, eval_fn).fit()
    curve = list(zip(history.eval_steps, history.evals["accuracy"], strict=True))
    accuracy, confusion, predicted = _score(model, data, config.n_symbols)
    return ConfusionResult(
        config.layout,
        config.modality_embeddings,
        config.seed,
        accuracy,
        confusion,
        curve,
        predicted.cpu().tolist(),
        majority_confusion(data, config.n_symbols),
    )


def run_experiment(
    seeds: int | list[int] | None = None,
    layouts: tuple[str, ...] = LAYOUTS,
    profile: Profile | None = None,
    **overrides,
) -> list[ConfusionResult]:
    """Every layout, with and without modality embeddings, for every seed.

    ``seeds``: a list, or how many (0, 1, ...); default ``profile.n_seeds``. ``overrides``
    go to :class:`ConfusionConfig` (for example ``steps=300``). Runs with the same layout
    and seed share their data and initial decoder weights; only the switch differs.
    Shows a progress bar.
    """
    profile = profile or get_profile()
    seeds = profile.n_seeds if seeds is None else seeds
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    results = []
    with tqdm(total=2 * len(layouts) * len(seeds), desc="modality-confusion runs") as bar:
        for layout in layouts:
            for seed in seeds:
                config = ConfusionConfig(layout=layout, seed=seed, **overrides)
                data = ConfusionData.generate(config, profile)
                for flag in (True, False):
                    run = replace(config, modality_embeddings=flag)
                    results.append(train_and_evaluate(run, profile, data))
                    bar.update()
    return results


def summarize(results: list[ConfusionResult]) -> list[dict]:
    """One row per (layout, embeddings): mean and standard deviation over seeds."""
    rows = []
    keys = dict.fromkeys((r.layout, r.modality_embeddings) for r in results)
    for layout, flag in keys:
        group = [r for r in results if (r.layout, r.modality_embeddings) == (layout, flag)]
        acc = torch.tensor([r.accuracy for r in group])
        conf = torch.tensor([r.confusion for r in group])
        rows.append(
            {
                "layout": layout,
                "modality embeddings": "on" if flag else "off",
                "seeds": len(group),
                "accuracy": acc.mean().item(),
                "accuracy sd": acc.std().item() if len(group) > 1 else 0.0,
                "confusion": conf.mean().item(),
                "confusion sd": conf.std().item() if len(group) > 1 else 0.0,
            }
        )
    return rows


def power(results: list[ConfusionResult], layout: str = "isolated") -> dict[str, float]:
    """What the claim check of ``layout`` can see, from its runs.

    Returns ``detectable``: the smallest difference in confusion rate (off minus on) the
    design can detect, 1.96 standard errors of that difference, each arm's error from the
    spread of its seeds and the binomial error of its held-out tokens (whichever is larger);
    ``baseline``: the majority model's confusion rate (mean over seeds); ``n_tokens``: the
    held-out tokens each run is scored on.
    """
    group = {
        flag: [r for r in results if (r.layout, r.modality_embeddings) == (layout, flag)]
        for flag in (True, False)
    }
    if not group[True] or not group[False]:
        raise ValueError(f"power needs runs with and without embeddings in layout {layout!r}.")
    variance = 0.0
    for runs in group.values():
        rates = torch.tensor([r.confusion for r in runs], dtype=torch.float64)
        n_tokens = len(runs[0].predictions)
        seed_var = rates.var().item() / len(runs) if len(runs) > 1 else 0.0
        p = rates.mean().item()
        binomial_var = max(p * (1 - p), 1.0 / n_tokens) / (n_tokens * len(runs))
        variance += max(seed_var, binomial_var)
    baseline = sum(r.majority_confusion for r in group[True] + group[False])
    return {
        "detectable": 1.96 * variance**0.5,
        "baseline": baseline / (len(group[True]) + len(group[False])),
        "n_tokens": len(group[True][0].predictions),
    }
