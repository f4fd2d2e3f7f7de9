"""Exa monitor models and the one run status vocabulary shared by sensor, trigger and operator.

Two families speak different dialects: search monitors (``pending``, ``cancelled``, ``failReason``,
``output``) and Websets monitors (``created``, ``canceled``, ``failedReason``, no output). Callers
see one normalised :class:`ExaRunStatus`; the run's JSON is kept exactly as received.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_monid.exceptions import ConfigError, ResponseError
from airflow_monid.models._base import RawModel, parse_status, parse_time, short

log = logging.getLogger("airflow_monid.models")


class ExaMonitorType(str, Enum):
    """Which Exa monitor API a monitor id belongs to."""

    SEARCH = "search"
    WEBSETS = "websets"

    @classmethod
    def parse(cls, value: Any) -> ExaMonitorType:
        try:
            return cls(value.value if isinstance(value, Enum) else str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"monitor_type must be 'search' or 'websets', got {value!r}.") from None


class ExaRunStatus(str, Enum):
    """Run status of both families. ``UNKNOWN`` stands for any status the docs do not list."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: Any) -> ExaRunStatus:
        """Map either family's spelling (``created``, ``canceled``) onto one vocabulary; unknown → ``UNKNOWN``."""
        return parse_status(cls, value, upper=False, aliases=_ALIASES, api="Exa monitor run")

    @property
    def is_terminal(self) -> bool:
        return self in (ExaRunStatus.COMPLETED, ExaRunStatus.FAILED, ExaRunStatus.CANCELLED)

    @property
    def is_success(self) -> bool:
        return self is ExaRunStatus.COMPLETED


_ALIASES = {"created": ExaRunStatus.PENDING, "canceled": ExaRunStatus.CANCELLED}


class ExaMonitorRun(RawModel):
    """A monitor run of either family; :attr:`raw` keeps the JSON exactly as received."""

    label = "an Exa monitor run"

    id: str
    monitor_id: Any = Field(default=None, alias="monitorId")
    raw_status: Any = Field(default=None, alias="status")  # as the API spelled it; ``status`` is the enum
    output: Any = None
    fail_reason: Any = Field(default=None, alias="failReason")
    failed_reason: Any = Field(default=None, alias="failedReason")
    run_type: Any = Field(default=None, alias="type")
    created_at: Any = Field(default=None, alias="createdAt")
    updated_at: Any = Field(default=None, alias="updatedAt")

    @property
    def status_text(self) -> Any:
        """The status as the API spelled it, as text for messages and events (:attr:`raw_status`)."""
        return self.raw_status

    @property
    def status(self) -> ExaRunStatus:
        return ExaRunStatus.parse(self.raw_status)

    @property
    def created(self) -> datetime | None:
        return parse_time(self.created_at)

    @property
    def reason(self) -> str | None:
        """``failReason`` (search) or ``failedReason`` (Websets), whichever the run carries."""
        value = self.fail_reason if self.fail_reason not in (None, "") else self.failed_reason
        return None if value in (None, "") else str(value)

    def describe(self) -> str:
        """One line for logs and errors: id, raw status and reason."""
        text = f"run {self.id} ({self.raw_status}"
        if self.reason:
            text += f", reason: {self.reason}"
        return text + ")"


class ExaMonitor(RawModel):
    """A monitor of either family (search: active/paused/disabled; Websets: enabled/disabled)."""

    label = "an Exa monitor"

    id: str
    status: Any = None
    name: str | None = None

    @property
    def is_disabled(self) -> bool:
        return str(self.status or "").lower() == "disabled"

    @property
    def is_paused(self) -> bool:
        return str(self.status or "").lower() == "paused"


class ExaPage(BaseModel):
    """One page of a list endpoint (``{data, hasMore, nextCursor}``); ``next_cursor`` is ``None`` at the end."""

    model_config = ConfigDict(extra="allow")

    data: list[Any]
    next_cursor: str | None = None

    @classmethod
    def from_api(cls, data: Any, what: str) -> ExaPage:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ResponseError(f"Expected a page of Exa {what} ({{data, hasMore, nextCursor}}), got {short(data)}")
        cursor = data.get("nextCursor")
        if cursor is not None and not isinstance(cursor, str):
            raise ResponseError(f"Exa {what} page has a nextCursor that is not a string: {cursor!r}")
        # Either signal ends the listing: hasMore false, or no cursor to continue with.
        more = bool(data.get("hasMore")) and bool(cursor)
        return cls(data=data["data"], next_cursor=cursor if more else None)

    def runs(self) -> list[ExaMonitorRun]:
        return [ExaMonitorRun.from_api(item) for item in self.data]


class RunWindow:
    """Finds the oldest run in ``[after, before)`` from pages listed newest first.

    :meth:`feed` returns ``True`` once the listing has gone past the window (a run older than
    ``after``, or the run ``stop_at``), so callers stop paging instead of reading the whole history.

    :param after: inclusive lower bound, or ``None``.
    :param before: exclusive upper bound, or ``None``.
    :param stop_at: id of a run whose older neighbours are of no interest (the successor search).
    """

    def __init__(self, after: datetime | None, before: datetime | None, stop_at: str | None = None) -> None:
        self.after = after
        self.before = before
        self.stop_at = stop_at
        self.oldest: ExaMonitorRun | None = None

    def feed(self, runs: list[ExaMonitorRun]) -> bool:
        for run in runs:
            if self.stop_at is not None and run.id == self.stop_at:
                return True
            created = run.created
            if created is None:
                log.warning("Exa monitor run %s has no readable createdAt (%r): ignored.", run.id, run.created_at)
                continue
            if self.after is not None and created < self.after:
                return True
            if self.before is not None and created >= self.before:
                continue
            self.oldest = run
        return False
