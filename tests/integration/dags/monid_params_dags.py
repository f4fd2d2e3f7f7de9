"""Monid DAGs for the real-cluster tests (tests/integration/test_*.py), driven by run conf.

``provider``, ``endpoint`` and ``input`` are params rendered as native objects, so each test picks
its endpoint and a distinctive input with ``conf={...}``:

- ``it_monid_deferrable``: waits in the triggerer (poll every second), no retry. Used for the
  triggerer restart, the user kill and the failure outcomes.
- ``it_monid_poll_retry``: polls on the worker, ``retries=1`` with no delay. Used for the
  exactly-once test that SIGKILLs the worker while the run is being polled.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_monid.operators.monid import MonidRunOperator

PARAMS = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper", "input": {"searchTerms": ["airflow"]}}

for dag_id, deferrable, retries in (("it_monid_deferrable", True, 0), ("it_monid_poll_retry", False, 1)):
    with DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        render_template_as_native_obj=True,
        params=PARAMS,
        tags=["integration-test"],
    ) as dag:
        MonidRunOperator(
            task_id="run",
            provider="{{ params.provider }}",
            endpoint="{{ params.endpoint }}",
            input="{{ params.input }}",
            deferrable=deferrable,
            poll_interval=1,
            timeout=600,
            retries=retries,
            retry_delay=timedelta(0),
        )
    globals()[dag_id] = dag
