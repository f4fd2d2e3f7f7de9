"""Wait for an existing Monid run (e.g. one submitted with ``wait_for_completion=False``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_monid._http.policy import deadline_scope
from airflow_monid._monid.outcome import apply_outcome
from airflow_monid._runtime.deferral import Deadline
from airflow_monid._runtime.lifecycle import RunLifecycle
from airflow_monid._runtime.lineage import MonidLineage
from airflow_monid._runtime.output_store import OutputStore
from airflow_monid._runtime.validation import require_sensor_timing, require_statuses, require_text
from airflow_monid._runtime.waiting import Waiter
from airflow_monid.exceptions import PermanentError, ProviderError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models._base import parse_time
from airflow_monid.models.monid import MonidRun
from airflow_monid.triggers.monid import MonidRunSensorTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger


def sensor_fail(sensor: BaseSensorOperator, message: str) -> NoReturn:
    """A sensor's failure without retry; a skip with ``soft_fail``."""
    if sensor.soft_fail:
        raise AirflowSkipException(message)
    raise AirflowFailException(message)


def sensor_timeout(sensor: BaseSensorOperator, deadline: Deadline, why: str) -> NoReturn:
    """The sensor's deadline passed: ``AirflowSensorTimeout`` (a skip with ``soft_fail``), or
    ``AirflowTaskTimeout`` when ``execution_timeout`` was the earlier bound."""
    message = f"Sensor timed out ({deadline.describe()}): {why}"
    if deadline.bound == "execution_timeout":
        raise AirflowTaskTimeout(message)
    if sensor.soft_fail:
        raise AirflowSkipException(message)
    raise AirflowSensorTimeout(message)


def sensor_deadline(sensor: BaseSensorOperator, context: Any, now: float | None = None) -> Deadline:
    """The sensor's deadline in every mode: ``timeout`` from the first poke of this try (reschedule
    mode: from the first reschedule), capped by ``execution_timeout``; the same as Airflow's own check,
    but absolute, so that each request and the last interval can be cut to fit it."""
    now = time.time() if now is None else now
    start = now
    if getattr(sensor, "reschedule", False):
        ti = context["ti"]
        getter = getattr(ti, "get_first_reschedule_date", None)
        # Airflow 3.0 answers an ISO string, later versions a datetime.
        first = parse_time(getter(context)) if callable(getter) else None
        if first is not None:
            start = min(first.timestamp(), now)
    return Deadline.for_try(context, float(sensor.timeout), sensor.execution_timeout, now=start)


class KeepsDeadline:
    """Sensor mix-in: the wait between pokes never runs past the sensor's deadline.

    Airflow sleeps a whole ``poke_interval`` before checking its timeout again, so a 40 s timeout
    with a 60 s interval would end after 60 s and more; here the last interval is cut so the last
    poke happens at the deadline, and that poke times the sensor out with what it saw.
    """

    _deadline: Deadline | None = None

    def _get_next_poke_interval(self, *args: Any, **kwargs: Any) -> float:
        interval = float(super()._get_next_poke_interval(*args, **kwargs))  # type: ignore[misc]
        if self._deadline is not None:
            interval = min(interval, max(0.0, self._deadline.remaining()))
        return interval


class MonidRunSensor(MonidLineage, OutputStore, RunLifecycle[MonidRun], KeepsDeadline, BaseSensorOperator):
    """Wait until a Monid run is terminal; same outcome table as :class:`MonidRunOperator`.

    A sensor does not own the run: it never stops it, on timeout or on kill. Transient errors while
    waiting (network, 429, 5xx) keep it waiting until its timeout, in every mode; permanent ones (401,
    403, 404) fail it at once.

    :param run_id: the run to wait for (templated).
    :param monid_conn_id: connection of type ``monid``.
    :param allowed_provider_statuses: provider HTTP statuses besides 2xx that count as success with no data.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param output_path: write the output to this ``ObjectStoragePath`` URL (templated, ``{monid_run_id}``
        replaced by the run id) and return the URL instead of the data.
    """

    template_fields: Sequence[str] = ("run_id", "monid_conn_id", "output_path")

    def __init__(
        self,
        *,
        run_id: str,
        monid_conn_id: str = MonidHook.default_conn_name,
        allowed_provider_statuses: Sequence[int] = (),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        output_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        require_sensor_timing(kwargs)
        super().__init__(**kwargs)
        self.run_id = run_id
        self.output_path = output_path
        self.monid_conn_id = monid_conn_id
        self.allowed_provider_statuses = require_statuses(allowed_provider_statuses)
        self.deferrable = deferrable
        self._created_at: str | float | None = None  # tells the shared status poller how far back to page
        self._waiter: Waiter | None = None  # this try's last status and poll errors (poke and deferrable modes)

    # --- the lifecycle's plug-ins ------------------------------------------------------------------

    def _label(self) -> str:
        return "Monid"

    @cached_property
    def hook(self) -> MonidHook:
        """Built once per try (after templates are rendered): one connection lookup, not one per poke."""
        return MonidHook(self.monid_conn_id)

    def _fetch(self, run_id: str) -> MonidRun:
        return self.hook.get_run(run_id)

    def _poll_interval(self) -> float:
        return float(self.poke_interval)

    def _trigger(self, run_id: str | None, deadline: Deadline) -> BaseTrigger:
        assert run_id is not None
        return MonidRunSensorTrigger(
            run_id=run_id,
            monid_conn_id=self.monid_conn_id,
            poll_interval=float(self.poke_interval),
            end_time=deadline.end_time,
            created_at=self._created_at,
        )

    def _seen(self, context: Context, run: MonidRun) -> None:
        self._created_at = run.created_at_value
        if run.provider and run.endpoint:  # OpenLineage names the endpoint, on failure too
            self.lineage_name = f"{run.provider}{run.endpoint}"

    def _complete(self, context: Context, run: MonidRun) -> Any:
        context["ti"].xcom_push(key="run", value=run.summary())
        try:
            output = apply_outcome(run, self.allowed_provider_statuses)
        except ProviderError as exc:
            self._fail(str(exc))
        # Outside the try: a failed write is retryable, not a failure of the run.
        name = f"{run.provider}{run.endpoint}" if run.provider and run.endpoint else None
        return self._deliver(run.run_id, output, name)

    def _expire(self, context: Context, run_id: str | None, deadline: Deadline, why: str) -> Any:
        sensor_timeout(self, deadline, why)

    def _fail(self, message: str) -> NoReturn:
        sensor_fail(self, message)

    # --- execute --------------------------------------------------------------------------------

    def _watch(self, context: Context, run_id: str) -> tuple[Deadline, Waiter]:
        """This try's deadline and wait state, set on the first poke."""
        if self._deadline is None or self._waiter is None:
            self._deadline = sensor_deadline(self, context)
            self._waiter = Waiter(
                end_time=self._deadline.end_time,
                poll_interval=float(self.poke_interval),
                label=f"Monid run {run_id}",
                log=self.log,
            )
        return self._deadline, self._waiter

    def poke(self, context: Context) -> PokeReturnValue | bool:
        run_id = require_text(self.run_id, "run_id")
        deadline, waiter = self._watch(context, run_id)
        try:
            with deadline_scope(deadline.end_time):
                run = self._fetch(run_id)
            self._seen(context, run)
        except PermanentError as exc:
            self._fail(str(exc))
        except ProviderError as exc:  # transient: keep waiting until the sensor's timeout
            waiter.on_error(exc)  # logged on the 1st, 2nd, 4th... failure in a row, remembered for the deadline
        else:
            if run.status.is_terminal:
                return PokeReturnValue(is_done=True, xcom_value=self._complete(context, run))
            waiter.on_result(str(run.raw_status))
        if deadline.passed():
            self._expire(context, run_id, deadline, waiter.timeout_message())
        return False

    def execute(self, context: Context) -> Any:
        self._deadline = self._waiter = None  # per try
        self._check_output_path(context)
        if not self.deferrable:
            return super().execute(context)
        run_id = require_text(self.run_id, "run_id")
        deadline, _ = self._watch(context, run_id)
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        self._defer_until(context, run_id, deadline)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        return self._resume(context, event)
