"""Trigger an Exa search monitor run now and wait for it, paying for one run per task instance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowTaskTimeout, BaseOperator, conf

from airflow_monid._exa.ledger import ABOUT_TO_TRIGGER, LEDGER_KEY, REFUSED, REUSABLE, TRIGGERED, monitor_digest
from airflow_monid._exa.outcome import run_outcome
from airflow_monid._http.policy import deadline_scope
from airflow_monid._runtime.deferral import Deadline, cycle_of, try_number_of
from airflow_monid._runtime.ledger import RunLedger
from airflow_monid._runtime.lifecycle import RunLifecycle
from airflow_monid._runtime.lineage import ExaLineage
from airflow_monid._runtime.links import TaskStateLink
from airflow_monid._runtime.output_store import OutputStore
from airflow_monid._runtime.validation import require_positive, require_text
from airflow_monid._runtime.waiting import Waiter
from airflow_monid._spend import record_exa_spend
from airflow_monid.exceptions import (
    ConfigError,
    ExaRunError,
    ExaUnclearTriggerError,
    ExaUnclearTriggerPermanentError,
    PermanentAPIError,
    PermanentError,
    ProviderError,
    UnclearRequestError,
)
from airflow_monid.hooks.exa import RUNS_PAGE_SIZE, ExaHook
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType
from airflow_monid.triggers.exa import ExaMonitorRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger


class ExaRunLink(TaskStateLink):
    """The run in Exa's dashboard: ``<dashboard_url>/monitors/<id>/runs/<run>`` (Exa documents no such
    URL: unverified; the connection's ``dashboard_url`` extra sets the base). Search monitors only."""

    name = "Exa Run"
    attribute = "run_url"


class ExaMonitorLink(TaskStateLink):
    """The monitor in Exa's dashboard: ``<dashboard_url>/monitors/<id>`` (unverified, as :class:`ExaRunLink`)."""

    name = "Exa Monitor"
    attribute = "monitor_url"


def publish_links(
    task: Any, context: Any, hook: ExaHook, monitor_id: str, monitor_type: str, run_id: str | None
) -> None:
    """Keep the link URLs on ``task`` (what its links resolve to) and push them as XCom; Websets
    monitors get none (their pages' URLs are not known, and their tasks register no links)."""
    if monitor_type != "search":
        return
    task.monitor_url = f"{hook.dashboard_url()}/monitors/{monitor_id}"
    context["ti"].xcom_push(key="monitor_url", value=task.monitor_url)
    if run_id:
        task.run_url = f"{task.monitor_url}/runs/{run_id}"
        context["ti"].xcom_push(key="run_url", value=task.run_url)


class ExaTriggerMonitorOperator(ExaLineage, OutputStore, RunLifecycle[ExaMonitorRun], BaseOperator):
    """Trigger a search monitor run (``POST /monitors/{id}/trigger``, billed) and wait for it.

    Exa answers the trigger without a run id, so the ids on the first page of runs are read before
    the trigger and the run is the newest one not among them. The wait is the sensor's: a run
    cancelled because a newer run replaced it is followed, ``completed`` succeeds with the run's JSON.

    On Airflow 3.3+ the payment is bracketed in ``task_state_store``: ``about_to_trigger`` (with the
    snapshot) before the POST, ``triggered`` after Exa's answer, the run id once it is seen. A retry
    that finds ``triggered`` waits for the new run and adopts it; one that finds only
    ``about_to_trigger`` (the answer was lost) looks for a new run for ``unclear_grace`` seconds and
    otherwise fails without retry, unless ``retrigger_on_unclear``. It never triggers twice by accident.

    :param monitor_id: the search monitor (templated).
    :param monitor_type: only ``search``: Websets monitors have no manual trigger.
    :param exa_conn_id: connection of type ``exa``.
    :param search_monitors_path: ``/monitors`` or ``/search-monitors``; default from the connection.
    :param wait_for_completion: wait for a terminal run; ``False`` returns the run as soon as it is found.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls (> 0).
    :param timeout: seconds to wait for the run to appear and finish (> 0), capped by
        ``execution_timeout``. Exa cannot cancel a run, so at the deadline the run goes on and a retry
        waits for it again.
    :param durable: remember the run in ``task_state_store`` so a retry reuses it.
    :param unclear_grace: seconds a try looks for the run of a trigger whose answer was lost.
    :param retrigger_on_unclear: when no run appeared after an unclear trigger, pay for a new one
        instead of failing.
    :param output_path: write the run's ``output`` to this ``ObjectStoragePath`` URL (templated;
        ``{exa_run_id}`` is replaced by the run id) and return the URL instead of the run's JSON.
    """

    template_fields: Sequence[str] = ("monitor_id", "exa_conn_id", "output_path")
    operator_extra_links = (ExaRunLink(), ExaMonitorLink())
    ui_color = "#eef6ea"
    output_api = "Exa"

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
        unclear_grace: float = 120,
        retrigger_on_unclear: bool = False,
        output_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if ExaMonitorType.parse(monitor_type) is not ExaMonitorType.SEARCH:
            raise ConfigError("monitor_type must be 'search': Websets monitors have no manual trigger.")
        if isinstance(monitor_id, str) and not monitor_id.strip():
            raise ConfigError(f"monitor_id must be a non-empty string, got {monitor_id!r}.")
        self.monitor_id = monitor_id
        self.monitor_type = "search"
        self.exa_conn_id = exa_conn_id
        self.search_monitors_path = search_monitors_path
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = require_positive(poll_interval, "poll_interval")
        self.timeout = require_positive(timeout, "timeout")
        self.durable = durable
        self.unclear_grace = require_positive(unclear_grace, "unclear_grace")
        self.retrigger_on_unclear = retrigger_on_unclear
        self.output_path = output_path
        self.run_id: str | None = None
        self.run_url: str | None = None  # the task's links, once known (publish_links)
        self.monitor_url: str | None = None
        self._run_ledger: RunLedger | None = None
        self._listing: Waiter | None = None  # the last search for a new run: its errors, for the messages

    @cached_property
    def hook(self) -> ExaHook:
        """Built once per try (after templates are rendered): one connection lookup, not one per poll."""
        return ExaHook(self.exa_conn_id, search_monitors_path=self.search_monitors_path)

    def _ledger(self, context: Context) -> RunLedger:
        """One ledger per try (it keeps the entry in memory after the first read)."""
        if self._run_ledger is None or self._run_ledger.context is not context:
            self._run_ledger = RunLedger(
                context, enabled=self.durable, key=LEDGER_KEY, cycle=cycle_of(context, self.retries)
            )
        return self._run_ledger

    def _known(self, context: Context, run: ExaMonitorRun) -> None:
        """Persist and publish a run id the moment it is known (also a replacement followed later)."""
        if run.id != self.run_id:
            self._ledger(context).remember(run.id, monitor_digest(self.monitor_id))
            context["ti"].xcom_push(key="run_id", value=run.id)
            publish_links(self, context, self.hook, self.monitor_id, "search", run.id)
            self.run_id = run.id

    # --- the lifecycle's plug-ins ------------------------------------------------------------------

    def _label(self) -> str:
        return f"Exa search monitor {self.monitor_id}"

    def _fetch(self, run_id: str) -> ExaMonitorRun:
        hook = self.hook
        return hook.follow_replacement(self.monitor_id, hook.get_run(self.monitor_id, run_id))

    def _seen(self, context: Any, run: ExaMonitorRun) -> None:
        self._known(context, run)

    def _poll_interval(self) -> float:
        return self.poll_interval

    def _trigger(self, run_id: str | None, deadline: Deadline) -> BaseTrigger:
        return ExaMonitorRunTrigger(
            monitor_id=self.monitor_id,
            exa_conn_id=self.exa_conn_id,
            poll_interval=self.poll_interval,
            end_time=deadline.end_time,
            monitor_type="search",
            run_id=run_id,
            search_monitors_path=self.hook.prefix("search"),
        )

    def _complete(self, context: Context, run: ExaMonitorRun) -> Any:
        self._known(context, run)
        record_exa_spend(context, run, monitor_id=self.monitor_id, conn_id=self.exa_conn_id)
        result = run_outcome(run, self._label())
        # Written before the ledger says delivered: a failed write is retried with the same run, unpaid.
        value = self._deliver(run.id, result)
        self._ledger(context).mark_delivered()
        return value

    def _expire(self, context: Context, run_id: str | None, deadline: Deadline, why: str) -> Any:
        # Retryable: the run is in the ledger, so a retry waits for it again instead of paying.
        message = (
            f"{self._label()} run {run_id} did not finish by the deadline ({deadline.describe()}). Exa cannot "
            f"cancel a run, so it goes on; a retry of this task waits for the same run. {why}"
        )
        if deadline.bound == "execution_timeout":
            raise AirflowTaskTimeout(message)
        raise ExaRunError(message, run_id=run_id)

    # --- execute --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        monitor_id = require_text(self.monitor_id, "monitor_id")
        self.run_id = None  # per try: a retry republishes the run id even when it reuses the run
        hook = self.hook
        hook.prefix("search")  # a bad URL, key or path extra fails here, before any money is spent
        self._check_output_path(context)
        publish_links(self, context, hook, monitor_id, "search", None)
        deadline = Deadline.for_try(context, self.timeout, self.execution_timeout)
        run = self._obtain_run(context, hook, monitor_id, deadline)
        self._known(context, run)
        if not self.wait_for_completion:
            self.log.info("%s run %s is %s; not waiting.", self._label(), run.id, run.raw_status)
            record_exa_spend(context, run, monitor_id=self.monitor_id, conn_id=self.exa_conn_id)
            self._ledger(context).mark_delivered()
            return run.raw
        return self._await(context, run, deadline)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger: validate the event, read the run once, apply the outcome."""
        return self._resume(context, event)

    def _obtain_run(self, context: Context, hook: ExaHook, monitor_id: str, deadline: Deadline) -> ExaMonitorRun:
        """Reuse, adopt, or trigger (README "Decision table", Exa rows)."""
        ledger = self._ledger(context)
        candidate = ledger.candidate(monitor_digest(monitor_id))
        if candidate.run_id is not None:
            reused = self._reuse_stored(hook, monitor_id, candidate.run_id, candidate.delivered)
            if reused is not None:
                return reused
        elif candidate.phase == TRIGGERED:
            self.log.info("An earlier try triggered %s (answer received): waiting for its run.", self._label())
            return self._await_new_run(hook, monitor_id, set(candidate.snapshot), deadline.end_time, True)
        elif candidate.phase == ABOUT_TO_TRIGGER:
            adopted = self._adopt_after_unclear(hook, monitor_id, set(candidate.snapshot), "an earlier try")
            if adopted is not None:
                return adopted
        elif not ledger.available and try_number_of(context) > ledger.cycle:
            self.log.warning(
                "Retry without task_state_store (Airflow < 3.3): the run an earlier try paid for cannot be "
                "recognised, so a new run is triggered."
            )
        hook.check_monitor(monitor_id, "search")  # a missing or disabled monitor fails before paying
        return self._trigger_new(context, hook, monitor_id, ledger, deadline.end_time)

    def _reuse_stored(self, hook: ExaHook, monitor_id: str, run_id: str, delivered: bool) -> ExaMonitorRun | None:
        try:
            run = hook.follow_replacement(monitor_id, hook.get_run(monitor_id, run_id))
        except PermanentAPIError as exc:
            if exc.status_code != 404:
                raise
            self.log.warning("Stored run %s is unknown to Exa (404): triggering a new run.", run_id)
            return None
        if run.status in REUSABLE:
            self.log.info(
                "Reusing %s run %s from an earlier try (%s%s): not triggering.",
                self._label(),
                run.id,
                run.raw_status,
                ", already delivered once" if delivered else "",
            )
            return run
        self.log.info("Stored run %s ended %s: triggering a new run.", run.id, run.raw_status)
        return None

    def _snapshot(self, hook: ExaHook, monitor_id: str) -> set[str]:
        return {run.id for run in hook.list_runs(monitor_id, "search", limit=RUNS_PAGE_SIZE).runs()}

    def _new_runs(self, hook: ExaHook, monitor_id: str, snapshot: set[str]) -> list[ExaMonitorRun]:
        """Runs on the first page that were not there before the trigger, newest first."""
        page = hook.list_runs(monitor_id, "search", limit=RUNS_PAGE_SIZE).runs()
        return [run for run in page if run.id not in snapshot]

    def _trigger_new(
        self, context: Context, hook: ExaHook, monitor_id: str, ledger: RunLedger, end_time: float
    ) -> ExaMonitorRun:
        # Ids, not times: Exa's clock and ours differ, and the trigger answer names no run.
        snapshot = self._snapshot(hook, monitor_id)
        digest, at = monitor_digest(monitor_id), time.time()
        ledger.record_intent(digest, ABOUT_TO_TRIGGER, snapshot, at)
        try:
            answer = hook.trigger_monitor(monitor_id)
        except UnclearRequestError as exc:
            self.log.warning("The trigger's outcome is unclear (it may have started a billed run): %s", exc)
            adopted = self._adopt_after_unclear(hook, monitor_id, snapshot, "this try")
            if adopted is None:
                raise ExaUnclearTriggerError(f"{self._label()}: {exc}") from None
            return adopted
        except Exception:
            # Any other error means Exa started nothing (the request core only raises these for a
            # request that never arrived, a 429 or a refusal): a retry may trigger without doubt.
            ledger.record_intent(digest, REFUSED, snapshot, at)
            raise
        if answer.get("triggered") is not True:
            ledger.record_intent(digest, REFUSED, snapshot, at)
            raise PermanentError(f"{self._label()} was not triggered: Exa answered {answer!r}.")
        ledger.record_intent(digest, TRIGGERED, snapshot, at)
        self.log.info("Triggered %s; looking for the run it started.", self._label())
        return self._await_new_run(hook, monitor_id, snapshot, end_time, ledger.available)

    def _await_new_run(
        self, hook: ExaHook, monitor_id: str, snapshot: set[str], end_time: float, recorded: bool
    ) -> ExaMonitorRun:
        """The run a received trigger started. A try that dies here leaves ``triggered`` behind, so its
        retry waits too instead of paying again."""
        new = self._look_for_new_runs(hook, monitor_id, snapshot, end_time)
        if new:
            self.log.info("%s: the triggered run is %s.", self._label(), new[0].describe())
            return new[0]
        text = f"{self._label()} was triggered but no new run appeared within the deadline"
        failure = self._listing.failure_text() if self._listing is not None else None
        if failure:
            text = f"{self._label()} was triggered (paid), but its new run could not be looked for: {failure}"
        if not recorded:  # no store (Airflow < 3.3): a retry could not tell, and would pay again
            raise PermanentError(text + "; check the monitor's runs before clearing this task.")
        # Retryable: the ledger says "triggered", so the retry keeps looking and never pays again.
        raise ExaRunError(text + "; a retry of this task keeps looking for it (it does not trigger again).")

    def _adopt_after_unclear(
        self, hook: ExaHook, monitor_id: str, snapshot: set[str], who: str
    ) -> ExaMonitorRun | None:
        """The run of a trigger whose answer was lost: looked for during ``unclear_grace`` seconds.

        Exactly one new run is adopted; several fail without retry (which one is ours?). None → fail
        without retry, or return ``None`` (trigger again) with ``retrigger_on_unclear``.
        """
        self.log.warning(
            "%s sent the trigger of %s but its answer was lost: looking for the run it may have started "
            "(up to %.0f s).",
            who,
            self._label(),
            self.unclear_grace,
        )
        new = self._look_for_new_runs(hook, monitor_id, snapshot, time.time() + self.unclear_grace)
        if len(new) == 1:
            self.log.info("Adopting %s, the one run that appeared after the unclear trigger.", new[0].describe())
            return new[0]
        if len(new) > 1:  # a scheduled run started at the same moment: which one is ours?
            ids = ", ".join(run.id for run in new)
            raise ExaUnclearTriggerPermanentError(
                f"{self._label()}: the trigger's answer was lost and {len(new)} new runs appeared ({ids}), so "
                "this task cannot tell which one it started. Not triggering again (each run is billed): check "
                "the monitor's runs, then clear this task."
            )
        failure = self._listing.failure_text() if self._listing is not None else None
        if self.retrigger_on_unclear:
            self.log.warning(
                "No new run %s: triggering again (retrigger_on_unclear=True).",
                f"could be seen ({failure})" if failure else "appeared",
            )
            return None
        seen = (
            f"its runs could not be listed within unclear_grace={self.unclear_grace:.0f} s ({failure})"
            if failure
            else f"no new run appeared within unclear_grace={self.unclear_grace:.0f} s"
        )
        raise ExaUnclearTriggerPermanentError(
            f"{self._label()}: the trigger request may have reached Exa (a run may have been paid) but its "
            f"outcome is unclear, and {seen}. Not triggering again (each run is billed): check the monitor's "
            "runs, then clear this task, or set retrigger_on_unclear=True."
        )

    def _look_for_new_runs(
        self, hook: ExaHook, monitor_id: str, snapshot: set[str], until: float
    ) -> list[ExaMonitorRun]:
        """Runs not in ``snapshot``, listed every ``poll_interval`` until some appear or ``until`` passes.

        Transient list errors are waited out (a list that keeps failing must not make a retry pay again),
        logged on the 1st, 2nd, 4th... failure in a row and remembered in ``self._listing`` for the
        messages; no request outlives ``until`` by more than the request core's margin.
        """
        self._listing = waiter = Waiter(
            end_time=until, poll_interval=self.poll_interval, label=f"Listing {self._label()} runs", log=self.log
        )
        while True:
            try:
                with deadline_scope(until):
                    new = self._new_runs(hook, monitor_id, snapshot)
            except PermanentError:
                raise
            except ProviderError as exc:
                waiter.on_error(exc)
                new = []
            else:
                waiter.errors = 0  # the list answered: a later message must not blame the connection
            remaining = until - time.time()
            if new or remaining <= 0:
                return new
            time.sleep(min(self.poll_interval, remaining))

    def _resume_stale(self, context: Context, event: Any) -> Any:
        """A retry that Airflow 3.0 resumed with the previous try's event.

        The event still names the run that try paid for, which matters without a run ledger
        (Airflow < 3.3): wait for that run again when it is reusable, else start the try afresh.
        """
        run_id = event.get("run_id") if isinstance(event, dict) else None
        if not isinstance(run_id, str) or not run_id:
            return super()._resume_stale(context, event)
        run = self._fetch(run_id)
        if run.status not in REUSABLE:
            self.log.warning(
                "Resumed with the event of an earlier try, whose run %s ended %s: starting afresh.",
                run.id,
                run.raw_status,
            )
            return self.execute(context)
        self.log.warning("Resumed with the event of an earlier try: waiting for its run %s again.", run.id)
        self._known(context, run)
        return self._await(context, run, Deadline.for_try(context, self.timeout, self.execution_timeout))
