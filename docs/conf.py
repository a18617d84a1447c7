"""Sphinx settings of the rendered course.

Built by ``python -m omni_edu.tools.site --profile ci`` (see the README,
"Read the course online or offline"), which executes the lessons, lays out the source
folder in ``docs/_build/source`` (these pages, the executed lessons made static, the
exercises) and runs Sphinx with this file (``omni_edu/tools/site.py``). The notebooks are
rendered as executed: Sphinx runs nothing, and no page loads anything from outside the
site.
"""

project = "Omni from Scratch"
author = "The Omni from Scratch authors"
copyright = f"{author}; MIT licence"  # the footer reads "© <copyright>."
# Formulas become MathML at build time (omni_edu/tools/sphinx_mathml.py): browsers render
# it natively, so pages need no MathJax from a CDN and read the same offline.
extensions = ["myst_nb", "omni_edu.tools.sphinx_mathml"]
html_math_renderer = "mathml"

# The runner executed every lesson in the chosen profile; myst-nb only renders them.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
# Links to a section (notebook.ipynb#a-heading) resolve for headings down to level 3.
myst_heading_anchors = 3

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = project
html_theme_options = {"page_width": "1100px", "sidebar_width": "260px"}
html_show_sourcelink = False
