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

from omni_edu import scaling
from omni_edu.scaling import (
    CHINCHILLA_PARAMS,
    FitResult,
    ModelSize,
    SweepConfig,
    bimodal_interaction,
    chinchilla_loss,
    compute_optimal_split,
    decoder_parameters,
    fit_bimodal,
    fit_chinchilla,
    huber_log_objective,
    past_transient,
    run_sweep,
)

# Hoffmann-like constants; runs span three decades of N and of D.
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _runs(params: dict, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = np.meshgrid(np.logspace(6, 9, 5), np.logspace(8, 11, 5))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    loss = chinchilla_loss(n, d, **params) * np.exp(rng.normal(0.0, noise, n.shape))
    return n, d, loss


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
        fit_bimodal([1e6] * 6, [1e9] * 6, [1e9] * 5, [3.0] * 6, LAW_TEXT, LAW_IMAGE)


def test_hand_written_gradients_match_autograd():
    from omni_edu.scaling import _bimodal_value_and_grad, _chinchilla_value_and_grad

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
    eval_steps=(4, 12),
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
    text, mixed = records[1], records[3]
    # A mixed run sees exactly the text tokens of the text-only run, plus its images.
    assert mixed["tokens"]["text"] == text["tokens"]["text"]
    assert mixed["tokens"]["image"] > 0
    assert records[1]["loss"]["text"] < records[0]["loss"]["text"] - 0.3  # it learns


def test_a_cached_sweep_loads_without_training(tiny_sweep, monkeypatch):
    path, records = tiny_sweep
    saved = json.loads(path.read_text())
    assert len(saved["runs"]) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(scaling, "_train_run", no_training)
    assert run_sweep(TINY, cache=path, progress=False) == records


def test_past_transient_keeps_later_evaluations(tiny_sweep):
    _, records = tiny_sweep
    kept = past_transient(records, TINY)
    assert {r["step"] for r in kept} == {12}


def test_sweep_config_rejects_bad_budgets():
    with pytest.raises(ValueError, match="eval_steps"):
        SweepConfig(profile="ci", sizes=TINY.sizes, eval_steps=(10, 5))
    with pytest.raises(ValueError, match="settings"):
        SweepConfig(profile="ci", sizes=TINY.sizes, eval_steps=(20, 40), settings=("video",))


def test_shipped_cache_holds_every_run_lesson_07_needs_in_ci(monkeypatch):
    """The ci notebook loads the project's own sweep instead of training it (and would
    quietly spend minutes retraining, and rewrite the shipped file, if a key drifted)."""

    def no_training(*args, **kwargs):
        raise AssertionError("notebooks/data/scaling_sweeps.json lacks a run of the ci sweep")

    monkeypatch.setattr(scaling, "_train_run", no_training)
    config = scaling.sweep_config("ci")
    cache = scaling.SweepCache(scaling.default_cache_path())
    records = run_sweep(config, cache=cache, progress=False)
    assert len(records) == len(config.sizes) * len(config.settings) * len(config.eval_steps)
    for setting in ("text", "image", "audio"):
        held = scaling.run_heldout(config, setting=setting, cache=cache, progress=False)
        assert held[-1]["step"] == scaling.heldout_size("ci")[1]


def test_shipped_cache_is_what_this_code_trains(tmp_path):
    """The shipped ci numbers are the project's own runs: retraining the smallest run of
    the sweep from scratch gives the losses the shipped file holds (within float noise
    across CPUs), so a change to the recipe cannot leave a stale cache behind silently."""
    full = scaling.sweep_config("ci")
    one = dataclasses.replace(full, sizes=full.sizes[:1], settings=("text",))
    shipped = run_sweep(one, cache=scaling.SweepCache(scaling.default_cache_path()), progress=False)
    fresh = run_sweep(one, cache=tmp_path / "fresh.json", progress=False)
    assert [r["step"] for r in fresh] == [r["step"] for r in shipped] == list(full.eval_steps)
    for new, old in zip(fresh, shipped, strict=True):
        assert new["tokens"] == old["tokens"] and new["params"] == old["params"]
        assert new["loss"]["text"] == pytest.approx(old["loss"]["text"], abs=0.02)


def test_other_profiles_never_write_the_shipped_cache():
    """Only ci runs live in the shipped file; a learner's cpu or gpu sweep goes to its own,
    git-ignored file (a cpu run once leaked into the shipped file through the shared path)."""
    shipped = scaling.default_cache_path("ci")
    assert shipped.name == "scaling_sweeps.json"
    for profile in ("cpu", "gpu"):
        own = scaling.default_cache_path(profile)
        assert own != shipped and own.parent == shipped.parent
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(own)], cwd=shipped.parent, capture_output=True
        )
        if ignored.returncode == 128:
            pytest.skip("not a git checkout")
        assert ignored.returncode == 0, f"{own} should be git-ignored"
    shipped_runs = json.loads(shipped.read_text())["runs"].values()
    assert {run["spec"]["profile"] for run in shipped_runs} == {"ci"}
