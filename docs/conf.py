"""Sphinx configuration of cbridge's documentation: ``make docs`` builds it into out/docs/html,
warnings as errors; the tutorials are notebooks executed against the demo driver at build time
(myst-nb), and the reference is generated from the code (``_ext/cbridge_reference.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import cbridge_magics  # noqa: E402

project = "cbridge"
author = "the cbridge developers"
copyright = "the cbridge developers"
release = version = cbridge_magics.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.intersphinx",
    "cbridge_reference",
]
exclude_patterns = ["_build", "jupyter_execute", "**/.ipynb_checkpoints", "_ext"]

# MyST: Markdown pages, with the extensions the pages use; headings get anchors for links.
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3
# "--streams" is an option, not a dash: no typographic quotes or dashes anywhere.
smartquotes = False

# The tutorials run when the site is built (a tutorial that raises fails the build), each in
# a fresh kernel of the environment that builds the site, beside the demo driver it starts.
nb_execution_mode = "force"
nb_execution_in_temp = True  # each in a fresh folder: its demo.sock and files are its own
# The tutorial on your own C program compiles the repository's example (shown on its page).
os.environ["CBRIDGE_EXAMPLES"] = str(HERE.parent / "c_driver" / "examples")
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# A page never fetches anything: no ipywidgets JavaScript from a CDN (a stopped scope's output
# is its picture, and widgets show what the tutorial prints of them).
nb_ipywidgets_js: dict = {}

# autodoc: signatures with their type hints, from the code.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": False}
autodoc_inherit_docstrings = True
# No network while building: links to Python's and numpy's docs stay plain text.
intersphinx_mapping: dict = {}

graphviz_output_format = "svg"

html_theme = "pydata_sphinx_theme"
html_title = f"cbridge {version}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
