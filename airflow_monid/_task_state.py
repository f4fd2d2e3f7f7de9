"""The state of the task a trigger serves, read through the Task SDK without blocking the loop."""

from __future__ import annotations

import logging
from typing import Any

from airflow_monid._waiting import bounded

log = logging.getLogger(__name__)


async def task_state_now(ti: Any, seconds: float) -> str | None:
    """The task instance's state as the API server has it now, or ``None`` when it cannot be read.

    Uses the supervisor's ``GetTaskStates`` call (Airflow 3.3's triggerer relays it) with ``asend``,
    so the event loop never blocks. ``None`` also stands for "no state" (a cleared task).
    """
    if ti is None:
        return None
    try:
        from airflow.sdk.execution_time.comms import GetTaskStates
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        map_index = getattr(ti, "map_index", -1)
        message = GetTaskStates(
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=map_index if map_index is not None and map_index >= 0 else None,
        )
        result = await bounded(SUPERVISOR_COMMS.asend(message), seconds)
        states = getattr(result, "task_states", None) or {}
        per_run = states.get(ti.run_id) or {}
        key = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
        state = per_run.get(key)
    except Exception as exc:  # an old Airflow, no supervisor, a timeout: the caller treats it as unknown
        log.warning("Could not read the state of task %s: %s", getattr(ti, "task_id", "?"), exc)
        return None
    value = getattr(state, "value", state)
    return str(value) if value is not None else None
