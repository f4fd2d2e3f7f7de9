"""The closed set of trigger events and the polling loop both triggers share.

Events stay small (no run output: it would be stored in the trigger table and the task's next
kwargs); the task fetches the run again when it resumes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_monid.exceptions import MonidAPIError, MonidConfigError, MonidError

EventStatus = Literal["terminal", "timeout", "error"]
MAX_ERROR_BACKOFF = 60.0


class RunEvent(BaseModel):
    """What a trigger yields, exactly once."""

    model_config = ConfigDict(extra="forbid")

    status: EventStatus
    run_id: str
    run_status: str | None = None
    message: str = ""


def parse_event(event: Any, expected_run_id: str | None = None) -> RunEvent:
    """Validate an event on resume; a missing or unknown event never counts as success."""
    if not isinstance(event, dict):
        raise MonidError(f"The task resumed without a valid trigger event (got {event!r}); failing.")
    try:
        parsed = RunEvent.model_validate(event)
    except ValidationError as exc:
        raise MonidError(f"The task resumed with an unexpected trigger event {event!r}: {exc.errors()[:2]}") from None
    if expected_run_id and parsed.run_id != expected_run_id:
        raise MonidError(f"Trigger event is for run {parsed.run_id!r}, expected {expected_run_id!r}.")
    return parsed


DEFERRED_TRY_KEY = "deferred_try"
T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """Await with a time limit without ever swallowing a cancellation.

    On Python < 3.12, ``asyncio.wait_for`` can swallow the task's cancellation when the awaited call
    finishes at the same moment, and a triggerer's cancel (restart, user kill) would then be ignored;
    ``asyncio.timeout`` (3.11+) does not.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


def try_number_of(context: Any) -> int:
    return int(getattr(context["ti"], "try_number", 1) or 1)


def remember_deferral(context: Any) -> None:
    """Record which try deferred, so that resuming can tell a stale event from its own."""
    context["ti"].xcom_push(key=DEFERRED_TRY_KEY, value=try_number_of(context))


def is_stale_resume(context: Any) -> bool:
    """Whether the task resumed with the event of an earlier try.

    Airflow 3.0's ``dag.test()`` hands a retry the previous try's ``next_method`` and event (and
    drops custom ``next_kwargs``); acting on that event would repeat the last try's outcome, so the
    caller starts the try afresh instead.
    """
    ti = context["ti"]
    deferred = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRED_TRY_KEY, map_indexes=ti.map_index)
    return deferred != try_number_of(context)


async def poll_until_terminal(
    fetch: Callable[[], Awaitable[Any]],
    status_of: Callable[[Any], tuple[bool, str]],
    *,
    run_id: str,
    end_time: float,
    poll_interval: float,
    label: str,
    log: logging.Logger,
) -> dict[str, Any]:
    """Poll with GETs until the run is terminal or the absolute ``end_time`` (epoch s) has passed.

    Transient failures (transport errors, 429/5xx after the hook's own retries, unreadable bodies)
    are logged and retried with backoff up to the deadline: one bad answer never ends a long wait.
    Permanent API errors (401, 403, 404...) end it with an ``error`` event.
    """
    errors = 0
    while True:
        # The check comes before the deadline test, so the run is looked at once more at the deadline.
        wait = poll_interval
        try:
            result = await bounded(fetch(), max(end_time - time.time(), 5.0))
        except (MonidConfigError, MonidAPIError) as exc:
            if isinstance(exc, MonidConfigError) or exc.is_permanent:
                return RunEvent(status="error", run_id=run_id, message=str(exc)).model_dump()
            errors += 1
            wait = _error_wait(poll_interval, errors)
            log.warning("%s: poll failed (%s); trying again in %.1f s", label, exc, wait)
        except (MonidError, asyncio.TimeoutError) as exc:
            errors += 1
            wait = _error_wait(poll_interval, errors)
            log.warning("%s: poll failed (%s); trying again in %.1f s", label, exc or "timeout", wait)
        else:
            errors = 0
            terminal, status = status_of(result)
            if terminal:
                return RunEvent(status="terminal", run_id=run_id, run_status=status).model_dump()
            log.info("%s is %s; next check in %.1f s", label, status, poll_interval)
        remaining = end_time - time.time()
        if remaining <= 0:
            return RunEvent(
                status="timeout", run_id=run_id, message=f"{label} was not terminal at the deadline."
            ).model_dump()
        await asyncio.sleep(min(wait, remaining))


def _error_wait(poll_interval: float, errors: int) -> float:
    return min(MAX_ERROR_BACKOFF, poll_interval * (2 ** min(errors, 10)))
