import pytest
import torch

from omni_edu import profiles
from omni_edu.profiles import PROFILES, get_device, get_profile, seed_everything


def test_env_var_selects_profile(monkeypatch):
    monkeypatch.setenv("OMNI_PROFILE", "gpu")
    assert get_profile().name == "gpu"
    monkeypatch.setenv("OMNI_PROFILE", " CPU ")
    assert get_profile().name == "cpu"


def test_default_follows_hardware(monkeypatch):
    monkeypatch.delenv("OMNI_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile().name == "gpu"


def test_unknown_profile_lists_valid_names(monkeypatch):
    monkeypatch.setenv("OMNI_PROFILE", "laptop")
    with pytest.raises(ValueError) as info:
        get_profile()
    message = str(info.value)
    assert "'laptop'" in message
    for name in PROFILES:
        assert name in message


def test_suite_runs_in_ci_profile():
    # conftest.py sets it unless the caller chose another profile.
    assert get_profile().name == "ci"


def test_profiles_grow_from_ci_to_gpu():
    ci, cpu, gpu = (PROFILES[n] for n in ("ci", "cpu", "gpu"))
    for field in ("d_model", "n_layers", "train_steps", "n_train", "batch_size"):
        assert getattr(ci, field) <= getattr(cpu, field) <= getattr(gpu, field), field
    for p in PROFILES.values():
        assert p.image_size % p.patch_size == 0
        assert p.d_model % p.n_heads == 0
        assert p.name in p.describe()


def test_cpu_profiles_never_pick_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device(PROFILES["ci"]).type == "cpu"
    assert get_device(PROFILES["gpu"]).type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device(PROFILES["gpu"]).type == "cpu"


def test_autocast_is_plain_float32_on_cpu():
    cpu = torch.device("cpu")
    assert profiles.amp_dtype(cpu) is None
    with profiles.autocast(cpu):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_seed_everything_repeats_random_numbers():
    seed_everything(3)
    a = (torch.rand(4), torch.randn(2))
    seed_everything(3)
    b = (torch.rand(4), torch.randn(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    g1, g2 = seed_everything(5), seed_everything(5)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


@pytest.mark.parametrize("bad", [-1, 1.5, "7"])
def test_seed_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(bad)


def test_budget_is_untouched_outside_a_dry_run():
    assert get_profile("ci").budget(900) == 900
    assert get_profile("gpu").budget(3000, dry=5) == 3000


@pytest.mark.parametrize("name", ["gpu", "ci"])
def test_a_dry_run_keeps_its_profiles_shapes_and_cuts_budgets(name):
    gpu, dry = get_profile(name), get_profile(f"{name}-dry")
    assert dry.dry_run and not gpu.dry_run
    assert dry.name == name and dry.key == f"{name}-dry" and gpu.key == name
    for field in ("image_size", "patch_size", "d_model", "n_layers", "n_heads", "n_mels"):
        assert getattr(dry, field) == getattr(gpu, field), field
    assert dry.budget(900) == 2 and dry.budget(900, dry=16) == 16 and dry.budget(1) == 1
    assert dry.train_steps < gpu.train_steps and dry.n_train < gpu.n_train
    assert 2 <= dry.batch_size < gpu.batch_size


@pytest.mark.parametrize("bad", [-1, 2.5, True, "9"])
def test_budget_takes_a_count(bad):
    with pytest.raises(ValueError, match="count"):
        get_profile("ci").budget(bad)


def _fake_gpu(monkeypatch, capability, emulated_bf16=True):
    """Pretend a CUDA GPU of ``capability`` is present, whose torch says it "supports" bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # torch >= 2.4 answers True on a T4 too (emulated bf16): the choice must not rely on it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: emulated_bf16)


def test_t4_gets_fp16_not_emulated_bf16(monkeypatch):
    _fake_gpu(monkeypatch, (7, 5))
    cuda = torch.device("cuda")
    assert not profiles.native_bf16(cuda)
    assert profiles.amp_dtype(cuda) == torch.float16


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0)])
def test_ampere_and_later_get_bf16(monkeypatch, capability):
    _fake_gpu(monkeypatch, capability, emulated_bf16=False)
    assert profiles.amp_dtype(torch.device("cuda")) == torch.bfloat16


@pytest.mark.parametrize(("capability", "scaled"), [((7, 5), True), ((8, 0), False)])
def test_trainer_scales_the_loss_only_under_fp16(monkeypatch, capability, scaled):
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    from omni_edu import train

    _fake_gpu(monkeypatch, capability)
    # The Trainer asks amp_dtype about its device; answer as for this GPU while the model
    # itself stays on the CPU (there is no GPU here).
    monkeypatch.setattr(train, "amp_dtype", lambda device: profiles.amp_dtype(torch.device("cuda")))
    model = torch.nn.Linear(2, 1)
    trainer = train.Trainer(
        model,
        lambda m, b: {"loss": m(b).pow(2).mean()},
        lambda step: torch.ones(4, 2),
        train.TrainConfig(steps=1, device="cpu", progress=False),
    )
    assert trainer.scaler.is_enabled() is scaled
