"""The code style the course promises (ruff clean, ruff formatted), enforced by the suite.

Ruff reads ``[tool.ruff]`` in pyproject.toml: the package, tests, benchmarks and the code
cells of ``notebooks/`` and ``solutions/`` (``exercises/`` is generated from solutions).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args", [("check", "--no-cache", "."), ("format", "--check", "--no-cache", ".")]
)
def test_ruff_is_clean(args: tuple[str, ...]) -> None:
    result = _ruff(*args)
    assert result.returncode == 0, (
        f"`ruff {' '.join(args)}` found problems (fix with `ruff check --fix .` and "
        f"`ruff format .`, then regenerate exercises):\n{result.stdout}{result.stderr}"
    )


def test_ruff_style_test_can_fail(tmp_path: Path) -> None:
    """The check above is not vacuous: ruff rejects a badly styled file under our config."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os,sys\nx=1;\n")
    result = _ruff("check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode != 0
