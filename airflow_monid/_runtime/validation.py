"""Checks run before any paid request, each failing with one sentence that says what to fix."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow_monid.exceptions import ConfigError


def require_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}. Nothing was sent to the API.")
    return value


def require_text_when_built(value: Any, name: str) -> Any:
    """``value`` unchanged unless it is a string that is empty (or only spaces) already when the task
    is built; templates and XComArgs are checked again after rendering (:func:`require_text`)."""
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")
    if value is None:
        raise ConfigError(f"{name} is required, got None.")
    return value


def is_template(value: Any) -> bool:
    """A string Jinja will render (checked again after rendering, before anything is paid)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def require_amount(value: Any, name: str, *, whole: bool = False, rendered: bool = True) -> Any:
    """A money or count bound: ``None``, or a finite number >= 0 (a whole one when ``whole``).

    Before rendering (``rendered=False``) a Jinja template is kept as it is; after rendering, a string
    (what Jinja gives unless the DAG renders native objects) is read as a number. NaN, infinity, a
    boolean, an empty string or text that is no number never pass: a guard that compares against NaN
    is off.
    """
    kind = "a whole number >= 0" if whole else "a finite number >= 0"
    if value is None:
        return None
    if not rendered and is_template(value):
        return value
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if whole and text.lstrip("+").isdigit() else float(text)
        except ValueError:
            number = None
    where = "rendered to" if rendered and isinstance(value, str) else "got"
    ok = not isinstance(number, bool) and isinstance(number, int | float) and math.isfinite(number) and number >= 0
    if ok and whole and not float(number).is_integer():
        ok = False
    if not ok:
        raise ConfigError(
            f"{name} must be {kind} or None; it {where} {value!r}. Nothing was sent to the API; fix the value "
            "(a template must render to a number, e.g. '{{ params.budget }}' with a numeric param)."
        )
    return int(number) if whole else float(number)


def require_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}.")
    return float(value)


def require_sensor_timing(values: Mapping[str, Any]) -> None:
    """A sensor's ``timeout``/``poke_interval``: finite numbers of seconds or timedeltas (Airflow's own
    check refuses NaN but lets infinity through to an ``OverflowError`` with no hint)."""
    for name in ("timeout", "poke_interval"):
        value = values.get(name)
        if value is None or isinstance(value, timedelta):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"{name} must be a finite number of seconds >= 0 or a timedelta, got {value!r}; for a long wait "
                "give a large finite number (e.g. 7 days: 604800)."
            )


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
    """HTTP status codes as integers: a string (``"404"``, ``["404"]``) is refused, not converted,
    so a typo like ``"4O4"`` or a list of strings from a template cannot quietly change the outcome."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigError(f"{name} must be a list of HTTP status codes as integers, e.g. [404]; got {value!r}.")
    if any(isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599 for v in value):
        raise ConfigError(
            f"{name} must hold HTTP status codes as integers between 100 and 599, e.g. [404]; got {value!r}."
        )
    return tuple(sorted(set(value)))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
