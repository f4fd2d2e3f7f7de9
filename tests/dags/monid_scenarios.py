"""DAGs the tests drive with run_conf: one per waiting mode, with and without a retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_monid.operators.monid import MonidRunOperator

PARAMS = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper", "input": {"searchTerms": ["x"]}}


def _scenario(dag_id: str, mode: str, **operator: Any) -> DAG:
    with DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        render_template_as_native_obj=True,
        params=PARAMS,
    ) as dag:
        MonidRunOperator(
            task_id="run",
            provider="{{ params.provider }}",
            endpoint="{{ params.endpoint }}",
            input="{{ params.input }}",
            deferrable=mode == "deferrable",
            poll_interval=0.2,
            **operator,
        )
    return dag


for mode in ("deferrable", "poll"):
    for retries in (0, 1):
        for timeout in (60, 2):
            suffix = ("_retry" if retries else "") + ("_short" if timeout == 2 else "")
            dag = _scenario(
                f"monid_scenario_{mode}{suffix}",
                mode,
                timeout=timeout,
                allowed_provider_statuses=[404],
                retries=retries,
                retry_delay=timedelta(0),
            )
            globals()[dag.dag_id] = dag
    # execution_timeout is the earlier bound: the deadline must be 3 s, not the hour of ``timeout``.
    dag = _scenario(f"monid_scenario_{mode}_exec_timeout", mode, timeout=3600, execution_timeout=timedelta(seconds=3))
    globals()[dag.dag_id] = dag

del dag  # each DAG is reachable once, under its own id
