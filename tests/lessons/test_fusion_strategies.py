"""Lesson 05's tasks and measurements: budgets match, freezing trains only what it should,
FLOPs and memory are counted right, a short run learns the loose task, the binding task's
sound names an object but not its colour, the blind baselines measure what one modality
gives, and the rules turn numbers into verdicts (with the design's power)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from omni_edu.data import COLOUR, POSITION, SHAPE, SIZE, allowed_pairs
from omni_edu.lessons.fusion_strategies.costs import (
    FREEZE_RECIPES,
    count_flops,
    frozen_memory,
    training_memory,
)
from omni_edu.lessons.fusion_strategies.experiment import (
    GATES_OPEN,
    FusionResults,
    experiment_settings,
    fusion_setups,
    seed_margin,
    standard_error,
)
from omni_edu.lessons.fusion_strategies.plots import plot_task_examples
from omni_edu.lessons.fusion_strategies.tasks import (
    HEARD_PITCH,
    blind_baselines,
    draw_scenes,
    make_fusion_data,
    scene_generator,
    task_config,
)
from omni_edu.lessons.fusion_strategies.training import accuracy, train_variant
from omni_edu.lessons.fusion_strategies.verdict import (
    NO_CLEAR_WINNER,
    compute_check,
    control_note,
    gate_note,
    measured_choice,
    memory_verdict,
    reasoning_check,
)
from omni_edu.model.fusion import (
    VARIANTS,
    FusionBatch,
    FusionConfig,
    build_fusion_model,
)
from omni_edu.profiles import get_profile
from omni_edu.report import NOT_TESTED, claim_check
from tests.lessons.test_fusion_strategies_checks import LayerWritten

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


def test_every_example_puts_markers_between_sound_and_picture() -> None:
    data = make_fusion_data("binding", 3, "train", seed=0, profile=get_profile("ci"))
    positions = torch.cat([data.text_positions, data.image_positions, data.audio_positions], 1)
    assert torch.equal(positions.sort(dim=1).values[0], torch.arange(data.seq_len))
    between = (data.text_positions > data.audio_positions.max()) & (
        data.text_positions < data.image_positions.min()
    )
    assert between.sum(dim=1).tolist() == [2, 2, 2]  # <eoa> <boi>
    # The question and <answer> come after the picture, its most recent media item.
    assert (data.text_positions[:, -1] > data.image_positions.max()).all()


def test_the_binding_sound_names_an_object_of_the_picture_but_not_its_colour() -> None:
    scenes = draw_scenes("binding", 500, "train", scene_generator(0, "train"))
    objects, heard = scenes.attributes, scenes.heard[:, 0]
    two = scenes.mask[:, 1]
    # Two colours to choose from, in two cells, where there are two objects.
    assert (objects[two, 0, COLOUR] != objects[two, 1, COLOUR]).all()
    assert (objects[two, 0, POSITION] != objects[two, 1, POSITION]).all()
    assert (heard[:, COLOUR] == HEARD_PITCH).all()  # one pitch for every sound
    # The heard object is one of the two (same shape, size and cell), and the answer its colour.
    same = (objects[..., [SHAPE, SIZE, POSITION]] == heard[:, None, [SHAPE, SIZE, POSITION]]).all(
        -1
    )
    assert same.any(1).all()
    which = same.float().argmax(1)
    assert torch.equal(scenes.labels, objects[torch.arange(500), which, COLOUR])
    # Either object, half the time each, where the picture shows two; a training scene with
    # one object (a share single_share of them) hears that one.
    assert 0.4 < which[two].float().mean() < 0.6
    assert (which[~two] == 0).all() and 0.3 < (~two).float().mean() < 0.7
    # Pairs stay inside the split: no held-out shape-colour pair in training.
    allowed = {tuple(p) for p in allowed_pairs("train").tolist()}
    assert {tuple(o) for o in objects[scenes.mask][:, :2].tolist()} <= allowed


def test_blind_baselines_measure_what_one_modality_gives() -> None:
    binding = blind_baselines("binding", 2048, 1024)
    assert binding["picture only"] == pytest.approx(0.5, abs=0.05)  # one of two colours
    assert binding["sound only"] < 0.3 and binding["majority"] < 0.3  # the sound has no pitch
    colour = blind_baselines("colour", 2048, 256)
    assert colour["picture only"] == colour["sound only"] == 1.0  # either modality suffices


def test_experiment_settings_follow_the_budget() -> None:
    dry = experiment_settings(get_profile("gpu-dry"))
    assert max(dry["steps"].values()) <= 2 and dry["seeds"] <= 1
    assert dry["batch_size"] <= 4 and dry["n_eval"] <= 16  # gpu shapes are slow on a CPU
    assert dry["n_train"] >= dry["batch_size"]
    ci = experiment_settings(get_profile("ci"))
    assert ci["seeds"] >= 3  # mean and spread over at least three seeds
    assert set(ci["steps"]) == {"binding", "colour"}
    assert ci["steps"]["binding"] > ci["steps"]["colour"]


def test_standard_error_adds_the_seeds_spread_to_the_test_noise() -> None:
    assert standard_error([0.5, 0.5, 0.5], 400) == pytest.approx(0.025)  # test noise alone
    assert standard_error([0.4, 0.5, 0.6], 400) == pytest.approx((0.01 / 3 + 0.25 / 400) ** 0.5)
    assert seed_margin(0.5, 400) == pytest.approx(0.05)


# --------------------------------------------------------------------------- the verdicts

ARMS = ("early", "late", "cross", "early, 2 blocks")


def fake_results(*accuracies: list[float], constant: tuple[str, ...] = ()) -> FusionResults:
    """Results of the binding task: the final accuracies (one per seed) of early, late,
    cross-attention fusion and the control, in that order."""
    finals = dict(zip(ARMS, accuracies, strict=True))
    runs = [
        {"task": "binding", "setup": s, "seed": i, "accuracy": a, "constant": s in constant}
        for s, accs in finals.items()
        for i, a in enumerate(accs)
    ]
    rows = [
        {"task": "binding", "setup": s, "MFLOPs/example": f, "latency (ms/example)": f / 10}
        for s, f in zip(finals, (9.0, 6.0, 3.0, 5.0), strict=False)
    ]
    baselines = {"binding": {"majority": 0.18, "sound only": 0.2, "picture only": 0.5}}
    return FusionResults(runs, rows, {}, {"n_eval": 512, "seeds": 3}, baselines)


def test_early_fusion_that_leaves_the_baseline_and_beats_both_is_supported() -> None:
    results = fake_results([0.9, 0.85, 0.95], [0.5] * 3, [0.45] * 3, [0.9] * 3)
    check = reasoning_check(results)
    assert check.verdict == "supported" and check.power.reasons == []
    assert check.seeds_agreeing == "supported in 3 of 3 runs"
    assert measured_choice(check) == "early"
    assert "speaks against the depth explanation" in control_note(check, "early, 2 blocks", 2)


def test_the_control_note_follows_the_arms_that_left_the_baseline() -> None:
    at_baseline = reasoning_check(fake_results(*[[0.5] * 3] * 4))
    assert control_note(at_baseline, "early, 2 blocks", 2).startswith("No early-fusion model")
    shallow_fails = reasoning_check(fake_results([0.9] * 3, [0.5] * 3, [0.5] * 3, [0.5] * 3))
    assert "does not separate" in control_note(shallow_fails, "early, 2 blocks", 2)
    all_learn = reasoning_check(fake_results(*[[0.9] * 3] * 4))
    assert "Both late-fusion arms left" in control_note(all_learn, "early, 2 blocks", 2)


def with_gates_open(results: FusionResults, binding: list[float], colour=None) -> FusionResults:
    """``results`` plus the open-gates control (and, with ``colour``, the loose task's
    closed and open cross-attention arms: ``(closed, open)`` accuracies per seed)."""
    added = [(("binding", GATES_OPEN), binding)]
    if colour is not None:
        added += [(("colour", "cross"), colour[0]), (("colour", GATES_OPEN), colour[1])]
        results.baselines["colour"] = {"majority": 0.2, "sound only": 1.0, "picture only": 1.0}
    for (task, setup), accs in added:
        results.runs += [
            {"task": task, "setup": setup, "seed": i, "accuracy": a, "constant": False}
            for i, a in enumerate(accs)
        ]
    return results


def test_the_gate_note_says_whether_the_closed_gates_explain_cross_attention() -> None:
    closed_only = fake_results([0.9] * 3, [0.8] * 3, [0.5] * 3, [0.9] * 3)
    assert gate_note(closed_only, 1) == ""  # no open-gates control: nothing to say
    explained = with_gates_open(
        fake_results([0.9] * 3, [0.8] * 3, [0.45] * 3, [0.9] * 3), [0.85] * 3
    )
    note = gate_note(explained, 2)
    assert "binding task 0.45 closed, 0.85 open" in note
    assert "The closed gates, not where the media meet, kept it at the baseline" in note
    slower = with_gates_open(
        fake_results([0.9] * 3, [0.8] * 3, [0.3] * 3, [0.9] * 3),
        [0.45, 0.5, 0.42],
        colour=([0.2, 0.55, 0.37], [1.0, 0.9, 0.8]),
    )
    note = gate_note(slower, 1)
    assert "colour task 0.37 closed, 0.90 open" in note
    assert "even open it did not leave the binding task's baseline: with 1 gated layer," in note
    same = with_gates_open(fake_results([0.9] * 3, [0.8] * 3, [0.8] * 3, [0.9] * 3), [0.8] * 3)
    assert "Both left the baseline" in gate_note(same, 2)
    nothing = with_gates_open(fake_results([0.9] * 3, [0.8] * 3, [0.3] * 3, [0.9] * 3), [0.3] * 3)
    assert gate_note(nothing, 2).endswith("Opening the gates changed nothing beyond noise.")


def test_a_cross_attention_model_can_start_with_its_gates_open() -> None:
    config = task_config("binding", get_profile("ci"))
    closed = build_fusion_model("cross", config)
    opened = build_fusion_model("cross", replace(config, gate_init=1.0))
    gates = [(n, p) for n, p in opened.named_parameters() if n.endswith("_gate")]
    assert gates and all(torch.all(p == 1.0) for _, p in gates)
    assert all(torch.all(p == 0.0) for n, p in closed.named_parameters() if n.endswith("_gate"))
    assert GATES_OPEN in fusion_setups(config)  # the lesson trains the control


def test_beating_one_late_fusion_arm_is_partly_supported() -> None:
    results = fake_results([0.8] * 3, [0.5] * 3, [0.8] * 3, [0.7] * 3)
    check = reasoning_check(results)
    assert check.verdict.startswith("partly supported: early fusion beats late but not cross")
    assert measured_choice(check) == NO_CLEAR_WINNER


def test_arms_at_the_baseline_are_not_tested_whatever_the_numbers_say() -> None:
    results = fake_results([0.52, 0.5, 0.51], [0.49] * 3, [0.5] * 3, [0.5] * 3)
    check = reasoning_check(results)
    assert check.power.near_baseline
    box = claim_check(
        "05", "claim", "001", "experiment", f"{check.means}", check.verdict, power=check.power
    )
    assert box.verdict == NOT_TESTED


def test_an_arm_that_leaves_the_baseline_by_its_own_noise_makes_the_design_testable() -> None:
    # The cpu run's shape: early fusion clear of the baseline in every seed (tight), late
    # fusion noisy. A noisier arm's interval must not hide early fusion's exit.
    results = fake_results([0.58, 0.59, 0.60], [0.50, 0.66, 0.58], [0.5] * 3, [0.55] * 3)
    check = reasoning_check(results)
    assert check.left["early"] and not check.power.near_baseline
    assert max(check.detectable.values()) > check.means["early"] - check.baseline


def test_an_arm_whose_every_seed_answers_one_class_is_named() -> None:
    finals = ([0.9] * 3, [0.5] * 3, [0.18] * 3, [0.9] * 3)
    check = reasoning_check(fake_results(*finals, constant=("cross",)))
    assert check.power.constant_arms == ("cross",)
    assert any("predicts one class" in r for r in check.power.reasons)


def test_a_lead_within_the_noise_of_the_seeds_is_not_a_lead() -> None:
    noisy = [0.95, 0.5, 0.5]  # one lucky seed: mean 0.65, a wide interval
    results = fake_results(noisy, [0.5] * 3, [0.5] * 3, [0.5] * 3)
    check = reasoning_check(results)
    assert not check.left["early"] and check.verdict.startswith("not supported")
    assert check.seeds_agreeing.startswith("not supported")


def test_the_compute_half_counts_flops_only() -> None:
    results = fake_results(*[[0.5] * 3] * 4)
    compute = compute_check(results)
    assert compute.most_flops and compute.verdict == "supported" and compute.slowest
    assert compute.power.reasons == []


def test_memory_verdict_keys_on_every_batch_size() -> None:
    assert memory_verdict([45.0, 55.0]) == "supported"
    assert memory_verdict([65.0, 70.0]).startswith("not supported as stated")
    assert memory_verdict([20.0, 30.0]).startswith("not supported: the recipe cuts less")
    assert memory_verdict([35.0, 45.0]).startswith("partly supported")


# --------------------------------------------------------------------------- the learner's layer


def test_cross_attention_fusion_trains_the_layer_it_is_given() -> None:
    torch.manual_seed(0)
    reference = build_fusion_model("cross", small_config())
    torch.manual_seed(0)
    written = build_fusion_model("cross", small_config(), cross_layer=LayerWritten)
    assert all(isinstance(layer, LayerWritten) for layer in written.xattn)
    written.load_state_dict(reference.state_dict())
    open_gates(reference)
    open_gates(written)
    batch = random_batch(["text"] + ["audio"] * 3 + ["text"] + ["image"] * 4 + ["text"] * 2)
    assert torch.allclose(reference(batch), written(batch), atol=1e-5)
    with pytest.raises(ValueError, match="cross-attention fusion"):
        build_fusion_model("late", small_config(), cross_layer=LayerWritten)


def test_the_task_figure_shows_each_example() -> None:
    fig = plot_task_examples("binding", n=3, profile=get_profile("ci"))
    assert len(fig.axes) == 3
    assert all(ax.get_title().startswith("sound: ") for ax in fig.axes)


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
