"""Fusion variants (omni_edu/model/fusion.py): gated layers start as the identity, masks hide
later media (and, by Flamingo's rule, all but the most recent item), every variant is causal
for text and built from the course's blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import fusion_layouts

from omni_edu.model.fusion import (
    MEDIA,
    VARIANTS,
    CrossAttention,
    FusionBatch,
    FusionConfig,
    GatedCrossAttention,
    build_fusion_model,
    media_visibility_mask,
)
from omni_edu.model.transformer import Block, Decoder, DecoderConfig

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


# text(0) | image A (1, 2) | text(3) | image B (4, 5) | text(6): two media items.
TEXT, MEDIA_POS = torch.tensor([[0, 3, 6]]), torch.tensor([[1, 2, 4, 5]])


ITEMS = torch.tensor([[0, 0, 1, 1]])


def test_visibility_all_shows_every_earlier_media_token() -> None:
    expected = torch.tensor([[[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]], dtype=torch.bool)
    assert torch.equal(media_visibility_mask(TEXT, MEDIA_POS, rule="all"), expected)


def test_visibility_recent_shows_only_the_latest_item() -> None:
    # Flamingo: the last text token reads image B only, not image A before it.
    expected = torch.tensor([[[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]], dtype=torch.bool)
    assert torch.equal(media_visibility_mask(TEXT, MEDIA_POS, ITEMS), expected)
    # Items are what counts, not runs of positions: two items side by side, no text between.
    adjacent = media_visibility_mask(
        torch.tensor([[9]]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1]])
    )
    assert adjacent.tolist() == [[[False, False, True, True]]]


def test_visibility_mask_hides_padding() -> None:
    text, media = torch.tensor([[5, 9]]), torch.tensor([[1, -1, 7]])
    assert media_visibility_mask(text, media, rule="all").tolist() == [
        [[True, False, False], [True, False, True]]
    ]
    # A padding slot placed "last" (items 0, 1, 1) must not make item 1 the recent one.
    recent = media_visibility_mask(text, media, torch.tensor([[0, 1, 1]]))
    assert recent.tolist() == [[[True, False, False], [False, False, True]]]


def test_visibility_recent_needs_items() -> None:
    with pytest.raises(ValueError, match="media_items"):
        media_visibility_mask(TEXT, MEDIA_POS)
    with pytest.raises(ValueError, match="rule"):
        media_visibility_mask(TEXT, MEDIA_POS, ITEMS, rule="latest")


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
    visible = media_visibility_mask(
        torch.tensor([[0, 5, 9]]), torch.tensor([[1, 2, 3, 4]]), rule="all"
    )
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


@pytest.mark.parametrize("kind", VARIANTS)
@settings(max_examples=4, deadline=None)
@given(layout=fusion_layouts, cut=st.integers(0, 9))
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


def test_frozen_decoder_leaves_late_fusion_its_connectors() -> None:
    model = build_fusion_model("late", small_config(frozen_encoders=MEDIA, frozen_decoder=True))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"connector", "head"}  # LLaVA's first stage


def test_freezing_is_a_late_and_cross_option() -> None:
    for frozen in ({"frozen_encoders": ("image",)}, {"frozen_decoder": True}):
        with pytest.raises(ValueError, match="early fusion"):
            build_fusion_model("early", small_config(**frozen))
    with pytest.raises(ValueError, match="frozen_encoders"):
        small_config(frozen_encoders=("text",))
    with pytest.raises(ValueError, match="visibility"):
        small_config(visibility="latest")


def test_flamingo_rule_hides_an_image_that_no_text_follows() -> None:
    # text | image | audio | text text: with Flamingo's rule the text after the sound reads
    # only the sound, and no text token sits between picture and sound to carry the
    # picture on. With every earlier item visible, the picture reaches the later text.
    layout = ["text"] + ["image"] * 4 + ["audio"] * 3 + ["text", "text"]
    before, other = random_batch(layout, seed=1), random_batch(layout, seed=2)
    changed = replace(before, image=other.image)
    for visibility, image_matters in (("recent", False), ("all", True)):
        torch.manual_seed(0)
        model = build_fusion_model("cross", small_config(visibility=visibility)).eval()
        open_gates(model)
        with torch.no_grad():
            same = torch.allclose(model.text_hidden(before), model.text_hidden(changed))
        assert same != image_matters, visibility
    # With a text token between them, the picture gets through: read by <eoi>, passed on.
    torch.manual_seed(0)
    model = build_fusion_model("cross", small_config(visibility="recent")).eval()
    open_gates(model)
    layout = ["text"] + ["image"] * 4 + ["text"] + ["audio"] * 3 + ["text"]
    before, other = random_batch(layout, seed=1), random_batch(layout, seed=2)
    with torch.no_grad():
        h1 = model.text_hidden(before)
        h2 = model.text_hidden(replace(before, image=other.image))
    assert not torch.allclose(h1[:, -1], h2[:, -1])


def test_variants_are_built_from_the_course_blocks() -> None:
    """Every layer is the decoder's, the projector's or torch's, except the two new ones."""
    new_layers = {"CrossAttention", "GatedCrossAttention", "MediaEncoders"}
    for kind in VARIANTS:
        model = build_fusion_model(kind, small_config())
        for module in model.modules():
            where = type(module).__module__
            shared = where in ("omni_edu.model.transformer", "omni_edu.model.projector")
            if module is model or where.startswith("torch.nn") or shared:
                continue
            assert type(module).__name__ in new_layers, (kind, type(module))
        blocks = [m for m in model.modules() if isinstance(m, Block)]
        assert blocks, kind
        decoders = [m for m in model.modules() if isinstance(m, Decoder)]
        # Every block sits in a Decoder: no variant runs blocks outside the shared stack.
        assert sum(len(d.blocks) for d in decoders) == len(blocks), kind


def test_decoder_layers_sets_the_mixing_depth() -> None:
    config = small_config(depth=8)
    assert len(build_fusion_model("early", config).decoder.blocks) == 8
    assert len(build_fusion_model("late", config).decoder.blocks) == 4
    control = small_config(depth=8, decoder_layers=config.late_decoder_layers)
    assert len(build_fusion_model("early", control).decoder.blocks) == 4
    deep_late = build_fusion_model("late", small_config(depth=8, decoder_layers=8))
    assert len(deep_late.decoder.blocks) == 8
    assert len(deep_late.encoders.image.blocks) == 2  # the encoders keep their share
    with pytest.raises(ValueError, match="decoder_layers"):
        small_config(decoder_layers=0)


def test_batch_rejects_mismatched_positions() -> None:
    good = random_batch(["text", "image", "text"])
    with pytest.raises(ValueError, match="image_positions"):
        replace(good, image_positions=good.image_positions[:, :0])
