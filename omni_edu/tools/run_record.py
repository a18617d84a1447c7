"""When, where and how long a lesson ran: a small JSON file beside each executed notebook.

The test suite (nbval, through :mod:`omni_edu.tools.nbval_executed`) and the lesson runner
(:mod:`omni_edu.tools.run_lessons`) both save the notebooks they executed. Next to
``00_welcome.ipynb`` each writes ``00_welcome.run.json``: the profile, the machine, when
the lesson started and finished, its wall time, the cells that ran, whether it passed, and
how many processes shared the machine meanwhile. The rendered course's page "How these
pages were made" is written from these files, so it states when and where the lessons
ran, never the day the site was built as if it were the run.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

RECORD_SUFFIX = ".run.json"


def record_path(notebook: str | Path) -> Path:
    """``folder/00_welcome.ipynb`` -> ``folder/00_welcome.run.json``."""
    notebook = Path(notebook)
    return notebook.with_name(notebook.stem + RECORD_SUFFIX)


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder.

    ``os.replace`` swaps the finished file in, so a reader (or a second writer, such as
    another test worker) never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _iso(epoch_s: float) -> str:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def make_record(
    notebook: str,
    *,
    profile: str,
    runner: str,
    started: float,
    finished: float,
    wall_s: float,
    cells: int,
    cells_run: int,
    ok: bool,
    sharing: int = 1,
) -> dict[str, Any]:
    """One lesson's record.

    Args:
        notebook: the lesson as the repository names it, e.g. ``"notebooks/00_welcome.ipynb"``.
        profile: the profile it ran in (``"ci"``, ``"cpu"``, ``"gpu"``, ``"gpu-dry"``).
        runner: what ran it (``"nbval"``, ``"run_lessons"``).
        started, finished: seconds since the epoch (``time.time()``).
        wall_s: the lesson's own time: the sum of its cells' run times (nbval), or the
            notebook's time from kernel start to end (the runner).
        cells, cells_run: code cells in the notebook, and how many of them ran.
        ok: no cell failed.
        sharing: processes that ran lessons on this machine at the same time (test
            workers), since two of them sharing two cores make each one slower.
    """
    from omni_edu.tools.machine import machine_info

    return {
        "notebook": notebook,
        "profile": profile,
        "runner": runner,
        "started": _iso(started),
        "finished": _iso(finished),
        "wall_s": round(wall_s, 1),
        "cells": cells,
        "cells_run": cells_run,
        "ok": ok,
        "sharing": sharing,
        "machine": machine_info(),
    }


def write_record(notebook_out: str | Path, record: dict[str, Any]) -> Path:
    """Save ``record`` beside the executed notebook ``notebook_out``; return its path."""
    path = record_path(notebook_out)
    write_atomically(path, json.dumps(record, indent=1) + "\n")
    return path


def read_records(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every record in ``folder``, by lesson stem (``"00_welcome"``)."""
    return {
        path.name[: -len(RECORD_SUFFIX)]: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(Path(folder).glob(f"*{RECORD_SUFFIX}"))
    }
