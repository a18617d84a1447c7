"""The cost planner (lesson 08): what one multimodal request costs in tokens, time, memory, money.

* :func:`plan` - the numbers for one request (:class:`Request`), from the token rules and the
  roofline of :mod:`omni_edu.cost`;
* :func:`cost_tips` - the chapter's four cost tips, each measured against the same request;
* :func:`planner_figure` - a static matplotlib summary (the fallback);
* :func:`cost_planner` - sliders and drop-downs in a notebook (carrying the static figure
  for viewers without widgets), the static figure elsewhere.

Images and video follow the Qwen2-VL / Qwen2.5-Omni rules (28-px tokens, two frames merged),
audio the Qwen2.5-Omni rate (25 tokens per second). Times are roofline lower bounds at batch 1
in bf16 (fp16 on a T4), so real serving is slower; the *ratios* between options are the point.
Prices assume one request has the device to itself; a server that batches many requests
shares each weight read among them and charges less per request.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from omni_edu import cost
from omni_edu.lessons.cost_and_serving.cascade import GenerationStage
from omni_edu.viz.fallback import WithFallback
from omni_edu.viz.plots import detached, in_notebook, table_html


@dataclass(frozen=True)
class Request:
    """One request to price. Sizes in pixels, seconds and tokens."""

    image_side: int = 1024  # a square photo of this many pixels per side (0 = no image)
    n_images: int = 1
    video_seconds: float = 0.0
    video_fps: float = 2.0
    video_side: int = 448
    video_rule: str = "qwen2-vl"  # or "qwen2.5-vl": a larger pixel budget shared by the frames
    audio_seconds: float = 10.0
    text_tokens: int = 50
    output_tokens: int = 200
    model: str = "qwen2-7b"
    device: str = "A100"
    price_per_hour: float | None = None  # None: the device preset's typical price


# The language models a request can be sent to (the other presets are a diffusion model and
# a speech Talker, which take no such prompt).
PLANNER_MODELS = ("qwen2-7b", "llama3-8b", "qwen2-0.5b")


def _dtype(device: cost.Hardware) -> str:
    return "bf16" if "bf16" in device.peak_flops else "fp16"


def token_caps(request: Request) -> list[str]:
    """Sentences naming every token cap that binds on ``request`` (empty when none does).

    The Qwen rules stop charging for pixels past a budget: an image above ``max_pixels``
    (1280 tokens by default, about 1000x1000 px) is shrunk to it, so a larger picture costs
    the same; video frames share a total budget (and each has a cap), and a clip gives at
    most 768 frames. Past a cap the slider still moves but the price does not.
    """
    notes = []
    side = request.image_side
    if side and request.n_images:
        if cost.qwen2vl_cap_binds(side, side):
            h, w = cost.qwen2vl_smart_resize(side, side)
            # the smallest side whose rounding to 28-px blocks exceeds the budget
            blocks = math.isqrt(cost.QWEN_MAX_PIXELS) // cost.QWEN_FACTOR + 1
            threshold = round((blocks - 0.5) * cost.QWEN_FACTOR)
            notes.append(
                f"image capped at {cost.qwen2vl_image_tokens(side, side):,} tokens "
                f"(max_pixels): a {side}px photo is shrunk to {w}x{h}; from about "
                f"{threshold}px up, a larger square photo costs no more"
            )
    if request.video_seconds > 0:
        video = cost.qwen2vl_video_plan(
            request.video_side,
            request.video_side,
            request.video_seconds,
            request.video_fps,
            request.video_rule,
        )
        if video.limit != "none":
            h, w = video.frame_hw
            notes.append(
                f"video frames shrunk to {w}x{h} by the {video.limit} "
                f"({video.frames} frames, {video.tokens_per_pair} tokens per pair of frames)"
            )
        if video.frames == cost.QWEN_FPS_MAX_FRAMES:
            notes.append(
                f"video capped at {cost.QWEN_FPS_MAX_FRAMES} frames: a longer clip is sampled "
                "more sparsely, not charged more"
            )
    return notes


def plan(request: Request) -> dict[str, Any]:
    """Tokens per modality, latency, memory and price of one ``request``.

    Returns a dict with ``tokens`` (per modality and ``"prompt"``), ``prefill_s``,
    ``decode_s``, ``latency_s``, ``weights_gb``, ``kv_cache_gb``, ``fits`` (in the device's
    memory), ``usd_per_request``, ``usd_per_1k_requests`` and ``caps`` (the token caps that
    bind, as sentences: :func:`token_caps`).
    """
    model = cost.get_model_shape(request.model)
    device = cost.get_hardware(request.device)
    price = device.price_per_hour if request.price_per_hour is None else request.price_per_hour
    if price < 0:
        raise ValueError(f"price_per_hour should be >= 0 USD; got {price}")
    tokens = {
        "image": request.n_images
        * cost.qwen2vl_image_tokens(request.image_side, request.image_side)
        if request.image_side and request.n_images
        else 0,
        "video": cost.qwen2vl_video_tokens(
            request.video_side,
            request.video_side,
            request.video_seconds,
            request.video_fps,
            request.video_rule,
        )
        if request.video_seconds > 0
        else 0,
        "audio": cost.qwen_omni_audio_tokens(request.audio_seconds),
        "text": request.text_tokens,
    }
    tokens["prompt"] = sum(tokens.values())
    dtype = _dtype(device)
    prefill = GenerationStage("prefill", model, tokens["prompt"], 0).seconds(device, dtype)
    whole = GenerationStage("all", model, tokens["prompt"], request.output_tokens).seconds(
        device, dtype
    )
    kv = cost.kv_cache_bytes(
        model.n_layers,
        model.n_kv_heads,
        model.head_dim,
        tokens["prompt"] + request.output_tokens,
        bytes_per_value=cost.bytes_per_value(dtype),
    )
    weights = cost.bytes_per_value(dtype) * model.n_params
    return {
        "tokens": tokens,
        "prefill_s": prefill,
        "decode_s": whole - prefill,
        "latency_s": whole,
        "weights_gb": weights / 1e9,
        "kv_cache_gb": kv / 1e9,
        "fits": weights + kv <= device.memory_bytes,
        "usd_per_request": whole * price / 3600,
        "usd_per_1k_requests": 1000 * whole * price / 3600,
        "caps": token_caps(request),
    }


def cost_tips(request: Request, questions_per_image: int = 10, easy_fraction: float = 0.8) -> list:
    """The chapter's cost tips, each priced against ``request`` (rows for a table).

    * **resize**: cap images at 448x448 before sending (256 tokens each);
    * **1 fps**: sample video at one frame per second instead of ``request.video_fps``;
    * **cache embeddings**: ask ``questions_per_image`` questions about the same media and
      reuse its prefill (prefix / KV caching) instead of reading it again each time;
    * **a cheap model first**: a 0.5B model answers the ``easy_fraction`` of requests it can;
      the rest go to ``request.model`` after the cheap attempt (so they pay for both).

    Each row: tip, what changes, USD per 1k requests before and after, and the saving in %.
    """
    if not 0 <= easy_fraction <= 1:
        raise ValueError(f"easy_fraction should be in [0, 1]; got {easy_fraction}")
    if questions_per_image < 1:
        raise ValueError(f"questions_per_image should be >= 1; got {questions_per_image}")
    base = plan(request)
    before = base["usd_per_1k_requests"]
    rows = []

    def row(tip: str, change: str, after: float) -> None:
        rows.append(
            {
                "tip": tip,
                "change": change,
                "usd_per_1k_before": before,
                "usd_per_1k_after": after,
                "saving_%": 100 * (1 - after / before) if before else 0.0,
            }
        )

    small = replace(request, image_side=min(request.image_side, 448))
    row(
        "resize images",
        f"{request.image_side}px -> {small.image_side}px",
        plan(small)["usd_per_1k_requests"],
    )

    one_fps = replace(request, video_fps=min(request.video_fps, 1.0))
    row(
        "sample video at 1 fps",
        f"{request.video_fps:g} fps -> {one_fps.video_fps:g} fps",
        plan(one_fps)["usd_per_1k_requests"],
    )

    # With caching, the media prefill is paid once per image and the rest per question.
    media = base["tokens"]["prompt"] - base["tokens"]["text"]
    share = media / base["tokens"]["prompt"] if base["tokens"]["prompt"] else 0.0
    media_prefill = base["prefill_s"] * share
    cached_s = base["latency_s"] - media_prefill * (1 - 1 / questions_per_image)
    price = base["usd_per_request"] / base["latency_s"] if base["latency_s"] else 0.0
    row(
        "cache media embeddings",
        f"{questions_per_image} questions per image share one prefill",
        1000 * cached_s * price,
    )

    cheap = plan(replace(request, model="qwen2-0.5b"))["usd_per_1k_requests"]
    row(
        "a cheap model first",
        f"0.5B answers {100 * easy_fraction:.0f}%, the rest escalate",
        cheap + (1 - easy_fraction) * before,
    )
    return rows


def _summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    t = result["tokens"]
    return [
        {
            "quantity": "prompt tokens (image / video / audio / text)",
            "value": f"{t['prompt']:,} "
            f"({t['image']:,} / {t['video']:,} / {t['audio']:,} / {t['text']:,})",
        },
        {
            "quantity": "latency at batch 1 (prefill + decode)",
            "value": f"{result['latency_s']:.2f} s "
            f"({result['prefill_s']:.3f} + {result['decode_s']:.2f})",
        },
        {
            "quantity": "memory (weights + KV cache)",
            "value": f"{result['weights_gb']:.1f} + {result['kv_cache_gb']:.2f} GB"
            + ("" if result["fits"] else "  (does not fit!)"),
        },
        {"quantity": "price", "value": f"${result['usd_per_1k_requests']:.2f} per 1k requests"},
    ]


def planner_html(request: Request) -> str:
    """The planner's result panel for ``request``: the numbers, the binding caps, the tips."""
    result = plan(request)
    caps = "".join(
        f"<p style='color:#a0522d;margin:4px 0'><b>Cap reached:</b> {html.escape(note)}.</p>"
        for note in result["caps"]
    )
    return (
        table_html(_summary_rows(result), title="One request")
        + caps
        + table_html(cost_tips(request), floatfmt=".3g", title="Cost tips")
    )


def planner_figure(request: Request | None = None) -> Figure:
    """Static summary: prompt tokens per modality and USD per 1k requests with each tip.

    Returns the figure detached from pyplot: end the cell with the call, or ``display`` it.
    """
    request = request or Request()
    result = plan(request)
    tips = cost_tips(request)
    fig, (ax_tokens, ax_tips) = plt.subplots(1, 2, figsize=(10, 3.4))
    names = ["image", "video", "audio", "text"]
    ax_tokens.bar(
        names,
        [result["tokens"][n] for n in names],
        color=["tab:orange", "tab:red", "tab:green", "tab:blue"],
    )
    ax_tokens.set_ylabel("prompt tokens")
    ax_tokens.set_title(
        f"{request.model} on {request.device}: {result['tokens']['prompt']:,} tokens"
    )
    labels = ["as is"] + [row["tip"] for row in tips]
    values = [result["usd_per_1k_requests"]] + [row["usd_per_1k_after"] for row in tips]
    ax_tips.barh(labels[::-1], values[::-1], color="tab:purple")
    ax_tips.set_xlabel("USD per 1,000 requests")
    ax_tips.set_title("the chapter's cost tips")
    fig.tight_layout()
    if result["caps"]:  # say when a slider has stopped mattering
        text = "\n".join(f"Cap reached: {note}." for note in result["caps"])
        fig.text(0.01, 0.0, text, fontsize=8, color="#a0522d", va="top", wrap=True)
    return detached(fig)


def cost_planner(**defaults: Any) -> Any:
    """Interactive planner in a notebook; :func:`planner_figure` anywhere else.

    Keyword arguments set the starting :class:`Request` fields. Returns, and does not
    display: end a cell with the call. In a notebook the value is a
    :class:`~omni_edu.viz.fallback.WithFallback`: the widget where widgets run, the static
    figure of the starting request where they do not.
    """
    start = Request(**defaults)
    figure = planner_figure(start)
    if in_notebook():
        try:
            widget = planner_widget(start)
        except ImportError:
            return figure  # no ipywidgets: the static figure alone
        text = "Cost planner (interactive: run the notebook to move the sliders)"
        return WithFallback(widget, figure, text)
    return figure


def planner_widget(start: Request | None = None) -> Any:
    """The planner as an ipywidgets box (built even without a display).

    One control per row, each as wide as the notebook (``Layout(width="100%")``) with a
    label column wide enough for the longest label, and a result panel (an ``HTML``
    widget) that every change rewrites, including the token caps that bind. Uses only
    ``IntSlider``, ``FloatSlider``, ``Dropdown``, ``FloatText``, ``HTML``, ``VBox`` and
    ``observe``, which behave the same on ipywidgets 7.7 (Colab) and 8.x (JupyterLab 4).
    """
    import ipywidgets as widgets

    start = start or Request()
    style = {"description_width": "230px"}

    def row() -> Any:
        return widgets.Layout(width="100%")

    controls = {
        "image_side": widgets.IntSlider(
            value=start.image_side, min=0, max=4096, step=64, description="image side (px)"
        ),
        "n_images": widgets.IntSlider(
            value=start.n_images, min=0, max=16, description="images per request"
        ),
        "video_seconds": widgets.FloatSlider(
            value=start.video_seconds, min=0, max=600, step=5, description="video length (s)"
        ),
        "video_fps": widgets.Dropdown(
            options=[0.5, 1.0, 2.0, 4.0], value=start.video_fps, description="video frames per s"
        ),
        "video_rule": widgets.Dropdown(
            options=[("Qwen2-VL", "qwen2-vl"), ("Qwen2.5-VL / Qwen2.5-Omni", "qwen2.5-vl")],
            value=start.video_rule,
            description="video token rule",
        ),
        "audio_seconds": widgets.FloatSlider(
            value=start.audio_seconds, min=0, max=600, step=5, description="audio length (s)"
        ),
        "output_tokens": widgets.IntSlider(
            value=start.output_tokens, min=10, max=2000, step=10, description="output tokens"
        ),
        "model": widgets.Dropdown(
            options=[m for m in cost.MODEL_SHAPES if m in PLANNER_MODELS],
            value=start.model,
            description="model",
        ),
        "device": widgets.Dropdown(
            options=sorted(cost.HARDWARE), value=start.device, description="device"
        ),
        # 0 means "the device preset's typical price", so switching devices updates it
        "price_per_hour": widgets.FloatText(
            value=start.price_per_hour or 0.0, description="USD per GPU-hour (0 = preset)"
        ),
    }
    for control in controls.values():
        control.style = style
        control.layout = row()
    panel = widgets.HTML(layout=row())

    def update(_change: Any = None) -> None:
        values = {name: control.value for name, control in controls.items()}
        values["price_per_hour"] = values["price_per_hour"] or None
        panel.value = planner_html(replace(start, **values))

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.VBox(list(controls.values()), layout=row()), panel], layout=row())
