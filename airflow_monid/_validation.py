"""Checks run before any paid request, each failing with one sentence that says what to fix."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from airflow_monid.exceptions import ConfigError


def require_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def require_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}.")
    return float(value)


def require_json_object(value: Any, name: str = "input") -> dict[str, Any]:
    """A JSON object that serialises as is (no NaN/infinity, no sets or bytes)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object (a dict), got {type(value).__name__}: {_short(value)}.")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name} must be JSON-serialisable without NaN or infinity ({exc}); convert sets, bytes, "
            "dates and non-finite numbers before passing it."
        ) from None
    return value


def require_finite_numbers(value: Any, name: str = "input") -> Any:
    """``value`` unchanged, unless it holds NaN or infinity anywhere.

    Checked when the task is built: Airflow stores the rendered fields before ``execute()`` runs and
    refuses a non-finite number there with a bare traceback, before our own check could speak.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{name} holds {item!r}, which JSON cannot carry; use None or a finite number.")
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def require_statuses(value: Any, name: str = "allowed_provider_statuses") -> tuple[int, ...]:
    if isinstance(value, int | str):
        value = [value]
    try:
        statuses = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of HTTP status codes, got {value!r}.") from None
    if any(not 100 <= s <= 599 for s in statuses):
        raise ConfigError(f"{name} must hold HTTP status codes between 100 and 599, got {value!r}.")
    return statuses


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
