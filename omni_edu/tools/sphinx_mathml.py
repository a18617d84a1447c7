"""A Sphinx math renderer that writes MathML at build time: formulas with no script at all.

The rendered course is static and offline. Sphinx's default renderer loads MathJax from
the web, so offline a formula shows as TeX source and online every page asks a CDN for a
script. Browsers render MathML themselves (MathML Core: Chromium and Edge 109+, Firefox,
Safari), so this extension converts each formula once, at build time, with the
pure-Python ``latex2mathml`` (the ``docs`` extra). A formula it cannot convert is a build
warning, which the site command (``sphinx-build -W``) turns into a failure.

Used by ``docs/conf.py``: ``extensions = [..., "omni_edu.tools.sphinx_mathml"]`` and
``html_math_renderer = "mathml"``.
"""

from __future__ import annotations

import html
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def to_mathml(latex: str, display: bool) -> str:
    """``latex`` (without dollars) as a ``<math>`` element, inline or as a block."""
    from latex2mathml.converter import convert

    return convert(latex, display="block" if display else "inline")


def _typeset(node: nodes.Element, latex: str, display: bool) -> str:
    try:
        return to_mathml(latex, display)
    except Exception as exc:  # latex2mathml raises many kinds; each is the author's to fix
        logger.warning("cannot typeset %r as MathML: %s", latex, exc, location=node)
        return f'<code class="math">{html.escape(latex)}</code>'


def visit_math(translator: Any, node: nodes.math) -> None:
    """Inline math: one ``<math>`` element in the running text."""
    translator.body.append(_typeset(node, node.astext(), display=False))
    raise nodes.SkipNode


def visit_math_block(translator: Any, node: nodes.math_block) -> None:
    """Display math: one block per equation (Sphinx separates them by a blank line)."""
    translator.body.append(translator.starttag(node, "div", CLASS="math mathml"))
    if node.get("number"):
        translator.body.append(f'<span class="eqno">({node["number"]})</span>')
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        translator.body.append(_typeset(node, part, display=True))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the renderer as ``mathml``."""
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_math_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
