"""Daily: wait for the Exa search monitor's run of the past day, then read its results.

Shows ``ExaMonitorRunSensor`` in deferrable mode selecting a run by creation time. The DAG runs at
06:00 UTC and its data interval is the 24 hours before (``CronTriggerTimetable`` with
``interval=1 day``), so each DAG run waits in the triggerer for the oldest monitor run created in
that interval, then ``summarise`` reads ``output.results`` from the run's JSON (the sensor's
``return_value``). A failed or cancelled run fails the sensor; a run cancelled because a newer run
replaced it is followed to that run.

Connection ``exa_default`` (API key in the password); the monitor id is the ``monitor_id`` param
(``mon_funding`` is seeded by ``python -m airflow_monid.testing --seed-exa``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_monid.sensors.exa import ExaMonitorRunSensor

try:  # Airflow 3.1+
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.0
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[assignment]

with DAG(
    "exa_monitor_sensor",
    schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"monitor_id": Param("mon_funding", type="string", description="Exa search monitor id")},
    tags=["exa", "example"],
) as dag:
    wait = ExaMonitorRunSensor(
        task_id="wait_for_monitor_run",
        monitor_id="{{ params.monitor_id }}",
        deferrable=True,
        poke_interval=60,
        timeout=timedelta(hours=12),
    )

    @task(multiple_outputs=False)
    def summarise(run: dict[str, Any]) -> dict[str, Any]:
        results = (run.get("output") or {}).get("results") or []
        return {"run_id": run["id"], "count": len(results), "urls": [r.get("url") for r in results]}

    summarise(wait.output)


if __name__ == "__main__":
    dag.test()
