"""``prod_monid_fanout``: many deferred Monid runs in one DAG run, for the production-shape tests
(tests/integration/production/). ``params.count`` mapped ``MonidRunOperator`` tasks, each with its own
input ``{"searchTerms": ["<params.tag>-<i>"]}``, wait in the triggerers (poll every 2 s, no retry)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_monid.operators.monid import MonidRunOperator

with DAG(
    "prod_monid_fanout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"count": 40, "tag": "fanout"},
    max_active_tasks=64,
    tags=["integration-test"],
) as dag:

    @task
    def inputs(params: dict | None = None) -> list[dict]:
        assert params is not None
        return [{"searchTerms": [f"{params['tag']}-{i}"]} for i in range(int(params["count"]))]

    MonidRunOperator.partial(
        task_id="run",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        deferrable=True,
        poll_interval=2,
        timeout=900,
        retries=0,
    ).expand(input=inputs())
