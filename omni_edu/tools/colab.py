"""The one place that knows where the course repository lives.

Every notebook's first code cell is :func:`setup_cell_source`: on Colab it installs the
course package from the repository and looks for a GPU; anywhere else it does nothing.
The README's "Open in Colab" links come from :func:`colab_url`. A test checks both.

To point the course at a fork, change ``REPO_OWNER``, ``REPO_NAME`` and ``BRANCH`` here,
then run ``python -m omni_edu.tools.hygiene notebooks solutions exercises``: it rewrites
the first cell of every notebook from :func:`setup_cell_source`.

How the cell installs, and why:

* From the branch's zip archive (one download, no git clone), with pip's quiet output
  captured, so a learner sees one line when it works and advice when it does not.
* With every package the runtime already has pinned to its installed version (a
  constraints file written from ``importlib.metadata``): pip may only *add* what is
  missing. Colab's torch, ipywidgets and jupyter packages stay as they are, so no restart
  is needed. ``tests/test_colab_install.py`` checks this in an environment pinned to
  Colab's versions.
* Skipped when ``omni_edu`` is already importable (the cell run a second time).
"""

from __future__ import annotations

import json

REPO_OWNER = "omni-from-scratch"
REPO_NAME = "omni-from-scratch"
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO_OWNER}/{REPO_NAME}"

SETUP_MARKER = "# Set-up cell"


def setup_cell_source(package: str | None = None) -> str:
    """The exact text of the first code cell of every course notebook.

    ``package`` replaces the address pip installs from (the Colab-like test passes a local
    folder); the default is the zip archive of ``BRANCH`` at ``REPO_URL``. Written the way
    ``ruff format`` would write it, so formatting a notebook leaves it alone.
    """
    if package is None:
        address = (
            "# To run your own version, put your fork's address here.\n"
            f'    REPO = "{REPO_URL}"\n'
            f'    PACKAGE = f"omni-edu @ {{REPO}}/archive/refs/heads/{BRANCH}.zip"'
        )
    else:
        address = f"PACKAGE = {json.dumps(package)}"
    return f"""{SETUP_MARKER}: on Colab this installs the course package and looks for a GPU;
# elsewhere it does nothing (on your machine `pip install -e ".[lab]"` already did it).
# The repository address lives in omni_edu/tools/colab.py.
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import subprocess
    import tempfile
    import time
    from importlib import metadata

    {address}
    if importlib.util.find_spec("omni_edu") is None:
        # Pin every package this runtime already has (torch, ipywidgets, jupyter...) to
        # its version, so pip only adds what is missing and no restart is needed.
        pins = {{}}
        for dist in metadata.distributions():
            if dist.metadata["Name"]:
                pins.setdefault(dist.metadata["Name"].lower(), dist.version)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as keep:
            keep.writelines(f"{{name}}=={{version}}\\n" for name, version in pins.items())
        start = time.perf_counter()
        pip = [sys.executable, "-m", "pip", "install", "-q", "-c", keep.name, PACKAGE]
        done = subprocess.run(pip, capture_output=True, text=True)
        importlib.invalidate_caches()
        if done.returncode != 0:
            print("\\n".join((done.stdout + done.stderr).strip().splitlines()[-12:]))
            print(
                f"\\nThe course package did not install from {{PACKAGE}} (pip's last lines "
                "are above). What to do:\\n"
                "  1. Run this cell again: a network hiccup is the usual cause.\\n"
                "  2. Check the address: if you use a fork, set REPO above to it.\\n"
                "  3. If pip says a package conflicts, Runtime > Disconnect and delete "
                "runtime, then run this cell first, before anything else.\\n"
                "  4. Still stuck? Open an issue on the repository with pip's lines above."
            )
            raise SystemExit("The course package is not installed; see the advice above.")
        print(f"Installed the course package in {{time.perf_counter() - start:.0f}} s.")
    import torch

    if torch.cuda.is_available():
        print(f"GPU: {{torch.cuda.get_device_name(0)}}. The lessons use the gpu profile.")
    else:
        print(
            "No GPU in this runtime: the lessons run on the CPU in the cpu profile. For the "
            "gpu profile choose Runtime > Change runtime type > a GPU (T4 is free), then "
            "run the notebook again from this cell."
        )"""


def colab_url(notebook_path: str) -> str:
    """The "Open in Colab" address of a notebook given by its repository path."""
    return f"https://colab.research.google.com/github/{REPO_OWNER}/{REPO_NAME}/blob/{BRANCH}/{notebook_path}"
