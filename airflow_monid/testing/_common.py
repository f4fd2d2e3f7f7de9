"""Small helpers shared by the emulated APIs (ids, timestamps, cursors, request/response records)."""

from __future__ import annotations

import base64
import binascii
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _Default:
    """Sentinel type: lets callers pass ``output=None`` meaning "null output", distinct from "not given"."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<default>"

    def __reduce__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


def new_ulid(lowercase: bool = False) -> str:
    """26-char ULID (48-bit ms time + 80 random bits), so ids sort roughly by creation like the real ones."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5)]
    text = "".join(chars)
    return text.lower() if lowercase else text


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


@functools.lru_cache(maxsize=8192)  # the same few run timestamps are rendered on every poll
def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with milliseconds and a 'Z' suffix (the shape both APIs document)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_epoch(value: datetime | str | float | None) -> float:
    """Accept the loose forms tests like to pass for ``created_at``; naive datetimes are taken as UTC."""
    if value is None:
        return time.time()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class BadRequest(Exception):
    """Raised by the API modules for a client error; the caller renders it in that API's error shape."""

    def __init__(self, message: str, status: int = 400, tag: str = "INVALID_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.tag = tag


def parse_limit(query: dict[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer between 1 and {maximum}") from None
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be an integer between 1 and {maximum}")
    return limit


def paginate(items: Sequence[T], key: Callable[[T], str], cursor: str | None, limit: int) -> tuple[list[T], str | None]:
    """Keyset pagination over an already ordered list.

    The cursor names the last item of the previous page rather than an offset, so runs created while a
    client pages through do not shift or duplicate items - the property a reconciling client relies on.
    """
    start = 0
    if cursor:
        after = decode_cursor(cursor)
        keys = [key(item) for item in items]
        if after is None or not after.startswith("after:") or after[6:] not in keys:
            raise BadRequest("Invalid cursor")
        start = keys.index(after[6:]) + 1
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, (encode_cursor("after:" + key(page[-1])) if more and page else None)


@dataclass
class Req:
    """One parsed HTTP request as the API modules see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    body_error: str | None
    request_id: str


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"
