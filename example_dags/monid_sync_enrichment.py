"""Sync provider enrichment: People Data Labs answers at once, and "no match" is a normal outcome.

``POST /v1/run`` answers 200 with a finished run, so the task ends without deferring. With
``allowed_provider_statuses=[404]`` a person the provider cannot match returns ``None`` instead of
failing the task (Monid does not charge for provider errors).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_monid.operators.monid import MonidRunOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["monid", "example"])
def monid_sync_enrichment():
    MonidRunOperator(
        task_id="enrich_known_person",
        provider="pdl",
        endpoint="/person/enrich",
        input={"email": "jane.doe@example.com"},
        allowed_provider_statuses=[404],
    )
    MonidRunOperator(
        task_id="enrich_unknown_person",
        provider="pdl",
        endpoint="/person/enrich",
        input={"email": "someone@nomatch.example"},
        allowed_provider_statuses=[404],
    )


dag_object = monid_sync_enrichment()

if __name__ == "__main__":
    dag_object.test()
