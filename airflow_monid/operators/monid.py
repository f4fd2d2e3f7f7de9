"""Run a paid Monid data endpoint and put its output in XCom."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowTaskTimeout, BaseOperator, conf

from airflow_monid._monid import budget, reuse
from airflow_monid._monid.cost_guard import Price
from airflow_monid._monid.exactly_once import LEDGER_KEY, adopt_one, find_matching_runs, request_digest
from airflow_monid._monid.outcome import apply_outcome, is_reusable
from airflow_monid._monid.preflight import before_paying, inspect_cached, require_options, with_cost
from airflow_monid._runtime.alerts import SpendAlert, require_alert
from airflow_monid._runtime.deferral import Deadline, cycle_of, try_number_of
from airflow_monid._runtime.ledger import RunLedger
from airflow_monid._runtime.lifecycle import RunLifecycle
from airflow_monid._runtime.lineage import MonidLineage
from airflow_monid._runtime.links import TaskStateLink
from airflow_monid._runtime.output_store import OutputStore
from airflow_monid._runtime.task_state import STOP_ON_STATES, task_state_on_worker
from airflow_monid._runtime.validation import (
    require_amount,
    require_finite_numbers,
    require_json_object,
    require_positive,
    require_statuses,
    require_text,
    require_text_when_built,
)
from airflow_monid._spend import record_saved, record_spend, record_stopped
from airflow_monid.exceptions import ConfigError, PermanentAPIError, ProviderError, RunError, UnclearRequestError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRun
from airflow_monid.triggers.monid import MonidRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger


class MonidRunLink(TaskStateLink):
    """Link to the run in the Monid app (URL form not documented by Monid: unverified)."""

    name = "Monid Run"
    attribute = "run_url"


class MonidRunOperator(MonidLineage, OutputStore, RunLifecycle[MonidRun], BaseOperator):
    """Submit a Monid run (``POST /v1/run``) and wait for its outcome.

    Sync providers answer with a finished run and the task ends without waiting. Async runs are
    polled on the worker, or in the triggerer when ``deferrable`` (no worker slot held).

    :param provider: provider slug, e.g. ``apify`` (templated).
    :param endpoint: endpoint path, e.g. ``/apidojo/tweet-scraper`` (templated).
    :param input: JSON object sent as ``input`` exactly as given (templated; XComArg and ``expand()`` work).
    :param monid_conn_id: connection of type ``monid``.
    :param wait_for_completion: wait for a terminal run; ``False`` returns the run id right after
        submission (whatever the provider's mode), and the run counts as delivered.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls (> 0).
    :param timeout: seconds to wait from this try's submission or reconnection. The deadline is the
        earlier of this and ``execution_timeout`` from the try's start, in every mode (Airflow does not
        enforce ``execution_timeout`` while a task is deferred); at the deadline the run is stopped
        and the task fails (``AirflowTaskTimeout`` when ``execution_timeout`` was the bound).
    :param allowed_provider_statuses: provider HTTP statuses besides 2xx that mean success with no
        data (return value ``None``), e.g. ``[404]`` for enrichment where no match is normal.
    :param durable: remember the run in ``task_state_store`` (Airflow 3.3+) so a retry reuses it
        instead of paying again; ``False`` submits a fresh run on every try.
    :param adopt_existing_run: when the run id may be unknown (unclear submit, a retry without a
        ledger), look for exactly one recent reusable run with the same input and adopt it.
    :param output_path: write the output to this ``ObjectStoragePath`` URL (templated) and return the
        URL instead of the data; ``{monid_run_id}`` is replaced by the run id (README "Outputs to object storage").
    :param max_cost: refuse to pay (``AirflowFailException``, nothing posted) when the endpoint's
        price (``POST /v1/inspect``) can exceed this amount of ``max_cost_currency`` (README "Cost guard").
    :param max_cost_currency: the currency of ``max_cost`` (default ``USD``); another price currency fails.
    :param max_results: the most results a per-result price is paid for (bounds the cost).
    :param max_results_field: the input field that caps results (e.g. ``maxItems``), instead of ``max_results``.
    :param validate_input: check the input against the endpoint's published schema before paying:
        ``True`` fails on a mismatch (naming each field), ``"warn"`` logs it and pays anyway.
    :param share_inspect: share the inspect answer between tasks through an Airflow Variable (10 min).
    :param max_dag_run_cost: the budget of the whole DAG run, in ``max_cost_currency`` (templated; also
        through ``default_args``): before paying, what the DAG run's Monid tasks have spent or reserved plus
        this run's price bound must fit, or the task fails without retry, nothing posted (README "Budget per
        DAG run").
    :param spend_alert: a :class:`~airflow_monid.SpendAlert`: call a notifier when the DAG run's spend
        reaches fractions of ``max_dag_run_cost``, or the DAG's spend of a UTC day reaches amounts.
    :param reuse_results: a :class:`~airflow_monid.ReusePolicy`: return the output of an earlier successful
        run with the same input (within its ``ttl``) instead of paying again (README "Reusing paid results").
    """

    template_fields: Sequence[str] = (
        "provider",
        "endpoint",
        "input",
        "monid_conn_id",
        "output_path",
        "max_cost",
        "max_results",
        "max_dag_run_cost",
    )
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
        output_path: str | None = None,
        max_cost: float | None = None,
        max_cost_currency: str = "USD",
        max_results: int | None = None,
        max_results_field: str | None = None,
        validate_input: bool | str = True,
        share_inspect: bool = True,
        max_dag_run_cost: float | str | None = None,
        spend_alert: SpendAlert | None = None,
        reuse_results: reuse.ReusePolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.provider = require_text_when_built(provider, "provider")
        self.endpoint = require_text_when_built(endpoint, "endpoint")
        self.input = {} if input is None else require_finite_numbers(input)
        self.monid_conn_id = monid_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = require_positive(poll_interval, "poll_interval")
        self.timeout = require_positive(timeout, "timeout")
        self.allowed_provider_statuses = require_statuses(allowed_provider_statuses)
        self.durable = durable
        self.adopt_existing_run = adopt_existing_run
        self.output_path = output_path
        self.max_cost, self.max_cost_currency, self.max_results, self.max_results_field, self.validate_input = (
            require_options(max_cost, max_cost_currency, max_results, max_results_field, validate_input)
        )
        self.share_inspect = share_inspect
        self.max_dag_run_cost = require_amount(max_dag_run_cost, "max_dag_run_cost", rendered=False)
        self.spend_alert = require_alert(spend_alert, max_dag_run_cost)
        if reuse_results is not None and not isinstance(reuse_results, reuse.ReusePolicy):
            raise ConfigError(
                f"reuse_results must be a ReusePolicy (from airflow_monid import ReusePolicy), got {reuse_results!r}."
            )
        if reuse_results is not None and not wait_for_completion:
            raise ConfigError(
                "reuse_results needs wait_for_completion=True: a run that is not awaited has no output to reuse."
            )
        self.reuse_results = reuse_results
        self._reuse_key: str | None = None
        self.run_id: str | None = None
        self._created_at: str | float | None = None  # tells the shared status poller how far back to page
        self.run_url: str | None = None  # the Monid Run link, once the run is known
        self._ti: Any = None  # for on_kill, which Airflow calls without a context
        self._run_ledger: RunLedger | None = None
        self._price_bound: float | None = None  # what the cost guard allowed: the estimate when no cost is reported

    @cached_property
    def hook(self) -> MonidHook:
        """Built once per try (after templates are rendered): one connection lookup, not one per poll."""
        return MonidHook(self.monid_conn_id)

    def _ledger(self, context: Context) -> RunLedger:
        """One ledger per try (it keeps the entry in memory after the first read)."""
        if self._run_ledger is None or self._run_ledger.context is not context:
            self._run_ledger = RunLedger(
                context, enabled=self.durable, key=LEDGER_KEY, cycle=cycle_of(context, self.retries)
            )
        return self._run_ledger

    # --- the lifecycle's plug-ins ------------------------------------------------------------------

    def _label(self) -> str:
        return "Monid"

    def _fetch(self, run_id: str) -> MonidRun:
        return self.hook.get_run(run_id)

    def _poll_interval(self) -> float:
        return self.poll_interval

    def _trigger(self, run_id: str | None, deadline: Deadline) -> BaseTrigger:
        assert run_id is not None
        return MonidRunTrigger(
            run_id=run_id,
            monid_conn_id=self.monid_conn_id,
            poll_interval=self.poll_interval,
            end_time=deadline.end_time,
            created_at=self._created_at,
        )

    def _seen(self, context: Context, run: MonidRun) -> None:
        self._created_at = run.created_at_value
        self.run_url = f"{self.hook.app_url()}/runs/{run.run_id}"

    def _complete(self, context: Context, run: MonidRun) -> Any:
        summary = with_cost(run.summary(), self.max_cost, self.max_cost_currency, self.log)
        context["ti"].xcom_push(key="run", value=summary)
        # Before success can be decided: a task never succeeds without the record of what it paid.
        record_spend(context, run, conn_id=self.monid_conn_id, bound=self._price_bound)
        output = apply_outcome(run, self.allowed_provider_statuses)
        # Written before the ledger says delivered: a failed write is retried with the same run, unpaid.
        result = self._deliver(run.run_id, output)
        self._ledger(context).mark_delivered()
        if self.reuse_results is not None:  # only a success gets here: apply_outcome raised otherwise
            key = self._reuse_key or self._reuse_key_of(run)
            reuse.store(
                self.reuse_results, key, run=summary, output=output, cost=summary.get("actual_cost"), log=self.log
            )
        return result

    def _reuse_key_of(self, run: MonidRun) -> str:
        """After a deferral (a new operator object): the input the run itself carries, as it was sent."""
        payload = run.input if isinstance(run.input, dict) else require_json_object(self.input)
        return reuse.reuse_key(
            self.hook.settings.base_url, run.provider or self.provider, run.endpoint or self.endpoint, payload
        )

    def _expire(self, context: Context, run_id: str | None, deadline: Deadline, why: str) -> Any:
        """Stop the run at the deadline, unless it finished meanwhile (then its outcome counts)."""
        assert run_id is not None
        hook = self.hook
        try:
            answer = hook.stop_run(run_id)
            stopped = "stop requested"
        except ProviderError as exc:
            answer, stopped = {}, f"stop request failed: {exc}"
        if answer is None:  # 409: not stoppable, so it is terminal already; read it once more
            run = hook.get_run(run_id)
            if run.status.is_terminal:
                return self._complete(context, run)
            stopped = f"the stop was refused (409) while it is {run.raw_status}"
        record_stopped(context, hook, run_id, conn_id=self.monid_conn_id)
        message = f"Monid run {run_id} did not finish by the deadline ({deadline.describe()}); {stopped}. {why}"
        if deadline.bound == "execution_timeout":
            raise AirflowTaskTimeout(message)
        raise RunError(message, run_id=run_id)

    # --- execute --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        provider = require_text(self.provider, "provider")
        endpoint = require_text(self.endpoint, "endpoint")
        payload = require_json_object(self.input)
        # Templates are rendered now: the guard's bounds are checked again before anything is paid.
        self.max_cost, _, self.max_results, _, _ = require_options(
            self.max_cost, self.max_cost_currency, self.max_results, self.max_results_field, True, rendered=True
        )
        self.max_dag_run_cost = require_amount(self.max_dag_run_cost, "max_dag_run_cost")
        hook = self.hook
        hook.settings  # noqa: B018 - a bad URL or missing key fails here, before any money is spent
        self._check_output_path(context)
        self._ti = context["ti"]
        budget.restore(context)  # Airflow 3.3: what earlier tries paid or reserved counts again at once
        ledger = self._ledger(context)
        run = self._obtain_run(context, hook, ledger, provider, endpoint, payload)
        if isinstance(run, reuse.Hit):
            return self._deliver_reused(context, run)
        # The deadline counts from the moment the run is known, capped by execution_timeout.
        deadline = Deadline.for_try(context, self.timeout, self.execution_timeout)
        self.run_id = run.run_id
        self._seen(context, run)
        context["ti"].xcom_push(key="run_id", value=run.run_id)
        context["ti"].xcom_push(key="run_url", value=self.run_url)
        if not self.wait_for_completion:
            # The run id is what this task delivers: a clear later pays for a new run, a retry reuses it.
            record_spend(context, run, conn_id=self.monid_conn_id, bound=self._price_bound)
            ledger.mark_delivered()
            self.log.info("Monid run %s submitted (%s); not waiting.", run.run_id, run.raw_status)
            return run.run_id
        return self._await(context, run, deadline)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger: validate the event, fetch the run once, apply the outcome table."""
        return self._resume(context, event)

    def _obtain_run(
        self,
        context: Context,
        hook: MonidHook,
        ledger: RunLedger,
        provider: str,
        endpoint: str,
        payload: dict[str, Any],
    ) -> MonidRun | reuse.Hit:
        """Reuse the run an earlier try paid for, adopt a lost one, return a stored result
        (``reuse_results``), or submit a new one (README table)."""
        digest = request_digest(provider, endpoint, payload)
        try_number = try_number_of(context)
        candidate = ledger.candidate(digest)
        stored, why = candidate.run_id, candidate.why
        if stored is not None:
            reused = self._reuse_stored(hook, stored)
            if reused is not None:
                return reused
            why = f"stored run {stored} is not reusable"
        lost_record = not ledger.has_cycle_entry() or stored is not None
        if self.durable and self.adopt_existing_run and try_number > ledger.cycle and lost_record:
            # A retry that may have paid without a record: Airflow < 3.3, or a worker that died between
            # a POST and writing the ledger (also after an earlier try's run that is not reusable). The
            # first try of a cycle never looks: an earlier cycle's runs are stale.
            where = "this Airflow has no task_state_store" if not ledger.available else why
            self.log.info("Try %s and %s: looking for a run an earlier try paid for.", try_number, where)
            excluded = ledger.delivered_ids() | ({stored} if stored else set())
            matches = [
                m
                for m in find_matching_runs(hook, provider, endpoint, payload, self._since(context))
                if m.run_id not in excluded
            ]
            adopted = adopt_one(matches, self.allowed_provider_statuses)
            if adopted is not None:
                self.log.info("Adopting Monid run %s (%s): no new submission.", adopted.run_id, adopted.raw_status)
                ledger.remember(adopted.run_id, digest)
                return adopted
            if matches:
                self.log.info("Found %d earlier run(s), none reusable: submitting a new run.", len(matches))
        else:
            self.log.info("Submitting a new run (%s).", why)
        if self.reuse_results is not None:
            self._reuse_key = reuse.reuse_key(hook.settings.base_url, provider, endpoint, payload)
            if self.reuse_results.refresh:
                self.log.info("reuse_results: refresh=True, paying for a new run and replacing the stored result.")
            else:
                hit = reuse.lookup(self.reuse_results, self._reuse_key, log=self.log)
                if hit is not None:
                    return hit
        self._price_bound = self._before_paying(hook, provider, endpoint, payload)
        reservation = self._reserve(context, hook, provider, endpoint, payload)
        started = datetime.now().astimezone() - timedelta(seconds=60)
        try:
            run = hook.submit_run(provider, endpoint, payload)
        except UnclearRequestError as exc:
            if not self.adopt_existing_run:
                raise
            self.log.warning("The submission's answer was lost; looking for the run it may have created.")
            found = find_matching_runs(hook, provider, endpoint, payload, started)
            adopted = adopt_one(found, self.allowed_provider_statuses)
            if adopted is None:
                raise exc.after_search(started, found) from None  # the reservation stays: money may be spent
            self.log.info("Adopting Monid run %s created by the unclear submission.", adopted.run_id)
            run = adopted
        except ProviderError:
            if reservation is not None:  # refused or never sent: nothing was paid
                reservation.release()
            raise
        self.log.info("Submitted Monid run %s (%s).", run.run_id, run.raw_status)
        ledger.remember(run.run_id, digest)
        return run

    def _before_paying(self, hook: MonidHook, provider: str, endpoint: str, payload: dict[str, Any]) -> float | None:
        """max_cost and validate_input, with one (cached) inspect: only when a new run is paid for.
        Returns the most the run may cost (``None`` without ``max_cost``)."""
        return before_paying(
            hook,
            provider,
            endpoint,
            payload,
            max_cost=self.max_cost,
            currency=self.max_cost_currency,
            max_results=self.max_results,
            max_results_field=self.max_results_field,
            validate_input=self.validate_input,
            share_inspect=self.share_inspect,
            log=self.log,
        )

    def _reserve(
        self, context: Context, hook: MonidHook, provider: str, endpoint: str, payload: dict[str, Any]
    ) -> budget.Reservation | None:
        """``max_dag_run_cost``: reserve this run's price bound in the DAG run's budget, or fail (nothing paid)."""
        if self.max_dag_run_cost is None:
            return None
        where = f"Monid {provider} {endpoint}"
        bound = self._price_bound
        if bound is None:  # no max_cost: the bound from the same (cached) inspect answer
            try:
                inspected = inspect_cached(hook, provider, endpoint, share=self.share_inspect)
            except ProviderError as exc:
                exc.args = (
                    f"{where}: max_dag_run_cost could not read the price (POST /v1/inspect failed: {exc}). Nothing "
                    "was paid. Airflow retries the task if the error is transient; to pay without a DAG run budget, "
                    "remove max_dag_run_cost.",
                )
                raise
            bound = budget.require_budget_price(
                Price.parse(inspected.get("price")),
                payload,
                currency=self.max_cost_currency,
                max_results=self.max_results,
                field_name=self.max_results_field,
                where=where,
            )
            self._price_bound = bound
        return budget.reserve(
            context,
            budget=self.max_dag_run_cost,
            bound=bound,
            currency=self.max_cost_currency,
            where=where,
            log=self.log,
        )

    def _deliver_reused(self, context: Context, hit: reuse.Hit) -> Any:
        """``reuse_results`` hit: the stored output, with no request to Monid (README "Reusing paid results")."""
        self.log.info(
            "reuse_results: reusing the result of Monid run %s (completed %s, stored at %s): nothing paid.",
            hit.run_id,
            datetime.fromtimestamp(hit.completed_at).astimezone().isoformat(timespec="seconds"),
            hit.url,
        )
        context["ti"].xcom_push(
            key="run",
            value={
                "runId": hit.run_id,
                "status": "COMPLETED",
                "provider": hit.provider or self.provider,
                "endpoint": hit.endpoint or self.endpoint,
                "reused": True,
                "reused_from": hit.url,
            },
        )
        record_saved(
            context,
            run_id=hit.run_id,
            conn_id=self.monid_conn_id,
            provider=hit.provider or self.provider,
            endpoint=hit.endpoint or self.endpoint,
            cost=hit.cost,
            currency=hit.currency,
        )
        return self._deliver(hit.run_id, hit.output)

    def _reuse_stored(self, hook: MonidHook, run_id: str) -> MonidRun | None:
        try:
            run = hook.get_run(run_id)
        except PermanentAPIError as exc:
            if exc.status_code != 404:
                raise
            self.log.warning("Stored run %s is unknown to Monid (404): submitting a new run.", run_id)
            return None
        if is_reusable(run, self.allowed_provider_statuses):
            self.log.info("Reusing Monid run %s from an earlier try (%s): no new submission.", run_id, run.raw_status)
            return run
        self.log.info("Stored run %s ended %s: submitting a new run.", run_id, run.raw_status)
        return None

    @staticmethod
    def _since(context: Context) -> datetime | None:
        dag_run = context.get("dag_run")
        start = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        return start - timedelta(seconds=60) if isinstance(start, datetime) else None

    def on_kill(self) -> None:
        """Stop the run when the task was marked failed/success/skipped while polling on the worker.

        Airflow also calls this when the worker is told to stop for other reasons (the task was
        cleared, heartbeats failed, a graceful shutdown): then the next try reuses the run, so it is
        left alone, as the trigger's ``on_kill`` does (README "Killing a task"). The deadline
        (``timeout``/``execution_timeout``) stops the run through its own path.
        """
        state = task_state_on_worker(self._ti)
        if state not in STOP_ON_STATES:
            if self.run_id:
                self.log.info("Task killed while %s: Monid run %s is left for the next try.", state, self.run_id)
            return
        if self.run_id:
            try:
                self.hook.stop_run(self.run_id)
                self.log.info("Stop requested for Monid run %s.", self.run_id)
            except Exception as exc:
                self.log.warning("Could not stop Monid run %s: %s", self.run_id, exc)
