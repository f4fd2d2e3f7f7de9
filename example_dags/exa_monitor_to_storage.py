"""Trigger an Exa search monitor and keep the run's results in object storage, not in XCom.

``ExaTriggerMonitorOperator`` with ``output_path``: the completed run's ``output`` (``results``,
``content``, ``grounding``) is written as JSON to the URL, ``{exa_run_id}`` replaced by the run id,
and the task returns the URL. As for Monid, the object is written before the run counts as
delivered, so a failed write is retried with the same run (no second trigger, nothing paid twice).
``file://`` here under ``$AIRFLOW_HOME/exa-output``; any ``ObjectStoragePath`` URL works.

Connection ``exa_default``; the monitor id is the ``monitor_id`` param.
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_monid.operators.exa import ExaTriggerMonitorOperator

OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "exa-output")

with DAG(
    "exa_monitor_to_storage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "monitor_id": Param("mon_funding", type="string", description="Exa search monitor id"),
        "output_dir": OUTPUT_DIR,
    },
    tags=["exa", "example"],
) as dag:
    run_monitor = ExaTriggerMonitorOperator(
        task_id="run_monitor",
        monitor_id="{{ params.monitor_id }}",
        output_path="file://{{ params.output_dir }}/{{ params.monitor_id }}/{exa_run_id}.json",
        deferrable=True,
        poll_interval=10,
        timeout=1800,
        retries=2,
    )

    @task
    def result_urls(url: str) -> list[str]:
        from airflow.sdk import ObjectStoragePath

        output = json.loads(ObjectStoragePath(url).read_text())
        return [result["url"] for result in output.get("results") or []]

    result_urls(run_monitor.output)


if __name__ == "__main__":
    dag.test()
