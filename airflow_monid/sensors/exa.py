"""Wait for an Exa monitor run (search or Websets), by id or by creation time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_monid._exa.outcome import run_outcome
from airflow_monid._http.policy import deadline_scope
from airflow_monid._runtime.deferral import Deadline
from airflow_monid._runtime.lifecycle import RunLifecycle
from airflow_monid._runtime.lineage import ExaLineage
from airflow_monid._runtime.links import TaskStateLink
from airflow_monid._runtime.output_store import OutputStore
from airflow_monid._runtime.validation import require_sensor_timing, require_text
from airflow_monid._runtime.waiting import Waiter
from airflow_monid.exceptions import ConfigError, PermanentError, ProviderError
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.models.events import RunEvent
from airflow_monid.models.exa import ExaMonitorRun, ExaMonitorType, ExaRunStatus, parse_time
from airflow_monid.operators.exa import ExaMonitorLink, ExaRunLink, publish_links
from airflow_monid.sensors.monid import KeepsDeadline, sensor_deadline, sensor_fail, sensor_timeout
from airflow_monid.triggers.exa import ExaMonitorRunTrigger, no_run_message

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger


def to_utc(value: Any, name: str) -> datetime | None:
    """A templated bound as an aware datetime: datetimes or ISO 8601 strings (``Z`` accepted), naive = UTC.

    ``None``, ``""`` and ``"None"`` (what ``{{ data_interval_start }}`` renders to when unset) mean unset.
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise ConfigError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}.")
    return parsed.astimezone(UTC)


def default_window(context: Any) -> tuple[datetime | None, datetime | None]:
    """The DAG run's data interval when it is non-empty; otherwise from ``run_after`` with no upper bound.

    A manual run has an empty interval, so it waits for the monitor's next run.
    """
    dag_run = context.get("dag_run")
    start = context.get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
    end = context.get("data_interval_end") or getattr(dag_run, "data_interval_end", None)
    start, end = to_utc(start, "data_interval_start"), to_utc(end, "data_interval_end")
    if start is not None and end is not None and end > start:
        return start, end
    return start or to_utc(getattr(dag_run, "run_after", None), "run_after"), None


class ExaMonitorRunSensor(ExaLineage, OutputStore, RunLifecycle[ExaMonitorRun], KeepsDeadline, BaseSensorOperator):
    """Wait until an Exa monitor run is terminal; succeed when it completed.

    With ``run_id`` it waits for that run. Without, it selects the oldest run created in
    ``[created_after, created_before)`` (by default the DAG run's data interval; a manual run,
    whose interval is empty, waits for the monitor's next run). A run cancelled because a newer run
    replaced it is followed to that run. The return value is the run's JSON as Exa sent it.

    :param monitor_id: the monitor (templated).
    :param run_id: a specific run to wait for (templated).
    :param monitor_type: ``search`` (Exa Monitors API) or ``websets`` (Websets monitors).
    :param created_after: inclusive lower bound of the run's ``createdAt`` (templated; datetime or
        ISO string, naive = UTC). Default: ``data_interval_start``, else ``dag_run.run_after``.
    :param created_before: exclusive upper bound (templated). Default: ``data_interval_end`` when
        the interval is non-empty, else none.
    :param exa_conn_id: connection of type ``exa``.
    :param search_monitors_path: ``/monitors`` or ``/search-monitors``; default from the connection.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poke_interval: seconds between checks (default 60), also the trigger's poll interval.
    :param output_path: write the run's ``output`` (a Websets run, which has none: the run's JSON) to
        this ``ObjectStoragePath`` URL (templated; ``{exa_run_id}`` is replaced by the run id) and
        return the URL instead of the run's JSON.
    """

    template_fields: Sequence[str] = (
        "monitor_id",
        "run_id",
        "created_after",
        "created_before",
        "exa_conn_id",
        "output_path",
    )
    operator_extra_links: tuple[TaskStateLink, ...] = (ExaRunLink(), ExaMonitorLink())
    ui_color = "#eef6ea"
    output_api = "Exa"

    def __init__(
        self,
        *,
        monitor_id: str,
        run_id: str | None = None,
        monitor_type: str = "search",
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        exa_conn_id: str = ExaHook.default_conn_name,
        search_monitors_path: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        output_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        require_sensor_timing({**kwargs, "poke_interval": poke_interval})
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.output_path = output_path
        self.monitor_id = monitor_id
        self.run_id = run_id
        self.monitor_type = ExaMonitorType.parse(monitor_type).value
        if self.monitor_type != "search":
            # Websets pages have no known URL: register no link that would always be empty.
            self.operator_extra_links = ()
        self.created_after = created_after
        self.created_before = created_before
        self.exa_conn_id = exa_conn_id
        self.search_monitors_path = search_monitors_path
        self.deferrable = deferrable
        self._followed: str | None = None  # the run selected or followed so far, within one process
        self.run_url: str | None = None  # the task's links, once known (publish_links)
        self.monitor_url: str | None = None
        self._context: Any = None
        self._waiter: Waiter | None = None  # this try's last status and poll errors
        self._bounds: tuple[datetime | None, datetime | None] = (None, None)  # the window last listed

    @cached_property
    def hook(self) -> ExaHook:
        """Built once per try (after templates are rendered): one connection lookup, not one per poke."""
        return ExaHook(self.exa_conn_id, search_monitors_path=self.search_monitors_path)

    def _window(self, context: Context) -> tuple[datetime | None, datetime | None]:
        after, before = to_utc(self.created_after, "created_after"), to_utc(self.created_before, "created_before")
        if after is None or (before is None and self.created_before in (None, "", "None")):
            default_after, default_before = default_window(context)
            after = after or default_after or datetime.now(UTC)
            before = before or default_before
        if before is not None and after >= before:
            raise ConfigError(f"created_after ({after}) must be earlier than created_before ({before}).")
        return after, before

    def _check(self, hook: ExaHook) -> None:
        try:
            hook.check_monitor(self.monitor_id, self.monitor_type)
        except PermanentError as exc:
            self._fail(str(exc))

    def _current_run(self, hook: ExaHook, context: Context) -> ExaMonitorRun | None:
        run_id = self._followed or self.run_id
        if not run_id:
            after, before = self._window(context)
            self._bounds = (after, before)
            found = hook.find_run(self.monitor_id, self.monitor_type, after, before)
            if found is None:
                self.log.info("%s has no run created in [%s, %s) yet.", self._label(), after, before or "no bound")
                return None
            self.log.info("%s: selected %s, the oldest run in the window.", self._label(), found.describe())
            run_id = found.id
        return self._fetch(run_id)

    # --- the lifecycle's plug-ins ------------------------------------------------------------------

    def _label(self) -> str:
        return f"Exa {self.monitor_type} monitor {self.monitor_id}"

    def _fetch(self, run_id: str) -> ExaMonitorRun:
        hook = self.hook
        run = hook.follow_replacement(
            self.monitor_id, hook.get_run(self.monitor_id, run_id, self.monitor_type), self.monitor_type
        )
        self._followed = run.id
        return run

    def _poll_interval(self) -> float:
        return float(self.poke_interval)

    def _trigger(self, run_id: str | None, deadline: Deadline) -> BaseTrigger:
        after, before = (None, None) if run_id else self._window(self._context)
        return ExaMonitorRunTrigger(
            monitor_id=self.monitor_id,
            exa_conn_id=self.exa_conn_id,
            poll_interval=float(self.poke_interval),
            end_time=deadline.end_time,
            monitor_type=self.monitor_type,
            run_id=run_id,
            created_after=after.isoformat() if after else None,
            created_before=before.isoformat() if before else None,
            search_monitors_path=self.hook.prefix("search") if self.monitor_type == "search" else None,
        )

    def _complete(self, context: Context, run: ExaMonitorRun) -> Any:
        context["ti"].xcom_push(key="run_id", value=run.id)
        publish_links(self, context, self.hook, self.monitor_id, self.monitor_type, run.id)
        if run.status is not ExaRunStatus.COMPLETED:
            # A run that did not complete: a monitor that died meanwhile says why better than the run.
            self._check(self.hook)
        try:
            result = run_outcome(run, self._label())
        except ProviderError as exc:
            self._fail(str(exc))
        # Outside the try: a failed write is retryable, not a failure of the run.
        return self._deliver(run.id, result)

    def _unreadable(self, context: Context, event: RunEvent, exc: PermanentError) -> Any:
        """A run the trigger saw complete, unreadable now (its monitor was deleted meanwhile): it did
        complete, so the task succeeds with what the event knew (issue 8 #10), saying so."""
        completed = ExaRunStatus.parse(event.run_status) is ExaRunStatus.COMPLETED
        if event.status == "terminal" and completed and getattr(exc, "status_code", None) == 404:
            self.log.warning(
                "%s run %s completed, but can no longer be read (%s): succeeding with the event's data only.",
                self._label(),
                event.run_id,
                exc,
            )
            context["ti"].xcom_push(key="run_id", value=event.run_id)
            known = {"id": event.run_id, "monitorId": self.monitor_id, "status": event.run_status}
            return self._deliver(event.run_id, known)
        self._fail(str(exc))

    def _expire(self, context: Context, run_id: str | None, deadline: Deadline, why: str) -> Any:
        if why.startswith(self._label()):  # the waiter's own account: it says what it saw, and names the run
            sensor_timeout(self, deadline, why)
        what = f"run {run_id} was not terminal" if run_id else "no run was created in the window"
        sensor_timeout(self, deadline, f"{self._label()} {what}. {why}")

    def _fail(self, message: str) -> NoReturn:
        sensor_fail(self, message)

    # --- execute --------------------------------------------------------------------------------

    def _watch(self, context: Context) -> tuple[Deadline, Waiter]:
        """This try's deadline and wait state, set when the try starts (before the monitor is checked)."""
        if self._deadline is None or self._waiter is None:
            self._deadline = sensor_deadline(self, context)
            self._waiter = Waiter(
                end_time=self._deadline.end_time,
                poll_interval=float(self.poke_interval),
                label=self._label(),
                log=self.log,
            )
        return self._deadline, self._waiter

    def execute(self, context: Context) -> Any:
        require_text(self.monitor_id, "monitor_id")
        self._followed = None
        self._context = context
        self._deadline = self._waiter = None  # per try
        deadline, _ = self._watch(context)
        self._check_output_path(context)
        hook = self.hook
        if self.run_id:
            self.log.info("Waiting for %s run %s.", self._label(), self.run_id)
        else:
            after, before = self._window(context)
            self.log.info(
                "Waiting for the oldest %s run created in [%s, %s).", self._label(), after, before or "no bound"
            )
        with deadline_scope(deadline.end_time):
            self._check(hook)
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        self._defer_until(context, self._followed or self.run_id or None, deadline)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        deadline, waiter = self._watch(context)
        try:
            with deadline_scope(deadline.end_time):  # no request outlives the deadline by more than the margin
                run = self._current_run(self.hook, context)
        except PermanentError as exc:
            self._fail(str(exc))
        except ProviderError as exc:  # transient: keep waiting until the sensor's timeout
            waiter.on_error(exc)  # logged on the 1st, 2nd, 4th... failure in a row, remembered for the deadline
        else:
            if run is None:
                waiter.on_result("without a run in the window yet")
            elif run.status.is_terminal:
                return PokeReturnValue(is_done=True, xcom_value=self._complete(context, run))
            else:
                waiter.label = f"{self._label()} run {run.id}"
                waiter.on_result(str(run.raw_status))
        if deadline.passed():
            run_id = self._followed or self.run_id or None
            if run_id:
                waiter.label = f"{self._label()} run {run_id}"
                self._expire(context, run_id, deadline, waiter.timeout_message())
            after, before = self._bounds
            self._expire(context, None, deadline, no_run_message(self._label(), after, before, waiter))
        return False

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        self._context = context
        return self._resume(context, event)
