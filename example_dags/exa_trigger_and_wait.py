"""Trigger an Exa search monitor run now and wait for it, paying for one run per task instance.

Shows ``ExaTriggerMonitorOperator``: it notes the runs already listed, calls
``POST /monitors/{id}/trigger`` (billed; Exa answers ``{"triggered": true}`` without a run id),
finds the run that appeared, pushes its id as the ``run_id`` XCom and waits for it in the
triggerer. The ``return_value`` is the completed run's JSON; ``count_results`` reads
``output.results``. A retry reuses the run an earlier try started (Airflow 3.3+) instead of paying
again.

Connection ``exa_default``; the monitor id is the ``monitor_id`` param.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_monid.operators.exa import ExaTriggerMonitorOperator

with DAG(
    "exa_trigger_and_wait",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"monitor_id": Param("mon_funding", type="string", description="Exa search monitor id")},
    tags=["exa", "example"],
) as dag:
    run_monitor = ExaTriggerMonitorOperator(
        task_id="run_monitor",
        monitor_id="{{ params.monitor_id }}",
        deferrable=True,
        poll_interval=10,
        timeout=1800,
        retries=2,
    )

    @task
    def count_results(run: dict[str, Any]) -> int:
        return len((run.get("output") or {}).get("results") or [])

    count_results(run_monitor.output)


if __name__ == "__main__":
    dag.test()
