"""The state of a task instance as the API server has it now, read through the Task SDK's supervisor.

``on_kill`` needs it (worker and triggerer alike): Airflow calls it on a user's mark-failed, but also
when a trigger moves to another triggerer (apache/airflow#73454) or a worker is told to stop because the
task was cleared; only the state tells a run nobody will wait for from one that a later try reuses.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_monid._runtime.waiting import bounded

log = logging.getLogger(__name__)

#: The task states after which nobody waits for the run again: only then may ``on_kill`` stop it.
#: ``deferred`` means the trigger moved to another triggerer; None/scheduled/queued/running/
#: up_for_retry/restarting mean a clear or a retry, whose next try reuses the run.
STOP_ON_STATES = frozenset({"failed", "success", "skipped", "upstream_failed"})


def _message(ti: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetTaskStates

    map_index = getattr(ti, "map_index", -1)
    return GetTaskStates(
        dag_id=ti.dag_id,
        task_ids=[ti.task_id],
        run_ids=[ti.run_id],
        map_index=map_index if map_index is not None and map_index >= 0 else None,
    )


def _state_in(result: Any, ti: Any) -> str | None:
    states = getattr(result, "task_states", None) or {}
    per_run = states.get(ti.run_id) or {}
    map_index = getattr(ti, "map_index", -1)
    key = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
    value = getattr(per_run.get(key), "value", per_run.get(key))
    return str(value) if value is not None else None


async def task_state_now(ti: Any, seconds: float) -> str | None:
    """The state, awaited with ``asend`` (the event loop never blocks); ``None`` when unreadable."""
    if ti is None:
        return None
    try:
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        return _state_in(await bounded(SUPERVISOR_COMMS.asend(_message(ti)), seconds), ti)
    except Exception as exc:  # an old Airflow, no supervisor, a timeout: the caller treats it as unknown
        log.warning("Could not read the state of task %s: %s", getattr(ti, "task_id", "?"), exc)
        return None


def task_state_on_worker(ti: Any) -> str | None:
    """The state, from the task's own process (``BaseOperator.on_kill``); ``None`` when unreadable."""
    if ti is None:
        return None
    try:
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        return _state_in(SUPERVISOR_COMMS.send(_message(ti)), ti)
    except Exception as exc:  # dag.test() without a supervisor, an old Airflow: unknown
        log.warning("Could not read the state of task %s: %s", getattr(ti, "task_id", "?"), exc)
        return None
