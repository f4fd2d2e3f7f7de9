"""Submit now, wait later: fire-and-forget submission, then a deferrable sensor on the run id.

``wait_for_completion=False`` returns the run id right after ``POST /v1/run``; other work can run
in between, and ``MonidRunSensor`` waits in the triggerer for that run and returns its output. A
sensor does not own the run, so it never stops it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.sensors.monid import MonidRunSensor


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["monid", "example"])
def monid_submit_then_sensor():
    submit = MonidRunOperator(
        task_id="submit",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        input={"searchTerms": ["lakehouse"], "maxItems": 2},
        wait_for_completion=False,
    )
    wait = MonidRunSensor(
        task_id="wait_for_run",
        run_id="{{ ti.xcom_pull(task_ids='submit', key='run_id') }}",
        deferrable=True,
        poke_interval=1,
        timeout=600,
    )
    submit >> wait


dag_object = monid_submit_then_sensor()

if __name__ == "__main__":
    dag_object.test()
