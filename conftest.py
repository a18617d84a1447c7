"""Test-suite settings, loaded for every test and notebook under the repository.

It lives at the root (not only in tests/) so that `pytest notebooks/01_omni_tokens.ipynb`
gets the same settings as a full `pytest`. The notebook kernels nbval starts inherit
these environment variables.
"""

import os
import sys
import tempfile

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
# One torch thread per process: the suite runs one worker per core (pytest-xdist), and the
# course's tiny models gain nothing from more threads. Kernels that nbval starts inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # a plugin imported torch before this file ran
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
