"""Monid run models and the one status vocabulary shared by operator, trigger and sensor."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_monid.exceptions import ResponseError
from airflow_monid.models._base import RawModel, parse_status, short


class MonidRunStatus(str, Enum):
    """Run lifecycle status. ``UNKNOWN`` stands for any status the docs do not list."""

    READY = "READY"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    BLOCKED = "BLOCKED"
    TIMED_OUT = "TIMED_OUT"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: Any) -> MonidRunStatus:
        """Map an API status string (``TIME_OUT``, the CLI's spelling, is ``TIMED_OUT``); unknown → ``UNKNOWN``."""
        return parse_status(cls, value, upper=True, aliases={"TIME_OUT": cls.TIMED_OUT}, api="Monid run")

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_completed(self) -> bool:
        """Only ``COMPLETED``: the provider answered. Whether with data, ``providerResponse`` says
        (:func:`airflow_monid._monid.outcome.judge`)."""
        return self is MonidRunStatus.COMPLETED

    @property
    def is_success(self) -> bool:
        """Deprecated name of :attr:`is_completed` (it never meant the data was good)."""
        return self.is_completed


_TERMINAL = frozenset(
    {
        MonidRunStatus.COMPLETED,
        MonidRunStatus.FAILED,
        MonidRunStatus.STOPPED,
        MonidRunStatus.BLOCKED,
        MonidRunStatus.TIMED_OUT,
    }
)


class ProviderResponse(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    http_status: Any = Field(default=None, alias="httpStatus")
    error: Any = None


class MonidRun(RawModel):
    """A run as the API returned it; :attr:`raw` keeps the JSON exactly as received."""

    id_key = "runId"
    label = "a Monid run"

    run_id: str = Field(alias="runId")
    raw_status: Any = Field(default=None, alias="status")  # as the API spelled it; ``status`` is the enum
    # Loose types on purpose: a field of an unexpected type must not make a finished run unreadable.
    provider: Any = None
    endpoint: Any = None
    input: Any = None
    output: Any = None
    provider_response: ProviderResponse | None = Field(default=None, alias="providerResponse")
    reason: Any = None
    error: Any = None
    created_at: Any = Field(default=None, alias="createdAt")
    completed_at: Any = Field(default=None, alias="completedAt")
    stoppable: Any = None

    @property
    def status_text(self) -> Any:
        """The status as the API spelled it, as text for messages and events (:attr:`raw_status`)."""
        return self.raw_status

    @property
    def status(self) -> MonidRunStatus:
        return MonidRunStatus.parse(self.raw_status)

    @property
    def created_at_value(self) -> str | float | None:
        """``createdAt`` as a plain value for trigger kwargs (``None`` when the API sent another type)."""
        return self.created_at if isinstance(self.created_at, (str, int, float)) else None

    def summary(self) -> dict[str, Any]:
        """The run's JSON as received, minus ``output`` and ``input`` (the ``run`` XCom)."""
        return {k: v for k, v in self._raw.items() if k not in ("output", "input")}


class MonidRunPage(BaseModel):
    """One page of ``GET /v1/runs``; ``cursor`` is ``None`` on the last page."""

    model_config = ConfigDict(extra="allow")

    items: list[MonidRun]
    cursor: str | None = None

    @classmethod
    def from_api(cls, data: Any) -> MonidRunPage:
        if not isinstance(data, dict) or not isinstance(data.get("items", []), list):
            raise ResponseError(f"Expected a page of Monid runs ({{items, cursor}}), got {short(data)}")
        cursor = data.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise ResponseError(f"Monid runs page has a cursor that is not a string: {cursor!r}")
        return cls(items=[MonidRun.from_api(item) for item in data.get("items") or []], cursor=cursor or None)
