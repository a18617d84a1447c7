"""Sphinx settings of the rendered course.

Built by ``python -m omni_edu.tools.run_lessons site --profile ci`` (see the README,
"Read the course online or offline"), which executes the lessons, lays out the source
folder in ``docs/_build/source`` (these pages, the executed lessons, the exercises) and
runs Sphinx with this file. The notebooks are rendered as executed: Sphinx runs nothing.
"""

project = "Omni from Scratch"
author = "The Omni from Scratch authors"
extensions = ["myst_nb"]

# The runner executed every lesson in the chosen profile; myst-nb only renders them.
nb_execution_mode = "off"
# Progress bars and live widgets need a running kernel; their text form (or the static
# figure every widget cell also draws) is what a page can show.
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/vnd.jupyter.widget-state+json", None),
]
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
# Links to a section (notebook.ipynb#a-heading) resolve for headings down to level 3.
myst_heading_anchors = 3

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = project
html_theme_options = {"page_width": "1100px", "sidebar_width": "260px"}
html_show_sourcelink = False
