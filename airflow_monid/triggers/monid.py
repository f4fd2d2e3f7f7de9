"""Deferrable wait for a Monid run: GET-only polling in the triggerer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_monid._task_state import STOP_ON_STATES, task_state_now
from airflow_monid._waiting import Waiter, bounded
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRun
from airflow_monid.triggers._events import wait_for_event

log = logging.getLogger(__name__)

_ON_KILL_BUDGET = 20.0  # stays inside [triggerer] on_kill_timeout (30 s by default)


class MonidRunTrigger(BaseTrigger):
    """Polls ``GET /v1/runs/{run_id}`` until the run is terminal or ``end_time`` passes.

    Yields exactly one event: ``{"status": "terminal" | "timeout" | "error", "run_id", "run_status",
    "message"}``. The kwargs are plain values (never the key): the connection is loaded inside
    :meth:`run` without blocking the event loop.

    :param run_id: the Monid run to wait for.
    :param monid_conn_id: Airflow connection id of type ``monid``.
    :param poll_interval: seconds between polls.
    :param end_time: absolute deadline, epoch seconds (survives triggerer restarts).
    """

    #: The operator's run is its own: a user killing the deferred task (Airflow 3.3+) stops it.
    owns_run: ClassVar[bool] = True

    def __init__(
        self,
        run_id: str,
        monid_conn_id: str,
        poll_interval: float,
        end_time: float,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.monid_conn_id = monid_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "monid_conn_id": self.monid_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    def _hook(self) -> MonidHook:
        # One hook per trigger instance; HTTP clients are pooled per event loop underneath.
        hook = getattr(self, "_hook_instance", None)
        if hook is None:
            hook = self._hook_instance = MonidHook(self.monid_conn_id)
        return hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()

        def status_of(run: MonidRun) -> tuple[bool, str]:
            return run.status.is_terminal, str(run.raw_status)

        waiter = Waiter(
            end_time=self.end_time, poll_interval=self.poll_interval, label=f"Monid run {self.run_id}", log=log
        )
        event = await wait_for_event(lambda: hook.aget_run(self.run_id), status_of, lambda: self.run_id, waiter)
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """Stop the run when its task will not wait for it again (Airflow 3.3+).

        Airflow calls this on a user action (mark failed/success, clear) but also when the trigger
        leaves this triggerer for another one (apache/airflow#73454). So the task's state decides:
        stop only when it is ``failed``, ``success``, ``skipped`` or ``upstream_failed``; a state that
        cannot be read leaves the run alone (stopping a run another triggerer waits for would waste
        what was paid). ``cleanup()`` and plain cancellation never stop it.
        """
        if not self.owns_run:
            return
        state = await task_state_now(self.task_instance, _ON_KILL_BUDGET / 2)
        if state not in STOP_ON_STATES:
            log.info(
                "Trigger for Monid run %s cancelled with the task %s: the run is left running (a later try "
                "or another triggerer waits for it).",
                self.run_id,
                state if state is not None else "in no final state",
            )
            return
        try:
            result = await bounded(self._hook().astop_run(self.run_id), _ON_KILL_BUDGET)
        except Exception as exc:  # best effort: the task is going away anyway
            log.warning("Could not stop Monid run %s on kill: %s", self.run_id, exc)
            return
        log.info("Stop requested for Monid run %s (task %s): %s", self.run_id, state, result or "already terminal")


class MonidRunSensorTrigger(MonidRunTrigger):
    """The same wait for :class:`~airflow_monid.sensors.monid.MonidRunSensor`, which does not own the
    run: a user killing the sensor leaves the run alone."""

    owns_run = False
