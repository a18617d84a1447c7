"""Fusion variants: gated layers start as the identity, masks hide later media, every variant
is causal for text, budgets match, and a short run learns the loose task."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.fusion_tasks import (
    accuracy,
    count_flops,
    make_fusion_data,
    task_config,
    train_variant,
    training_memory,
)
from omni_edu.model.fusion import (
    VARIANTS,
    CrossAttention,
    FusionBatch,
    FusionConfig,
    GatedCrossAttention,
    build_fusion_model,
    media_visibility_mask,
)
from omni_edu.model.transformer import DecoderConfig
from omni_edu.profiles import get_profile

D = 32


def small_config(**overrides) -> FusionConfig:
    sizes = dict(d_model=D, n_heads=4, depth=4, vocab_size=20, image_dim=12, audio_dim=8)
    return FusionConfig(**{**sizes, **overrides})


def random_batch(layout: list[str], batch: int = 2, seed: int = 0) -> FusionBatch:
    """A batch whose tokens follow ``layout``, e.g. ["text", "image", "image", "text"]."""
    g = torch.Generator().manual_seed(seed)
    where = {
        m: [i for i, kind in enumerate(layout) if kind == m] for m in ("text", "image", "audio")
    }

    def positions(m: str) -> torch.Tensor:
        return torch.tensor(where[m]).expand(batch, -1).contiguous()

    return FusionBatch(
        text_ids=torch.randint(20, (batch, len(where["text"])), generator=g),
        text_positions=positions("text"),
        image=torch.randn(batch, len(where["image"]), 12, generator=g),
        image_positions=positions("image"),
        audio=torch.randn(batch, len(where["audio"]), 8, generator=g),
        audio_positions=positions("audio"),
        labels=torch.zeros(batch, dtype=torch.long),
    )


def open_gates(model: torch.nn.Module, value: float = 1.0) -> None:
    """Set every gate of a cross-attention model away from zero, so media matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_gate"):
                p.fill_(value)


# ----------------------------------------------------------------------------- masks


def test_visibility_mask_shows_only_earlier_media() -> None:
    text = torch.tensor([[0, 3, 6]])
    media = torch.tensor([[1, 2, 4, 5]])
    expected = torch.tensor([[[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]], dtype=torch.bool)
    assert torch.equal(media_visibility_mask(text, media), expected)


def test_visibility_mask_hides_padding() -> None:
    mask = media_visibility_mask(torch.tensor([[5, 9]]), torch.tensor([[1, -1, 7]]))
    assert mask.tolist() == [[[True, False, False], [True, False, True]]]


# ----------------------------------------------------------------------------- gated layer


def test_fresh_gated_layer_is_the_identity() -> None:
    torch.manual_seed(0)
    layer = GatedCrossAttention(DecoderConfig(d_model=D, n_heads=4))
    x, media = torch.randn(2, 5, D), torch.randn(2, 7, D)
    visible = torch.rand(2, 5, 7) > 0.3
    assert torch.equal(layer(x, media, visible), x)


def test_text_before_any_media_gets_zero_from_cross_attention() -> None:
    torch.manual_seed(0)
    config = DecoderConfig(d_model=D, n_heads=4)
    xattn, layer = CrossAttention(config), GatedCrossAttention(config)
    open_gates(layer)
    x = torch.randn(1, 3, D, requires_grad=True)
    visible = media_visibility_mask(torch.tensor([[0, 5, 9]]), torch.tensor([[1, 2, 3, 4]]))
    media_a, media_b = torch.randn(1, 4, D), torch.randn(1, 4, D)
    out = xattn(x, media_a, visible)
    assert torch.equal(out[0, 0], torch.zeros(D))  # nothing visible -> exactly zero
    assert out[0, 1:].abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(x.grad).all()  # no NaN from a softmax over nothing
    # Through the whole gated layer: the first token's result ignores the media entirely.
    y_a, y_b = layer(x, media_a, visible), layer(x, media_b, visible)
    assert torch.equal(y_a[0, 0], y_b[0, 0])
    assert not torch.allclose(y_a[0, 1:], y_b[0, 1:])


# ----------------------------------------------------------------------------- variants

# Text tokens anywhere; the image and the sound each one contiguous span (an encoder reads
# a whole image at once, so a text token sees all of it or none of it); text answers last.
SPANS = {"text": ["text"], "image": ["image"] * 4, "audio": ["audio"] * 3}
LAYOUTS = st.permutations(["text", "text", "image", "audio"]).map(
    lambda order: [kind for span in [*order, "text"] for kind in SPANS[span]]
)


@pytest.mark.parametrize("kind", VARIANTS)
@settings(max_examples=4, deadline=None)
@given(layout=LAYOUTS, cut=st.integers(0, 9))
def test_text_token_never_depends_on_later_tokens(kind: str, layout: list[str], cut: int) -> None:
    torch.manual_seed(0)
    model = build_fusion_model(kind, small_config()).eval()
    open_gates(model)
    before = random_batch(layout, seed=1)
    # Change every token after position `cut`, of every modality.
    after = random_batch(layout, seed=2)
    changed = FusionBatch(
        **{
            name: torch.where(
                (getattr(before, f"{name}_positions") > cut).unsqueeze(-1)
                if name != "text_ids"
                else before.text_positions > cut,
                getattr(after, name),
                getattr(before, name),
            )
            for name in ("text_ids", "image", "audio")
        },
        text_positions=before.text_positions,
        image_positions=before.image_positions,
        audio_positions=before.audio_positions,
        labels=before.labels,
    )
    with torch.no_grad():
        h1, h2 = model.text_hidden(before), model.text_hidden(changed)
    early = before.text_positions[0] <= cut
    assert torch.allclose(h1[:, early], h2[:, early], atol=1e-6)
    if (~early).any():  # and the later text tokens do see the change
        assert not torch.allclose(h1[:, ~early], h2[:, ~early], atol=1e-6)


@pytest.mark.parametrize("profile", ["ci", "cpu"])
def test_parameter_counts_match_within_five_percent(profile: str) -> None:
    config = task_config("colour", profile=get_profile(profile))
    counts = [build_fusion_model(k, config).num_parameters() for k in VARIANTS]
    assert max(counts) / min(counts) < 1.05, counts


def test_frozen_encoder_trains_less_and_keeps_fewer_activations() -> None:
    torch.manual_seed(0)
    batch = random_batch(["text"] + ["image"] * 6 + ["audio"] * 3 + ["text"], batch=4)
    full = build_fusion_model("late", small_config())
    frozen = build_fusion_model("late", small_config(frozen_encoders=("image",)))
    frozen.load_state_dict(full.state_dict())
    m_full, m_frozen = training_memory(full, batch), training_memory(frozen, batch)
    assert m_frozen.gradients < m_full.gradients
    assert m_frozen.activations < m_full.activations
    assert m_frozen.weights == m_full.weights
    # The frozen model computes the same answers: freezing changes training, not the function.
    with torch.no_grad():
        assert torch.allclose(full(batch), frozen(batch))
    frozen(batch).sum().backward()
    assert all(p.grad is None for p in frozen.encoders.image.parameters())


def test_frozen_encoders_are_a_late_fusion_option() -> None:
    with pytest.raises(ValueError, match="late-fusion"):
        build_fusion_model("early", small_config(frozen_encoders=("image",)))
    with pytest.raises(ValueError, match="frozen_encoders"):
        small_config(frozen_encoders=("text",))


def test_flops_count_a_linear_layer_exactly() -> None:
    model = build_fusion_model("early", small_config())
    batch = random_batch(["text", "image", "audio", "text"], batch=3)
    flops = count_flops(model, batch)
    # By hand: every Linear costs 2 * in * out per token it sees; attention 4 * s * s * d.
    seq, blocks = 4, 4
    per_token_linear = sum(
        2 * m.in_features * m.out_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.startswith("decoder")
    )
    expected = (
        seq * per_token_linear
        + blocks * 4 * seq * seq * D
        + 2 * 12 * D  # the image token's projection
        + 2 * 8 * D  # the audio token's
        + 2 * D * 2  # the head, on the answer token only
    )
    assert flops == expected


def test_cheaper_fusion_costs_fewer_flops() -> None:
    batch = random_batch(["text"] + ["image"] * 16 + ["audio"] * 8 + ["text"] * 6)
    flops = {k: count_flops(build_fusion_model(k, small_config()), batch) for k in VARIANTS}
    assert flops["cross"] < flops["late"] < flops["early"]


def test_batch_rejects_mismatched_positions() -> None:
    good = random_batch(["text", "image", "text"])
    with pytest.raises(ValueError, match="image_positions"):
        replace(good, image_positions=good.image_positions[:, :0])


def test_short_training_run_learns_the_loose_task() -> None:
    train = make_fusion_data("colour", 512, "train", seed=0)
    test = make_fusion_data("colour", 128, "test", seed=0)
    torch.manual_seed(0)
    model = build_fusion_model("late", task_config("colour", profile=get_profile("ci")))
    history = train_variant(model, train, test, steps=40, evals=1, batch_size=16)
    chance = 1 / 6
    assert history.evals["accuracy"][0] < chance + 0.1  # step 0: the untrained model
    assert accuracy(model, test) > chance + 0.2


def test_activation_memory_grows_with_the_batch_not_the_dataset() -> None:
    data = random_batch(["text"] + ["image"] * 6 + ["audio"] * 3 + ["text"], batch=16)
    model = build_fusion_model("early", small_config())
    small, double = training_memory(model, data[:2]), training_memory(model, data[:4])
    # A slice of a bigger batch must count only its own rows (not the storage behind it).
    assert 1.8 < double.activations / small.activations < 2.2
    assert small.weights == double.weights
