"""Sphinx configuration of the gankit documentation (``make docs``).

Only extensions bundled with Sphinx are used and nothing is fetched from the network:
there is no ``intersphinx_mapping``, so links to torch or Python objects render as plain
text. The API reference imports every gankit module once; none of them downloads or
builds anything at import time.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path

# Build from a source checkout even when gankit is not installed (``make docs`` installs it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import gankit  # noqa: E402

project = "gankit"
author = "the gankit authors"
copyright = "the gankit authors"
version = release = gankit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "_generated"]
nitpicky = False

# -- autodoc: members come from each module's __all__, in source order ----------------------
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# The re-export tables of the top-level page link to the documented objects; no stub pages.
autosummary_generate = False

# -- napoleon: Google-style docstrings (Args / Returns / Raises / Example) -------------------
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become a field list, not separate objects, so an attribute that
# autodoc also documents (a property, a dataclass field) is never described twice.
napoleon_use_ivar = True

# -- HTML ---------------------------------------------------------------------------------
# furo (the docs extra): a maintained theme whose content column fits the code blocks;
# docs/_static/gankit.css widens it further. Without furo installed, alabaster (bundled).
html_title = f"gankit {release}"
html_static_path = ["_static"]
html_css_files = ["gankit.css"]
if importlib.util.find_spec("furo") is not None:
    html_theme = "furo"
    html_theme_options = {"sidebar_hide_name": False}
else:  # pragma: no cover - the docs extra installs furo
    html_theme = "alabaster"
    html_theme_options = {"description": "Composable, exact and fast GANs for PyTorch", "page_width": "1280px"}


# -- links to re-exported names -----------------------------------------------------------
# Each object is documented once, in the module that exports it (gankit.train.Trainer), but
# docstrings, signatures and pages also name it where it is defined or re-exported
# (gankit.Trainer, gankit.presets._registry.Recipe). Such a reference, unresolved by the
# Python domain, is sent to the documented name of the very same object.


@functools.cache
def _import(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


_MISSING = object()


def _resolve_reexport(app, env, node, contnode):
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("gankit."):
        return None
    obj = _import(target)
    if obj is _MISSING:
        return None
    domain = env.get_domain("py")
    last = target.rsplit(".", 1)[-1]
    for full in list(domain.objects):
        if full != target and full.rsplit(".", 1)[-1] == last and _import(full) is obj:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node.get("reftype", "obj"), full, node, contnode
            )
    return None


def _write_preset_table(app):
    """docs/_generated/presets_meta.rst: the presets' ``meta`` as a table (beyond.rst includes it)."""
    from gankit.presets import meta_table

    out = Path(app.srcdir) / "_generated" / "presets_meta.rst"
    out.parent.mkdir(exist_ok=True)
    text = meta_table()
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _write_preset_table)
    app.connect("missing-reference", _resolve_reexport)
