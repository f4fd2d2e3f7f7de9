"""One deadline per try, and the record that carries it (and the deferring try) across a deferral.

The deadline is the earlier of ``timeout`` after the run was obtained and ``execution_timeout``
after the try started: Airflow does not enforce ``execution_timeout`` while a task is deferred, so
the provider does, the way dbt Cloud's operator and Airflow's own ``start_from_trigger`` path do. It
is computed once per try and never reset when the task defers again.

The record lives in XCom, which survives a deferral within a try and is cleared by the next try. That
also tells a stale resume apart: Airflow 3.0's ``dag.test()`` hands a retry the previous try's
``next_method`` and event (and drops custom ``next_kwargs``); acting on that event would repeat the
last try's outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Bound = Literal["timeout", "execution_timeout"]
DEFERRAL_KEY = "deferral"


def try_number_of(context: Any) -> int:
    return int(getattr(context["ti"], "try_number", 1) or 1)


def cycle_of(context: Any, retries: int | None) -> int:
    """The first try number of the current cycle of tries.

    A clear resets ``max_tries`` to ``try_number + retries``, so the first try after a clear is
    ``max_tries - retries + 1`` (Airflow computes it the same way). Tries of one cycle are retries of
    each other; a new cycle is a user asking for the task to run again.
    """
    ti = context["ti"]
    try_number = try_number_of(context)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(max_tries, int) or not isinstance(retries, int):
        return 1
    return max(1, min(try_number, max_tries - retries + 1))


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


@dataclass(frozen=True)
class Deadline:
    """An absolute wall-clock deadline (epoch seconds) and which bound set it.

    :param end_time: epoch seconds; survives restarts of the triggerer.
    :param bound: ``timeout`` (the operator's own) or ``execution_timeout`` (Airflow's).
    :param seconds: the length of that bound, for messages.
    """

    end_time: float
    bound: Bound = "timeout"
    seconds: float = 0.0

    @classmethod
    def for_try(
        cls, context: Any, timeout: float, execution_timeout: timedelta | None, now: float | None = None
    ) -> Deadline:
        now = time.time() if now is None else now
        deadline = cls(now + timeout, "timeout", timeout)
        if execution_timeout is not None:
            started = _epoch(getattr(context["ti"], "start_date", None)) or now
            started = min(started, now)
            limit = execution_timeout.total_seconds()
            if started + limit < deadline.end_time:
                deadline = cls(started + limit, "execution_timeout", limit)
        return deadline

    def remaining(self, now: float | None = None) -> float:
        return self.end_time - (time.time() if now is None else now)

    def passed(self, now: float | None = None) -> bool:
        return self.remaining(now) <= 0

    def describe(self) -> str:
        return f"{self.bound}={self.seconds:.0f} s"

    def record(self, context: Any) -> None:
        """Remember the deferring try and this deadline, for the resume."""
        value = {"try": try_number_of(context), "end_time": self.end_time, "bound": self.bound, "seconds": self.seconds}
        context["ti"].xcom_push(key=DEFERRAL_KEY, value=value)

    @classmethod
    def recorded(cls, context: Any) -> Deadline | None:
        """The deadline this try recorded when it deferred; ``None`` for a resume with an earlier try's event."""
        ti = context["ti"]
        value = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRAL_KEY, map_indexes=ti.map_index)
        if not isinstance(value, dict) or value.get("try") != try_number_of(context):
            return None
        bound: Bound = "execution_timeout" if value.get("bound") == "execution_timeout" else "timeout"
        return cls(float(value["end_time"]), bound, float(value.get("seconds") or 0.0))
