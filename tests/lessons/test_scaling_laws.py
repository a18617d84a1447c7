"""Scaling-law fits: they recover laws they were generated from, and reject bad runs."""

import dataclasses
import json
import math
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.lessons.scaling_laws import budget, compute_law, fitting, sweeps
from omni_edu.lessons.scaling_laws.budget import ModelSize, SweepConfig
from omni_edu.lessons.scaling_laws.cache import SweepCache, default_cache_path
from omni_edu.lessons.scaling_laws.chinchilla import (
    CHINCHILLA_EPOCH,
    CHINCHILLA_FLOPS,
    CHINCHILLA_PARAMS,
    CHINCHILLA_PUBLISHED,
    FitResult,
    chinchilla_loss,
    compute_optimal_split,
    fit_chinchilla,
    huber_log_objective,
)
from omni_edu.lessons.scaling_laws.compute_law import (
    compare_compute_laws,
    compute_law_loss,
    fit_compute_law,
)
from omni_edu.lessons.scaling_laws.mixed_modal import bimodal_interaction, fit_bimodal
from omni_edu.lessons.scaling_laws.records import compute_points, past_transient
from omni_edu.lessons.scaling_laws.sweeps import decoder_parameters, run_sweep
from omni_edu.lessons.scaling_laws.total_compute import total_compute_test
from omni_edu.modalities import Modality
from omni_edu.train import lr_at

# Hoffmann-like constants; runs span three decades of N and of D.
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _runs(params: dict, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = np.meshgrid(np.logspace(6, 9, 5), np.logspace(8, 11, 5))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    loss = chinchilla_loss(n, d, **params) * np.exp(rng.normal(0.0, noise, n.shape))
    return n, d, loss


# Well-spread runs for the input checks: 25 runs over three decades of N and of D.
GOOD_N, GOOD_D, GOOD_L = _runs(TRUE, noise=0.002, seed=2)


@pytest.fixture(scope="module")
def fitted() -> FitResult:
    n, d, loss = _runs(TRUE, noise=0.002, seed=0)
    return fit_chinchilla(n, d, loss, n_starts=1, n_bootstrap=8, progress=False)


def test_fit_recovers_generating_parameters(fitted):
    for name in CHINCHILLA_PARAMS:
        assert fitted.params[name] == pytest.approx(TRUE[name], rel=0.10), name
    assert fitted.params["E"] == pytest.approx(TRUE["E"], rel=0.03)
    assert fitted.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.02)
    assert fitted.params["beta"] == pytest.approx(TRUE["beta"], abs=0.02)


def test_fit_predicts_noise_free_loss(fitted):
    n = np.array([3e6, 3e8])
    d = np.array([3e9, 3e10])
    truth = chinchilla_loss(n, d, **TRUE)
    np.testing.assert_allclose(fitted.predict(n, d), truth, rtol=0.01)


def test_bootstrap_gives_an_interval_around_each_parameter(fitted):
    assert fitted.bootstrap.shape == (8, 5)
    for name in CHINCHILLA_PARAMS:
        lo, hi = fitted.ci[name]
        assert lo < hi, name
        assert lo <= fitted.params[name] * 1.02 and fitted.params[name] <= hi * 1.02, name
    assert "95% CI" in fitted.summary()


def test_fit_beats_every_start_it_was_given():
    n, d, loss = _runs(TRUE, noise=0.002, seed=1)
    grid = torch.tensor([[3.0, 3.0, 0.0, 0.2, 0.2], [8.0, 4.0, 1.0, 0.5, 0.3]], dtype=torch.float64)
    fit = fit_chinchilla(n, d, loss, grid=grid, n_starts=2, progress=False)
    logs = [torch.tensor(np.log(x)) for x in (n, d, loss)]
    assert fit.loss <= float(huber_log_objective(grid, *logs).min())
    assert fit.params["alpha"] == pytest.approx(TRUE["alpha"], rel=0.1)


def test_huber_objective_matches_a_hand_computation():
    # theta = (a, b, e, alpha, beta) = (log 2, log 3, log 1, 1, 1); N = 2, D = 3:
    # L = 1 + 2/2 + 3/3 = 3, so log L = log 3.
    theta = torch.tensor([math.log(2), math.log(3), 0.0, 1.0, 1.0], dtype=torch.float64)
    log_n = torch.tensor([math.log(2), math.log(2)], dtype=torch.float64)
    log_d = torch.tensor([math.log(3), math.log(3)], dtype=torch.float64)
    # One run off by 0.0005 (quadratic zone), one by 0.01 (linear zone).
    log_l = torch.tensor([math.log(3) - 0.0005, math.log(3) + 0.01], dtype=torch.float64)
    delta = 1e-3
    expected = 0.5 * 0.0005**2 + delta * (0.01 - 0.5 * delta)
    got = huber_log_objective(theta, log_n, log_d, log_l, delta=delta)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # Summed, not averaged: doubling the runs doubles the objective.
    doubled = huber_log_objective(
        theta, log_n.repeat(2), log_d.repeat(2), log_l.repeat(2), delta=delta
    )
    assert float(doubled) == pytest.approx(2 * expected, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    log10_c=st.floats(15, 25),
    log_a=st.floats(0, 8),
    log_b=st.floats(0, 8),
    alpha=st.floats(0.1, 1.0),
    beta=st.floats(0.1, 1.0),
)
def test_optimal_split_spends_all_compute_at_the_isoflop_minimum(
    log10_c, log_a, log_b, alpha, beta
):
    c = 10.0**log10_c
    law = {"E": 1.5, "A": math.exp(log_a), "B": math.exp(log_b), "alpha": alpha, "beta": beta}
    n_opt, d_opt = compute_optimal_split(c, A=law["A"], B=law["B"], alpha=alpha, beta=beta)
    assert 6 * n_opt * d_opt == pytest.approx(c, rel=1e-9)
    best = chinchilla_loss(n_opt, d_opt, **law)
    for factor in (0.8, 1.25):  # move along the isoFLOP curve C = 6 N D
        n = n_opt * factor
        assert chinchilla_loss(n, c / (6 * n), **law) > best


def test_fitted_law_split_is_on_its_own_isoflop_minimum(fitted):
    c = np.array([1e18, 1e21])
    n_opt, d_opt = fitted.compute_optimal(c)
    np.testing.assert_allclose(6 * n_opt * d_opt, c, rtol=1e-9)
    n_grid = n_opt[:, None] * np.logspace(-1, 1, 81)[None, :]
    curve = fitted.predict(n_grid, c[:, None] / (6 * n_grid))
    assert np.all(np.argmin(curve, axis=1) == 40)  # the middle of the grid is N*


@pytest.mark.parametrize(
    ("n", "d", "loss", "match"),
    [
        ([1e6, -1e7, 1e8, 1e6, 1e7, 1e8], [1e9] * 6, [3.0] * 6, "N .*positive"),
        ([1e6] * 6, [1e9, 0, 1e9, 1e9, 1e9, 1e9], [3.0] * 6, "D .*positive"),
        ([1e6] * 6, [1e9] * 6, [3.0, 2.0, 0.0, 1.0, 1.0, 1.0], "L .*positive"),
        ([1e6] * 6, [1e9] * 5, [3.0] * 6, "lengths 6, 5 and 6"),
        ([1e6] * 3, [1e9] * 3, [3.0] * 3, "at least 6 runs"),
        ([1e6] * 6, [1e9] * 6, [3.0] * 5 + [float("nan")], "NaN"),
    ],
)
def test_bad_runs_raise_clear_errors(n, d, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_chinchilla(n, d, loss, progress=False)


def test_optimal_split_rejects_laws_that_do_not_fall():
    with pytest.raises(ValueError, match="alpha"):
        compute_optimal_split(1e20, A=1.0, B=1.0, alpha=-0.1, beta=0.3)
    with pytest.raises(ValueError, match="positive FLOPs"):
        compute_optimal_split(0.0, A=1.0, B=1.0, alpha=0.3, beta=0.3)


# --- mixed-modal -----------------------------------------------------------

LAW_TEXT = FitResult(
    params={"E": 1.8, "A": 300.0, "B": 400.0, "alpha": 0.32, "beta": 0.28}, loss=0.0
)
LAW_IMAGE = FitResult(
    params={"E": 2.5, "A": 150.0, "B": 900.0, "alpha": 0.3, "beta": 0.33}, loss=0.0
)
# Competition at small N (A/N**alpha > C), synergy at large N.
PLANTED = {"C": 0.1, "A": 30.0, "alpha": 0.3, "B": 10.0, "beta": 0.3}


def test_bimodal_fit_recovers_a_planted_interaction():
    n, d = np.meshgrid(np.logspace(6, 9, 5), np.logspace(8, 11, 4))
    n, d = n.ravel(), d.ravel()
    d_i = d_j = d / 2
    truth = (LAW_TEXT.predict(n, d_i) + LAW_IMAGE.predict(n, d_j)) / 2 + bimodal_interaction(
        n, d, **PLANTED
    )
    rng = np.random.default_rng(0)
    loss = truth * np.exp(rng.normal(0.0, 0.001, n.shape))
    fit = fit_bimodal(
        n, d_i, d_j, loss, LAW_TEXT, LAW_IMAGE, n_starts=2, n_bootstrap=4, progress=False
    )

    assert fit.params["C"] == pytest.approx(PLANTED["C"], rel=0.2)
    np.testing.assert_allclose(
        fit.interaction(n, d), bimodal_interaction(n, d, **PLANTED), atol=0.01
    )
    np.testing.assert_allclose(fit.predict(n, d_i, d_j), truth, rtol=0.005)
    sizes = np.array([1e6, 1e9])
    report = fit.mixing_report(sizes, 1e10)
    assert [row["verdict"] for row in report] == ["hurts", "helps"]
    assert fit.bootstrap.shape == (4, 5)


def test_bimodal_fit_checks_token_lengths():
    with pytest.raises(ValueError, match="D_j"):
        fit_bimodal(GOOD_N[:6], GOOD_D[:6], GOOD_D[:5], GOOD_L[:6], LAW_TEXT, LAW_IMAGE)


def test_hand_written_gradients_match_autograd():
    from omni_edu.lessons.scaling_laws.chinchilla import _chinchilla_value_and_grad
    from omni_edu.lessons.scaling_laws.mixed_modal import _bimodal_value_and_grad

    g = torch.Generator().manual_seed(0)
    log_n = torch.empty(9, dtype=torch.float64).uniform_(12, 20, generator=g)
    log_d = torch.empty(9, dtype=torch.float64).uniform_(16, 24, generator=g)
    log_l = torch.empty(9, dtype=torch.float64).uniform_(0.5, 1.5, generator=g)
    theta = torch.tensor([5.0, 6.0, 0.4, 0.35, 0.3], dtype=torch.float64, requires_grad=True)
    huber_log_objective(theta, log_n, log_d, log_l, delta=0.05).backward()
    value, grad = _chinchilla_value_and_grad(log_n, log_d, log_l, 0.05)(theta.detach())
    assert float(value) == pytest.approx(
        float(huber_log_objective(theta.detach(), log_n, log_d, log_l, 0.05))
    )
    torch.testing.assert_close(grad, theta.grad)

    base, loss = log_l.exp(), log_l.exp() * 1.01
    theta = torch.tensor([0.1, 1.0, 0.3, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
    c, a, alpha, b, beta = theta
    pred = base - c + torch.exp(a - alpha * log_n) + torch.exp(b - beta * log_d)
    r = (pred - loss) / loss
    torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=0.01, reduction="sum").backward()
    _, grad = _bimodal_value_and_grad(base, log_n, log_d, loss, 0.01)(theta.detach())
    torch.testing.assert_close(grad, theta.grad)


# --- sweeps ------------------------------------------------------------------

TINY = SweepConfig(
    profile="ci",
    sizes=(ModelSize(16, 1, 2),),
    budgets=(4, 12),
    settings=("text", "text+image"),
    batch_size=8,
    lr=1e-2,
    warmup_steps=2,
    n_eval=16,
    pool=96,
)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "cache.json"
    return path, run_sweep(TINY, cache=path, progress=False)


def test_sweep_records_what_a_fit_needs(tiny_sweep):
    """One record per run: every (setting, size, length) trained with its own schedule."""
    _, records = tiny_sweep
    assert [(r["setting"], r["step"]) for r in records] == [
        ("text", 4),
        ("text", 12),
        ("text+image", 4),
        ("text+image", 12),
    ]
    n = decoder_parameters(TINY.sizes[0])
    for r in records:
        assert r["params_nonembedding"] == n < r["params"]
        assert r["tokens_total"] == sum(r["tokens"].values())
        assert r["flops"] > 6 * n * r["tokens_total"]  # attention comes on top
        assert set(r["loss"]) == set(r["setting"].split("+"))
        assert set(r["flops_by_modality"]) == set(r["setting"].split("+"))
        assert sum(r["flops_by_modality"].values()) == pytest.approx(r["flops"])
    text, mixed = records[1], records[3]
    # A mixed run sees exactly the text tokens of the text-only run, plus its images.
    assert mixed["tokens"]["text"] == text["tokens"]["text"]
    assert mixed["tokens"]["image"] > 0
    # ... and its text tokens alone cost what the text-only run cost (up to the attention
    # term, which counts the mixed batch's mean sequence length)
    assert mixed["flops_by_modality"]["text"] == pytest.approx(text["flops"], rel=0.02)
    assert records[1]["loss"]["text"] < records[0]["loss"]["text"] - 0.3  # it learns


def test_each_run_follows_a_schedule_matched_to_its_length(monkeypatch):
    """A run of k steps trains with TrainConfig(steps=k) and its cosine reaches the floor at
    its own last step (not a long run read part-way)."""
    seen = []
    real = sweeps.Trainer

    def spy(model, loss_fn, batches, config, eval_fn=None):
        seen.append(config)
        return real(model, loss_fn, batches, config, eval_fn=eval_fn)

    monkeypatch.setattr(sweeps, "Trainer", spy)
    config = dataclasses.replace(TINY, settings=("text",))
    data = sweeps.sweep_data(config, False)
    for steps in config.budgets:
        (record,) = sweeps._train_run(data, "text", config.sizes[0], steps)
        assert record["step"] == steps
    assert [c.steps for c in seen] == list(config.budgets)
    for c in seen:
        assert c.min_lr_ratio == config.min_lr_ratio
        assert lr_at(c.steps - 1, c) == pytest.approx(c.lr * c.min_lr_ratio)


def test_a_cached_sweep_loads_without_training(tiny_sweep, monkeypatch):
    path, records = tiny_sweep
    saved = json.loads(path.read_text())
    assert len(saved["runs"]) == 4  # 2 settings x 1 size x 2 lengths

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(sweeps, "_train_run", no_training)
    assert run_sweep(TINY, cache=path, progress=False) == records


def test_past_transient_drops_the_runs_of_the_shortest_length(tiny_sweep):
    _, records = tiny_sweep
    kept = past_transient(records, TINY)
    assert {r["step"] for r in kept} == {12}


def test_sweep_config_rejects_bad_budgets():
    with pytest.raises(ValueError, match="budgets"):
        SweepConfig(profile="ci", sizes=TINY.sizes, budgets=(10, 5))
    with pytest.raises(ValueError, match="budgets"):
        SweepConfig(profile="ci", sizes=TINY.sizes, budgets=(8, 20))  # not past warm-up
    with pytest.raises(ValueError, match="settings"):
        SweepConfig(profile="ci", sizes=TINY.sizes, budgets=(20, 40), settings=("video",))
    with pytest.raises(ValueError, match="min_lr_ratio"):
        SweepConfig(profile="ci", sizes=TINY.sizes, budgets=(20, 40), min_lr_ratio=1.5)


def test_shipped_cache_holds_every_run_lesson_07_needs_in_ci(monkeypatch):
    """The ci notebook loads the project's own sweep instead of training it (and would
    quietly spend minutes retraining, and rewrite the shipped file, if a key drifted)."""

    def no_training(*args, **kwargs):
        raise AssertionError("notebooks/data/scaling_sweeps.json lacks a run of the ci sweep")

    def no_measuring(*args, **kwargs):
        raise AssertionError("notebooks/data/scaling_sweeps.json lacks the ci sweep's baselines")

    monkeypatch.setattr(sweeps, "_train_run", no_training)
    monkeypatch.setattr(sweeps, "measure_baselines", no_measuring)
    config = budget.sweep_config("ci")
    cache = SweepCache(default_cache_path())
    records = run_sweep(config, cache=cache, progress=False)
    assert set(sweeps.modality_baselines(config, cache=cache, progress=False)) == {
        "text",
        "image",
        "audio",
    }
    assert len(records) == len(config.sizes) * len(config.settings) * len(config.budgets)
    for setting in ("text", "image", "audio"):
        (held,) = sweeps.run_heldout(config, setting=setting, cache=cache, progress=False)
        assert held["step"] == budget.heldout_size("ci")[1]


@pytest.mark.slow
def test_shipped_cache_is_what_this_code_trains(tmp_path):
    """The shipped ci numbers are the project's own runs: retraining the smallest model's
    text runs from scratch gives the losses the shipped file holds (within float noise
    across CPUs), so a change to the recipe cannot leave a stale cache behind silently."""
    full = budget.sweep_config("ci")
    one = dataclasses.replace(full, sizes=full.sizes[:1], settings=("text",))
    shipped = run_sweep(one, cache=SweepCache(default_cache_path()), progress=False)
    fresh = run_sweep(one, cache=tmp_path / "fresh.json", progress=False)
    assert [r["step"] for r in fresh] == [r["step"] for r in shipped] == list(full.budgets)
    for new, old in zip(fresh, shipped, strict=True):
        assert new["tokens"] == old["tokens"] and new["params"] == old["params"]
        assert new["loss"]["text"] == pytest.approx(old["loss"]["text"], abs=0.02)
    # The baselines come from the same data, already generated for the run above.
    shipped_baselines = sweeps.modality_baselines(
        one, cache=SweepCache(default_cache_path()), progress=False
    )
    fresh_baselines = sweeps.modality_baselines(one, cache=tmp_path / "fresh.json", progress=False)
    assert fresh_baselines == pytest.approx(shipped_baselines, rel=1e-5)


def test_other_profiles_never_write_the_shipped_cache():
    """Only ci runs live in the shipped file; a learner's cpu or gpu sweep goes to its own,
    git-ignored file (a cpu run once leaked into the shipped file through the shared path)."""
    shipped = default_cache_path("ci")
    assert shipped.name == "scaling_sweeps.json"
    for profile in ("cpu", "gpu"):
        own = default_cache_path(profile)
        assert own != shipped and own.parent == shipped.parent
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(own)], cwd=shipped.parent, capture_output=True
        )
        if ignored.returncode == 128:
            pytest.skip("not a git checkout")
        assert ignored.returncode == 0, f"{own} should be git-ignored"
    shipped_runs = json.loads(shipped.read_text())["runs"].values()
    assert {run["spec"]["profile"] for run in shipped_runs} == {"ci"}


# --- input checks (issue 14.7): each raised nothing, or the wrong error, before --------


@pytest.mark.parametrize("delta", [0.0, -1e-3, float("nan"), float("inf")])
def test_a_delta_that_is_not_positive_is_refused(delta):
    logs = [torch.tensor(np.log(x)) for x in (GOOD_N, GOOD_D, GOOD_L)]
    theta = torch.tensor([5.0, 5.0, 0.5, 0.3, 0.3], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"delta.*positive.*got"):
        huber_log_objective(theta, *logs, delta=delta)
    with pytest.raises(ValueError, match=r"delta.*positive"):
        fit_chinchilla(GOOD_N, GOOD_D, GOOD_L, delta=delta, n_starts=1, progress=False)
    with pytest.raises(ValueError, match=r"delta.*positive"):
        fit_bimodal(GOOD_N, GOOD_D, GOOD_D, GOOD_L, LAW_TEXT, LAW_IMAGE, delta=delta)
    with pytest.raises(ValueError, match=r"delta.*positive"):
        fit_compute_law(6 * GOOD_N * GOOD_D, GOOD_L, delta=delta)


@pytest.mark.parametrize("grid", [torch.empty(0, 5), torch.empty(5), torch.zeros(3, 4)])
def test_an_empty_or_misshapen_grid_is_refused(grid):
    with pytest.raises(ValueError, match=r"grid should hold at least one starting point.*got"):
        fit_chinchilla(GOOD_N, GOOD_D, GOOD_L, grid=grid, progress=False)


@pytest.mark.parametrize("name", ["A", "B", "alpha", "beta"])
def test_optimal_split_refuses_nan_constants(name):
    law = {"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28, name: float("nan")}
    with pytest.raises(ValueError, match=f"finite constants.*'{name}': nan"):
        compute_optimal_split(1e21, **law)


def test_arrays_of_different_shapes_are_refused_even_when_lengths_match():
    # (5, 5) and (25,) flatten to the same length, but which N goes with which D?
    with pytest.raises(ValueError, match=r"one shape; got shapes N .*\(5, 5\).*\(25,\)"):
        fit_chinchilla(GOOD_N.reshape(5, 5), GOOD_D, GOOD_L, progress=False)
    with pytest.raises(ValueError, match=r"D_j .*shaped like N"):
        fit_bimodal(GOOD_N, GOOD_D, GOOD_D.reshape(5, 5), GOOD_L, LAW_TEXT, LAW_IMAGE)
    # Matching shapes of any rank are fine: the runs pair up element by element.
    fit = fit_chinchilla(
        GOOD_N.reshape(5, 5), GOOD_D.reshape(5, 5), GOOD_L.reshape(5, 5), n_starts=1, progress=False
    )
    assert fit.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)


def test_a_fit_that_fails_from_every_start_raises_instead_of_returning_the_start():
    # From this start log L overflows to infinity: L-BFGS has nowhere to go.
    hopeless = torch.tensor([[1e308, 1e308, 1e308, -1e308, -1e308]], dtype=torch.float64)
    with pytest.raises(ValueError, match="every start of the fit failed"):
        fit_chinchilla(GOOD_N, GOOD_D, GOOD_L, grid=hopeless, n_starts=1, progress=False)


@pytest.mark.parametrize(
    ("n", "d", "loss", "match"),
    [
        (np.full(25, 1e7), GOOD_D, GOOD_L, "same model size N .*A and alpha are not identified"),
        (GOOD_N, np.full(25, 1e10), GOOD_L, "same token count D .*B and beta are not identified"),
        (GOOD_N, GOOD_D, np.full(25, 2.5), "loss is 2.5 in every run.*not identified"),
    ],
)
def test_degenerate_runs_warn_that_parameters_are_not_identified(n, d, loss, match):
    with pytest.warns(fitting.NotIdentifiedWarning, match=match):
        fit_chinchilla(n, d, loss, n_starts=1, progress=False)


def test_well_spread_runs_do_not_warn(recwarn):
    fit_chinchilla(GOOD_N, GOOD_D, GOOD_L, n_starts=1, progress=False)
    assert not [w for w in recwarn if issubclass(w.category, fitting.NotIdentifiedWarning)]


# --- which Chinchilla (issue 13.7 b) ------------------------------------------------


def test_hoffmann_rounded_constants_put_chinchilla_far_from_twenty_tokens_per_parameter():
    """Hoffmann et al.'s printed constants give about 93 tokens per parameter at
    Chinchilla's budget; Besiroglu et al.'s refit gives about 20, like Chinchilla itself
    (70B parameters, 1.4T tokens)."""
    ratios = {}
    for name, law in (("hoffmann", CHINCHILLA_PUBLISHED), ("epoch", CHINCHILLA_EPOCH)):
        constants = {k: law[k] for k in ("A", "B", "alpha", "beta")}
        n_opt, d_opt = compute_optimal_split(CHINCHILLA_FLOPS, **constants)
        ratios[name] = float(d_opt / n_opt)
    assert 85 < ratios["hoffmann"] < 100
    assert 15 < ratios["epoch"] < 25


# --- the parts of a prediction (issue 13.7 c) ----------------------------------------


def test_term_shares_split_the_prediction_into_its_three_terms(fitted):
    n, d = 2e8, 4e9
    terms = fitted.terms(n, d)
    assert sum(float(v) for v in terms.values()) == pytest.approx(float(fitted.predict(n, d)))
    shares = fitted.term_shares(n, d)
    assert sum(v[0] for v in shares.values()) == pytest.approx(1.0)
    for share, low, high in shares.values():
        assert low <= share * 1.05 and share <= high * 1.05
    # A law whose N term is negligible: the share says so.
    flat = FitResult(params={**TRUE, "A": 1e-6}, loss=0.0)
    assert flat.term_shares(n, d)["N"][0] < 1e-6
    with pytest.raises(ValueError, match="one point"):
        fitted.term_shares([1e8, 2e8], d)


# --- one law in total compute (issue 13.7 a) -----------------------------------------


def test_compute_law_fit_recovers_a_planted_law():
    c = np.geomspace(1e9, 1e13, 12)
    planted = {"E": 0.3, "A": 2e3, "gamma": 0.35}
    loss = compute_law.compute_law_loss(c, **planted) * np.exp(
        np.random.default_rng(0).normal(0, 0.002, c.shape)
    )
    fit = fit_compute_law(c, loss, n_starts=2)
    assert fit.params["gamma"] == pytest.approx(planted["gamma"], abs=0.03)
    assert fit.params["E"] == pytest.approx(planted["E"], rel=0.05)
    np.testing.assert_allclose(
        fit.predict(c), compute_law.compute_law_loss(c, **planted), rtol=0.01
    )


def _points(laws: dict[str, dict], seed: int, noise: float = 0.01) -> compute_law.ComputePoints:
    """Three runs per modality, four evaluations each, losses from ``laws`` per modality."""
    rng = np.random.default_rng(seed)
    flops, loss, modality, run = [], [], [], []
    for m, law in laws.items():
        for k, start in enumerate(np.geomspace(1e9, 1e11, 3)):
            c = start * np.geomspace(1, 8, 4)
            flops += list(c)
            loss += list(compute_law.compute_law_loss(c, **law) * np.exp(rng.normal(0, noise, 4)))
            modality += [m] * 4
            run += [f"{m} {k}"] * 4
    return compute_law.ComputePoints(np.array(flops), np.array(loss), modality, run, modality)


@pytest.mark.slow
def test_compare_compute_laws_tells_one_law_from_several():
    one = {"E": 0.25, "A": 300.0, "gamma": 0.3}
    shared = _points({m: one for m in ("text", "image", "audio")}, seed=0)
    same = compare_compute_laws(shared, n_bootstrap=200, progress=False)
    assert same.ratio_ci[0] < 1.25  # one law predicts about as well when it is true
    assert same.one_law.params["gamma"] == pytest.approx(0.3, abs=0.05)

    apart = _points(
        {
            "text": one,
            "image": {"E": 0.05, "A": 30.0, "gamma": 0.2},
            "audio": {"E": 0.6, "A": 3e3, "gamma": 0.45},
        },
        seed=0,
    )
    differ = compare_compute_laws(apart, n_bootstrap=200, progress=False)
    assert differ.ratio_ci[0] > 2  # a law per modality predicts held-out runs far better
    assert differ.error_one.shape == differ.error_per.shape == (9,)
    assert "held-out error" in differ.summary()


def test_compare_compute_laws_needs_two_runs_of_each_modality():
    points = _points({"text": {"E": 0.25, "A": 300.0, "gamma": 0.3}}, seed=0)
    points.modality[:4] = ["image"] * 4
    with pytest.raises(ValueError, match="at least 2 runs; 'image' has one"):
        compare_compute_laws(points, progress=False)


def test_compute_points_put_every_modality_on_its_baseline_scale(tiny_sweep):
    _, records = tiny_sweep
    baselines = {"text": 2.0, "image": 0.5, "audio": 1.0}
    points = compute_points(records, baselines)
    # text alone: one point per evaluation; text+image: two.
    assert len(points) == 2 + 2 * 2
    for k, r in enumerate(records[2:]):  # the text+image run
        for j, m in enumerate(("text", "image")):
            at = 2 + 2 * k + j
            assert points.modality[at] == m and points.flops[at] == r["flops"]
            assert points.loss[at] == pytest.approx(r["loss"][m] / baselines[m])
    with pytest.raises(ValueError, match="no baseline for modality 'image'"):
        compute_points(records, {"text": 2.0})


def test_modality_baselines_are_the_best_constant_predictions(tiny_sweep, monkeypatch):
    path, _ = tiny_sweep
    baselines = sweeps.modality_baselines(TINY, cache=path, progress=False)
    data = sweeps.sweep_data(TINY, False)
    batches = data.val_batches("text")
    targets = torch.cat([b.text_targets[b.loss_mask(Modality.TEXT)] for b in batches])
    vocab = int(targets.max()) + 1
    freq = torch.bincount(targets, minlength=vocab).double() / len(targets)

    def constant_ce(p: torch.Tensor) -> float:
        logits = p.clamp_min(1e-12).log().expand(len(targets), vocab)
        return float(torch.nn.functional.cross_entropy(logits, targets))

    assert baselines["text"] == pytest.approx(constant_ce(freq), rel=1e-6)
    assert constant_ce(torch.full((vocab,), 1.0 / vocab)) > baselines["text"]  # uniform: worse
    for m in ("image", "audio"):
        batches = data.val_batches(m)
        x = torch.cat(
            [getattr(b, f"{m}_targets")[b.loss_mask(Modality[m.upper()])] for b in batches]
        )
        assert baselines[m] == pytest.approx(float(((x - x.mean(0)) ** 2).mean()), rel=1e-6)
        assert baselines[m] < float((x**2).mean()) + 1e-9  # the mean beats predicting zero
        assert 0.5 < baselines[m] < 2.0  # standardised features: about unit variance

    def no_measuring(*args, **kwargs):
        raise AssertionError("cached baselines were measured again")

    monkeypatch.setattr(sweeps, "measure_baselines", no_measuring)
    assert sweeps.modality_baselines(TINY, cache=path, progress=False) == baselines


# --- profiles: the dry run (gpu shapes, tiny budgets, its own cache) --------------------


def test_ci_sweep_is_the_table_and_the_dry_run_cuts_every_budget():
    assert budget.sweep_config("ci") == budget.BUDGET["ci"].sweep  # cache keys stay put
    dry, gpu = budget.sweep_config("gpu-dry"), budget.sweep_config("gpu")
    assert dry.profile == "gpu-dry" and gpu.profile == "gpu"
    assert dry.sizes == gpu.sizes and dry.settings == gpu.settings  # gpu shapes
    assert len(dry.budgets) == 4 and max(dry.budgets) <= 5
    assert dry.batch_size <= 4 and dry.n_eval <= 8 and dry.pool <= 64
    assert budget.bootstrap_resamples("gpu-dry") <= 2
    # Enough evaluations past the transient for a five-parameter fit per modality.
    kept = [s for s in dry.budgets if s >= dry.budgets[1]]
    assert len(kept) * len(dry.sizes) >= 6
    size, steps = budget.heldout_size("gpu-dry")
    assert size == budget.heldout_size("gpu")[0] and steps == 2 * max(dry.budgets)
    ci = budget.BUDGET["ci"]
    assert budget.heldout_size("ci") == (ci.heldout, ci.heldout_steps)
    assert budget.bootstrap_resamples("ci") == ci.n_bootstrap


def test_the_dry_run_caches_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    path = default_cache_path("gpu-dry")
    assert path.is_relative_to(tmp_path) and "gpu-dry" in str(path)
    assert path != default_cache_path("ci") and path != default_cache_path("gpu")


# --- identification: a parameter the refits disagree on is not quoted ---------------------


def test_a_well_spread_fit_is_identified_and_quoted(fitted):
    assert fitted.identified and fitted.unidentified() == {}
    quoted = fitted.quoted("alpha")
    assert quoted.startswith(f"{fitted.params['alpha']:.3g} [")
    assert "not identified" not in fitted.summary()


def test_refits_that_disagree_mark_parameters_not_identified(fitted):
    wild = dataclasses.replace(fitted)
    wild.keep_bootstrap(fitted.bootstrap.copy())
    wild.ci = dict(fitted.ci)
    wild.ci["A"] = (1e-43, 1e304)  # lesson 07's mixed fit once had intervals like this
    wild.ci["beta"] = (0.1, 3.0)
    found = wild.unidentified()
    assert set(found) == {"A", "beta"}
    assert "347 orders of magnitude" in found["A"]
    assert not wild.identified
    assert wild.quoted("A") == "not identified"
    summary = wild.summary()
    assert "A = not identified" in summary and "beta = not identified" in summary
    assert f"{fitted.params['A']:10.4g}" not in summary  # the value itself is never printed


def test_a_mixed_fit_on_too_few_runs_is_not_identified():
    """The interaction of a mixed fit whose refits wander is reported as not identified."""
    n, d, loss = _runs(TRUE, noise=0.002, seed=3)
    law = fit_chinchilla(n, d, loss, n_starts=1, progress=False)
    rng = np.random.default_rng(0)
    d_i, d_j = d, d * 1.3
    mixed_loss = (
        (law.predict(n, d_i) + law.predict(n, d_j)) / 2 * np.exp(rng.normal(0, 0.02, n.shape))
    )
    fit = fit_bimodal(n, d_i, d_j, mixed_loss, law, law, n_bootstrap=12, progress=False)
    assert not fit.identified  # pure noise around zero interaction: A and alpha wander
    assert "not identified" in fit.summary()


# --- total compute or own compute: the held-out test on the mixed runs --------------------


def _compute_records(truth: str, seed: int) -> list[dict]:
    """Synthetic sweep records: single-modality runs on a law L_m(C); mixed runs whose loss
    on m follows that law at their total compute (truth="total") or at the compute of m's
    own tokens (truth="own"), with 2% noise."""
    laws = {
        "text": {"E": 0.8, "A": 400.0, "gamma": 0.25},
        "image": {"E": 0.2, "A": 60.0, "gamma": 0.2},
    }
    rng = np.random.default_rng(seed)
    records = []
    for k, c in enumerate(np.geomspace(1e8, 1e11, 12)):
        for m, law in laws.items():
            loss = compute_law_loss(c, **law) * np.exp(rng.normal(0, 0.02))
            records.append(
                {
                    "setting": m,
                    "d_model": 16,
                    "n_layers": 1,
                    "step": k,
                    "flops": c,
                    "flops_by_modality": {m: c},
                    "loss": {m: float(loss)},
                }
            )
        own = {"text": c, "image": 1.3 * c}
        total = sum(own.values())
        losses = {
            m: float(compute_law_loss(total if truth == "total" else own[m], **law))
            * np.exp(rng.normal(0, 0.02))
            for m, law in laws.items()
        }
        records.append(
            {
                "setting": "text+image",
                "d_model": 16,
                "n_layers": 1,
                "step": k,
                "flops": total,
                "flops_by_modality": own,
                "loss": losses,
            }
        )
    return records


@pytest.mark.parametrize("truth", ["own", "total"])
def test_the_total_compute_test_finds_which_compute_the_runs_follow(truth):
    test = total_compute_test(_compute_records(truth, seed=0), n_bootstrap=60, progress=False)
    low, high = test.difference_ci
    if truth == "own":
        assert low > 0  # own compute predicts the mixed runs better
        assert test.bias_total < -0.05  # total compute promises too low a loss
    else:
        assert high < 0
        assert abs(test.bias_total) < 0.03
    assert len(test.run) == 24 and set(test.by_modality()) == {"text", "image"}
    assert test.ratio == pytest.approx(test.error_total / test.error_own)
    assert "with C_total" in test.summary()


def test_the_total_compute_test_needs_mixed_runs_and_enough_single_runs():
    records = _compute_records("own", seed=1)
    with pytest.raises(ValueError, match="needs mixed runs"):
        total_compute_test([r for r in records if "+" not in r["setting"]], progress=False)
    few = [r for r in records if r["setting"] != "image"] + [
        r for r in records if r["setting"] == "image"
    ][:3]
    with pytest.raises(ValueError, match="'image' needs at least 4"):
        total_compute_test(few, progress=False)


def test_the_cache_file_holds_one_run_per_line_and_reads_back(tiny_sweep):
    path, _ = tiny_sweep
    lines = path.read_text().splitlines()
    copy = SweepCache(path)
    assert copy.runs == json.loads(path.read_text())["runs"]
    for key in copy.runs:  # each run on a line of its own (a regenerated sweep diffs by run)
        assert sum(line.lstrip().startswith(f'"{key}"') for line in lines) == 1


def test_the_mixing_and_total_compute_figures_draw(tiny_sweep):
    from omni_edu.lessons.scaling_laws.plots import plot_mixing, plot_total_compute

    _, records = tiny_sweep
    fig = plot_mixing(records)
    assert [ax.get_title() for ax in fig.axes] == ["text in text+image", "image in text+image"]
    synthetic = _compute_records("own", seed=2)
    test = total_compute_test(synthetic, n_bootstrap=5, progress=False)
    fig = plot_total_compute(test, synthetic)
    assert len(fig.axes) == 2 and all(ax.get_xlabel() for ax in fig.axes)
