"""Every lesson at the gpu profile's sizes, with tiny step budgets, on the CPU.

``OMNI_PROFILE=gpu-dry`` keeps every shape of the ``gpu`` profile (32x32 pictures, d=256,
6 layers) and cuts each step count and data size through ``profile.budget`` and the batch
to 8, so the gpu profile's shape and size bugs surface here, without a GPU. Each lesson
runs top to bottom in a fresh kernel; a failure names the cell and the error. Its numbers
mean nothing.
"""

import pytest

from omni_edu.tools.run_lessons import execute_notebook, lesson_notebooks


@pytest.mark.parametrize("path", lesson_notebooks(), ids=lambda p: p.stem)
def test_lesson_runs_at_gpu_sizes(path, tmp_path):
    # The figures file keeps the dry run's (meaningless) figures out of any real one.
    run = execute_notebook(path, "gpu-dry", figures_file=tmp_path / "figures.jsonl", timeout=600)
    assert run.ok, f"{path.name} fails in the gpu-dry profile: {run.error}"
    assert "steps" in run.stats, "the lesson ran but its kernel's run statistics are missing"
