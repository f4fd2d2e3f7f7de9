"""Deferrable wait for a Monid run: GET-only, through the shared status poller by default."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_monid._http.policy import deadline_scope
from airflow_monid._monid.status_poller import PollingOptions, StatusPoller, Watch, epoch_of
from airflow_monid._runtime.events import wait_for_event
from airflow_monid._runtime.task_state import STOP_ON_STATES, task_state_now
from airflow_monid._runtime.waiting import Waiter, bounded
from airflow_monid.exceptions import PermanentError, ProviderError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.events import RunEvent
from airflow_monid.models.monid import MonidRun

log = logging.getLogger(__name__)

_ON_KILL_BUDGET = 20.0  # stays inside [triggerer] on_kill_timeout (30 s by default)


class MonidRunTrigger(BaseTrigger):
    """Waits until the run is terminal or ``end_time`` passes, reading its status at least every
    ``poll_interval`` seconds.

    By default the run joins the :class:`~airflow_monid._monid.status_poller.StatusPoller` of its
    connection, which reads the statuses of every run waited for in this triggerer from
    ``GET /v1/runs`` pages; with the connection extra ``batch_status_polling: false`` each trigger
    polls ``GET /v1/runs/{run_id}`` itself. Yields exactly one event: ``{"status": "terminal" |
    "timeout" | "error", "run_id", "run_status", "message"}``. The kwargs are plain values (never the
    key): the connection is loaded inside :meth:`run` without blocking the event loop.

    :param run_id: the Monid run to wait for.
    :param monid_conn_id: Airflow connection id of type ``monid``.
    :param poll_interval: seconds between polls: the most a status may be stale.
    :param end_time: absolute deadline, epoch seconds (survives triggerer restarts).
    :param created_at: the run's ``createdAt`` (ISO text or epoch), which bounds how far back the
        poller pages; ``None`` (trigger rows of earlier releases) costs one ``GET`` to learn it.
    """

    #: The operator's run is its own: a user killing the deferred task (Airflow 3.3+) stops it.
    owns_run: ClassVar[bool] = True

    def __init__(
        self,
        run_id: str,
        monid_conn_id: str,
        poll_interval: float,
        end_time: float,
        created_at: str | float | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.monid_conn_id = monid_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.created_at = created_at
        self._watch: tuple[StatusPoller, Watch] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "monid_conn_id": self.monid_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "created_at": self.created_at,
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
        waiter = Waiter(
            end_time=self.end_time, poll_interval=self.poll_interval, label=f"Monid run {self.run_id}", log=log
        )
        try:
            await hook.asettings()
            options = PollingOptions.from_extras(hook.connection_extras, self.monid_conn_id)
        except PermanentError as exc:
            yield TriggerEvent(self._event("error", waiter, str(exc)))
            return
        if options.batch:
            event = await self._wait_shared(hook, options, waiter)
        else:

            def status_of(run: MonidRun) -> tuple[bool, str]:
                return run.status.is_terminal, str(run.raw_status)

            event = await wait_for_event(lambda: hook.aget_run(self.run_id), status_of, lambda: self.run_id, waiter)
        yield TriggerEvent(event)

    def _event(self, status: str, waiter: Waiter, message: str = "") -> dict[str, Any]:
        return RunEvent(status=status, run_id=self.run_id, run_status=waiter.last_status, message=message).model_dump()

    async def _wait_shared(self, hook: MonidHook, options: PollingOptions, waiter: Waiter) -> dict[str, Any]:
        settings = await hook.asettings()
        poller = StatusPoller.shared(settings, options)
        created_at = epoch_of(self.created_at)
        if created_at is None:
            # A trigger row of an earlier release: one GET learns createdAt. Once this triggerer waits
            # for more runs than the connection serves at once, spread those GETs over the first
            # interval, so that a restart with thousands of such rows sends no burst.
            if poller.size >= settings.max_connections:
                await asyncio.sleep(random.uniform(0, max(0.0, min(self.poll_interval, self.end_time - time.time()))))
            try:
                with deadline_scope(self.end_time):
                    run = await bounded(hook.aget_run(self.run_id), waiter.remaining())
            except PermanentError as exc:
                return self._event("error", waiter, str(exc))
            except (TimeoutError, ProviderError) as exc:
                waiter.last_error = f"{type(exc).__name__}: {exc}"  # the poller reads it on its own
            else:
                waiter.on_result(str(run.raw_status))
                if run.status.is_terminal:
                    return self._event("terminal", waiter)
                created_at = epoch_of(run.created_at)
        watch = poller.watch(self.run_id, created_at, self.poll_interval)
        self._watch = (poller, watch)
        try:
            while True:
                if watch.raw_status is not None:
                    waiter.on_result(watch.raw_status)  # logs state changes only
                if watch.error is not None:
                    message = str(watch.error)
                    if watch.last_error:
                        message += f" (earlier poll error: {watch.last_error})"
                    return self._event("error", waiter, message)
                if watch.terminal:
                    return self._event("terminal", waiter)
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    if watch.last_error:  # cleared by every successful read: the latest reads failed
                        return self._event("timeout", waiter, self._unread_message(waiter, watch.last_error))
                    return self._event("timeout", waiter, waiter.timeout_message())
                watch.changed.clear()
                try:
                    # Woken by a status change; the wall clock is looked at again at least every minute.
                    async with asyncio.timeout(min(remaining, 60.0)):
                        await watch.changed.wait()
                except TimeoutError:
                    pass
        finally:
            self._release()

    def _unread_message(self, waiter: Waiter, last_error: str) -> str:
        seen = waiter.last_status or "never read"
        return (
            f"Monid run {self.run_id}: its state at the deadline is unknown: the latest status reads failed "
            f"(last error: {last_error}) (last seen: {seen})."
        )

    def _release(self) -> None:
        if self._watch is not None:
            poller, watch = self._watch
            self._watch = None
            poller.release(watch)

    async def cleanup(self) -> None:
        """Leave the shared poller on every exit (cancellation included); the last one stops it."""
        self._release()
        await super().cleanup()

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
