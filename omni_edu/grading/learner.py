"""Whose code raised: the learner's, the course's or a library's, and whether it was the
exercise stub's own ``NotImplementedError`` (:func:`is_stub`), the only "not implemented yet".
"""

from __future__ import annotations

import contextlib
import os
import re
import site
import sys
import sysconfig
import traceback
from collections.abc import Callable
from typing import Any

# The message of the stub that make_exercises writes: the one "not implemented yet".
STUB_MESSAGE = "Exercise: write your code here"


# ---------------------------------------------------------------------------------------
# Whose code raised: the learner's, the course's or a library's
# ---------------------------------------------------------------------------------------

# The course package: this file is omni_edu/grading/learner.py.
_COURSE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _library_dirs() -> tuple[str, ...]:
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # site.getsitepackages is missing in old venvs
        paths.update(site.getsitepackages())
    paths.add(site.getusersitepackages())
    return tuple(os.path.abspath(p) + os.sep for p in paths if p)


_LIBRARY_DIRS = _library_dirs()


def _is_learner_file(filename: str) -> bool:
    """Learner code is everything that is neither the course package nor an installed
    library: notebook cells, the learner's own files, code run with exec()."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    path = os.path.abspath(filename)
    return not path.startswith(_COURSE_DIR) and not path.startswith(_LIBRARY_DIRS)


def learner_frame(exc: BaseException, entry: Any = None) -> traceback.FrameSummary | None:
    """The innermost frame of the learner's code in ``exc``'s traceback, if any.

    ``entry`` (a code object) is where the learner's function is entered: when given, only
    frames below its innermost call can be the learner's, so a wrapper that calls the
    learner's function and then fails on its result is never taken for the learner's code.
    """
    tb, frames, inside = exc.__traceback__, [], entry is None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code is entry:
            inside, frames = True, []
        elif inside and _is_learner_file(code.co_filename):
            frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return None
    last = frames[-1]
    return traceback.FrameSummary(
        last.tb_frame.f_code.co_filename, last.tb_lineno, last.tb_frame.f_code.co_name
    )


def _notebook_cell(filename: str) -> str:
    """``In[7]`` when ``filename`` is a Jupyter cell (JupyterLab or Colab), else ''."""
    match = re.match(r"<ipython-input-(\d+)-", filename)
    if match:
        return f"In[{match.group(1)}]"
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    count = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return f"In[{count}]" if count is not None else ""


def where(frame: traceback.FrameSummary) -> str:
    cell = _notebook_cell(frame.filename)
    place = f"cell {cell}" if cell else os.path.basename(frame.filename)
    text = f"{place}, line {frame.lineno}"
    return f"{text}: {frame.line.strip()}" if frame.line else text


def exception_text(exc: BaseException, max_lines: int = 4) -> str:
    lines = str(exc).strip().splitlines()
    text = "\n".join(lines[:max_lines]) + (" ..." if len(lines) > max_lines else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_stub(exc: BaseException, learner_fn: Callable) -> bool:
    """Is ``exc`` the exercise stub's own ``NotImplementedError``?

    True for the message :data:`STUB_MESSAGE` that ``make_exercises`` writes, and for a
    bare ``raise NotImplementedError`` in the checked function's own body (a hand-written
    stub). Any other ``NotImplementedError`` - with another message, or from deeper in the
    learner's code or a library - is an error.
    """
    if not isinstance(exc, NotImplementedError):
        return False
    if exc.args == (STUB_MESSAGE,):
        return True
    if exc.args:
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    fn = getattr(learner_fn, "__func__", learner_fn)  # a bound method's function
    return tb is not None and tb.tb_frame.f_code is getattr(fn, "__code__", None)
