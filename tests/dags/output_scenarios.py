"""DAGs for output_path: each of the four task types, the path and ids given through params."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.exa import ExaMonitorRunSensor
from airflow_monid.sensors.monid import MonidRunSensor

PARAMS = {"output_path": "", "run_id": "", "monitor_id": "mon_funding"}


def _scenario(dag_id: str, task_class: Any, **task: Any) -> None:
    with DAG(
        dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, params=PARAMS
    ) as dag:
        task_class(output_path="{{ params.output_path }}", retries=1, retry_delay=timedelta(0), **task)
    globals()[dag_id] = dag


for mode in ("deferrable", "poll"):
    waits = {"deferrable": mode == "deferrable", "poll_interval": 0.2}
    pokes = {"deferrable": mode == "deferrable", "poke_interval": 0.2, "timeout": 60}
    _scenario(
        f"output_monid_{mode}",
        MonidRunOperator,
        task_id="run",
        provider="pdl",
        endpoint="/person/enrich",
        input={"email": "jane.doe@example.com"},
        **waits,
    )
    _scenario(
        f"output_monid_async_{mode}",
        MonidRunOperator,
        task_id="run",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        input={"searchTerms": ["lineage"]},
        **waits,
    )
    _scenario(f"output_monid_sensor_{mode}", MonidRunSensor, task_id="wait", run_id="{{ params.run_id }}", **pokes)
    _scenario(
        f"output_exa_{mode}", ExaTriggerMonitorOperator, task_id="run", monitor_id="{{ params.monitor_id }}", **waits
    )
    _scenario(
        f"output_exa_sensor_{mode}",
        ExaMonitorRunSensor,
        task_id="wait",
        monitor_id="{{ params.monitor_id }}",
        run_id="{{ params.run_id }}",
        **pokes,
    )

# @task.monid passes output_path on to MonidRunOperator: the function builds the input only.
with DAG(
    "output_monid_taskflow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params=PARAMS,
) as output_monid_taskflow:

    @task.monid(provider="pdl", endpoint="/person/enrich", output_path="{{ params.output_path }}")
    def enrich(email: str) -> dict:
        return {"email": email}

    enrich.expand(email=["jane.doe@example.com", "john.roe@example.com"])
