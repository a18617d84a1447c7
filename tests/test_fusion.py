"""Fusion variants: gated layers start as the identity, masks hide later media (and, by
Flamingo's rule, all but the most recent item), every variant is causal for text and built
from the course's blocks, budgets match, freezing trains only what it should, and a short
run learns the loose task."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.lessons.fusion_strategies.costs import (
    FREEZE_RECIPES,
    count_flops,
    frozen_memory,
    training_memory,
)
from omni_edu.lessons.fusion_strategies.experiment import chance_margin, experiment_settings
from omni_edu.lessons.fusion_strategies.tasks import make_fusion_data, task_config
from omni_edu.lessons.fusion_strategies.training import accuracy, train_variant
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


def test_the_chapters_recipe_trains_only_the_gated_layers_and_the_head() -> None:
    torch.manual_seed(0)
    batch = random_batch(["text"] + ["image"] * 6 + ["text"] + ["audio"] * 3 + ["text"], batch=4)
    full = build_fusion_model("cross", small_config())
    recipe = build_fusion_model(
        "cross", small_config(frozen_encoders=("image", "audio"), frozen_decoder=True)
    )
    recipe.load_state_dict(full.state_dict())
    open_gates(full)
    open_gates(recipe)
    trainable = {n.split(".")[0] for n, p in recipe.named_parameters() if p.requires_grad}
    assert trainable == {"xattn", "head"}
    # Freezing changes training, not the function.
    with torch.no_grad():
        assert torch.allclose(full(batch), recipe(batch))
    recipe(batch).sum().backward()
    assert all(p.grad is None for p in recipe.encoders.parameters())
    assert all(p.grad is None for p in recipe.decoder.parameters())
    assert all(p.grad is not None for p in recipe.xattn.parameters())
    m_full, m_recipe = training_memory(full, batch), training_memory(recipe, batch)
    assert m_recipe.weights == m_full.weights
    assert m_recipe.gradients < m_full.gradients / 2
    assert m_recipe.activations < m_full.activations


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


def test_every_example_puts_markers_between_picture_and_sound() -> None:
    data = make_fusion_data("match", 3, "train", seed=0, profile=get_profile("ci"))
    positions = torch.cat([data.text_positions, data.image_positions, data.audio_positions], 1)
    assert torch.equal(positions.sort(dim=1).values[0], torch.arange(data.seq_len))
    between = (data.text_positions > data.image_positions.max()) & (
        data.text_positions < data.audio_positions.min()
    )
    assert between.sum(dim=1).tolist() == [2, 2, 2]  # <eoi> <boa>


def test_experiment_settings_follow_the_budget() -> None:
    dry = experiment_settings(get_profile("gpu-dry"))
    assert max(dry["steps"].values()) <= 2 and dry["seeds"] <= 1
    assert dry["batch_size"] <= 4 and dry["n_eval"] <= 16  # gpu shapes are slow on a CPU
    assert dry["n_train"] >= dry["batch_size"]
    ci = experiment_settings(get_profile("ci"))
    assert ci["seeds"] >= 3  # mean and spread over at least three seeds


def test_chance_margin_is_three_standard_errors() -> None:
    assert chance_margin(2, 256) == pytest.approx(3 * 0.5 / 16)


def test_frozen_memory_compares_each_recipe_with_its_own_model() -> None:
    rows = frozen_memory((1, 4), profile=get_profile("ci"))
    assert {r["recipe"] for r in rows} == set(FREEZE_RECIPES)
    for r in rows:
        assert 0 < r["frozen (MiB)"] < r["end to end (MiB)"]
        assert r["saving (%)"] == pytest.approx(
            100 * (1 - r["frozen (MiB)"] / r["end to end (MiB)"]), abs=0.2
        )
    # Activations grow with the batch, so the saving moves with it.
    recipe = [r for r in rows if r["recipe"].startswith("cross")]
    assert recipe[1]["activations (MiB)"] > recipe[0]["activations (MiB)"]
