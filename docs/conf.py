"""Sphinx configuration of pywsk's documentation (``bash scripts/run docs``).

Why Sphinx: pywsk's docstrings are reStructuredText - ``:func:`` and ``:class:`` roles,
``literal`` spans and ``::`` blocks - as in the codebases pywsk models itself on (trio,
h11, Twisted), and Sphinx's autodoc renders them as written.  mkdocstrings reads Markdown
docstrings and would show the roles as text.  The narrative pages stay Markdown, through
MyST.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import pywsk

project = "pywsk"
author = "The pywsk authors"
copyright = "2026, The pywsk authors"
version = release = pywsk.__version__

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "wsk_links",
]

root_doc = "index"
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]

# The docstrings are reStructuredText; the narrative pages Markdown with heading anchors
# (fidelity.md#known-defects).
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"

html_theme = "furo"
html_title = f"pywsk {release}"
