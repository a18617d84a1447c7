"""The course cache: a part trained once is loaded later; bad files are retrained, loudly."""

import torch
from torch import nn

from omni_edu.parts import course_cache
from omni_edu.parts.course_cache import cache_dir, config_hash, load_or_train
from omni_edu.profiles import get_profile


def recipe(calls, seed=0, scale=1.0):
    def build():
        torch.manual_seed(seed)
        return nn.Linear(3, 2)

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.mul_(scale)
        return {"loss": [1.0, 0.5], "note": "trained"}

    return build, train


def test_cache_dir_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    assert cache_dir("ci") == tmp_path / "ci"
    assert cache_dir("gpu-dry") == tmp_path / "gpu-dry"
    assert cache_dir("gpu-dry") != cache_dir("gpu")


def test_round_trip_trains_once_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    calls = []
    build, train = recipe(calls, scale=3.0)
    first = load_or_train("part", build, train, {"steps": 10})
    assert first.status == "trained" and calls == [1]
    assert "no checkpoint" in first.reason
    second = load_or_train("part", build, train, {"steps": 10})
    assert second.status == "loaded" and calls == [1]
    assert torch.equal(first.model.weight, second.model.weight)
    assert not torch.equal(second.model.weight, build().weight)  # the trained weights came back
    assert second.extra == {"loss": [1.0, 0.5], "note": "trained"}
    out = capsys.readouterr().out
    assert "Training 'part'" in out and "Loaded 'part'" in out
    # The file loads with weights_only=True: nothing in it runs code.
    state = torch.load(first.path, weights_only=True)
    assert state["format"] == course_cache.FORMAT_VERSION and state["profile"] == "ci"


def test_another_config_retrains_and_says_what_changed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    calls = []
    build, train = recipe(calls)
    load_or_train("part", build, train, {"steps": 10, "model": {"d": 4}})
    again = load_or_train("part", build, train, {"steps": 10, "model": {"d": 8}})
    assert again.status == "trained" and calls == [1, 1]
    assert "another configuration" in again.reason and "model.d" in again.reason
    assert "model.d" in capsys.readouterr().out


def test_another_profile_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    calls = []
    build, train = recipe(calls)
    made = load_or_train("part", build, train, {"steps": 1}, profile="cpu")
    # Someone copies the cpu file into the ci folder: it must not be used there.
    ci_path = cache_dir("ci") / "part.pt"
    ci_path.parent.mkdir(parents=True)
    ci_path.write_bytes(made.path.read_bytes())
    again = load_or_train("part", build, train, {"steps": 1}, profile="ci")
    assert again.status == "trained" and "profile 'cpu'" in again.reason


def test_truncated_file_retrains_instead_of_crashing(tmp_path, monkeypatch):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    calls = []
    build, train = recipe(calls)
    made = load_or_train("part", build, train, {"steps": 1})
    data = made.path.read_bytes()
    made.path.write_bytes(data[: len(data) // 2])
    again = load_or_train("part", build, train, {"steps": 1})
    assert again.status == "trained" and "could not be read" in again.reason
    assert load_or_train("part", build, train, {"steps": 1}).status == "loaded"  # mended


def test_old_format_and_wrong_shapes_retrain(tmp_path, monkeypatch):
    monkeypatch.setenv(course_cache.ENV_VAR, str(tmp_path))
    calls = []
    build, train = recipe(calls)
    made = load_or_train("part", build, train, {"steps": 1})
    state = torch.load(made.path, weights_only=True)
    torch.save({**state, "format": 0}, made.path)
    assert "format version 0" in load_or_train("part", build, train, {"steps": 1}).reason
    # Same config, but the code now builds another shape: retrain, don't crash.
    other = load_or_train("part", lambda: nn.Linear(3, 5), train, {"steps": 1})
    assert other.status == "trained" and "does not fit" in other.reason


def test_config_hash_changes_with_any_value():
    base = {"a": 1, "b": [1, 2], "c": {"d": "x"}}
    assert config_hash(base) == config_hash({"c": {"d": "x"}, "b": (1, 2), "a": 1})
    for changed in ({**base, "a": 2}, {**base, "b": [2, 1]}, {**base, "c": {"d": "y"}}):
        assert config_hash(changed) != config_hash(base)


def test_config_must_be_plain():
    import pytest

    with pytest.raises(ValueError, match="plain values"):
        config_hash({"model": nn.Linear(1, 1)})


def test_the_suite_uses_a_private_cache():
    # conftest.py points OMNI_CACHE_DIR at a temporary folder for the whole run.
    assert "omni_cache_" in str(cache_dir(get_profile()))


def test_a_second_process_waits_and_loads_instead_of_training_again(tmp_path):
    """Two lessons running side by side: only one trains the part, the other loads it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, sys, time, torch
        from torch import nn
        os.environ["OMNI_CACHE_DIR"] = {str(tmp_path)!r}
        from omni_edu.parts.course_cache import load_or_train

        def train(model):
            time.sleep(1.5)  # long enough for the other process to arrive meanwhile
            return {{"by": sys.argv[1]}}

        part = load_or_train("slow", lambda: nn.Linear(2, 2), train, {{"steps": 1}}, "ci",
                             verbose=False)
        print(part.status)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(k)], stdout=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    statuses = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert statuses == ["loaded", "trained"]
