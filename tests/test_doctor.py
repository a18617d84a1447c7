from omni_edu.__main__ import main
from omni_edu.tools import doctor


def test_report_lists_the_environment(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for word in ("Python", "PyTorch", "GPU", "ipywidgets", "JupyterLab", "Active profile", "ci"):
        assert word in out


def test_gpu_profile_without_gpu_is_a_warning():
    report = doctor.collect_report()
    report.update(profile="gpu", cuda_available=False)
    assert any("no CUDA GPU" in w for w in doctor.find_problems(report))
    assert "WARNING" in doctor.format_report(report)


def test_widget_version_mismatches_are_warnings():
    report = doctor.collect_report()
    report.update(ipywidgets="8.1.0", jupyterlab="2.3.0")
    assert any("JupyterLab 3" in w for w in doctor.find_problems(report))
    report.update(ipywidgets="7.7.1", jupyterlab="4.1.0", jupyterlab_widgets=None)
    assert any("jupyterlab_widgets" in w for w in doctor.find_problems(report))
    report.update(ipywidgets=None)
    assert any("not installed" in w for w in doctor.find_problems(report))


def test_unknown_profile_is_a_warning_not_a_crash():
    report = doctor.collect_report()
    report.update(profile="laptop", profile_requested="laptop")
    assert any("not a profile" in w for w in doctor.find_problems(report))


def test_report_names_the_autocast_a_gpu_gets(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated
    for capability, expected in (((7, 5), "fp16 autocast with loss scaling"), ((8, 0), "bf16")):
        major, minor = capability
        props = type("Props", (), {"name": "GPU", "total_memory": 16 * 2**30})()
        props.major, props.minor = major, minor
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i, p=props: p)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        report = doctor.collect_report()
        assert report["gpu"]["capability"] == f"{major}.{minor}"
        assert report["gpu"]["autocast"].startswith(expected)
        assert f"compute capability {major}.{minor}" in doctor.format_report(report)
