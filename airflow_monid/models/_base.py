"""Base of every API payload model: tolerant of unknown fields, keeps the JSON exactly as received."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError
from typing_extensions import Self

from airflow_monid.exceptions import MonidResponseError


def parse_time(value: Any) -> datetime | None:
    """An API timestamp as an aware datetime (``Z`` accepted, naive taken as UTC); ``None`` if unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 200 else text[:200] + "..."


class RawModel(BaseModel):
    """A JSON object identified by ``id_key``; anything else raises :class:`MonidResponseError`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id_key: ClassVar[str] = "id"
    label: ClassVar[str] = "an object"  # for messages: "Expected <label> (a JSON object with <id>)"

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_api(cls, data: Any) -> Self:
        key = cls.id_key
        if not isinstance(data, dict) or not isinstance(data.get(key), str) or not data[key]:
            raise MonidResponseError(f"Expected {cls.label} (a JSON object with a {key}), got {short(data)}")
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            name = cls.label.split(" ", 1)[1]
            raise MonidResponseError(
                f"{name[0].upper()}{name[1:]} {data.get(key)!r} has an unexpected shape: {exc.errors()[:3]}"
            ) from None
        model._raw = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw
