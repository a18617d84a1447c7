"""Test-suite settings, loaded for every test and notebook under the repository.

It lives at the root (not only in tests/) so that `pytest notebooks/01_omni_tokens.ipynb`
gets the same settings as a full `pytest`. The notebook kernels nbval starts inherit
these environment variables.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

# Small and fast unless the caller asked for another profile (OMNI_PROFILE=cpu pytest).
os.environ.setdefault("OMNI_PROFILE", "ci")
# Wrong answers in solution notebooks fail the test; unsolved exercise stubs do not.
os.environ.setdefault("OMNI_STRICT_CHECKS", "1")
# No windows, no inline PNG encoding: figures are built (and so tested) but not shown.
os.environ.setdefault("MPLBACKEND", "Agg")
# Trained parts that lessons share (lesson 06's model, lesson 03's tokenizer) go to a fresh
# cache for this run: lessons later in the run load what earlier ones saved, and nothing
# from the user's own ~/.cache/omni_edu leaks into the tests.
os.environ.setdefault("OMNI_CACHE_DIR", tempfile.mkdtemp(prefix="omni_cache_"))
# Progress bars redraw at most every 2 s in the kernels nbval starts. nbval reads a kernel's
# messages only after the cell has finished; ZeroMQ holds a few thousand unread ones and drops
# the rest, the cell's "finished" message included, and nbval then fails the cell with
# "Timeout of 5 seconds exceeded waiting for output" (lesson 08's hand-off cell, 2026-12-06:
# three trainings of a minute each, a widget bar redrawn every 0.1 s).
os.environ.setdefault("TQDM_MININTERVAL", "2")
# One torch thread per process: the suite runs one worker per core (pytest-xdist), and the
# course's tiny models gain nothing from more threads. Kernels that nbval starts inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # a plugin imported torch before this file ran
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# --------------------------------------------------------------------------- test selection
# `pytest -m lesson02` runs what lesson 02 touches; `-m "lesson02 and not slow"` runs it in
# seconds (README, "For maintainers"). The marks come from file names, so a new test file
# needs no decorator: tests/lessons/test_<topic>.py and the notebooks NN_<topic>.ipynb by
# their lesson; the tests of the model's parts and of the parts lessons share by the lesson
# that builds that part (COURSE_DESIGN 1b). Every notebook is also `slow`: its cells train.

ROOT = Path(__file__).resolve().parent
# Test files anywhere under tests/ (tests/lessons/ too) import the shared hypothesis
# strategies, and each other's helpers, by name: from strategies import scenes.
sys.path.insert(0, str(ROOT / "tests"))
# A lesson's number is its name up to the first "_": "04", or "04b" for a lesson that
# follows 04 (the diffusion family).
LESSONS = {
    p.stem.split("_", 1)[1]: p.stem.split("_", 1)[0]
    for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
}
PART_TESTS = {
    "test_modalities.py": "01",
    "test_projector.py": "01",
    "test_interleave.py": "02",
    "test_transformer.py": "02",
    "test_decoder_reference.py": "02",
    "test_documents.py": "02",
    "test_vq.py": "03",
    "test_fsq.py": "03",
    "test_tokenizers.py": "03",
    "test_flow.py": "04",
    "test_heads.py": "04",
    "test_span_heads.py": "04b",
    "test_judges.py": "04",
    "test_metrics.py": "04",
    "test_prompts.py": "04",
    "test_fusion.py": "05",
    "test_omni_lm.py": "06",
    "test_any_to_any.py": "06",
    "test_course_cache.py": "06",
}
# "Does it learn" tests in files whose owners have not marked them yet: mark them there with
# @pytest.mark.slow and remove them here.
SLOW_ELSEWHERE = {
    "test_transformer.py::test_tiny_decoder_learns_to_copy",
}


def lesson_of(path: Path) -> str | None:
    """``"02"`` for anything lesson 02 touches, ``None`` for the shared tools' tests."""
    if path.suffix == ".ipynb":
        match = re.match(r"(\d\d[a-z]?)_", path.name)
        return match.group(1) if match else None
    if path.parent.name == "lessons":  # test_<topic>.py, or test_<topic>_<aspect>.py
        stem = path.stem.removeprefix("test_")
        topics = [t for t in LESSONS if stem == t or stem.startswith(t + "_")]
        return LESSONS[max(topics, key=len)] if topics else None
    return PART_TESTS.get(path.name)


def run_order(item) -> int:
    """Where a test runs in the suite: the gpu-dry run of every lesson, then the lessons,
    then the rest. Each worker takes the next whole file (or notebook) when it is free, so
    the longest file goes first (the gpu-dry runs, one file of about five minutes), the
    lessons follow in their own order (lesson 03 trains the tokenizer that 04 reads, 06 the
    model that 08 and 09 read) and the many short files fill the gaps at the end. Sent last,
    the gpu-dry file kept one worker busy for minutes after the other had finished."""
    path = Path(str(item.fspath))
    if path.name == "test_gpu_dry.py":
        return 0
    return 1 if path.suffix == ".ipynb" and path.parent.name == "notebooks" else 2


def pytest_collection_modifyitems(config, items):
    items.sort(key=run_order)  # stable: the order within each group stays
    for item in items:
        path = Path(str(item.fspath))
        number = lesson_of(path)
        if number is not None:
            item.add_marker(getattr(pytest.mark, f"lesson{number}"))
        if path.suffix == ".ipynb" or f"{path.name}::{item.name}" in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


# --------------------------------------------------------------------------- exercise runs
# The exercise notebooks run unsolved: each stub falls back to the package's reference, so
# their cells run the code the solution notebooks run at the profile's full budgets. They
# run in the profile's dry run (the same sizes, cut budgets; omni_edu.profiles): what they
# add is that every cell runs with the stubs left open, and that needs no full training.
DRY_RUNS = {"ci": "ci-dry", "gpu": "gpu-dry"}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    """Start an exercise notebook's kernel (in its first cell's set-up) in the dry run."""
    path = Path(str(item.fspath))
    dry = DRY_RUNS.get(os.environ.get("OMNI_PROFILE", ""))
    if path.suffix != ".ipynb" or path.parent.name != "exercises" or dry is None:
        return (yield)
    before = os.environ["OMNI_PROFILE"]
    os.environ["OMNI_PROFILE"] = dry  # the kernel copies the environment when it starts
    try:
        return (yield)
    finally:
        os.environ["OMNI_PROFILE"] = before
