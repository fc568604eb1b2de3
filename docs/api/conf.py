"""Sphinx configuration of the API reference (built by `make docs`, warnings as errors)."""

project = "coserve"
author = "coserve developers"
extensions = ["sphinx.ext.autodoc"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
html_theme = "alabaster"
exclude_patterns = ["_build"]
