"""Base of every API payload model: tolerant of unknown fields, keeps the JSON exactly as received."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from airflow_monid.exceptions import ResponseError

# Numbers at or above this are epoch milliseconds, below it epoch seconds: 1e11 s is the year 5138,
# 1e11 ms is March 1973, so no timestamp either API can produce falls on the wrong side.
_EPOCH_MS_FROM = 1e11


def parse_time(value: Any) -> datetime | None:
    """An API timestamp as an aware datetime; ``None`` if unreadable.

    ISO 8601 strings (``Z`` accepted, naive taken as UTC), datetimes, and numeric epochs. A number is
    taken as epoch **seconds** (Airflow's trigger deadlines, Exa's ``Exa-Signature`` ``t=``, Python's
    ``time.time()``), unless it is too large to be one: JavaScript's ``Date.now()`` milliseconds,
    which a JSON API written in TypeScript may send, are recognised by size (see ``_EPOCH_MS_FROM``).
    Booleans are not numbers here.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):  # NaN, infinity, out of range
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


E = TypeVar("E", bound=Enum)
_warned_statuses: set[tuple[str, str]] = set()
log = logging.getLogger("airflow_monid.models")


def parse_status(enum: type[E], value: Any, *, upper: bool, aliases: Mapping[str, E], api: str) -> E:
    """Map an API status onto ``enum``; an unknown status maps to ``enum.UNKNOWN``.

    Unknown counts as in progress everywhere: a new status must not end a wait as success or failure.
    It is logged once per value, and the wait's deadline bounds it.
    """
    text = str(value or "").strip()
    text = text.upper() if upper else text.lower()
    status = aliases.get(text)
    if status is None:
        try:
            status = enum(text)
        except ValueError:
            status = enum["UNKNOWN"]
    if status.name == "UNKNOWN" and (api, text) not in _warned_statuses:
        _warned_statuses.add((api, text))
        log.warning("Unknown %s status %r: treated as still in progress.", api, value)
    return status


def short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 200 else text[:200] + "..."


class RawModel(BaseModel):
    """A JSON object identified by ``id_key``; anything else raises :class:`ResponseError`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id_key: ClassVar[str] = "id"
    label: ClassVar[str] = "an object"  # for messages: "Expected <label> (a JSON object with <id>)"

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_api(cls, data: Any) -> Self:
        key = cls.id_key
        if not isinstance(data, dict) or not isinstance(data.get(key), str) or not data[key]:
            raise ResponseError(f"Expected {cls.label} (a JSON object with a {key}), got {short(data)}")
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            name = cls.label.split(" ", 1)[1]
            raise ResponseError(
                f"{name[0].upper()}{name[1:]} {data.get(key)!r} has an unexpected shape: {exc.errors()[:3]}"
            ) from None
        model._raw = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    @property
    def identifier(self) -> str:
        """The object's id under ``id_key`` (``runId`` for Monid runs, ``id`` for Exa objects)."""
        return str(self._raw.get(self.id_key) or getattr(self, "id", ""))
