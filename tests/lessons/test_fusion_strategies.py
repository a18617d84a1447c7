"""Lesson 05's tasks and measurements: budgets match, freezing trains only what it should,
FLOPs and memory are counted right, and a short run learns the loose task."""

from __future__ import annotations

import pytest
import torch

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
    VARIANTS,
    FusionBatch,
    FusionConfig,
    build_fusion_model,
)
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


@pytest.mark.slow
def test_short_training_run_learns_the_loose_task() -> None:
    ci = get_profile("ci")
    train = make_fusion_data("colour", 512, "train", seed=0, profile=ci)
    test = make_fusion_data("colour", 128, "test", seed=0, profile=ci)
    torch.manual_seed(0)
    model = build_fusion_model("late", task_config("colour", profile=ci))
    history = train_variant(model, train, test, steps=40, evals=1, batch_size=16, profile=ci)
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
