"""Lesson 05's experiment: two OmniWorld tasks and a harness that measures fusion variants.

The two tasks pull in opposite directions:

* ``"match"`` (**tight** coupling): one object in the picture, one sound. Does the sound
  match the picture? Half the sounds are a near miss: the same object heard with another
  colour's pitch. Neither modality alone says anything; the answer needs the hue seen in
  the picture compared with the pitch heard in the sound.
* ``"colour"`` (**loose** coupling): what colour is the object? The picture shows it and
  the sound's pitch tells it too; either modality alone is enough.

Both tasks are about the same attribute, so they differ only in how tightly the two
modalities must be combined. (``FusionTask.mismatch`` can make the near misses change
other attributes too: shape <-> timbre, size <-> loudness, position <-> timing. Measured
on the ``ci`` model: with colour and shape mismatches no variant left chance within 1000
steps, so the lesson keeps colour.)

Every example is laid out the same way, one interleaved order for all variants::

    <bos> | image patches | audio tokens | question words <answer>

and the class is read from the hidden state of ``<answer>``.

The harness measures what a practitioner weighs when choosing a fusion strategy:
accuracy against training steps (:func:`train_variant`), forward FLOPs per example
(:func:`count_flops`, counted from the shapes of every matmul), training memory
(:func:`training_memory`: weights, gradients, optimizer state and the activations kept
for the backward pass), trainable parameters and inference latency
(:func:`inference_latency`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.cost import time_call
from omni_edu.data import (
    ATTRIBUTES,
    COLOUR,
    COLOURS,
    SPLITS,
    allowed_pairs,
    n_values,
    render_images,
    sample_attributes,
    synthesize_audio,
)
from omni_edu.modalities import MelConfig, TextTokenizer, frame_audio, log_mel, patchify
from omni_edu.model.fusion import (
    MEDIA,
    CrossAttention,
    FusionBatch,
    FusionConfig,
    FusionModel,
    build_fusion_model,
)
from omni_edu.model.transformer import Attention
from omni_edu.profiles import Profile, get_device, get_profile
from omni_edu.train import History, TrainConfig, Trainer

FRAMES_PER_TOKEN = 4  # log-mel frames per audio token: 1/16 s of sound


@dataclass(frozen=True)
class FusionTask:
    """One classification task over (picture, sound, question)."""

    name: str
    coupling: str  # "tight" or "loose"
    question: str
    classes: tuple[str, ...]
    description: str
    mismatch: tuple[str, ...] = ()  # "match": the attributes a near miss may change


TASKS: dict[str, FusionTask] = {
    "match": FusionTask(
        "match",
        "tight",
        "does the sound match the picture",
        ("no", "yes"),
        "one object; the sound matches it or is heard with another colour's pitch",
        mismatch=("colour",),
    ),
    "colour": FusionTask(
        "colour",
        "loose",
        "what colour is the object",
        COLOURS,
        "one object; its colour is both seen (hue) and heard (pitch)",
    ),
}


def get_task(name: str) -> FusionTask:
    if name not in TASKS:
        raise ValueError(f"task should be one of {sorted(TASKS)}; got {name!r}.")
    return TASKS[name]


def near_misses(
    attributes: Tensor,
    change: Tensor,
    which: tuple[str, ...],
    split: str,
    generator: torch.Generator,
) -> Tensor:
    """A copy of one-object ``attributes (n, 1, 4)`` in which the rows where ``change``
    is True have one attribute from ``which`` set to another value (a near miss). The
    new shape-colour pair stays inside ``split``'s allowed pairs."""
    out = attributes.clone()
    allowed = {tuple(p) for p in allowed_pairs(split).tolist()}
    columns = [ATTRIBUTES.index(a) for a in which]
    picks = torch.randint(2**31, (len(out),), generator=generator).tolist()
    for row in change.nonzero().flatten().tolist():
        obj = out[row, 0].tolist()
        options = []
        for column in columns:
            for value in range(n_values(ATTRIBUTES[column])):
                new = [*obj[:column], value, *obj[column + 1 :]]
                if value != obj[column] and (new[0], new[1]) in allowed:
                    options.append(new)
        out[row, 0] = torch.tensor(options[picks[row] % len(options)])
    return out


def make_fusion_data(
    task: str,
    n: int,
    split: str = "train",
    seed: int = 0,
    profile: Profile | None = None,
    tokenizer: TextTokenizer | None = None,
) -> FusionBatch:
    """``n`` examples of ``task`` as a :class:`FusionBatch` (deterministic in ``seed``).

    Text ``<bos>`` comes first, then the image patches, the audio tokens, and the
    question ending in ``<answer>``; positions number that order 0, 1, 2, ...
    """
    spec = get_task(task)
    profile = profile or get_profile()
    tokenizer = tokenizer or TextTokenizer()
    generator = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
    attributes, mask = sample_attributes(n, (1, 1), split, generator)
    if task == "match":
        labels = (torch.rand(n, generator=generator) < 0.5).long()
        heard = near_misses(attributes, labels == 0, spec.mismatch, split, generator)
    else:
        labels, heard = attributes[:, 0, COLOUR], attributes
    images = render_images(attributes, mask, profile.image_size, generator)
    waveforms = synthesize_audio(heard, mask, profile.sample_rate, profile.audio_seconds, generator)
    mels = log_mel(waveforms, MelConfig.from_profile(profile))
    image = patchify(images, profile.patch_size)
    # Log-mels put silence at -1. Most frames of a clip are silent, so that constant would
    # dominate every audio token and bury the tone; shifted, silence is 0 like an empty
    # patch. (Measured: an audio-only colour probe went from chance to 100 % in 50 steps.)
    audio = frame_audio(mels + 1.0, FRAMES_PER_TOKEN)
    question = [*tokenizer.encode(spec.question), tokenizer["<answer>"]]
    n_image, n_audio = image.shape[1], audio.shape[1]
    after = 1 + n_image + n_audio
    text_positions = torch.tensor([0, *range(after, after + len(question))])

    def rows(x: Tensor) -> Tensor:
        return x.expand(n, -1).contiguous()

    return FusionBatch(
        text_ids=rows(torch.tensor([tokenizer.bos_id, *question])),
        text_positions=rows(text_positions),
        image=image,
        image_positions=rows(torch.arange(1, 1 + n_image)),
        audio=audio,
        audio_positions=rows(torch.arange(1 + n_image, after)),
        labels=labels,
    )


def task_config(task: str, profile: Profile | None = None, **overrides) -> FusionConfig:
    """The :class:`FusionConfig` for ``task`` under ``profile``: vocabulary, widths, classes."""
    profile = profile or get_profile()
    sizes = dict(
        vocab_size=TextTokenizer().vocab_size,
        audio_dim=FRAMES_PER_TOKEN * profile.n_mels,
        n_classes=len(get_task(task).classes),
    )
    return FusionConfig.from_profile(profile, **{**sizes, **overrides})


# ----------------------------------------------------------------------------- training


def classification_loss(model: nn.Module, batch: FusionBatch) -> dict[str, Tensor]:
    """The Trainer's ``loss_fn``: cross-entropy of the answer."""
    return {"loss": F.cross_entropy(model(batch), batch.labels)}


@torch.no_grad()
def accuracy(model: FusionModel, data: FusionBatch, batch_size: int = 256) -> float:
    """Fraction of ``data`` answered correctly (the model is put in eval mode and back)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size].to(device)
        correct += (model(chunk).argmax(-1) == chunk.labels).sum().item()
    model.train(was_training)
    return correct / len(data)


def train_variant(
    model: FusionModel,
    train: FusionBatch,
    test: FusionBatch,
    steps: int | None = None,
    evals: int = 6,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
    **overrides,
) -> History:
    """Train ``model`` on ``train`` and record test accuracy ``evals`` times along the way.

    Batches are drawn by step from a fixed shuffle, so two variants see the same data in
    the same order. Returns the :class:`~omni_edu.train.History` (``evals["accuracy"]``
    against ``eval_steps``).
    """
    profile = get_profile()
    steps = steps or profile.train_steps
    size = batch_size or profile.batch_size
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))

    def batches(step: int) -> FusionBatch:
        start = (step * size) % (len(train) - size + 1)
        return train[order[start : start + size]]

    config = TrainConfig.from_profile(
        profile,
        steps=steps,
        eval_every=max(1, steps // evals),
        seed=seed,
        progress=progress,
        **overrides,
    )
    trainer = Trainer(
        model, classification_loss, batches, config, lambda m: {"accuracy": accuracy(m, test)}
    )
    return trainer.fit()


# ----------------------------------------------------------------------------- FLOPs


def count_flops(model: FusionModel, batch: FusionBatch) -> float:
    """Forward FLOPs per example, counted from the shapes each layer sees.

    A linear layer costs ``2 * in * out`` per token (a multiply and an add per weight);
    attention costs ``4 * q * k * d`` (scores ``q k^T`` and the weighted sum of values).
    We count the full ``q x k`` square even where a causal mask makes half of it unused:
    that is what most kernels compute. Norms, softmax and the like are left out (a few
    percent). The backward pass costs about twice the forward.
    """
    total = 0

    def linear(module: nn.Linear, inputs: tuple, _out: Tensor) -> None:
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += 2 * rows * module.in_features * module.out_features

    def self_attention(module: Attention, inputs: tuple, _out: tuple) -> None:
        nonlocal total
        b, seq, _ = inputs[0].shape
        total += 4 * b * seq * seq * module.n_heads * module.head_dim

    def cross_attention(module: CrossAttention, inputs: tuple, _out: Tensor) -> None:
        nonlocal total
        (b, n_text, _), n_media = inputs[0].shape, inputs[1].shape[1]
        total += 4 * b * n_text * n_media * module.n_heads * module.head_dim

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(self_attention))
        elif isinstance(m, CrossAttention):
            hooks.append(m.register_forward_hook(cross_attention))
    try:
        with torch.no_grad():
            model(batch.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total / len(batch)


# ----------------------------------------------------------------------------- memory


@dataclass
class MemoryReport:
    """Bytes a training step needs, by kind. ``total`` is their sum.

    ``activations`` are the tensors autograd keeps from the forward pass for the backward
    pass (measured); ``gradients`` and ``optimizer`` (AdamW: two moments) exist only for
    trainable parameters. ``device_peak`` is the CUDA allocator's peak during one step
    (``None`` on a CPU).
    """

    weights: int
    gradients: int
    optimizer: int
    activations: int
    device_peak: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_mib(self) -> dict[str, float]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["total"] = self.total
        return {k: round(v / 2**20, 3) for k, v in row.items() if v is not None}


@contextlib.contextmanager
def saved_activation_bytes(exclude: Iterable[Tensor] = ()):
    """Count the bytes autograd saves for backward inside the block.

    Yields a dict whose ``"bytes"`` grows as tensors are saved. Each storage is counted
    once (views share storage); tensors in ``exclude`` (the parameters: they exist
    anyway) are left out. Works on any device, unlike ``torch.cuda.max_memory_allocated``.
    """
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    counter = {"bytes": 0}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            counter["bytes"] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield counter


def training_memory(model: FusionModel, batch: FusionBatch) -> MemoryReport:
    """Measure the memory of one training step of ``model`` on ``batch``.

    Weights, gradients and AdamW's two moments are counted from the parameters (only
    trainable ones get gradients and moments); activations are measured with autograd's
    saved-tensor hooks during a real forward and backward pass. On CUDA the allocator's
    peak is reported as well.
    """
    device = next(model.parameters()).device
    # Own copies: a slice of a bigger dataset shares its storage, which would be counted.
    batch = FusionBatch(**{f.name: getattr(batch, f.name).clone() for f in fields(batch)})
    batch = batch.to(device)
    bytes_of = [(p.numel() * p.element_size(), p.requires_grad) for p in model.parameters()]
    weights = sum(b for b, _ in bytes_of)
    trainable = sum(b for b, t in bytes_of if t)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    model.train()
    with saved_activation_bytes(exclude=model.parameters()) as saved:
        loss = classification_loss(model, batch)["loss"]
    loss.backward()
    model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return MemoryReport(weights, trainable, 2 * trainable, saved["bytes"], peak)


# ----------------------------------------------------------------------------- latency


def inference_latency(model: FusionModel, batch: FusionBatch, repeats: int = 5) -> float:
    """Median milliseconds per example of a forward pass over ``batch`` (eval mode)."""
    was_training = model.training
    model.eval()
    batch = batch.to(next(model.parameters()).device)
    with torch.no_grad():
        seconds = time_call(lambda: model(batch), repeats=repeats, warmup=1)
    model.train(was_training)
    return 1000 * seconds / len(batch)


# ----------------------------------------------------------------------------- the experiment

# Per-profile sizes of the comparison. Steps are per task: the tight task sits on a
# plateau for hundreds of steps before any variant finds it (ci, measured: early fusion
# at chance after 400 steps, 0.82 after 1000), the loose one is learned in tens. The ci
# numbers keep the lesson within about two minutes on a 2-core CPU; the gpu profile takes
# its own budget, and at least 1000 steps for the tight task.
EXPERIMENT: dict[str, dict] = {
    "ci": {"steps": {"match": 1000, "colour": 100}, "batch_size": 32, "n_train": 2048},
    # Measured at the cpu model size: with batch 64 and 1200 steps no variant left chance;
    # with batch 32, early fusion left it after about 1300 steps and reached 0.93 at 2000.
    "cpu": {"steps": {"match": 2000, "colour": 200}, "batch_size": 32, "n_train": 8192},
}


def experiment_settings(profile: Profile | None = None) -> dict:
    """Steps per task, batch size and data sizes of the lesson's comparison."""
    profile = profile or get_profile()
    settings = {
        "steps": {"match": max(1000, 2 * profile.train_steps), "colour": profile.train_steps},
        "batch_size": profile.batch_size,
        "n_train": profile.n_train,
        "n_eval": profile.n_eval,
    }
    return {**settings, **EXPERIMENT.get(profile.name, {})}


@dataclass
class FusionResults:
    """What :func:`run_fusion_experiment` measured.

    ``rows``: one dict per (task, variant) with the final accuracy and the costs.
    ``histories[(task, variant)]``: the training run (accuracy at ``eval_steps``).
    """

    rows: list[dict[str, object]]
    histories: dict[tuple[str, str], History]
    settings: dict[str, int]

    def row(self, task: str, variant: str) -> dict[str, object]:
        return next(r for r in self.rows if r["task"] == task and r["variant"] == variant)


def run_fusion_experiment(
    tasks: tuple[str, ...] = ("match", "colour"),
    variants: tuple[str, ...] = ("early", "late", "cross"),
    seed: int = 0,
    progress: bool = True,
) -> FusionResults:
    """Train every variant on every task at the same budget and measure it.

    Each run starts from the same seed and sees the same batches in the same order.
    Costs are measured on the trained model: FLOPs per example (forward), memory of one
    training step at the training batch size, trainable parameters, and latency per
    example of a forward pass over a batch.
    """
    from tqdm.auto import tqdm

    profile = get_profile()
    settings = experiment_settings(profile)
    rows, histories = [], {}
    bar = tqdm(total=len(tasks) * len(variants), desc="fusion runs", disable=not progress)
    for task in tasks:
        train = make_fusion_data(task, settings["n_train"], "train", seed=seed)
        test = make_fusion_data(task, settings["n_eval"], "test", seed=seed)
        for kind in variants:
            bar.set_postfix_str(f"{task} / {kind}")
            torch.manual_seed(seed)
            model = build_fusion_model(kind, task_config(task, profile))
            history = train_variant(
                model,
                train,
                test,
                steps=settings["steps"][task],
                seed=seed,
                batch_size=settings["batch_size"],
            )
            histories[(task, kind)] = history
            memory = training_memory(model, train[: settings["batch_size"]])
            rows.append(
                {
                    "task": task,
                    "variant": kind,
                    "accuracy": round(history.evals["accuracy"][-1], 3),
                    "MFLOPs/example": round(count_flops(model, test[:8]) / 1e6, 2),
                    "train memory (MiB)": round(memory.total / 2**20, 2),
                    "activations (MiB)": round(memory.activations / 2**20, 2),
                    "trainable params": model.num_parameters(trainable_only=True),
                    "latency (ms/example)": round(inference_latency(model, test[:64]), 3),
                }
            )
            if memory.device_peak is not None:  # on a GPU: the allocator's own peak too
                rows[-1]["CUDA peak (MiB)"] = round(memory.device_peak / 2**20, 2)
            bar.update(1)
    bar.close()
    return FusionResults(rows, histories, settings)


def frozen_encoder_memory(
    batch_sizes: tuple[int, ...] = (1, 16, 64),
    task: str = "colour",
    profile: Profile | None = None,
) -> list[dict[str, object]]:
    """Training memory of late fusion trained end to end versus with frozen encoders.

    For each batch size: the total bytes of one training step (weights, gradients, AdamW
    moments, saved activations) end to end, with the image encoder frozen, and with both
    encoders frozen, and the saving of each in percent of end to end.
    """
    profile = profile or get_profile()
    data = make_fusion_data(task, max(batch_sizes), "train", profile=profile)
    setups = {"end to end": (), "frozen image": ("image",), "frozen image+audio": MEDIA}
    rows = []
    for size in batch_sizes:
        row: dict[str, object] = {"batch": size}
        totals = {}
        for name, frozen in setups.items():
            torch.manual_seed(0)
            model = build_fusion_model("late", task_config(task, profile, frozen_encoders=frozen))
            totals[name] = training_memory(model.to(get_device(profile)), data[:size]).total
            row[f"{name} (MiB)"] = round(totals[name] / 2**20, 2)
        for name in list(setups)[1:]:
            row[f"saving {name} (%)"] = round(100 * (1 - totals[name] / totals["end to end"]), 1)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- diagrams

_COLOURS = {"text": "#8ecae6", "image": "#ffb703", "audio": "#90be6d", "layer": "#e5e5e5"}


def draw_fusion_diagrams(config: FusionConfig | None = None):
    """Block diagrams of the three variants side by side (a matplotlib figure).

    Boxes are labelled with the layer counts of ``config`` (default: the active profile's),
    so the picture shows how each variant spends the same budget.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    config = config or task_config("colour")
    enc, late, cross = config.encoder_layers, config.late_decoder_layers, config.cross_layers
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))

    def box(ax, x, y, w, h, text, colour):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=colour, ec="k"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(ax, start, end):
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.2})

    def tokens(ax, y, kinds, x0=0.05, width=0.9):
        step = width / len(kinds)
        for i, kind in enumerate(kinds):
            box(ax, x0 + i * step, y, step * 0.9, 0.08, kind[0].upper(), _COLOURS[kind])

    sequence = ["text", "image", "image", "image", "audio", "audio", "text", "text"]
    # Early fusion: one stack over the whole interleaved sequence.
    ax = axes[0]
    tokens(ax, 0.05, sequence)
    arrow(ax, (0.5, 0.14), (0.5, 0.24))
    box(
        ax,
        0.05,
        0.25,
        0.9,
        0.45,
        f"decoder\n{config.depth} causal blocks\nover all tokens",
        _COLOURS["layer"],
    )
    arrow(ax, (0.5, 0.71), (0.5, 0.81))
    box(ax, 0.3, 0.82, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("early fusion (GPT-4o, Gemini)")
    # Late fusion: encoders, connectors, then the decoder over text + encoded media.
    ax = axes[1]
    tokens(ax, 0.02, ["image"] * 3, 0.02, 0.4)
    tokens(ax, 0.02, ["audio"] * 2, 0.55, 0.4)
    box(ax, 0.02, 0.16, 0.4, 0.16, f"image encoder\n{enc} layer(s)", _COLOURS["image"])
    box(ax, 0.55, 0.16, 0.4, 0.16, f"audio encoder\n{enc} layer(s)", _COLOURS["audio"])
    box(ax, 0.02, 0.36, 0.4, 0.07, "connector", "white")
    box(ax, 0.55, 0.36, 0.4, 0.07, "connector", "white")
    arrow(ax, (0.22, 0.44), (0.4, 0.52))
    arrow(ax, (0.75, 0.44), (0.6, 0.52))
    box(
        ax,
        0.05,
        0.53,
        0.9,
        0.24,
        f"decoder: {late} causal blocks\nover text + media tokens",
        _COLOURS["layer"],
    )
    arrow(ax, (0.5, 0.78), (0.5, 0.84))
    box(ax, 0.3, 0.85, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("late fusion (LLaVA)")
    # Cross-attention fusion: text-only decoder, media enter through gated layers.
    ax = axes[2]
    box(ax, 0.02, 0.3, 0.33, 0.2, f"media\nencoders\n{enc}+{enc} layers", _COLOURS["image"])
    tokens(ax, 0.05, ["text"] * 3, 0.45, 0.5)
    arrow(ax, (0.7, 0.14), (0.7, 0.27))
    box(ax, 0.45, 0.28, 0.5, 0.17, "gated cross-attn\nx + tanh(a)·xattn(x, media)", "#ffd6a5")
    box(ax, 0.45, 0.5, 0.5, 0.14, "decoder block\n(text only)", _COLOURS["layer"])
    arrow(ax, (0.36, 0.4), (0.45, 0.37))
    ax.text(0.7, 0.68, f"repeat x {cross}", ha="center", fontsize=9)
    arrow(ax, (0.7, 0.73), (0.7, 0.82))
    box(ax, 0.5, 0.83, 0.4, 0.1, "answer", _COLOURS["text"])
    ax.set_title("gated cross-attention (Flamingo)")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
    fig.suptitle(
        "Where the modalities meet (T = text, I = image patch, A = audio token)", fontsize=11
    )
    fig.tight_layout()
    return fig


# One look per variant in every figure: colour, marker and line style (so that curves
# lying on top of each other, such as two variants at chance, stay visible).
VARIANT_STYLE: dict[str, dict[str, str]] = {
    "early": {"color": "#219ebc", "marker": "o", "ls": "-"},
    "late": {"color": "#fb8500", "marker": "s", "ls": "--"},
    "cross": {"color": "#8338ec", "marker": "^", "ls": ":"},
}


def plot_accuracy_curves(results: FusionResults):
    """Test accuracy against training steps, one panel per task, chance as a grey line."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(task for task, _ in results.histories))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        spec = get_task(task)
        for (t, kind), history in results.histories.items():
            if t == task:
                style = VARIANT_STYLE.get(kind, {"marker": "o"})
                ax.plot(history.eval_steps, history.evals["accuracy"], label=kind, **style)
        ax.axhline(1 / len(spec.classes), ls="-", lw=0.8, c="grey", label="chance")
        ax.set_title(f"{task} ({spec.coupling} coupling)")
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy (fraction)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Accuracy against training steps at a matched parameter budget")
    fig.tight_layout()
    return fig


def plot_costs(results: FusionResults, task: str = "colour"):
    """Bar charts of FLOPs, training memory and latency per variant (on ``task``)."""
    import matplotlib.pyplot as plt

    rows = [r for r in results.rows if r["task"] == task]
    names = [str(r["variant"]) for r in rows]
    metrics = [
        ("MFLOPs/example", "forward FLOPs per example", "MFLOPs"),
        ("train memory (MiB)", "memory of one training step", "MiB"),
        ("latency (ms/example)", "inference latency", "ms per example"),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(13, 3.5))
    for ax, (key, title, unit) in zip(axes, metrics, strict=True):
        values = [float(r[key]) for r in rows]
        ax.bar(names, values, color=[VARIANT_STYLE.get(n, {}).get("color") for n in names])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=9)
        ax.set_title(title)
        ax.set_xlabel("variant")
        ax.set_ylabel(unit)
    fig.suptitle(
        f"What each variant costs ({task} task, batch of {results.settings['batch_size']})"
    )
    fig.tight_layout()
    return fig
