"""Sweeps: train a grid of small ``OmniLM`` models and record ``(N, D, loss)``.

:func:`run_sweep` trains each model size of :func:`~.budget.sweep_config` on OmniWorld text,
image, audio, text+image and text+audio, once per token budget (each run with a
learning-rate schedule matched to its length, evaluated once at its end); finished runs are
cached (:class:`~.cache.SweepCache`) so a rerun is instant. :func:`run_heldout` trains the
larger run that lesson 07 predicts before revealing it;
:func:`modality_baselines` measures each modality's best constant prediction.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from omni_edu.lessons.scaling_laws.budget import (
    MODALITIES,
    ModelSize,
    SweepConfig,
    heldout_size,
    sweep_config,
)
from omni_edu.lessons.scaling_laws.cache import SweepCache, open_cache
from omni_edu.lessons.scaling_laws.fitting import (
    one_thread,
)
from omni_edu.lessons.scaling_laws.sweep_data import SweepData, measure_baselines, modality_tokens
from omni_edu.modalities import TextTokenizer
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig
from omni_edu.model.transformer import Decoder, DecoderConfig
from omni_edu.profiles import get_device, get_profile
from omni_edu.train import TrainConfig, Trainer, model_loss


def decoder_parameters(size: ModelSize) -> int:
    """``N`` of a size before training it: the decoder's parameters (as in the sweep)."""
    config = DecoderConfig(d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads)
    return Decoder(config).num_parameters()


def parameter_counts(model: OmniLM) -> dict[str, int]:
    """``{"total": ..., "non_embedding": ...}`` trainable parameters of an OmniLM.

    ``non_embedding`` counts the decoder blocks only: no text embedding, image/audio
    projector or output head (Kaplan et al.'s convention). At our sizes those parts
    are a large, modality-dependent share, so the decoder count is the ``N`` that
    compares across text, image and audio runs.
    """
    return {"total": model.num_parameters(), "non_embedding": model.decoder.num_parameters()}


def training_flops(
    n_params: float, tokens: float, n_layers: int, d_model: int, ctx: float
) -> float:
    """Training FLOPs: ``6 N D`` plus attention, ``6 * n_layers * ctx * d_model`` per token.

    Kaplan et al. 2020 (Sec. 2.1): a forward pass costs ``2 N + 2 n_layers ctx d_model``
    per token (the second term is scores and weighted sums over ``ctx`` positions); the
    backward pass twice that. ``ctx`` is the mean sequence length.
    """
    return 6.0 * n_params * tokens + 6.0 * n_layers * ctx * d_model * tokens


def _build_model(data: SweepData, size: ModelSize, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return OmniLM(
        OmniLMConfig(
            projector=ProjectorConfig(
                d_model=size.d_model,
                vocab_size=TextTokenizer().vocab_size,
                image_dim=data.image_dim,
                audio_dim=data.audio_dim,
            ),
            decoder=DecoderConfig(
                d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads
            ),
        )
    )


def _train_run(data: SweepData, setting: str, size: ModelSize, steps: int) -> list[dict]:
    """Train one model on ``setting`` for ``steps`` steps and evaluate it at the end.

    The schedule is matched to the run's length: warm-up, then a cosine that reaches
    ``lr * min_lr_ratio`` at the last step. Returns a list of one record (the cache keeps
    lists, so a run could hold several evaluations).
    """
    cfg = data.config
    train, val = data.batches(setting)
    model = _build_model(data, size, cfg.seed)
    params = parameter_counts(model)
    device = get_device(get_profile(cfg.profile))

    def validation_loss(m: nn.Module) -> dict[str, float]:
        return {
            modality: float(np.mean([m.loss(b.to(device))[modality].item() for b in batches]))
            for modality, batches in val.items()
        }

    trainer = Trainer(
        model,
        model_loss,
        lambda step: train[step % len(train)],
        TrainConfig(
            steps=steps,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            min_lr_ratio=cfg.min_lr_ratio,
            log_every=steps,
            seed=cfg.seed,
            device=str(device),
            progress=False,
        ),
        eval_fn=validation_loss,
    )
    per_batch = {m: np.mean([modality_tokens(b, m) for b in train]) for m in MODALITIES}
    ctx = float(np.mean([b.lengths.float().mean().item() for b in train]))
    history = trainer.fit()
    tokens = {m: float(per_batch[m] * steps) for m in setting.split("+")}
    total = sum(tokens.values())
    return [
        {
            "setting": setting,
            **asdict(size),
            "params": params["total"],
            "params_nonembedding": params["non_embedding"],
            "step": steps,
            "tokens": tokens,
            "tokens_total": total,
            # what each modality's tokens alone cost in this run: for a mixed run, the
            # compute of the matching single-modality run (the same model and steps), up to
            # the attention term, which uses this run's mean sequence length
            "flops_by_modality": {
                m: training_flops(params["non_embedding"], d, size.n_layers, size.d_model, ctx)
                for m, d in tokens.items()
            },
            "flops": training_flops(
                params["non_embedding"], total, size.n_layers, size.d_model, ctx
            ),
            "loss": {k: v[-1] for k, v in history.evals.items()},
        }
    ]


def _run_spec(config: SweepConfig, setting: str, size: ModelSize, steps: int) -> dict:
    spec = config.to_dict()
    spec.pop("sizes"), spec.pop("settings"), spec.pop("budgets")
    return {**spec, "steps": steps, "setting": setting, "size": asdict(size)}


@functools.lru_cache(maxsize=1)
def sweep_data(config: SweepConfig, progress: bool) -> SweepData:
    # Kept between calls, so the held-out run reuses the sweep's data.
    return SweepData(config, progress)


def _run_all(
    config: SweepConfig,
    jobs: Sequence[tuple[str, ModelSize, int]],
    cache: SweepCache | str | Path | None,
    progress: bool,
    desc: str,
) -> list[dict]:
    cache = open_cache(cache, config)
    records: list[dict] = []
    bar = tqdm(jobs, desc=desc, disable=not progress)
    for setting, size, steps in bar:
        bar.set_postfix_str(f"{setting} {size.label}")
        spec = _run_spec(config, setting, size, steps)
        found = cache.get(spec)
        if found is None:
            data = sweep_data(config, progress)
            # The sweep's models are small: on a CPU, torch's threads only add waiting
            # (on a busy 2-core machine a step took several times longer with two).
            on_cpu = get_device(get_profile(config.profile)).type == "cpu"
            with one_thread() if on_cpu else contextlib.nullcontext():
                found = _train_run(data, setting, size, steps)
            cache.put(spec, found)
        records += found
    return records


def run_sweep(
    config: SweepConfig | None = None,
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train (or load from the cache) every run of a sweep; one record per run.

    A run is one (setting, size, budget): ``budget`` steps with a schedule matched to
    that length, evaluated once at its end. A record: ``setting``, ``d_model``,
    ``n_layers``, ``n_heads``, ``params`` (all trainable), ``params_nonembedding``
    (decoder only: the ``N`` we fit), ``step`` (the run's length), ``tokens`` (per
    modality) and ``tokens_total`` (``D``), ``flops`` (:func:`training_flops`, all
    modalities), ``flops_by_modality`` (what each modality's tokens alone cost) and
    ``loss`` (validation loss per modality: nats per token for text, MSE of standardised
    features for image and audio).

    Cached runs load instantly; new ones train and are written to the cache (default: the
    sweep profile's :func:`default_cache_path`) as soon as each finishes, so a stopped
    sweep resumes.
    """
    config = config or sweep_config()
    jobs = [
        (setting, size, steps)
        for setting in config.settings
        for size in config.sizes
        for steps in config.budgets
    ]
    return _run_all(config, jobs, cache, progress, f"{config.profile} sweep")


def run_heldout(
    config: SweepConfig | None = None,
    setting: str = "text",
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """The held-out run: a model bigger than any of the sweep, trained longer.

    Same data and recipe as :func:`run_sweep` (a schedule matched to its length, one
    evaluation at its end); :func:`heldout_size` gives its size and length per profile.
    Returns its one record in a list.
    """
    config = config or sweep_config()
    size, steps = heldout_size(config.profile)
    return _run_all(config, [(setting, size, steps)], cache, progress, "held-out run")


def modality_baselines(
    config: SweepConfig | None = None,
    cache: SweepCache | str | Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Each modality's loss under the best **constant** prediction: ``{modality: loss}``.

    Measured on the sweep's validation targets (the positions its losses average over):

    * text: the entropy of the target tokens' frequencies, in nats per token: the
      cross-entropy of always predicting those frequencies, the best a model can do that
      ignores the context;
    * image, audio: the variance of the standardised target features around their mean:
      the squared error of always predicting the mean (close to 1 by construction).

    Dividing a model's loss by its modality's baseline puts text, image and audio on one
    scale: 1 means "no better than ignoring the context", lower is better. Cached with the
    sweep's runs.
    """
    config = config or sweep_config()
    cache = open_cache(cache, config)
    # Everything that decides the data (the training pool sets the standardisation).
    spec = {**config.to_dict(), "heldout_steps": heldout_size(config.profile)[1]}
    for unused in ("sizes", "settings", "lr", "warmup_steps", "min_lr_ratio"):
        spec.pop(unused)
    spec["kind"] = "baselines"
    found = cache.get_baselines(spec)
    if found is None:
        found = measure_baselines(sweep_data(config, progress))
        cache.put_baselines(spec, found)
    return found
