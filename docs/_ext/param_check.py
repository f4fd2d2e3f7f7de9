"""Fail the docs build when a public parameter has no ``:param:`` line.

For every class autodoc documents, each parameter of its constructor (``self``, ``*args`` and
``**kwargs`` excepted) must be described by a ``:param name:`` field in the class docstring; for every
module-level function, each of its parameters. A missing one is a Sphinx warning, which
``sphinx-build -W`` turns into a failed build. Methods are not checked (their parameters are described
in prose where they are public).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)
_FIELD = re.compile(r"^\s*:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\*{0,2}\w+)\s*:", re.M)


def _parameters(obj: Any, what: str) -> list[str]:
    target = obj.__init__ if what == "class" else obj
    if what == "class" and target is object.__init__:
        return []
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.kind not in skip and p.name not in ("self", "cls")]


def _check(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what not in ("class", "function") or not name.startswith("airflow_monid."):
        return
    if f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}" != name:
        return  # imported from elsewhere: autodoc skips it here and documents it where it is defined
    if what == "class" and (issubclass(obj, BaseException) or "__init__" not in vars(obj)):
        return  # exceptions take a message; a class without its own __init__ documents its fields
    documented = set(_FIELD.findall("\n".join(lines)))
    for param in _parameters(obj, what):
        if param not in documented:
            logger.warning(
                "%s %s: parameter %r has no :param: line in its docstring", what, name, param, type="param_check"
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
