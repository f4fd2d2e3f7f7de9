"""Dynamic task mapping: one paid Monid run per input, each its own task instance.

``expand(input=...)`` creates one mapped task instance per search; each pays for exactly one run
(retries reuse it) and returns its own output. A downstream task collects the results.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_monid.operators.monid import MonidRunOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["monid", "example"])
def monid_dynamic_mapping():
    @task
    def searches() -> list[dict]:
        return [{"searchTerms": [term], "maxItems": 2} for term in ("airflow", "dbt", "duckdb")]

    scraped = MonidRunOperator.partial(
        task_id="scrape",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        deferrable=True,
        poll_interval=1,
    ).expand(input=searches())

    @task
    def summarise(results: list) -> dict:
        sizes = [len(r or []) for r in results]
        print(f"{len(sizes)} runs, items per run: {sizes}")
        return {"runs": len(sizes), "items": sum(sizes)}

    summarise(scraped.output)


dag_object = monid_dynamic_mapping()

if __name__ == "__main__":
    dag_object.test()
