"""Run a paid Monid data endpoint and put its output in XCom."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, BaseOperatorLink, XCom, conf

from airflow_monid._exactly_once import RunLedger, adopt_one, find_matching_runs, request_digest
from airflow_monid._outcome import apply_outcome, is_reusable
from airflow_monid._validation import (
    require_json_object,
    require_positive,
    require_statuses,
    require_text,
)
from airflow_monid.exceptions import (
    MonidAPIError,
    MonidError,
    MonidPermanentError,
    MonidRunError,
    MonidUnclearSubmitError,
)
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRun
from airflow_monid.triggers._events import is_stale_resume, parse_event, remember_deferral, try_number_of
from airflow_monid.triggers.monid import MonidRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey


class MonidRunLink(BaseOperatorLink):
    """Link to the run in the Monid app (URL form not documented by Monid: unverified)."""

    name = "Monid Run"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        # In Airflow 3 the worker stores links as XCom; the API server imports no provider code.
        return XCom.get_value(key="run_url", ti_key=ti_key) or ""


class MonidRunOperator(BaseOperator):
    """Submit a Monid run (``POST /v1/run``) and wait for its outcome.

    Sync providers answer with a finished run and the task ends without waiting. Async runs are
    polled on the worker, or in the triggerer when ``deferrable`` (no worker slot held).

    :param provider: provider slug, e.g. ``apify`` (templated).
    :param endpoint: endpoint path, e.g. ``/apidojo/tweet-scraper`` (templated).
    :param input: JSON object sent as ``input`` exactly as given (templated; XComArg and ``expand()`` work).
    :param monid_conn_id: connection of type ``monid``.
    :param wait_for_completion: wait for a terminal run; ``False`` returns the run id after submission.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls (> 0).
    :param timeout: seconds to wait from this try's submission or reconnection; the run is then
        stopped and the task fails. In deferrable mode this is the only bound (Airflow does not
        enforce ``execution_timeout`` while a task is deferred).
    :param allowed_provider_statuses: provider HTTP statuses besides 2xx that mean success with no
        data (return value ``None``), e.g. ``[404]`` for enrichment where no match is normal.
    :param durable: remember the run in ``task_state_store`` (Airflow 3.3+) so a retry reuses it
        instead of paying again; ``False`` submits a fresh run on every try.
    :param adopt_existing_run: when the run id may be unknown (unclear submit, a retry without a
        ledger), look for exactly one recent run with the same input and adopt it.
    """

    template_fields: Sequence[str] = ("provider", "endpoint", "input", "monid_conn_id")
    template_fields_renderers = {"input": "json"}
    operator_extra_links = (MonidRunLink(),)
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        provider: str,
        endpoint: str,
        input: Any = None,
        monid_conn_id: str = MonidHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5,
        timeout: float = 3600,
        allowed_provider_statuses: Sequence[int] = (),
        durable: bool = True,
        adopt_existing_run: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.provider = provider
        self.endpoint = endpoint
        self.input = {} if input is None else input
        self.monid_conn_id = monid_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = require_positive(poll_interval, "poll_interval")
        self.timeout = require_positive(timeout, "timeout")
        self.allowed_provider_statuses = require_statuses(allowed_provider_statuses)
        self.durable = durable
        self.adopt_existing_run = adopt_existing_run
        self.run_id: str | None = None

    @property
    def hook(self) -> MonidHook:
        return MonidHook(self.monid_conn_id)

    # --- execute --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        provider = require_text(self.provider, "provider")
        endpoint = require_text(self.endpoint, "endpoint")
        payload = require_json_object(self.input)
        hook = self.hook
        hook.settings  # noqa: B018 - a bad URL or missing key fails here, before any money is spent
        ledger = RunLedger(context, enabled=self.durable)
        run = self._obtain_run(context, hook, ledger, provider, endpoint, payload)
        self.run_id = run.run_id
        context["ti"].xcom_push(key="run_id", value=run.run_id)
        context["ti"].xcom_push(key="run_url", value=f"{hook.app_url()}/runs/{run.run_id}")

        if run.status.is_terminal:
            return self._finish(context, run, ledger)
        if not self.wait_for_completion:
            self.log.info("Monid run %s submitted (%s); not waiting.", run.run_id, run.status_text)
            return run.run_id
        end_time = time.time() + self.timeout
        if self.deferrable:
            self.log.info("Deferring until Monid run %s is terminal (deadline in %.0f s).", run.run_id, self.timeout)
            remember_deferral(context)
            self.defer(
                trigger=MonidRunTrigger(
                    run_id=run.run_id,
                    monid_conn_id=self.monid_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=end_time,
                ),
                method_name="execute_complete",
                # Airflow's own defer timeout would skip execute_complete and leave the run going;
                # the trigger carries the absolute deadline instead.
                timeout=None,
            )
        return self._poll_on_worker(context, hook, run, end_time, ledger)

    def _obtain_run(
        self,
        context: Context,
        hook: MonidHook,
        ledger: RunLedger,
        provider: str,
        endpoint: str,
        payload: dict[str, Any],
    ) -> MonidRun:
        """Reuse the run an earlier try paid for, adopt a lost one, or submit a new one."""
        digest = request_digest(provider, endpoint, payload)
        stored = ledger.load()
        try_number = try_number_of(context)
        if stored is not None:
            reused = self._reuse_stored(hook, stored, digest)
            if reused is not None:
                return reused
        elif self.durable and self.adopt_existing_run and try_number > 1:
            # No ledger entry on a retry: Airflow < 3.3, or the worker died between POST and writing it.
            where = "this Airflow has no task_state_store" if not ledger.available else "the run ledger is empty"
            self.log.info("Try %s and %s: looking for a run an earlier try paid for.", try_number, where)
            adopted = adopt_one(find_matching_runs(hook, provider, endpoint, payload, self._since(context)))
            if adopted is not None and is_reusable(adopted):
                self.log.info("Adopting Monid run %s (%s): no new submission.", adopted.run_id, adopted.status_text)
                ledger.remember(adopted.run_id, digest)
                return adopted
            if adopted is not None:
                self.log.info(
                    "Found run %s but it ended %s: submitting a new run.", adopted.run_id, adopted.status_text
                )
        started = datetime.now().astimezone() - timedelta(seconds=60)
        try:
            run = hook.submit_run(provider, endpoint, payload)
        except MonidUnclearSubmitError:
            if not self.adopt_existing_run:
                raise
            self.log.warning("The submission's answer was lost; looking for the run it may have created.")
            adopted = adopt_one(find_matching_runs(hook, provider, endpoint, payload, started))
            if adopted is None:
                raise
            self.log.info("Adopting Monid run %s created by the unclear submission.", adopted.run_id)
            run = adopted
        except MonidAPIError as exc:
            if exc.is_permanent:
                raise MonidPermanentError(str(exc)) from None
            raise
        self.log.info("Submitted Monid run %s (%s).", run.run_id, run.status_text)
        ledger.remember(run.run_id, digest)
        return run

    def _reuse_stored(self, hook: MonidHook, stored: dict[str, Any], digest: str) -> MonidRun | None:
        run_id = stored["run_id"]
        if stored.get("hash") != digest:
            self.log.info("Stored run %s was for a different input: submitting a new run.", run_id)
            return None
        if stored.get("delivered"):
            self.log.info("Stored run %s was already delivered by a successful try: fresh run.", run_id)
            return None
        try:
            run = hook.get_run(run_id)
        except MonidAPIError as exc:
            if exc.status_code != 404:
                raise
            self.log.warning("Stored run %s is unknown to Monid (404): submitting a new run.", run_id)
            return None
        if is_reusable(run):
            self.log.info("Reusing Monid run %s from an earlier try (%s): no new submission.", run_id, run.status_text)
            return run
        self.log.info("Stored run %s ended %s: submitting a new run.", run_id, run.status_text)
        return None

    @staticmethod
    def _since(context: Context) -> datetime | None:
        dag_run = context.get("dag_run")
        start = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        return start - timedelta(seconds=60) if isinstance(start, datetime) else None

    def _poll_on_worker(
        self, context: Context, hook: MonidHook, run: MonidRun, end_time: float, ledger: RunLedger
    ) -> Any:
        while True:
            if run.status.is_terminal:
                return self._finish(context, run, ledger)
            if time.time() >= end_time:
                self._stop_after_deadline(hook, run.run_id)
            self.log.info("Monid run %s is %s; next check in %.0f s.", run.run_id, run.status_text, self.poll_interval)
            time.sleep(min(self.poll_interval, max(0.0, end_time - time.time())))
            try:
                run = hook.get_run(run.run_id)
            except MonidAPIError as exc:
                if exc.is_permanent:
                    raise
                self.log.warning("Polling Monid run %s failed (%s); trying again.", run.run_id, exc)
            except MonidError as exc:
                if isinstance(exc, MonidPermanentError):
                    raise
                self.log.warning("Polling Monid run %s failed (%s); trying again.", run.run_id, exc)

    def _stop_after_deadline(self, hook: MonidHook, run_id: str) -> None:
        try:
            hook.stop_run(run_id)
            stopped = "stop requested"
        except MonidError as exc:
            stopped = f"stop request failed: {exc}"
        raise MonidRunError(
            f"Monid run {run_id} did not finish within timeout={self.timeout:.0f} s; {stopped}.",
            run_id=run_id,
        )

    def _finish(self, context: Context, run: MonidRun, ledger: RunLedger) -> Any:
        context["ti"].xcom_push(key="run", value=run.summary())
        output = apply_outcome(run, self.allowed_provider_statuses)
        ledger.mark_delivered()
        return output

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger: validate the event, fetch the run once, apply the outcome table."""
        if is_stale_resume(context):
            self.log.warning("Resumed with the event of an earlier try: starting this try afresh.")
            return self.execute(context)
        parsed = parse_event(event)
        self.run_id = parsed.run_id
        hook = self.hook
        ledger = RunLedger(context, enabled=self.durable)
        if parsed.status == "timeout":
            self._stop_after_deadline(hook, parsed.run_id)
        if parsed.status == "error":
            raise MonidError(f"Waiting for Monid run {parsed.run_id} failed: {parsed.message}")
        run = hook.get_run(parsed.run_id)
        if not run.status.is_terminal:
            raise MonidRunError(
                f"Monid run {run.run_id} was reported terminal ({parsed.run_status}) but is now "
                f"{run.status_text!r}: outcome unknown, not counted as success.",
                run_id=run.run_id,
            )
        return self._finish(context, run, ledger)

    def on_kill(self) -> None:
        """Stop the run when the task is killed on the worker (polling mode)."""
        if self.run_id:
            try:
                self.hook.stop_run(self.run_id)
                self.log.info("Stop requested for Monid run %s.", self.run_id)
            except Exception as exc:
                self.log.warning("Could not stop Monid run %s: %s", self.run_id, exc)
