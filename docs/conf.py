"""Sphinx configuration of the airflow-provider-monid documentation (``scripts/docs`` builds it).

Built like the Apache Airflow provider docs: Sphinx, autodoc for the API reference, MyST Markdown for
the prose pages. The theme is furo, not ``sphinx-airflow-theme``: that theme builds without warnings but
is the airflow.apache.org site itself, with no option to turn its site parts off: an Airflow Summit
banner, the Airflow logo and footer linking to the host's ``/``, a ``<link rel="canonical">`` to
``airflow.apache.org/docs/<project>/stable/`` (a page that does not exist for this provider) and the ASF's
Matomo analytics script on every page. ``scripts/test`` builds it with ``-W -n``: a warning,
a broken cross-reference, a public parameter without a ``:param:`` line or a missing
``literalinclude`` target fails the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
# Importing airflow_monid imports Airflow, which writes airflow.cfg into AIRFLOW_HOME: keep it in the build.
os.environ.setdefault("AIRFLOW_HOME", str(DOCS / "_build" / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_monid import __version__  # noqa: E402

project = "airflow-provider-monid"
author = "airflow-provider-monid contributors"
copyright = "airflow-provider-monid contributors; Apache License 2.0"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "param_check",
    "short_refs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --- MyST -------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 4  # [text](money.md#decision-table-reuse-adopt-pay-again-or-fail) resolves

# --- autodoc ----------------------------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource"}  # :members: is given per directive
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True  # show `conf.getboolean(...)` defaults as written, not as evaluated here
autodoc_inherit_docstrings = False  # Airflow's own docstrings are written for Airflow's docs build

# --- nitpicky: every reference must resolve ---------------------------------------------------------
# No intersphinx: the build must not need the network (CI reaches only package registries). References
# to the standard library and to third-party types in signatures cannot resolve, so they are listed
# here by module; a reference into airflow_monid that does not resolve still fails the build.
nitpicky = True
_THIRD_PARTY = r"(airflow|httpx|httpcore|pydantic|pydantic_core|pendulum|jsonschema|typing_extensions)"
_STDLIB = (
    r"(abc|asyncio|collections|concurrent|contextlib|datetime|enum|http|logging|pathlib|re|socket|"
    r"ssl|threading|types|typing|urllib)"
)
nitpick_ignore_regex = [
    # Private modules are not public API (see policy.md): references into them are not documented.
    (r"py:.*", r"airflow_monid(\.\w+)*\._\w+.*"),
    (r"py:.*", _THIRD_PARTY + r"(\..*)?"),
    (r"py:.*", _STDLIB + r"(\..*)?"),
    # Type names as annotations write them without their module (``Context``, ``BaseOperator``...).
    (
        r"py:class",
        r"(Context|TaskInstanceKey|BaseOperator|BaseSensorOperator|BaseTrigger|BaseEventTrigger|"
        r"BaseHook|BaseOperatorLink|PokeReturnValue|TriggerEvent|Connection|ObjectStoragePath|Self|T|E|"
        r"AsyncIterator|Iterator|Iterable|Mapping|Sequence|Callable|Awaitable|Logger)",
    ),
]

# --- HTML ---------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"airflow-provider-monid {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
