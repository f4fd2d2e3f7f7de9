"""Wait for an existing Monid run (e.g. one submitted with ``wait_for_completion=False``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_monid._outcome import apply_outcome
from airflow_monid._validation import require_statuses, require_text
from airflow_monid.exceptions import MonidAPIError, MonidError
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.models.monid import MonidRun
from airflow_monid.triggers._events import is_stale_resume, parse_event, remember_deferral
from airflow_monid.triggers.monid import MonidRunSensorTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class MonidRunSensor(BaseSensorOperator):
    """Wait until a Monid run is terminal; same outcome table as :class:`MonidRunOperator`.

    A sensor does not own the run: it never stops it, on timeout or on kill.

    :param run_id: the run to wait for (templated).
    :param monid_conn_id: connection of type ``monid``.
    :param allowed_provider_statuses: provider HTTP statuses besides 2xx that count as success with no data.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("run_id", "monid_conn_id")

    def __init__(
        self,
        *,
        run_id: str,
        monid_conn_id: str = MonidHook.default_conn_name,
        allowed_provider_statuses: Sequence[int] = (),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.monid_conn_id = monid_conn_id
        self.allowed_provider_statuses = require_statuses(allowed_provider_statuses)
        self.deferrable = deferrable

    def _outcome(self, context: Context, run: MonidRun) -> Any:
        context["ti"].xcom_push(key="run", value=run.summary())
        try:
            return apply_outcome(run, self.allowed_provider_statuses)
        except MonidError as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from None
            raise AirflowFailException(str(exc)) from None

    def poke(self, context: Context) -> PokeReturnValue | bool:
        run_id = require_text(self.run_id, "run_id")
        try:
            run = MonidHook(self.monid_conn_id).get_run(run_id)
        except MonidAPIError as exc:
            if exc.is_permanent:
                raise AirflowFailException(str(exc)) from None
            self.log.warning("Checking Monid run %s failed (%s); will check again.", run_id, exc)
            return False
        if not run.status.is_terminal:
            self.log.info("Monid run %s is %s.", run_id, run.status_text)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._outcome(context, run))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        run_id = require_text(self.run_id, "run_id")
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        remember_deferral(context)
        self.defer(
            trigger=MonidRunSensorTrigger(
                run_id=run_id,
                monid_conn_id=self.monid_conn_id,
                poll_interval=float(self.poke_interval),
                end_time=time.time() + float(self.timeout),
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        if is_stale_resume(context):
            self.log.warning("Resumed with the event of an earlier try: starting afresh.")
            return self.execute(context)
        parsed = parse_event(event)
        if parsed.status == "timeout":
            message = f"Sensor timed out after {self.timeout} s: {parsed.message}"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        if parsed.status == "error":
            raise AirflowFailException(f"Waiting for Monid run {parsed.run_id} failed: {parsed.message}")
        run = MonidHook(self.monid_conn_id).get_run(parsed.run_id)
        if not run.status.is_terminal:
            raise AirflowFailException(f"Monid run {run.run_id} was reported terminal but is now {run.status_text!r}.")
        return self._outcome(context, run)
