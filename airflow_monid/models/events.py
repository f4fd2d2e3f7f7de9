"""The closed set of trigger events, shared by the triggers that yield them and the tasks that resume.

Events stay small (no run output: it would be stored in the trigger table and the task's next
kwargs); the task fetches the run again when it resumes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_monid.exceptions import ProviderError

EventStatus = Literal["terminal", "timeout", "error"]


class RunEvent(BaseModel):
    """What a trigger yields, exactly once.

    :param status: ``terminal`` (the run reached a terminal status), ``timeout`` (the absolute
        deadline passed first) or ``error`` (a permanent error ended the wait).
    :param run_id: the run waited for (``""`` when an Exa sensor's window never got a run).
    :param run_status: the run's status as last seen.
    :param message: for ``timeout``/``error``, what went wrong, the last poll error included.
    """

    model_config = ConfigDict(extra="forbid")

    status: EventStatus
    run_id: str
    run_status: str | None = None
    message: str = ""


def parse_event(event: Any) -> RunEvent:
    """Validate an event on resume; a missing or unknown event never counts as success."""
    if not isinstance(event, dict):
        raise ProviderError(f"The task resumed without a valid trigger event (got {event!r}); failing.")
    try:
        parsed = RunEvent.model_validate(event)
    except ValidationError as exc:
        raise ProviderError(
            f"The task resumed with an unexpected trigger event {event!r}: {exc.errors()[:2]}"
        ) from None
    return parsed
