"""The one place that knows where the course repository lives.

Every notebook's first code cell is :func:`setup_cell_source`: on Colab it installs the
course package from the repository; anywhere else it does nothing. The README's
"Open in Colab" links come from :func:`colab_url`. A test checks both.
"""

from __future__ import annotations

REPO_OWNER = "omni-from-scratch"
REPO_NAME = "omni-from-scratch"
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO_OWNER}/{REPO_NAME}"

SETUP_MARKER = "# Set-up cell"


def setup_cell_source() -> str:
    """The exact text of the first code cell of every course notebook.

    Written the way ``ruff format`` would write it, so formatting a notebook leaves it alone.
    """
    return f"""{SETUP_MARKER}: on Colab this installs the course package; elsewhere it does nothing
# (on your machine `pip install -e .` already did it). The repository address lives in
# omni_edu/tools/colab.py.
import sys

if "google.colab" in sys.modules:
    import subprocess

    PACKAGE = "git+{REPO_URL}@{BRANCH}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)"""


def colab_url(notebook_path: str) -> str:
    """The "Open in Colab" address of a notebook given by its repository path."""
    return f"https://colab.research.google.com/github/{REPO_OWNER}/{REPO_NAME}/blob/{BRANCH}/{notebook_path}"
