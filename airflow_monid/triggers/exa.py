"""Deferrable wait for an Exa monitor run: GET-only polling in the triggerer."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_monid.exceptions import MonidConfigError
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType, parse_time
from airflow_monid.triggers._events import poll_until_terminal

log = logging.getLogger(__name__)

# While no run has appeared, the monitor is looked at this often (seconds) so that a monitor
# disabled or deleted during a long wait ends it instead of running into the deadline.
MONITOR_CHECK_INTERVAL = 600.0


class ExaMonitorRunTrigger(BaseTrigger):
    """Polls an Exa monitor until its run is terminal or ``end_time`` passes.

    With ``run_id`` it polls that run. Without, it waits for the oldest run created in
    ``[created_after, created_before)`` to appear, then polls it. A run cancelled because a newer
    run replaced it is followed to that newer run; the event then names the run followed.

    Yields exactly one small event (see :class:`~airflow_monid.triggers._events.RunEvent`):
    ``status`` is ``terminal``, ``timeout`` or ``error``; ``run_id`` is ``""`` when no run appeared.
    The task fetches the run again on resume, so no output is stored in the trigger table.

    :param monitor_id: the monitor whose run is awaited.
    :param exa_conn_id: Airflow connection id of type ``exa``.
    :param poll_interval: seconds between polls.
    :param end_time: absolute deadline, epoch seconds (survives triggerer restarts).
    :param monitor_type: ``search`` or ``websets``.
    :param run_id: the run to wait for, or ``None`` to select one by creation time.
    :param created_after: inclusive lower bound of ``createdAt`` (ISO 8601), when selecting.
    :param created_before: exclusive upper bound of ``createdAt`` (ISO 8601), when selecting.
    :param search_monitors_path: ``/monitors`` or ``/search-monitors``, resolved by the task.
    """

    def __init__(
        self,
        monitor_id: str,
        exa_conn_id: str,
        poll_interval: float,
        end_time: float,
        monitor_type: str = "search",
        run_id: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        search_monitors_path: str | None = None,
    ) -> None:
        super().__init__()
        self.monitor_id = monitor_id
        self.exa_conn_id = exa_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.monitor_type = ExaMonitorType.parse(monitor_type).value
        self.run_id = run_id or None
        self.created_after = created_after
        self.created_before = created_before
        self.search_monitors_path = search_monitors_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "monitor_id": self.monitor_id,
                "exa_conn_id": self.exa_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "monitor_type": self.monitor_type,
                "run_id": self.run_id,
                "created_after": self.created_after,
                "created_before": self.created_before,
                "search_monitors_path": self.search_monitors_path,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = ExaHook(self.exa_conn_id, search_monitors_path=self.search_monitors_path)
        after, before = parse_time(self.created_after), parse_time(self.created_before)
        current: str | None = self.run_id
        monitor_checked_at = 0.0
        label = f"Exa {self.monitor_type} monitor {self.monitor_id}"

        async def fetch() -> ExaMonitorRun | None:
            nonlocal current, monitor_checked_at
            if current is None:
                found = await hook.afind_run(self.monitor_id, self.monitor_type, after, before)
                if found is None:
                    if time.time() - monitor_checked_at >= MONITOR_CHECK_INTERVAL:
                        await self._check_monitor(hook)
                        monitor_checked_at = time.time()
                    return None
                log.info("%s: selected %s, the oldest run created in the window.", label, found.describe())
                current = found.id
            run = await hook.aget_run(self.monitor_id, current, self.monitor_type)
            run = await hook.afollow_replacement(self.monitor_id, run, self.monitor_type)
            current = run.id
            return run

        def status_of(run: ExaMonitorRun | None) -> tuple[bool, str]:
            # Only a terminal status reaches the event; the others are only logged, so they name the run.
            if run is None:
                return False, "still without a run in the window"
            if run.status.is_terminal:
                return True, str(run.status_text)
            return False, f"at run {run.id}, {run.status_text}"

        event = await poll_until_terminal(
            fetch,
            status_of,
            run_id=current or "",
            end_time=self.end_time,
            poll_interval=self.poll_interval,
            label=label,
            log=log,
        )
        event["run_id"] = current or ""
        yield TriggerEvent(event)

    async def _check_monitor(self, hook: ExaHook) -> None:
        monitor = await hook.aget_monitor(self.monitor_id, self.monitor_type)  # a 404 ends the wait
        if monitor.is_disabled:
            # A permanent error for poll_until_terminal: the wait ends with an ``error`` event.
            raise MonidConfigError(f"Exa {self.monitor_type} monitor {self.monitor_id} is disabled.")
