"""Results too large for XCom: each mapped run writes its output to object storage.

``output_path`` takes any ``ObjectStoragePath`` URL (``s3://aws_default@bucket/...`` in production;
``file://`` here, under ``$AIRFLOW_HOME/monid-output`` unless the ``output_dir`` param says otherwise).
Jinja renders it first; ``{monid_run_id}`` is then replaced by the run id. Each mapped instance pays
for its own run, so the run id alone keeps their objects apart; the map index in the path keeps them
easy to find. The file is written before the run counts as delivered: a failed write is retried
with the same run (nothing paid twice) and overwrites the same object. A ``.jsonl`` path gets one
line per result. XCom holds only the URLs; ``count_lines`` reads the files back.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_monid.operators.monid import MonidRunOperator

OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "monid-output")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"output_dir": OUTPUT_DIR},
    tags=["monid", "example"],
)
def monid_output_to_storage():
    scraped = MonidRunOperator.partial(
        task_id="scrape",
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        output_path="file://{{ params.output_dir }}/{{ ti.task_id }}/{{ ti.map_index }}/{monid_run_id}.jsonl",
        deferrable=True,
        poll_interval=1,
        retries=2,
    ).expand(input=[{"searchTerms": [term], "maxItems": 2} for term in ("airflow", "duckdb")])

    @task
    def count_lines(urls: list[str]) -> list[int]:
        from airflow.sdk import ObjectStoragePath

        return [len(ObjectStoragePath(url).read_text().splitlines()) for url in urls]

    count_lines(scraped.output)


dag_object = monid_output_to_storage()

if __name__ == "__main__":
    dag_object.test()
