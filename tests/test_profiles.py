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
