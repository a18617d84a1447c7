"""The course's own model, stage by stage: where the seconds of one generation go, and the
roofline's view of the same passes.

:func:`time_generation` watches one call of :meth:`OmniLM.generate` (prefill, decode steps,
the output head's sampling) from outside; :func:`generation_costs` prices the same passes
with the roofline (:func:`decoder_shape`, :func:`head_sampling_cost`,
:func:`flow_sampling_cost`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from omni_edu.cost.measure import _CountCalls
from omni_edu.cost.roofline import (
    ModelShape,
    StepCost,
    bytes_per_value,
    decode_step_cost,
    prefill_cost,
)
from omni_edu.cost.validate import positive
from omni_edu.model.weights import count_parameters

if TYPE_CHECKING:
    from omni_edu.model.omni_lm import OmniLM


def _modality(modality):
    """A :class:`~omni_edu.modalities.Modality` from itself or its name (``"audio"``)."""
    from omni_edu.modalities import Modality

    if isinstance(modality, str):
        if modality.upper() not in Modality.__members__:
            names = ", ".join(m.lower() for m in Modality.__members__)
            raise ValueError(f"modality should be one of {names}; got {modality!r}.")
        return Modality[modality.upper()]
    return Modality(modality)


def decoder_shape(decoder: torch.nn.Module, name: str = "our decoder") -> ModelShape:
    """The :class:`ModelShape` of a :class:`~omni_edu.model.transformer.Decoder`."""
    config = getattr(decoder, "config", None)
    if config is None or not hasattr(config, "n_kv_heads"):
        raise ValueError(
            f"decoder should be an omni_edu Decoder (with a DecoderConfig); got {type(decoder)}"
        )
    n_params = count_parameters(decoder)  # frozen ones too: all are read at every step
    return ModelShape(
        name,
        float(n_params),
        config.n_layers,
        config.d_model,
        config.n_heads,
        config.n_kv_heads,
        config.head_dim,
    )


def flow_sampling_cost(
    head: torch.nn.Module, n_tokens: int, steps: int | None = None, dtype: str = "fp32"
) -> StepCost:
    """FLOPs and bytes of sampling one image of ``n_tokens`` tokens with a flow head.

    Each of ``steps`` Euler steps evaluates the head's MLP once for every token at the same
    time: ``2 * P`` FLOPs per token per step (``P`` = its parameters), while the weights are
    read once per step for all ``n_tokens`` tokens. ``dtype`` is the head's (fp32 for the
    course's modules on a CPU).
    """
    positive("n_tokens", n_tokens)
    steps = steps or head.config.sampling_steps
    positive("steps", steps)
    size = bytes_per_value(dtype)
    n_params = count_parameters(head)
    flops = 2.0 * n_params * n_tokens * steps
    width = head.config.width
    activations = 2 * (head.config.depth + 2) * n_tokens * width * size
    return StepCost(flops, steps * (n_params * size + activations), n_tokens, dtype)


@dataclass(frozen=True)
class GenerationTiming:
    """Where the seconds of one :meth:`~omni_edu.model.omni_lm.OmniLM.generate` call went.

    Attributes:
        prefill: the first decoder pass, over the whole prompt at once.
        decode: each later decoder pass, one new token per row with the KV cache.
        head: each call of the output head, one per generated token (for a flow head,
            its ``steps`` Euler steps for every row of the batch at once).
        first_token: from the start of the call until the first token was sampled (what a
            user waits before the answer starts).
        total: the whole call.
        prompt_tokens: tokens read by the prefill (per row, left padding included).
        batch: rows generated side by side.
        calls: with ``count_calls``, the torch operations each stage asked for:
            ``{"prefill": ..., "decode": ... (per step), "head": ... (per token),
            "total": ...}`` (see :func:`count_torch_calls`); else None.
    """

    prefill: float
    decode: tuple[float, ...]
    head: tuple[float, ...]
    first_token: float
    total: float
    prompt_tokens: int
    batch: int
    calls: dict[str, int] | None = None

    @property
    def other(self) -> float:
        """Seconds outside the decoder and the head: laying out and packing the prompt,
        embedding each new token, Python between the steps."""
        return self.total - self.prefill - sum(self.decode) - sum(self.head)


def time_generation(
    model: OmniLM, modality, run: Callable[[], object], count_calls: bool = False
) -> tuple[object, GenerationTiming]:
    """Call ``run()``, which generates ``modality`` once with ``model``, and time its stages.

    ``run`` calls :meth:`~omni_edu.model.omni_lm.OmniLM.generate` exactly once, directly
    (``lambda: model.generate(prompts, Modality.AUDIO, n_tokens=8)``) or through a helper
    such as :func:`omni_edu.parts.any_to_any.generate`. Nothing is re-implemented: the model's own
    cached decoding loop runs, observed from outside. Forward hooks on the decoder time each
    pass (the first is the prefill, the others are decode steps); the output head's
    ``sample`` (for text: the text head's forward) is timed around each call. On a GPU
    every mark synchronises, so each stage's kernels are counted in that stage.

    ``count_calls``: also count the torch operations of each stage (what per-operation
    overhead is paid on); counting slows the run, so time and count in separate calls.

    Returns:
        what ``run()`` returned, and the :class:`GenerationTiming`.
    """
    from omni_edu.modalities import Modality

    modality = _modality(modality)
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    marks: dict[str, list[tuple[float, float]]] = {"decoder": [], "head": []}
    counts: dict[str, list[int]] = {"decoder": [], "head": []}
    shapes: list[tuple[int, int]] = []  # (batch, tokens) of each decoder pass
    opened: dict[str, tuple[float, int]] = {}
    counter = _CountCalls()

    def open_(kind: str, shape: tuple[int, ...] = ()) -> None:
        sync()
        opened[kind] = (time.perf_counter(), counter.calls)
        if shape:
            shapes.append((shape[0], shape[1]))  # the decoder's input: (batch, seq, d_model)

    def close(kind: str) -> None:
        sync()
        start, calls = opened[kind]
        marks[kind].append((start, time.perf_counter()))
        counts[kind].append(counter.calls - calls)

    handles = [
        model.decoder.register_forward_pre_hook(lambda m, args: open_("decoder", args[0].shape)),
        model.decoder.register_forward_hook(lambda m, args, out: close("decoder")),
    ]
    head = model.head(modality)
    if modality == Modality.TEXT:  # text is sampled from the logits of the text head
        handles += [
            head.register_forward_pre_hook(lambda m, args: open_("head")),
            head.register_forward_hook(lambda m, args, out: close("head")),
        ]
    else:
        original = head.sample

        def timed_sample(*args, **kwargs):
            open_("head")
            out = original(*args, **kwargs)
            close("head")
            return out

        head.sample = timed_sample  # an instance attribute: shadows the method until deleted
    try:
        sync()
        start = time.perf_counter()
        if count_calls:
            with counter:
                out = run()
        else:
            out = run()
        sync()
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
        if modality != Modality.TEXT:
            del head.sample
    # One generate call: a prompt pass, then one-token passes, and one head call per pass.
    one_call = bool(shapes) and all(seq == 1 for _, seq in shapes[1:])
    if not one_call or len(marks["head"]) != len(shapes):
        raise ValueError(
            f"run should generate {modality.name} once with this model (a prompt pass, then "
            f"one token per step, the {modality.name} head after each); it made "
            f"{len(shapes)} decoder passes of lengths {[seq for _, seq in shapes]} and "
            f"{len(marks['head'])} {modality.name} head calls."
        )
    passes = [b - a for a, b in marks["decoder"]]
    calls = None
    if count_calls:
        steps, heads = counts["decoder"][1:] or [0], counts["head"]
        calls = {
            "prefill": counts["decoder"][0],
            "decode": sorted(steps)[len(steps) // 2],
            "head": sorted(heads)[len(heads) // 2],
            "total": counter.calls,
        }
    return out, GenerationTiming(
        prefill=passes[0],
        decode=tuple(passes[1:]),
        head=tuple(b - a for a, b in marks["head"]),
        first_token=marks["head"][0][1] - start,
        total=total,
        prompt_tokens=shapes[0][1],
        batch=shapes[0][0],
        calls=calls,
    )


def head_sampling_cost(head: torch.nn.Module, batch: int, steps: int | None = None) -> StepCost:
    """FLOPs and bytes of one output head writing one token for each of ``batch`` rows.

    A flow head runs its MLP ``steps`` times (:func:`flow_sampling_cost` with the batch's
    rows as the tokens updated together); a linear or softmax head (text, codes) one
    matrix product. fp32, as the course's models run.
    """
    if hasattr(head, "config") and hasattr(head.config, "sampling_steps"):
        return flow_sampling_cost(head, batch, steps)
    positive("batch", batch)
    n_params = count_parameters(head)
    return StepCost(2.0 * n_params * batch, 4.0 * n_params, batch, "fp32")


def generation_costs(
    model: OmniLM, timing: GenerationTiming, modality, steps: int | None = None
) -> dict[str, list[StepCost]]:
    """The roofline's view of the call that produced ``timing``: one :class:`StepCost` per
    prefill, decode pass and head call, ``{"prefill": [...], "decode": [...], "head": [...]}``.

    The decoder's shape comes from the model itself (:func:`decoder_shape`); each decode
    step attends to everything before it (the prompt and the tokens written so far).
    """
    shape = decoder_shape(model.decoder, "OmniLM decoder")
    head = model.head(_modality(modality))
    b, p = timing.batch, timing.prompt_tokens
    return {
        "prefill": [prefill_cost(shape, p, b, "fp32")],
        "decode": [decode_step_cost(shape, p + k, b, "fp32") for k in range(len(timing.decode))],
        "head": [head_sampling_cost(head, b, steps) for _ in timing.head],
    }
