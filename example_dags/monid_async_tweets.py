"""Async provider, deferrable: scrape tweets through Monid without holding a worker slot.

Apify's tweet scraper answers ``POST /v1/run`` with 202 and a run id. The operator submits the run
on the worker, pushes ``run_id`` and ``run_url`` to XCom, then defers: the triggerer polls
``GET /v1/runs/{id}`` until the run is terminal, and the task resumes to apply the outcome table.
The tweets become the task's return value; a downstream task counts them.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_monid.operators.monid import MonidRunOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["monid", "example"])
def monid_async_tweets():
    tweets = MonidRunOperator(
        task_id="scrape_tweets",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        input={"searchTerms": ["airflow"], "maxItems": 3},
        deferrable=True,
        poll_interval=1,
        timeout=600,
    )

    @task
    def count(items: list[dict]) -> int:
        print(f"Monid returned {len(items)} tweets")
        return len(items)

    count(tweets.output)


dag_object = monid_async_tweets()

if __name__ == "__main__":
    dag_object.test()
