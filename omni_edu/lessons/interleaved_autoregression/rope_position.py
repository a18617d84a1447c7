"""1-D RoPE versus multimodal RoPE on a task that needs to know which patch is above which.

**The stripes task.** A picture of vertical stripes: every column of patches has one
OmniWorld colour, and every row repeats the row above. The pictures have ``rows`` rows
and a *varying* number of columns. Reading patches left to right, top to bottom, the
next patch of row 1 and below is always a copy of the patch *one row up*, so a model
that knows where "one row up" is can predict it exactly; the first row is random.

Where is "one row up" from the patch being predicted (row ``r``, column ``c + 1``, seen
from the patch at ``(r, c)``)?

* with **1-D RoPE** it is ``width - 1`` tokens back: a different distance for every
  width, and nothing tells the model the width until the row ends;
* with **M-RoPE** (time, height, width) it is one step back in height and one step
  *forward* in width, whatever the width: a fixed offset that attention can learn once.

So M-RoPE *should* win here. But M-RoPE splits the rotary frequency pairs of a head into
three sections, and the course's decoder (like Qwen2-VL) gives time the fastest pairs and
width the slowest. With a small head (16 numbers, 8 pairs) the width pairs turn by less
than 0.004 radians per column: neighbouring columns look almost the same. The third
variant, ``"mrope_fast_width"``, keeps M-RoPE's coordinates but feeds the *width*
coordinate to the fastest section and time to the slowest (for text, where all three
coordinates are equal, nothing changes). Choosing which axis gets which frequencies is a
real design question; Qwen3-VL's "interleaved MRoPE" spreads every axis over all of them.

:func:`compare_rope` trains the same model each way on the same batches and measures the
error on the predictable patches (rows >= 1), next to the error on the unpredictable first
row as a yardstick.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from omni_edu.data.render import RGB
from omni_edu.modalities import Modality, patchify, unpatchify
from omni_edu.model.interleave import PackedBatch, SpecialTokens, image_segment, pack
from omni_edu.model.omni_lm import ROPES as OMNI_ROPES
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import DecoderConfig
from omni_edu.profiles import Profile, get_profile
from omni_edu.train import History, TrainConfig, Trainer
from omni_edu.viz.plots import detached

# A tiny vocabulary: the stripes task only needs the markers around the picture.
VOCAB = {"<pad>": 0, "<bos>": 1, "<boi>": 2, "<eoi>": 3}
SPECIALS = SpecialTokens(bos=VOCAB["<bos>"], boi=VOCAB["<boi>"], eoi=VOCAB["<eoi>"])
ROPES = OMNI_ROPES  # "1d", "mrope", "mrope_fast_width": the layouts OmniLM offers


@dataclass(frozen=True)
class StripesConfig:
    """The stripes pictures: ``rows`` rows, a width drawn from ``widths``, pixel noise."""

    rows: int = 4
    widths: tuple[int, ...] = (2, 3, 4, 5, 6)
    noise: float = 0.02

    def __post_init__(self) -> None:
        if self.rows < 2 or not self.widths or min(self.widths) < 1:
            raise ValueError(
                f"stripes need rows >= 2 (one to copy from) and positive widths; got "
                f"rows={self.rows}, widths={self.widths}."
            )


def stripes(
    n: int,
    generator: torch.Generator,
    config: StripesConfig = StripesConfig(),
    profile: Profile | None = None,
) -> PackedBatch:
    """``n`` stripes documents, ``<bos> <boi> patches <eoi>``, packed into one batch."""
    profile = profile or get_profile()
    p = profile.patch_size
    docs = []
    for _ in range(n):
        width = config.widths[int(torch.randint(len(config.widths), (1,), generator=generator))]
        colours = RGB[torch.randint(len(RGB), (width,), generator=generator)]  # (width, 3)
        picture = colours.T[:, None, :].repeat_interleave(p, dim=2).expand(3, config.rows * p, -1)
        picture = picture + config.noise * torch.randn(picture.shape, generator=generator)
        patches = patchify(picture[None], p)[0]  # (rows * width, 3 * p * p), row by row
        docs.append([image_segment(patches, (config.rows, width))])
    return pack(docs, specials=SPECIALS, audio_dim=1)


def predictable(packed: PackedBatch) -> Tensor:
    """``(B, T)`` bool: positions whose next token is a patch of row 1 or below."""
    out = torch.zeros_like(packed.real)
    for b, spans in enumerate(packed.spans):
        for span in spans:
            if span.modality == Modality.IMAGE:
                cols = span.grid[1]
                # position start + k - 1 predicts patch k, which is predictable for k >= cols
                out[b, span.start + cols - 1 : span.stop - 1] = True
    return out & packed.loss_mask(Modality.IMAGE)


def model_config(rope: str, profile: Profile | None = None) -> OmniLMConfig:
    """The profile's decoder with ``rope`` (one of :data:`ROPES`), sized for stripes."""
    if rope not in ROPES:
        raise ValueError(f"rope should be one of {ROPES}; got {rope!r}.")
    profile = profile or get_profile()
    projector = ProjectorConfig.from_profile(len(VOCAB), 1, profile, audio_dim=1)
    return OmniLMConfig(projector=projector, decoder=DecoderConfig.from_profile(profile), rope=rope)


@torch.no_grad()
def patch_errors(model: OmniLM, packed: PackedBatch) -> dict[str, float]:
    """Mean squared error per feature of the next-patch predictions, split by row."""
    model.eval()
    hidden = model(packed)
    error = ((model.image_head.sample(hidden) - packed.image_targets) ** 2).mean(dim=-1)
    copy = predictable(packed)
    first = packed.loss_mask(Modality.IMAGE) & ~copy
    return {"rows below (copy)": error[copy].mean().item(), "first row": error[first].mean().item()}


@functools.lru_cache(maxsize=256)  # a short run's batches, built once for every variant
def _training_batch(
    seed: int, step: int, batch_size: int, config: StripesConfig, profile: Profile
) -> PackedBatch:
    """Batch ``step`` of seed ``seed``: the same tensors for every rope variant."""
    g = torch.Generator().manual_seed(1_000 * seed + step)
    return stripes(batch_size, g, config, profile)


@dataclass
class RopeRun:
    """One training run of the comparison."""

    rope: str
    seed: int
    errors: dict[str, float]
    history: History


def train_rope(
    rope: str,
    seed: int,
    steps: int,
    batch_size: int | None = None,
    config: StripesConfig = StripesConfig(),
    profile: Profile | None = None,
    eval_size: int = 256,
    progress: bool = True,
) -> RopeRun:
    """Train a fresh model with ``rope`` positions on stripes; measure on a fixed set.

    ``rope``: ``"1d"``, ``"mrope"`` or ``"mrope_fast_width"`` (see the module docstring).
    All variants of one ``seed`` start from the same weights (the positions have no
    parameters) and see the same batches, so only the positions differ. ``steps`` and
    ``eval_size`` go through the profile's budget (a dry run cuts them).
    """
    profile = profile or get_profile()
    steps, eval_size = profile.budget(steps), profile.budget(eval_size, dry=16)
    batch_size = batch_size or profile.batch_size
    torch.manual_seed(seed)
    model = OmniLM(model_config(rope, profile))

    def batches(step: int) -> PackedBatch:
        return _training_batch(seed, step, batch_size, config, profile)

    def loss_fn(m: OmniLM, packed: PackedBatch) -> dict[str, Tensor]:
        return {"loss": m.loss(packed)["image"]}

    train = TrainConfig.from_profile(
        profile, steps=steps, seed=seed, eval_every=0, progress=progress
    )
    history = Trainer(model, loss_fn, batches, train).fit()
    held_out = stripes(eval_size, torch.Generator().manual_seed(123_456), config, profile)
    return RopeRun(rope, seed, patch_errors(model, held_out.to(train.device)), history)


def compare_rope(
    seeds: Sequence[int],
    steps: int,
    ropes: Sequence[str] = ROPES,
    **kwargs,
) -> list[RopeRun]:
    """:func:`train_rope` for every rope kind and seed (keyword arguments passed on)."""
    return [train_rope(rope, seed, steps, **kwargs) for seed in seeds for rope in ropes]


def summarize(runs: Sequence[RopeRun], key: str = "rows below (copy)") -> dict[str, dict]:
    """Mean, spread (min, max) and per-seed values of ``key`` for each rope kind."""
    out = {}
    for rope in dict.fromkeys(r.rope for r in runs):
        values = [r.errors[key] for r in runs if r.rope == rope]
        out[rope] = {
            "mean": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "values": values,
        }
    return out


def stripes_figure(n: int = 5, seed: int = 0, config: StripesConfig = StripesConfig()) -> Figure:
    """A few stripes pictures side by side, with the patch grid drawn in (a figure)."""
    profile = get_profile()
    p = profile.patch_size
    packed = stripes(n, torch.Generator().manual_seed(seed), config, profile)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.6), squeeze=False)
    for ax, spans, image in zip(axes[0], packed.spans, packed.image, strict=True):
        span = next(s for s in spans if s.modality == Modality.IMAGE)
        rows, cols = span.grid
        patches = image[span.start : span.stop][None]
        picture = unpatchify(patches, p, rows * p, cols * p)[0].clamp(0, 1)
        ax.imshow(picture.permute(1, 2, 0).numpy(), extent=(0, cols, rows, 0))
        ax.set_xticks(range(cols + 1))
        ax.set_yticks(range(rows + 1))
        ax.tick_params(labelbottom=False, labelleft=False, length=0)
        ax.grid(color="white", linewidth=1)
        ax.set_title(f"{rows} x {cols} patches", fontsize=9)
    fig.suptitle("Stripes: every row repeats the row above; the width varies")
    fig.tight_layout()
    return detached(fig)
