"""N mapped tasks that start in the triggerer (start_from_trigger): the load of triggerer_scale.py."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, BaseOperator
from airflow.triggers.base import StartTriggerArgs

N = int(os.environ.get("BENCH_N", "10"))
MODE = os.environ.get("BENCH_MODE", "sleep")
INTERVAL = float(os.environ.get("BENCH_INTERVAL", "10"))
END = float(os.environ.get("BENCH_END_TIME", "0"))
CREATED_AT = float(os.environ.get("BENCH_CREATED_AT", "0"))

if MODE == "sleep":
    TRIGGER = "benchmarks._scale_triggers.BenchSleepTrigger"
    KWARGS: dict[str, Any] = {"poll_interval": INTERVAL, "end_time": END}
else:
    TRIGGER = "benchmarks._scale_triggers.BenchMonidTrigger"
    KWARGS = {
        "run_id": "bench",  # replaced by bench-<map index> in the triggerer
        "monid_conn_id": "monid_per_run" if MODE == "per_run" else "monid_default",
        "poll_interval": INTERVAL,
        "end_time": END,
        "created_at": CREATED_AT,
    }


class BenchWait(BaseOperator):
    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls=TRIGGER, trigger_kwargs=KWARGS, next_method="execute_complete", next_kwargs=None, timeout=None
    )

    def __init__(self, *, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def execute_complete(self, context: Any, event: Any = None) -> None:
        return None


with DAG("bench_scale", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=N + 10):
    BenchWait.partial(task_id="wait").expand(index=list(range(N)))
