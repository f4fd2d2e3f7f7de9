"""What every trigger of this provider does with its wait: one loop, one closed set of events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from airflow_monid._runtime.waiting import StatusOf, Waiter, await_terminal
from airflow_monid.exceptions import PermanentError
from airflow_monid.models.events import RunEvent

R = TypeVar("R")


async def wait_for_event(
    fetch: Callable[[], Awaitable[R]],
    status_of: StatusOf[R],
    run_id_of: Callable[[], str],
    waiter: Waiter,
) -> dict[str, Any]:
    """Poll until terminal, the deadline, or a permanent error, and return the one event to yield.

    ``run_id_of`` names the run the event is about (an Exa trigger may select or follow one).
    """
    try:
        final = await await_terminal(fetch, status_of, waiter)
    except PermanentError as exc:
        message = str(exc)
        if waiter.last_error:
            message += f" (earlier poll error: {waiter.last_error})"
        return RunEvent(status="error", run_id=run_id_of(), run_status=waiter.last_status, message=message).model_dump()
    if final is None:
        return RunEvent(
            status="timeout", run_id=run_id_of(), run_status=waiter.last_status, message=waiter.timeout_message()
        ).model_dump()
    return RunEvent(status="terminal", run_id=run_id_of(), run_status=status_of(final)[1]).model_dump()
