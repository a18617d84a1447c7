"""Show the package's own code in a lesson.

The course keeps each idea in one place, the ``omni_edu`` package, and every lesson
imports it. But a learner must *read* the central code of a lesson in the lesson, not
only call it. :func:`show_source` renders the package's source of a function, class or
method in the notebook (with syntax colours), so what the learner reads is exactly what
runs; the cells after it call that same code.
"""

from __future__ import annotations

import html
import inspect
import textwrap
from pathlib import Path
from typing import Any


def source_of(obj: Any) -> str:
    """The source text of ``obj`` with a first comment line saying where it lives."""
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError) as error:
        raise ValueError(
            f"cannot show the source of {obj!r}: pass a function, class or method defined "
            f"in a .py file (got a {type(obj).__name__})."
        ) from error
    file = Path(inspect.getsourcefile(obj) or "?")
    parts = file.parts
    where = "/".join(parts[parts.index("omni_edu") :]) if "omni_edu" in parts else file.name
    # A method's source is indented like its class body; dedent it to read on its own.
    return f"# {where}: {getattr(obj, '__qualname__', obj)}\n{textwrap.dedent(text)}"


def show_source(*objects: Any, folded: str = "") -> None:
    """Display the source of each of ``objects`` (functions, classes, methods).

    In Jupyter it renders as highlighted Python; elsewhere it prints. It displays and
    returns ``None`` (a helper displays or returns, never both), so the code appears once
    whatever the cell does after it; :func:`source_of` gives the text.

    ``folded``: a summary line; the code is then folded away under it (an HTML
    ``<details>`` element) until the learner opens it. A lesson folds the package's answer
    to an exercise that comes later, so that reading on does not give it away.
    """
    if not objects:
        raise ValueError("show_source needs at least one function, class or method.")
    text = "\n\n".join(source_of(obj) for obj in objects)
    from omni_edu.viz.plots import in_notebook

    if not in_notebook():
        print(f"[folded: {folded}]" if folded else text)
        return
    from IPython.display import HTML, Code, display

    code = Code(text, language="python")
    if not folded:
        display(code)
        return
    summary = html.escape(folded)
    display(HTML(f"<details><summary>{summary}</summary>{code._repr_html_()}</details>"))
