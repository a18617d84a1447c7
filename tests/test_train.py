"""Tests of the Trainer: schedule, clipping, evaluation hook, checkpoints, determinism."""

import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from omni_edu.profiles import get_profile
from omni_edu.train import (
    EMA,
    History,
    TrainConfig,
    Trainer,
    load_checkpoint,
    lr_at,
    param_groups,
    save_checkpoint,
)

TRUE_W = torch.tensor([[2.0], [-3.0], [0.5]])
TRUE_B = 1.0


def regression_batch(step: int) -> dict[str, torch.Tensor]:
    """A fresh batch per step, reproducible from the step alone."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 3, generator=g)
    y = x @ TRUE_W + TRUE_B + 0.01 * torch.randn(32, 1, generator=g)
    return {"x": x, "y": y}


def mse_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pred = model(batch["x"])
    loss = ((pred - batch["y"]) ** 2).mean()
    return {"loss": loss, "mae": (pred - batch["y"]).abs().mean()}


class DropoutNet(nn.Module):
    """Small net with dropout, so the trainer's random state matters for exact resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def config(**overrides) -> TrainConfig:
    settings_ = dict(steps=40, lr=3e-2, warmup_steps=4, progress=False, device="cpu")
    settings_.update(overrides)
    return TrainConfig(**settings_)


def make_trainer(model_seed: int = 0, **overrides) -> Trainer:
    torch.manual_seed(model_seed)
    return Trainer(DropoutNet(), mse_loss, regression_batch, config(**overrides))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- schedule
def test_lr_schedule_warmup_then_cosine_to_floor():
    cfg = TrainConfig(steps=101, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-3)  # lr / n_warmup
    assert lr_at(9, cfg) == pytest.approx(1e-2)  # end of warm-up: the peak
    assert lr_at(10, cfg) == pytest.approx(1e-2)  # cosine starts at the peak
    assert lr_at(55, cfg) == pytest.approx(1e-3 + 0.5 * (1e-2 - 1e-3))  # half-way
    assert lr_at(100, cfg) == pytest.approx(1e-3)  # last step: the floor
    warmup = [lr_at(s, cfg) for s in range(10)]
    decay = [lr_at(s, cfg) for s in range(10, 101)]
    assert warmup == sorted(warmup)
    assert decay == sorted(decay, reverse=True)


def test_warmup_fraction_and_no_warmup():
    assert TrainConfig(steps=200, warmup_steps=0.1).n_warmup == 20
    cfg = TrainConfig(steps=50, lr=1.0, warmup_steps=0, min_lr_ratio=0.0)
    assert lr_at(0, cfg) == pytest.approx(1.0)
    assert lr_at(49, cfg) == pytest.approx(0.0)


@settings(max_examples=50, deadline=None)
@given(
    steps=st.integers(2, 500),
    warm=st.floats(0.0, 0.9),
    ratio=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_lr_stays_between_floor_and_peak(steps, warm, ratio, data):
    cfg = TrainConfig(steps=steps, lr=1e-3, warmup_steps=warm, min_lr_ratio=ratio)
    step = data.draw(st.integers(0, steps - 1))
    lr = lr_at(step, cfg)
    assert 0 < lr <= 1e-3 * (1 + 1e-12)
    if step >= cfg.n_warmup:
        assert lr >= 1e-3 * ratio * (1 - 1e-12)


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="fraction"):
        TrainConfig(warmup_steps=1.5)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_profile("ci", stepz=3)


def test_from_profile_sizes_the_run():
    cfg = TrainConfig.from_profile("ci", lr=1e-3)
    assert cfg.steps == get_profile("ci").train_steps
    assert cfg.lr == 1e-3 and cfg.device == "cpu"
    assert TrainConfig.from_profile("ci", steps=7).steps == 7


# ------------------------------------------------------------------------------ learning
def test_regression_loss_falls_and_recovers_weights():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    cfg = config(steps=150, lr=5e-2, weight_decay=0.0, min_lr_ratio=0.0)
    history = Trainer(model, mse_loss, regression_batch, cfg).fit()
    assert history.losses["loss"][0] > 1.0
    assert history.final("loss") < 1e-3
    assert torch.allclose(model.weight.detach(), TRUE_W.T, atol=0.02)
    assert model.bias.item() == pytest.approx(TRUE_B, abs=0.02)
    assert set(history.losses) == {"loss", "mae"}
    assert len(history.steps) == len(history.lr) == len(history.grad_norm) == 150
    assert history.lr[:5] == [lr_at(s, cfg) for s in range(5)]


def test_classification_with_iterable_batches():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x[:, 0] + x[:, 1] > 0).long()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]  # 4 batches: cycles

    def loss_fn(model, batch):
        xb, yb = batch
        logits = model(xb)
        acc = (logits.argmax(-1) == yb).float().mean()
        return {"loss": nn.functional.cross_entropy(logits, yb), "accuracy": acc}

    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    history = Trainer(model, loss_fn, batches, config(steps=60, lr=3e-2)).fit()
    assert history.losses["loss"][0] > 0.5
    assert history.final("loss") < 0.15
    assert history.final("accuracy") > 0.95


def test_grad_clipping_caps_the_norm():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def huge_loss(model, batch):
        return {"loss": 1e4 * mse_loss(model, batch)["loss"]}

    trainer = Trainer(model, huge_loss, regression_batch, config(grad_clip=0.5))
    _, grad_norm = trainer.train_step(regression_batch(0))
    clipped = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert grad_norm.item() > 100  # recorded before clipping
    assert clipped.item() == pytest.approx(0.5, rel=1e-4)
    no_clip = Trainer(nn.Linear(3, 1), huge_loss, regression_batch, config(grad_clip=None))
    _, norm = no_clip.train_step(regression_batch(0))
    total = torch.sqrt(sum((p.grad**2).sum() for p in no_clip.model.parameters()))
    assert total.item() == pytest.approx(norm.item(), rel=1e-5)


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 4))
    model[2].weight.requires_grad_(False)  # frozen weights are left out entirely
    extra = nn.Linear(4, 4)
    model.append(extra)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(extra.weight)]
    expected = {id(model[0].weight), id(model[1].weight), id(model[1].bias)}
    expected |= {id(model[2].bias), id(extra.bias)}
    assert {id(p) for p in no_decay["params"]} == expected


# ---------------------------------------------------------------------------- evaluation
def test_eval_hook_runs_at_the_right_steps_in_eval_mode():
    calls = []

    def eval_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"val_loss": mse_loss(model, regression_batch(-1))["loss"].item()}

    trainer = make_trainer(steps=10, eval_every=4)
    trainer.eval_fn = eval_fn
    history = trainer.fit()
    assert history.eval_steps == [0, 4, 8, 10]
    assert calls == [(False, False)] * 4
    assert trainer.model.training  # back in training mode afterwards
    assert history.evals["val_loss"][-1] < history.evals["val_loss"][0]


def test_eval_every_zero_means_only_at_the_end():
    trainer = make_trainer(steps=5, eval_every=0)
    trainer.eval_fn = lambda model: {"one": 1.0}
    assert trainer.fit().eval_steps == [5]


# --------------------------------------------------------------- determinism, checkpoints
def test_same_seed_gives_identical_losses():
    a = make_trainer().fit()
    b = make_trainer().fit()
    assert a.losses == b.losses
    c = make_trainer(seed=1).fit()  # same initial weights, another trainer seed
    assert c.losses["loss"] != a.losses["loss"]  # the trainer seed drives dropout


def test_checkpoint_round_trip_restores_weights_and_optimizer(tmp_path):
    trainer = make_trainer()
    trainer.fit(until=7)
    path = save_checkpoint(
        tmp_path / "run" / "ckpt.pt", trainer.model, trainer.optimizer, 7, note="hello"
    )
    model = DropoutNet()
    opt = torch.optim.AdamW(param_groups(model, 0.1))
    state = load_checkpoint(path, model, opt)
    assert state == {"step": 7, "note": "hello"}
    for (name, p), q in zip(
        trainer.model.state_dict().items(), model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    saved, loaded = trainer.optimizer.state_dict(), opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for i, s in saved["state"].items():
        for k, v in s.items():
            assert torch.equal(v, loaded["state"][i][k]), (i, k)


def test_resuming_from_a_checkpoint_gives_the_same_losses(tmp_path):
    full = make_trainer(eval_every=10)
    full.eval_fn = lambda model: {"val": mse_loss(model, regression_batch(-1))["loss"].item()}
    full.fit()

    first = make_trainer(eval_every=10)
    first.eval_fn = full.eval_fn
    first.fit(until=17)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(123)  # disturb every random state on purpose
    resumed = make_trainer(model_seed=5, eval_every=10)
    resumed.eval_fn = full.eval_fn
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step == 17
    history = resumed.fit()
    assert history.steps == full.history.steps
    assert history.losses == full.history.losses
    assert history.eval_steps == full.history.eval_steps == [0, 10, 20, 30, 40]
    assert history.evals == full.history.evals


def test_checkpoint_refuses_objects_that_would_need_unpickling(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="asdict"):
        save_checkpoint(tmp_path / "c.pt", model, config=TrainConfig())
    save_checkpoint(tmp_path / "c.pt", model, config=dataclasses.asdict(TrainConfig()))
    assert load_checkpoint(tmp_path / "c.pt", nn.Linear(2, 2))["config"]["steps"] == 150
    trainer = Trainer(nn.Linear(2, 2), mse_loss, regression_batch, config())
    with pytest.raises(ValueError, match="no optimizer state"):
        trainer.load_checkpoint(tmp_path / "c.pt")
    save_checkpoint(tmp_path / "d.pt", trainer.model, trainer.optimizer)
    with pytest.raises(ValueError, match="not written by Trainer"):
        trainer.load_checkpoint(tmp_path / "d.pt")


# ------------------------------------------------------------------------- errors, plots
def test_loss_fn_mistakes_are_explained():
    bare = Trainer(nn.Linear(3, 1), lambda m, b: mse_loss(m, b)["loss"], regression_batch, config())
    with pytest.raises(ValueError, match=r"\{'loss': loss\}"):
        bare.fit()
    per_sample = Trainer(
        nn.Linear(3, 1),
        lambda m, b: {"loss": (m(b["x"]) - b["y"]) ** 2},
        regression_batch,
        config(),
    )
    with pytest.raises(ValueError, match=r"forget \.mean\(\)"):
        per_sample.fit()
    with pytest.raises(ValueError, match="generator can only be read once"):
        Trainer(nn.Linear(3, 1), mse_loss, iter([]), config()).fit()


def test_history_plot_and_dict_round_trip():
    trainer = make_trainer(steps=12, eval_every=5)
    trainer.eval_fn = lambda model: {"val": 1.0}
    history = trainer.fit()
    assert History.from_dict(history.to_dict()) == history
    fig = history.plot(log_y=True)
    loss_ax, eval_ax = fig.axes
    assert fig._suptitle.get_text() == "Training run"
    assert loss_ax.get_title() and loss_ax.get_xlabel() == "optimizer step"
    assert loss_ax.get_ylabel() and loss_ax.get_yscale() == "log"
    assert eval_ax.get_title() == "evaluation" and eval_ax.get_ylabel()
    assert len(loss_ax.get_lines()) == 2  # "loss" and "mae"


def test_nan_losses_warn_but_are_recorded():
    nan_loss = lambda m, b: {"loss": mse_loss(m, b)["loss"] * math.nan}
    trainer = Trainer(nn.Linear(3, 1), nan_loss, regression_batch, config(steps=3, warmup_steps=0))
    with pytest.warns(RuntimeWarning, match="diverged"):
        history = trainer.fit()
    assert all(math.isnan(v) for v in history.losses["loss"])


def test_fit_trains_a_small_part_and_counts_its_work():
    from omni_edu.train import batch_tokens, fit, run_stats

    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    model = torch.nn.Linear(4, 1)

    def loss_fn(m, batch):
        xb, yb = batch
        return {"loss": torch.nn.functional.mse_loss(m(xb), yb)}

    def batches(step):
        pick = torch.randint(len(x), (32,), generator=torch.Generator().manual_seed(step))
        return x[pick], y[pick]

    before = run_stats()
    history = fit(model, loss_fn, batches, steps=200, lr=0.05, progress=False)
    after = run_stats()
    assert history.losses["loss"][-1] < 0.01 * history.losses["loss"][0]
    assert not model.training  # left in eval mode
    assert after["steps"] - before["steps"] == 200
    assert after["flops"] - before["flops"] == 200 * 6 * 5 * 32  # 5 params, 32 rows a step
    assert after["seconds"] > before["seconds"]
    assert batch_tokens((x[:7], y[:7])) == 7 and batch_tokens({"a": x[:3]}) == 3
    assert batch_tokens(torch.zeros(4, 9, dtype=torch.long)) == 36  # ids: every entry


def test_ema_averages_the_weights_with_a_warm_start():
    """After each update the average moves (1 - decay_n) of the way to the weights, with
    decay_n = min(decay, (1 + n) / (10 + n)); copy_to writes it into the model."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    expected = 0.0
    for n, value in enumerate((1.0, 2.0, 3.0, 4.0, 5.0), start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * value
    assert ema.shadow["weight"].item() == pytest.approx(expected)
    ema.copy_to(model)
    assert model.weight.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_trainer_moves_the_ema_once_per_update():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    x = torch.randn(64, 2)
    y = x @ torch.tensor([[1.0], [-2.0]])

    def loss_fn(m, batch):
        return {"loss": nn.functional.mse_loss(m(batch[0]), batch[1])}

    config = TrainConfig(steps=30, lr=0.05, progress=False, device="cpu")
    Trainer(model, loss_fn, [(x, y)], config, ema=ema).fit()
    assert ema.updates == 30
    # the average lags the weights, but follows them: it is between the start and the end
    gap = (ema.shadow["weight"] - model.weight.detach()).abs().max().item()
    assert 0 < gap < 1.0
