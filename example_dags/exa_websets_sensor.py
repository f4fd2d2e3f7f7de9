"""Daily: wait for a Websets monitor run (the legacy Websets API) and report what it did.

Shows ``ExaMonitorRunSensor`` with ``monitor_type="websets"`` in reschedule mode (no worker slot
held between pokes, no triggerer needed). Websets runs go ``created`` -> ``running`` ->
``completed``/``failed``/``canceled`` (one l) and carry no output: their items land in the webset.
The DAG runs at 10:00 UTC and waits for the oldest run created in the previous 24 hours;
``report`` reads the run's ``type`` (search or refresh) and timestamps.

Connection ``exa_default``; the monitor id is the ``monitor_id`` param (``wsmon_demo`` is seeded by
``python -m airflow_monid.testing --seed-exa``).
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
    "exa_websets_sensor",
    schedule=CronTriggerTimetable("0 10 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"monitor_id": Param("wsmon_demo", type="string", description="Exa Websets monitor id")},
    tags=["exa", "example"],
) as dag:
    wait = ExaMonitorRunSensor(
        task_id="wait_for_websets_run",
        monitor_id="{{ params.monitor_id }}",
        monitor_type="websets",
        mode="reschedule",
        poke_interval=300,
        timeout=timedelta(hours=20),
    )

    @task(multiple_outputs=False)
    def report(run: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": run["id"], "type": run.get("type"), "completed_at": run.get("completedAt")}

    report(wait.output)


if __name__ == "__main__":
    dag.test()
