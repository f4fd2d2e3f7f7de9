"""TaskFlow with ``@task.monid``: functions build the inputs, the cost guard and the schema check run
before anything is paid.

* ``enrich`` is mapped over the accounts: one paid run per email (PER_CALL, at most 0.01 USD each);
  a person with no match (provider 404) is a normal answer here.
* ``mentions`` waits in the triggerer; its price is per result, so ``max_results_field="maxItems"``
  says which input field caps the results, and ``max_cost`` bounds price x maxItems.
* ``validate_input=True`` checks each input against the schema ``POST /v1/inspect`` publishes: a
  typo in a field fails the task before paying, naming the field.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["monid", "example"])
def monid_taskflow():
    @task
    def accounts() -> list[str]:
        return ["jane.doe@example.com", "someone@nomatch.example"]

    @task.monid(
        provider="pdl",
        endpoint="/person/enrich",
        max_cost=0.01,
        validate_input=True,
        allowed_provider_statuses=[404],
    )
    def enrich(email: str) -> dict:
        return {"email": email.strip().lower()}

    @task.monid(
        provider="apify",
        endpoint="/apidojo/tweet-scraper",
        deferrable=True,
        poll_interval=1,
        max_cost=0.01,
        max_results_field="maxItems",
        validate_input=True,
    )
    def mentions(term: str, dag_run=None) -> dict:  # dag_run comes from the task's context
        since = dag_run.run_after.date().isoformat()
        return {"searchTerms": [f"{term} since:{since}"], "maxItems": 5, "sort": "Latest"}

    @task
    def report(people: list, tweets: list) -> dict:
        # A person with no match returns None, which Airflow stores as no XCom: ``people`` lists the matches.
        matched = [p["full_name"] for p in people if p]
        print(f"people matched: {matched}; {len(tweets)} tweets")
        return {"matched": matched, "tweets": len(tweets)}

    report(enrich.expand(email=accounts()), mentions("airflow"))


dag_object = monid_taskflow()

if __name__ == "__main__":
    dag_object.test()
