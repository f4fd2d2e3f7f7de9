"""Core-Airflow-only DAG used by tests/integration/test_cluster_smoke.py.

``wait`` defers to the triggerer (DateTimeTrigger) and resumes on a worker; ``produce`` returns a
dict that becomes the ``return_value`` XCom. ``dag_run.conf["wait_seconds"]`` sets the deferral
length (default 10 s), counted from the sensor's start.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task


@dag(
    dag_id="integration_smoke",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["integration-test"],
)
def integration_smoke():
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time=(
            "{{ (ti.start_date + macros.timedelta(seconds=(dag_run.conf.get('wait_seconds', 10) | int))).isoformat() }}"
        ),
    )

    @task
    def produce(**context):
        return {"answer": 42, "run_id": context["run_id"], "conf": dict(context["dag_run"].conf or {})}

    wait >> produce()


integration_smoke()
