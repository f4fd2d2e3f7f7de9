"""Deferrable wait for an Exa monitor run: GET-only polling in the triggerer."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_monid._exa.watermark import StateKeeper, Watermark, normalise_statuses, state_key
from airflow_monid._exa.webhooks import parse_record, record_key, record_value, run_event
from airflow_monid._http.backoff import Backoff
from airflow_monid._runtime.events import wait_for_event
from airflow_monid._runtime.waiting import Waiter, bounded
from airflow_monid.exceptions import APIError, ConfigError, PermanentError, ProviderError
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType, parse_time
from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS, AIRFLOW_V_3_4_PLUS

log = logging.getLogger(__name__)

# While no run has appeared, the monitor is looked at this often (seconds) so that a monitor
# disabled or deleted during a long wait ends it instead of running into the deadline.
MONITOR_CHECK_INTERVAL = 600.0


def no_run_message(label: str, after: datetime | None, before: datetime | None, waiter: Waiter) -> str:
    """The deadline of a wait that never found its run: Exa listed none, or could not be asked.

    "No run was created" is only said when the last listing worked; otherwise the message says the API
    could not be reached (or answered errors) at which URL, with the last error.
    """
    window = f"[{after.isoformat() if after else 'no bound'}, {before.isoformat() if before else 'no bound'})"
    failure = waiter.failure_text()
    if failure:
        return f"{label}: {failure}; so whether a run was created in {window} by the deadline is unknown."
    if waiter.last_status is None:
        return f"{label}: the runs list was never read before the deadline, so no run in {window} was seen."
    text = f"{label}: no run was created in {window} by the deadline (the last listing of its runs found none)"
    if waiter.last_error:
        text += f"; an earlier poll failed: {waiter.last_error}"
    return text + "."


class ExaMonitorRunTrigger(BaseTrigger):
    """Polls an Exa monitor until its run is terminal or ``end_time`` passes.

    With ``run_id`` it polls that run. Without, it waits for the oldest run created in
    ``[created_after, created_before)`` to appear, then polls it. A run cancelled because a newer
    run replaced it is followed to that newer run; the event then names the run followed.

    Yields exactly one small event (see :class:`~airflow_monid._runtime.events.RunEvent`):
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
        label = f"Exa {self.monitor_type} monitor {self.monitor_id}"
        waiter = Waiter(
            end_time=self.end_time,
            poll_interval=self.poll_interval,
            label=f"{label} run {self.run_id}" if self.run_id else label,
            log=log,
        )
        tracker = _RunTracker(self, hook, waiter)
        event = await wait_for_event(tracker.fetch, tracker.status_of, tracker.run_id, waiter)
        if event.get("status") == "timeout" and not event.get("run_id"):
            event["message"] = no_run_message(label, tracker.after, tracker.before, waiter)
        yield TriggerEvent(event)


class _RunTracker:
    """The run an :class:`ExaMonitorRunTrigger` waits for: selected by time, then followed."""

    def __init__(self, trigger: ExaMonitorRunTrigger, hook: ExaHook, waiter: Waiter) -> None:
        self.trigger = trigger
        self.hook = hook
        self.waiter = waiter
        self.current: str | None = trigger.run_id
        self.after = parse_time(trigger.created_after)
        self.before = parse_time(trigger.created_before)
        self.monitor_checked_at = 0.0

    def run_id(self) -> str:
        return self.current or ""

    async def fetch(self) -> ExaMonitorRun | None:
        t = self.trigger
        if self.current is None:
            found = await self.hook.afind_run(t.monitor_id, t.monitor_type, self.after, self.before)
            if found is None:
                if time.time() - self.monitor_checked_at >= MONITOR_CHECK_INTERVAL:
                    # A monitor disabled or deleted during a long wait ends it (a permanent error).
                    await self.hook.acheck_monitor(t.monitor_id, t.monitor_type)
                    self.monitor_checked_at = time.time()
                return None
            log.info(
                "Exa monitor %s: selected %s, the oldest run created in the window.", t.monitor_id, found.describe()
            )
            self._follow(found.id)
        run = await self.hook.aget_run(t.monitor_id, self.run_id(), t.monitor_type)
        run = await self.hook.afollow_replacement(t.monitor_id, run, t.monitor_type)
        self._follow(run.id)
        return run

    def _follow(self, run_id: str) -> None:
        """The run awaited from now on; the log lines and messages name it."""
        self.current = run_id
        t = self.trigger
        self.waiter.label = f"Exa {t.monitor_type} monitor {t.monitor_id} run {run_id}"

    @staticmethod
    def status_of(run: ExaMonitorRun | None) -> tuple[bool, str]:
        if run is None:
            return False, "without a run in the window yet"
        return run.status.is_terminal, str(run.raw_status)


# --- event-driven scheduling (AssetWatcher) ----------------------------------------------------------

# Errors are logged when they change, and otherwise at most this often (seconds): a watcher runs for
# months, and a revoked key must not write a line per poll.
WATCHER_LOG_INTERVAL = 600.0
# A permanent error (401, missing monitor) is looked at again this often at least (seconds): a
# fixed key or a re-created monitor then resumes the watcher without anyone restarting it.
WATCHER_PERMANENT_RETRY = 300.0
WATCHER_MAX_BACKOFF = 300.0
# Bound of one cycle's listing, so a hung connection cannot stall the watcher for ever.
WATCHER_CYCLE_TIMEOUT = 300.0
# With a webhook configured (the connection's ``webhook_secret``), polling is the safety net that
# catches a lost delivery: every this many seconds by default (or ``poll_interval`` if longer).
WEBHOOK_POLL_INTERVAL = 900.0
# Share one listing per interval among the watchers of a monitor (Airflow 3.3+ shared streams);
# False makes every watcher poll on its own again.
SHARED_POLL = True
# The pause between cycles; a module attribute so that tests can step a watcher cycle by cycle.
_watcher_sleep = asyncio.sleep


class ExaMonitorRunWatcher(BaseEventTrigger):
    """Emits one event per Exa monitor run that ends, for ``AssetWatcher`` (event-driven DAGs).

    It runs for ever. Each cycle lists the monitor's runs newest first back to its watermark and
    yields, oldest first, one small event per run that became terminal with a status in
    ``statuses``::

        {"monitor_id", "monitor_type", "run_id", "status", "created_at", "completed_at"}

    ``status`` and the timestamps are Exa's own strings; the output is never in the event (fetch
    it with :class:`~airflow_monid.hooks.exa.ExaHook`). A run created before the watcher started
    but finishing after is emitted when it finishes.

    **Delivery** is at least once. On Airflow 3.3+ the watermark and the run ids emitted since live
    in the watcher's ``asset_state_store`` (key ``{monitor_type}:{monitor_id}``), committed one
    cycle after the yield: a triggerer restart, a re-created trigger or an unpaused DAG misses
    nothing, and runs that ended while no watcher ran are emitted when one returns (at most
    ``catch_up_limit`` of them). A crash between a yield and its commit repeats that event; remove
    repeats with :func:`airflow_monid.models.exa_events.exa_runs_from_events`. Without a store
    (Airflow 3.0-3.2, or one trigger serving several assets) the watcher starts from "now" each
    time it starts: runs that ended while it was not running are not emitted. Give each monitor
    exactly one Asset.

    **Websets monitors**: their runs list has no cursor or limit, so only the first page is read;
    a watcher must poll before more than one page of runs has appeared (they run at most daily).

    Kwargs are plain and stable (Airflow identifies a watcher by a hash of them): no timestamps or
    run ids.

    :param monitor_id: the monitor whose runs are watched.
    :param monitor_type: ``search`` or ``websets``.
    :param exa_conn_id: Airflow connection id of type ``exa``.
    :param poll_interval: seconds between cycles (> 0).
    :param statuses: terminal statuses to emit: ``completed`` (default), ``failed``, ``cancelled``
        (``canceled`` accepted).
    :param search_monitors_path: ``/monitors`` or ``/search-monitors``; default: the connection's.
    :param catch_up_limit: most runs listed in one cycle, which bounds the catch-up after a long
        absence (older runs beyond it are skipped, with a warning).
    :param webhook_poll_interval: seconds between cycles while the connection holds a
        ``webhook_secret`` (deliveries then arrive through the provider's webhook receiver, and
        polling only catches a lost one); default ``WEBHOOK_POLL_INTERVAL`` (900), never
        shorter than ``poll_interval``.
    :param queue: the trigger queue to run on (``airflow triggerer --queues``); Airflow 3.4+ only.

    **Webhooks** (README "Webhooks"): with a ``webhook_secret`` on the connection the watcher polls
    every ``webhook_poll_interval`` seconds, and on Airflow 3.3+ it consults the monitor's delivery
    record in the asset state store before each yield, so a run the receiver already turned into an
    asset event is not emitted again (and the receiver skips a run this watcher emitted).

    **Shared poll** (Airflow 3.3+): watchers of the same monitor, connection, path and intervals share
    one listing per interval through Airflow's shared streams (``shared_stream_key``); each still
    keeps its own watermark, and reads further back on its own only to catch up after an absence.
    """

    def __init__(
        self,
        monitor_id: str,
        monitor_type: str = "search",
        exa_conn_id: str = "exa_default",
        poll_interval: float = 60.0,
        statuses: list[str] | None = None,
        search_monitors_path: str | None = None,
        catch_up_limit: int = 100,
        webhook_poll_interval: float | None = None,
        queue: str | None = None,
    ) -> None:
        if queue is not None and not AIRFLOW_V_3_4_PLUS:
            raise ConfigError("queue= needs Airflow 3.4 or later (trigger queues of event-driven watchers).")
        if AIRFLOW_V_3_4_PLUS:
            super().__init__(queue=queue)
        else:
            super().__init__()
        if not isinstance(monitor_id, str) or not monitor_id.strip():
            raise ConfigError(f"monitor_id must be a non-empty string, got {monitor_id!r}.")
        self.monitor_id = monitor_id
        self.monitor_type = ExaMonitorType.parse(monitor_type).value
        self.exa_conn_id = exa_conn_id
        self.poll_interval = float(poll_interval)
        if not self.poll_interval > 0:
            raise ConfigError(f"poll_interval must be > 0 seconds, got {poll_interval!r}.")
        try:
            self.statuses = normalise_statuses(["completed"] if statuses is None else list(statuses))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.search_monitors_path = search_monitors_path or None
        self.catch_up_limit = int(catch_up_limit)
        if self.catch_up_limit < 1:
            raise ConfigError(f"catch_up_limit must be >= 1, got {catch_up_limit!r}.")
        self.webhook_poll_interval = None if webhook_poll_interval is None else float(webhook_poll_interval)
        if self.webhook_poll_interval is not None and not self.webhook_poll_interval > 0:
            raise ConfigError(f"webhook_poll_interval must be > 0 seconds, got {webhook_poll_interval!r}.")
        # Names this instance's entries in the delivery record (never serialized).
        self._token = "poll:" + uuid.uuid4().hex[:12]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # Lists and primitives only: Airflow 3.0-3.2 hash the raw kwargs, and a tuple hashes
        # differently after a database round trip (apache/airflow#64625).
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "monitor_id": self.monitor_id,
                "monitor_type": self.monitor_type,
                "exa_conn_id": self.exa_conn_id,
                "poll_interval": self.poll_interval,
                "statuses": list(self.statuses),
                "search_monitors_path": self.search_monitors_path,
                "catch_up_limit": self.catch_up_limit,
                # Only when set: a new key would change the hash, and so re-create, existing watchers.
                **({"webhook_poll_interval": self.webhook_poll_interval} if self.webhook_poll_interval else {}),
            },
        )

    def interval(self, webhook: bool) -> float:
        """Seconds between cycles: ``poll_interval``, or the safety-net interval with a webhook."""
        if not webhook:
            return self.poll_interval
        return max(self.poll_interval, self.webhook_poll_interval or WEBHOOK_POLL_INTERVAL)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(monitor_id={self.monitor_id!r}, monitor_type={self.monitor_type!r}, "
            f"exa_conn_id={self.exa_conn_id!r})"
        )

    @property
    def label(self) -> str:
        return f"Exa {self.monitor_type} monitor {self.monitor_id} watcher"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Standalone: this watcher lists the runs itself every interval."""
        cycle = _Cycle(self)
        while True:
            wait = await cycle.step(None)
            async for event in cycle.emit():
                yield event
            await _watcher_sleep(wait)

    # --- the shared poll (Airflow 3.3+ triggerers call these instead of run()) ---

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of one monitor, connection, path and intervals share one listing per interval.

        ``None`` (each watcher polls on its own) before Airflow 3.3, or with the module's
        ``SHARED_POLL`` set to ``False``.
        """
        if not (AIRFLOW_V_3_3_PLUS and SHARED_POLL):
            return None
        return (
            "exa-monitor-runs",
            self.exa_conn_id,
            self.monitor_type,
            self.monitor_id,
            self.search_monitors_path,
            self.poll_interval,
            self.webhook_poll_interval,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """One listing of the newest runs per interval, for every watcher of the group.

        Yields ``{"runs": [...], "more": bool, "webhook": bool}`` (raw run objects, newest first)
        after each listing that worked; a failed one is logged here, once for the group, and retried
        with the watcher's backoff. It never returns: a shared stream that ends fails its watchers.
        """
        lead = cls(**kwargs)
        hook = ExaHook(lead.exa_conn_id, search_monitors_path=lead.search_monitors_path)
        complaint = _Complaint(lead.label + " (shared poll)")
        failures = 0
        webhook = False
        while True:
            snapshot: dict[str, Any] | None = None
            try:
                webhook = await hook.awebhook_configured()
                wait = lead.interval(webhook)
                limit = min(100, lead.catch_up_limit)
                page = await bounded(
                    hook.alist_runs(lead.monitor_id, lead.monitor_type, limit, None), WATCHER_CYCLE_TIMEOUT
                )
                snapshot = {
                    "runs": [r.raw for r in page.runs()],
                    "more": page.next_cursor is not None,
                    "webhook": webhook,
                }
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                permanent = isinstance(exc, PermanentError)
                base = lead.interval(webhook)
                wait = (
                    max(base, WATCHER_PERMANENT_RETRY)
                    if permanent
                    else Backoff(base=base, cap=WATCHER_MAX_BACKOFF).delay(failures)
                )
                complaint.report(exc, permanent, wait)
            else:
                if failures:
                    complaint.recovered(failures)
                failures = 0
            if snapshot is not None:
                yield snapshot
            await _watcher_sleep(wait)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """This watcher's events from the shared listings: its own watermark, record and statuses."""
        cycle = _Cycle(self)
        async for snapshot in shared_stream:
            await cycle.step(snapshot)
            async for event in cycle.emit():
                yield event

    async def _save(self, keeper: StateKeeper, watermark: Watermark, complaint: _Complaint) -> None:
        try:
            await keeper.save(watermark.committed_state())
        except Exception as exc:
            # The events still flow; only the restart point lags (more repeats, no misses).
            complaint.report(exc, False, self.poll_interval, "saving its watermark")

    async def _list(self, hook: ExaHook, watermark: Watermark) -> list[ExaMonitorRun]:
        """Runs newest first back to the watermark, at most ``catch_up_limit`` of them."""
        runs: list[ExaMonitorRun] = []
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            limit = min(100, self.catch_up_limit - len(runs))
            page = await hook.alist_runs(self.monitor_id, self.monitor_type, limit, cursor)
            batch = page.runs()
            runs.extend(batch[: self.catch_up_limit - len(runs)])
            if watermark.reaches_watermark(batch):
                return runs
            if self.monitor_type == ExaMonitorType.WEBSETS.value:
                # No cursor in the Websets runs spec (its SDK sends none): the first page is all
                # that can be read reliably.
                return runs
            if len(runs) >= self.catch_up_limit:
                if page.next_cursor:
                    log.warning(
                        "%s: more than %d runs since its watermark; older ones are skipped "
                        "(raise catch_up_limit to emit them).",
                        self.label,
                        self.catch_up_limit,
                    )
                return runs
            cursor = page.next_cursor
            if cursor is None:
                return runs
            if cursor in cursors:
                raise ProviderError(f"{self.label}: Exa returned cursor {cursor!r} twice (pagination loop).")
            cursors.add(cursor)

    def _event(self, run: ExaMonitorRun) -> dict[str, Any]:
        return run_event(self.monitor_id, self.monitor_type, run)

    async def on_kill(self) -> None:
        """Nothing to stop: Airflow calls this when the DAG is paused or the asset removed."""


class _Cycle:
    """One watcher's cycles: its watermark, state store, delivery record and error reports.

    :meth:`step` reads the runs (its own listing, or a shared snapshot) and decides what to emit;
    :meth:`emit` yields those events (after the delivery record had its say) and marks them.
    """

    def __init__(self, watcher: ExaMonitorRunWatcher) -> None:
        self.w = watcher
        self.hook = ExaHook(watcher.exa_conn_id, search_monitors_path=watcher.search_monitors_path)
        self.keeper = StateKeeper(watcher, state_key(watcher.monitor_type, watcher.monitor_id), watcher.label)
        self.watermark: Watermark | None = None
        self.complaint, self.store_complaint = _Complaint(watcher.label), _Complaint(watcher.label)
        self.failures = 0
        self.webhook = False
        self.pending: list[ExaMonitorRun] = []

    async def step(self, snapshot: dict[str, Any] | None) -> float:
        """Read the runs and pick those to emit; returns the pause before the next cycle."""
        w = self.w
        self.pending = []
        wait = w.interval(self.webhook)
        try:
            if snapshot is not None:
                self.webhook = bool(snapshot.get("webhook"))
            else:
                self.webhook = await self.hook.awebhook_configured()
            wait = w.interval(self.webhook)
            if self.watermark is None:
                self.watermark = Watermark(await self.keeper.load(), w.statuses)
                log.info(
                    "%s: started (%s%s).",
                    w.label,
                    "resuming from its stored watermark"
                    if not self.watermark.baseline
                    else "starting from now" + ("" if self.keeper.available else "; no state store"),
                    "; shared poll" if snapshot is not None else "",
                )
            watermark = self.watermark
            await w._save(self.keeper, watermark, self.store_complaint)
            if snapshot is not None:
                runs = [ExaMonitorRun.from_api(r) for r in snapshot.get("runs") or []]
                if snapshot.get("more") and not watermark.reaches_watermark(runs):
                    # Back from an absence: read further back than the shared page, this once.
                    runs = await bounded(w._list(self.hook, watermark), WATCHER_CYCLE_TIMEOUT)
            else:
                runs = await bounded(w._list(self.hook, watermark), WATCHER_CYCLE_TIMEOUT)
            self.pending = watermark.scan(runs)
            # Saved before this cycle's yields: the watermark may move, these runs stay pending.
            await w._save(self.keeper, watermark, self.store_complaint)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never end: a watcher that returns is re-created every second
            self.failures += 1
            permanent = isinstance(exc, PermanentError)
            base = w.interval(self.webhook)
            if permanent:
                wait = max(base, WATCHER_PERMANENT_RETRY)
            else:
                wait = Backoff(base=base, cap=WATCHER_MAX_BACKOFF).delay(self.failures)
            if snapshot is None:  # the shared poll reports its own listing errors, once for the group
                self.complaint.report(exc, permanent, wait)
        else:
            if self.failures and snapshot is None:
                self.complaint.recovered(self.failures)
            self.failures = 0
        return wait

    async def emit(self) -> AsyncIterator[TriggerEvent]:
        watermark = self.watermark
        if watermark is None or not self.pending:
            return
        fresh = await self._claim(self.pending)
        for run in self.pending:
            if run.id in fresh:
                yield TriggerEvent(self.w._event(run))
            watermark.mark_emitted(run)  # delivered (by this watcher, or already by the receiver)
        self.pending = []

    async def _claim(self, runs: list[ExaMonitorRun]) -> set[str]:
        """The runs to yield: with a webhook and a state store, those no one else has delivered.

        The record is read, the runs another writer named (the receiver, or another watcher of this
        asset after a failover) are skipped, and this watcher's own entries are written before the
        yield. Any error here emits everything (at least once, as without a webhook).
        """
        ids = {r.id for r in runs}
        store = self.keeper.store
        if not self.webhook or store is None:
            return ids
        key = record_key(self.w.monitor_type, self.w.monitor_id)
        try:
            record = parse_record(await store.aget(key))
            taken = {run_id for run_id in ids if record.get(run_id) not in (None, self.w._token)}
            fresh = ids - taken
            if fresh:
                for run in runs:
                    if run.id in fresh:
                        record[run.id] = self.w._token
                await store.aset(key, record_value(record))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.store_complaint.report(exc, False, self.w.poll_interval, "reading its delivery record")
            return ids
        if taken:
            log.info(
                "%s: %d run(s) already delivered by the webhook receiver: %s.", self.w.label, len(taken), sorted(taken)
            )
        return fresh


class _Complaint:
    """Logs a watcher's errors when they change, and otherwise every ``WATCHER_LOG_INTERVAL`` seconds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last: tuple[str, float] | None = None
        self._suppressed = 0

    def report(self, exc: BaseException, permanent: bool, wait: float, what: str = "polling") -> None:
        text = str(exc) or type(exc).__name__
        # The same failure, whatever its request id: an API error is known by its status and path.
        same = f"{exc.status_code} {exc.path}" if isinstance(exc, APIError) else f"{type(exc).__name__} {text}"
        now = time.monotonic()
        if self._last is not None and self._last[0] == same and now - self._last[1] < WATCHER_LOG_INTERVAL:
            self._suppressed += 1
            return
        kind = "needs attention (it keeps trying)" if permanent else "failed; trying again"
        extra = f"; {self._suppressed} more like it since the last report" if self._suppressed else ""
        log_at = log.error if permanent else log.warning
        log_at("%s: %s %s in %.0f s: %s%s", self.label, what, kind, wait, text, extra)
        self._last, self._suppressed = (same, now), 0

    def recovered(self, failures: int) -> None:
        log.info("%s: polling works again after %d failed cycle(s).", self.label, failures)
        self._last, self._suppressed = None, 0
