"""Resolve short Python references in docstrings (``:class:`MonidRunOperator``` from any module), and keep
dataclass signatures parseable.

Docstrings name classes and methods the way a reader does (``MonidRunOperator``, ``ExaPage.runs``,
``reset`` inside the class that defines it). Sphinx resolves such a name only within the current
module, so this looks it up among the documented ``airflow_monid`` objects: first in the current class,
then in the current module, then anywhere if exactly one documented object has that name. A name that
matches nothing, or several objects, stays unresolved and fails the nitpicky build.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


def _resolve(app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    domain = env.get_domain("py")
    objects = domain.objects  # type: ignore[attr-defined]
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = []
    if module and cls:
        candidates.append(f"{module}.{cls}.{target}")
    if module:
        candidates.append(f"{module}.{target}")
    found = next((c for c in candidates if c in objects), None)
    if found is None:
        matches = [name for name in objects if name.startswith("airflow_monid.") and name.endswith(f".{target}")]
        if len(matches) != 1:
            return None
        found = matches[0]
    # "obj": a name written as :class: may be a type alias documented as data (``EventStatus``).
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", found, node, contnode)


def _signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None, annotation: str | None
) -> tuple[str | None, str | None] | None:
    # A dataclass field with a default_factory shows as ``= <factory>``, and the emulator's sentinel as
    # ``= <default>``: not Python, so Sphinx cannot parse the signature and splits ``dict[str, str]`` at
    # its comma into broken references. Show ``...`` and ``DEFAULT`` (airflow_monid.testing.DEFAULT).
    if signature and "<" in signature:
        signature = re.sub(r"= <(\w+)>", lambda m: "= ..." if m[1] == "factory" else f"= {m[1].upper()}", signature)
        return signature, annotation
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", _resolve)
    app.connect("autodoc-process-signature", _signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
