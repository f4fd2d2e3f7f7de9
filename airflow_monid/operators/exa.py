"""Trigger an Exa search monitor run now and wait for it, paying for one run per task instance."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_monid._exactly_once import RunLedger
from airflow_monid._validation import require_positive, require_text
from airflow_monid.exceptions import (
    MonidAPIError,
    MonidConfigError,
    MonidError,
    MonidPermanentError,
    MonidRunError,
    MonidUnclearSubmitError,
)
from airflow_monid.hooks.exa import RUNS_PAGE_SIZE, ExaHook
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType, ExaRunStatus, run_outcome
from airflow_monid.sensors.exa import check_monitor
from airflow_monid.triggers._events import is_stale_resume, parse_event, remember_deferral, try_number_of
from airflow_monid.triggers.exa import ExaMonitorRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

LEDGER_KEY = "exa_monitor_run"
# After an unclear trigger (answer lost), the runs list is read this many times, ``poll_interval``
# apart, for the run the request may have created.
UNCLEAR_CHECKS = 3
_REUSABLE = frozenset({ExaRunStatus.PENDING, ExaRunStatus.RUNNING, ExaRunStatus.UNKNOWN, ExaRunStatus.COMPLETED})


def monitor_digest(monitor_id: str) -> str:
    return hashlib.sha256(f"exa-search-monitor:{monitor_id}".encode()).hexdigest()


class ExaTriggerMonitorOperator(BaseOperator):
    """Trigger a search monitor run (``POST /monitors/{id}/trigger``, billed) and wait for it.

    Exa answers the trigger without a run id, so the ids on the first page of runs are read before
    the trigger and the run is the newest one not among them. The wait is the sensor's: a run
    cancelled because a newer run replaced it is followed, ``completed`` succeeds with the run's JSON.

    A retry reuses the run an earlier try started (pending, running or completed and not yet
    delivered), kept in ``task_state_store`` on Airflow 3.3+, instead of paying again. A trigger whose
    answer was lost is never repeated: the task adopts the one new run, or fails saying why.

    :param monitor_id: the search monitor (templated).
    :param monitor_type: only ``search``: Websets monitors have no manual trigger.
    :param exa_conn_id: connection of type ``exa``.
    :param search_monitors_path: ``/monitors`` or ``/search-monitors``; default from the connection.
    :param wait_for_completion: wait for a terminal run; ``False`` returns the run as soon as it is found.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls (> 0).
    :param timeout: seconds to wait for the run to appear and finish (> 0). Exa cannot cancel a run,
        so on timeout the run goes on and a retry reuses it.
    :param durable: remember the run in ``task_state_store`` so a retry reuses it.
    """

    template_fields: Sequence[str] = ("monitor_id", "exa_conn_id")
    ui_color = "#eef6ea"

    def __init__(
        self,
        *,
        monitor_id: str,
        monitor_type: str = "search",
        exa_conn_id: str = ExaHook.default_conn_name,
        search_monitors_path: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30,
        timeout: float = 3600,
        durable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if ExaMonitorType.parse(monitor_type) is not ExaMonitorType.SEARCH:
            raise MonidConfigError("monitor_type must be 'search': Websets monitors have no manual trigger.")
        if isinstance(monitor_id, str) and not monitor_id.strip():
            raise MonidConfigError(f"monitor_id must be a non-empty string, got {monitor_id!r}.")
        self.monitor_id = monitor_id
        self.monitor_type = "search"
        self.exa_conn_id = exa_conn_id
        self.search_monitors_path = search_monitors_path
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = require_positive(poll_interval, "poll_interval")
        self.timeout = require_positive(timeout, "timeout")
        self.durable = durable
        self.run_id: str | None = None

    @property
    def _label(self) -> str:
        return f"Exa search monitor {self.monitor_id}"

    def _hook(self) -> ExaHook:
        return ExaHook(self.exa_conn_id, search_monitors_path=self.search_monitors_path)

    def _ledger(self, context: Context) -> RunLedger:
        return RunLedger(context, enabled=self.durable, key=LEDGER_KEY)

    def _known(self, context: Context, ledger: RunLedger, run: ExaMonitorRun) -> None:
        """Persist and publish a run id the moment it is known (also a replacement followed later)."""
        if run.id != self.run_id:
            ledger.remember(run.id, monitor_digest(self.monitor_id))
            context["ti"].xcom_push(key="run_id", value=run.id)
            self.run_id = run.id

    # --- execute --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        monitor_id = require_text(self.monitor_id, "monitor_id")
        self.run_id = None  # per try: a retry republishes the run id even when it reuses the run
        hook = self._hook()
        hook.prefix("search")  # a bad URL, key or path extra fails here, before any money is spent
        ledger = self._ledger(context)
        end_time = time.time() + self.timeout
        run = self._reuse_stored(hook, ledger, monitor_id)
        if run is None:
            if not ledger.available and try_number_of(context) > 1:
                self.log.warning(
                    "Retry without task_state_store (Airflow < 3.3): the run an earlier try paid for cannot be "
                    "recognised, so a new run is triggered."
                )
            check_monitor(hook, monitor_id, "search", self.log)
            run = self._trigger(hook, monitor_id, end_time)
        self._known(context, ledger, run)
        if not self.wait_for_completion:
            self.log.info("%s run %s is %s; not waiting.", self._label, run.id, run.status_text)
            return run.raw
        if self.deferrable:
            run = self._fetch(hook, run.id)
            self._known(context, ledger, run)
            if run.status.is_terminal:
                return self._finish(run, ledger)
            self._defer(context, hook, run.id, end_time)
        return self._poll_on_worker(context, hook, ledger, run.id, end_time)

    def _reuse_stored(self, hook: ExaHook, ledger: RunLedger, monitor_id: str) -> ExaMonitorRun | None:
        stored = ledger.load()
        if stored is None:
            return None
        run_id = stored["run_id"]
        if stored.get("hash") != monitor_digest(monitor_id):
            self.log.info("Stored run %s was for another monitor: triggering a new run.", run_id)
            return None
        if stored.get("delivered"):
            self.log.info("Stored run %s was already delivered by a successful try: triggering a new run.", run_id)
            return None
        try:
            run = hook.follow_replacement(monitor_id, hook.get_run(monitor_id, run_id))
        except MonidAPIError as exc:
            if exc.status_code != 404:
                raise
            self.log.warning("Stored run %s is unknown to Exa (404): triggering a new run.", run_id)
            return None
        if run.status in _REUSABLE:
            self.log.info(
                "Reusing %s run %s from an earlier try (%s): not triggering.", self._label, run.id, run.status_text
            )
            return run
        self.log.info("Stored run %s ended %s: triggering a new run.", run.id, run.status_text)
        return None

    def _snapshot(self, hook: ExaHook, monitor_id: str) -> set[str]:
        return {run.id for run in hook.list_runs(monitor_id, "search", limit=RUNS_PAGE_SIZE).runs()}

    def _new_runs(self, hook: ExaHook, monitor_id: str, snapshot: set[str]) -> list[ExaMonitorRun]:
        """Runs on the first page that were not there before the trigger, newest first."""
        page = hook.list_runs(monitor_id, "search", limit=RUNS_PAGE_SIZE).runs()
        return [run for run in page if run.id not in snapshot]

    def _trigger(self, hook: ExaHook, monitor_id: str, end_time: float) -> ExaMonitorRun:
        # Ids, not times: Exa's clock and ours differ, and the trigger answer names no run.
        snapshot = self._snapshot(hook, monitor_id)
        try:
            answer = hook.trigger_monitor(monitor_id)
        except MonidUnclearSubmitError as exc:
            return self._adopt_after_unclear(hook, monitor_id, snapshot, exc)
        except MonidAPIError as exc:
            if exc.is_permanent:
                raise MonidPermanentError(str(exc)) from None
            raise
        if answer.get("triggered") is not True:
            raise MonidPermanentError(f"{self._label} was not triggered: Exa answered {answer!r}.")
        self.log.info("Triggered %s; looking for the run it started.", self._label)
        while True:
            new = self._new_runs(hook, monitor_id, snapshot)
            if new:
                self.log.info("%s: the triggered run is %s.", self._label, new[0].describe())
                return new[0]
            remaining = end_time - time.time()
            if remaining <= 0:
                # Not retryable: a retry could not tell this run from another and would pay again.
                raise MonidPermanentError(
                    f"{self._label} was triggered but no new run appeared within timeout={self.timeout:.0f} s; "
                    "check the monitor's runs before clearing this task."
                )
            time.sleep(min(self.poll_interval, remaining))

    def _adopt_after_unclear(
        self, hook: ExaHook, monitor_id: str, snapshot: set[str], exc: MonidUnclearSubmitError
    ) -> ExaMonitorRun:
        self.log.warning("The trigger's answer was lost; looking for the run it may have started: %s", exc)
        new: list[ExaMonitorRun] = []
        for check in range(UNCLEAR_CHECKS):
            if check:
                time.sleep(self.poll_interval)
            new = self._new_runs(hook, monitor_id, snapshot)
            if new:
                break
        if len(new) == 1:
            self.log.info("Adopting %s, the one run that appeared after the unclear trigger.", new[0].describe())
            return new[0]
        found = ", ".join(run.id for run in new) if new else "none"
        raise MonidPermanentError(
            f"{self._label}: the trigger request may have reached Exa but its answer was lost, and "
            f"{len(new)} new run(s) appeared ({found}), so this task cannot tell which run it started. Not "
            "triggering again (each run is billed): check the monitor's runs, then clear this task."
        )

    # --- waiting: the sensor's decisions, on the worker or in the triggerer ------------------------

    def _fetch(self, hook: ExaHook, run_id: str) -> ExaMonitorRun:
        return hook.follow_replacement(self.monitor_id, hook.get_run(self.monitor_id, run_id))

    def _defer(self, context: Context, hook: ExaHook, run_id: str, end_time: float) -> NoReturn:
        self.log.info("Deferring until %s run %s is terminal.", self._label, run_id)
        remember_deferral(context)
        self.defer(
            trigger=ExaMonitorRunTrigger(
                monitor_id=self.monitor_id,
                exa_conn_id=self.exa_conn_id,
                poll_interval=self.poll_interval,
                end_time=end_time,
                monitor_type="search",
                run_id=run_id,
                search_monitors_path=hook.prefix("search"),
            ),
            method_name="execute_complete",
            kwargs={"end_time": end_time},
            timeout=None,  # the trigger carries the absolute deadline and reports it
        )

    def _poll_on_worker(self, context: Context, hook: ExaHook, ledger: RunLedger, run_id: str, end_time: float) -> Any:
        while True:
            try:
                run = self._fetch(hook, run_id)
            except MonidAPIError as exc:
                if exc.is_permanent:
                    raise
                self.log.warning("Polling %s run %s failed (%s); trying again.", self._label, run_id, exc)
            except MonidPermanentError:
                raise
            except MonidError as exc:
                self.log.warning("Polling %s run %s failed (%s); trying again.", self._label, run_id, exc)
            else:
                self._known(context, ledger, run)
                run_id = run.id
                if run.status.is_terminal:
                    return self._finish(run, ledger)
                self.log.info("%s run %s is %s.", self._label, run.id, run.status_text)
            remaining = end_time - time.time()
            if remaining <= 0:
                self._timed_out(run_id)
            time.sleep(min(self.poll_interval, remaining))

    def _timed_out(self, run_id: str) -> NoReturn:
        # Retryable: the run is in the ledger, so a retry waits for it again instead of paying.
        raise MonidRunError(
            f"{self._label} run {run_id} did not finish within timeout={self.timeout:.0f} s. Exa cannot cancel "
            "a run, so it goes on; a retry of this task waits for the same run.",
            run_id=run_id,
        )

    def _finish(self, run: ExaMonitorRun, ledger: RunLedger) -> dict[str, Any]:
        result = run_outcome(run, self._label)
        ledger.mark_delivered()
        return result

    def execute_complete(self, context: Context, event: Any = None, end_time: float | None = None) -> Any:
        """Resume after the trigger: validate the event, fetch the run once, apply the outcome."""
        hook = self._hook()
        ledger = self._ledger(context)
        if is_stale_resume(context):
            return self._resume_stale(context, hook, ledger, event)
        parsed = parse_event(event)
        run_id = parsed.run_id or self.run_id or ""
        if parsed.status == "timeout":
            self._timed_out(run_id)
        if parsed.status == "error":
            raise MonidError(f"Waiting for {self._label} run {run_id} failed: {parsed.message}")
        run = self._fetch(hook, run_id)
        self._known(context, ledger, run)
        if not run.status.is_terminal:
            if end_time is not None and time.time() < end_time:
                self._defer(context, hook, run.id, end_time)  # a newer run replaced it after the trigger looked
            raise MonidRunError(
                f"{self._label} run {run.id} was reported terminal but is now {run.status_text!r}: outcome unknown.",
                run_id=run.id,
            )
        return self._finish(run, ledger)

    def _resume_stale(self, context: Context, hook: ExaHook, ledger: RunLedger, event: Any) -> Any:
        """A retry that Airflow 3.0 resumed with the previous try's event.

        The event still names the run that try paid for, which matters without a run ledger
        (Airflow < 3.3): wait for that run again when it is reusable, else start the try afresh.
        """
        run_id = event.get("run_id") if isinstance(event, dict) else None
        if not isinstance(run_id, str) or not run_id:
            self.log.warning("Resumed with the event of an earlier try: starting afresh.")
            return self.execute(context)
        run = self._fetch(hook, run_id)
        if run.status not in _REUSABLE:
            self.log.warning(
                "Resumed with the event of an earlier try, whose run %s ended %s: starting afresh.",
                run.id,
                run.status_text,
            )
            return self.execute(context)
        self.log.warning("Resumed with the event of an earlier try: waiting for its run %s again.", run.id)
        self._known(context, ledger, run)
        if run.status.is_terminal:
            return self._finish(run, ledger)
        self._defer(context, hook, run.id, time.time() + self.timeout)
