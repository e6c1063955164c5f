"""Sphinx configuration of the sb3-trpo-vine documentation (MyST Markdown, as SB3's docs)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sb3-trpo-vine"
author = "sb3-trpo-vine developers"
with open(os.path.join(os.path.dirname(__file__), "..", "sb3_trpo_vine", "version.txt")) as file_handler:
    release = file_handler.read().strip()

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "results"]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
suppress_warnings = ["myst.xref_missing"]
html_theme = "sphinx_rtd_theme" if __import__("importlib").util.find_spec("sphinx_rtd_theme") else "alabaster"
