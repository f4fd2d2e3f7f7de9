"""Checking a run's input against the endpoint's published schema (``POST /v1/inspect``). No I/O.

The inspect answer carries ``input = {body?, queryParams?, pathParams?}`` (one JSON Schema each,
2026-07 spec) or, from older backends, one flat ``inputSchema``. The input sent to ``POST /v1/run``
is either composite (its keys are among ``body``/``queryParams``/``pathParams``: each part is
checked against its schema, or the parts merged against a flat ``inputSchema``) or flat (the
endpoint's parameters: checked against ``inputSchema``, or against the one part schema published, or
against all parts' properties merged when several are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from airflow_monid._monid.cost_guard import COMPOSITE_KEYS

PARTS = ("body", "queryParams", "pathParams")
MAX_LISTED = 20  # errors named in one message; the rest are counted
_PLAIN_OBJECT_KEYS = frozenset(
    {"$schema", "$id", "type", "properties", "required", "title", "description", "additionalProperties", "examples"}
)


def published_schemas(inspected: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{part: schema}`` from an inspect answer; the flat ``inputSchema`` is the part ``""``."""
    found: dict[str, dict[str, Any]] = {}
    parts = inspected.get("input")
    if isinstance(parts, Mapping):
        found.update({p: dict(parts[p]) for p in PARTS if isinstance(parts.get(p), Mapping)})
    if not found and isinstance(inspected.get("inputSchema"), Mapping):
        found[""] = dict(inspected["inputSchema"])
    return found


def _merged(schemas: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """One object schema for a flat input whose keys may belong to any part (``None``: cannot say)."""
    simple = all(
        s.get("type", "object") == "object" and set(s) <= _PLAIN_OBJECT_KEYS and not s.get("patternProperties")
        for s in schemas.values()
    )
    if not simple:  # $ref, anyOf...: a merge could invent or drop rules, so no verdict at all
        return None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for schema in schemas.values():
        properties.update(schema.get("properties") or {})
        required += [r for r in schema.get("required") or [] if r not in required]
    closed = all(s.get("additionalProperties") is False for s in schemas.values())
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": not closed}


def plan(payload: Mapping[str, Any], schemas: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any], Any]]:
    """``(label, schema, instance)`` to check: how the input maps onto the published schemas."""
    composite = bool(payload) and set(payload) <= COMPOSITE_KEYS
    if "" in schemas:
        flat = schemas[""]
        if composite and not set(flat.get("properties") or {}) & COMPOSITE_KEYS:
            # An older backend describes the parameters flat; a composite input's parts together are
            # those parameters. Parts that are not objects cannot be merged: no verdict then.
            parts = [payload[p] for p in PARTS if p in payload]
            if not all(isinstance(v, Mapping) for v in parts):
                return []
            return [("", flat, {k: v for part in parts for k, v in part.items()})]
        return [("", flat, payload)]
    if composite:
        return [(part, schema, payload.get(part, {})) for part, schema in schemas.items()]
    if len(schemas) == 1:
        return [("", next(iter(schemas.values())), payload)]
    merged = _merged(schemas)
    return [] if merged is None else [("", merged, payload)]


def _field(label: str, path: Any) -> str:
    parts = [label] if label else []
    parts += [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    return ".".join(parts).replace(".[", "[") or "(the input)"


def _alternatives(label: str, error: jsonschema.ValidationError) -> list[str] | None:
    """``anyOf``/``oneOf`` that no alternative satisfies: what each alternative would need.

    ``None`` when the error carries no per-alternative detail (``oneOf`` matched more than one).
    """
    by_branch: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        if sub.relative_schema_path and isinstance(sub.relative_schema_path[0], int):
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    if not by_branch:
        return None
    where = _field(label, list(error.absolute_path))
    missing: list[str] = []
    for subs in by_branch.values():
        if not all(s.validator == "required" and isinstance(s.instance, Mapping) for s in subs):
            missing = []
            break
        names = [n for s in subs for n in s.validator_value if n not in s.instance]
        missing.append(" and ".join(names))
    if missing and all(missing):
        return [f"{where}: needs one of: {', '.join(missing)}"]
    options = [
        f"({i}) " + "; ".join(p for s in subs for p in _describe(label, s))
        for i, subs in enumerate(by_branch.values(), 1)
    ]
    return [f"{where}: matches none of the {len(options)} allowed forms: {' or '.join(options)}"]


def _describe(label: str, error: jsonschema.ValidationError) -> list[str]:
    where = list(error.absolute_path)
    if error.validator in ("anyOf", "oneOf"):
        alternatives = _alternatives(label, error)
        if alternatives is not None:
            return alternatives
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [r for r in error.validator_value if r not in error.instance]
        return [f"{_field(label, [*where, name])}: required, missing" for name in missing] or [error.message]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set((error.schema.get("properties") or {}) if isinstance(error.schema, Mapping) else ())
        extra = [k for k in error.instance if k not in known]
        return [f"{_field(label, [*where, name])}: not allowed by the schema" for name in extra] or [error.message]
    return [f"{_field(label, where)}: {error.message}"]


def check(payload: Mapping[str, Any], inspected: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes): each failing field named once; notes say what could not be checked."""
    schemas = published_schemas(inspected)
    if not schemas:
        return [], ["the endpoint publishes no input schema; nothing was checked"]
    problems: list[str] = []
    notes: list[str] = []
    checks = plan(payload, schemas)
    if not checks and "" in schemas:
        notes.append(
            "the input's parts are not all objects, so they cannot be matched to the endpoint's flat inputSchema"
        )
    elif not checks:
        notes.append(
            f"a flat input cannot be matched to the endpoint's {'/'.join(schemas)} schemas; send the composite "
            "{body, queryParams, pathParams} shape to have it checked"
        )
    for label, schema, instance in checks:
        cls = validator_for(schema)  # the schema's own draft ($schema), else the newest
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            notes.append(f"the published schema of {label or 'the input'} is not valid JSON Schema ({exc.message})")
            continue
        for error in sorted(cls(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
            problems += [p for p in _describe(label, error) if p not in problems]
    return problems, notes


def message(where: str, problems: list[str]) -> str:
    listed = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{where}: the input does not match the endpoint's schema (POST /v1/inspect): {listed}{more}."
