"""Sphinx configuration of the dcrn_jax documentation site (pages in MyST Markdown).

Build (what .ci/run does; -W -n: a warning, a broken link or a missing reference fails):
  pip install -e ".[docs]"
  sphinx-build -W --keep-going -n -q -b html docs docs/_build/html
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # The API pages import the dcrn_jax of this checkout.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))
# Importing the modules documents them; nothing here may reach an accelerator or the network.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "dcrn_jax"
author = "the dcrn_jax authors"
copyright = "the dcrn_jax authors"  # pylint: disable=redefined-builtin

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "plain_docstrings",  # Our plain-text docstrings shown as written (docs/_ext/).
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: GitHub-style anchors for headings (so `page.md#a-heading` links are checked), `{…}`
# directives in ```` ``` ```` fences, and definition lists.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# API reference: members in source order, signatures without type hints (the docstrings say
# shapes and types in words; type hints of jax/flax/numpy objects would be unresolvable
# references without network access to those projects' inventories).
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": False}

nitpicky = True
# References to other projects' objects that docstrings name in prose.
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jnp|np|numpy|flax|nn|optax|orbax|ml_collections|tf|tensorflow|tfds)\..*"),
]

html_theme = "furo"
html_title = "dcrn_jax"
html_static_path = []
html_show_sourcelink = False
# Offline-friendly: the pages load nothing from the network.
html_theme_options = {"navigation_with_keys": True}
