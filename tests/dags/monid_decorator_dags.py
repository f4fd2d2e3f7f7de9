"""@task.monid DAGs for tests/test_monid_decorator.py: plain, mapped, a retry, and the cost/input guards.

Each decorated function appends its name to the file named by ``MONID_DECORATOR_CALLS`` (when set),
so tests count how often it ran; the inputs carry a fresh nonce, so a second call would be a
different input (and a second paid run).
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")
TWEETS = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper"}
COMPANY = {"provider": "pdl", "endpoint": "/company/enrich"}


def _note(name: str) -> None:
    path = os.environ.get("MONID_DECORATOR_CALLS")
    if path:
        with open(path, "a") as f:
            f.write(name + "\n")


def _nonce() -> str:
    return uuid.uuid4().hex


for mode in ("deferrable", "poll"):
    deferrable = mode == "deferrable"

    with DAG(f"monid_decorator_{mode}", schedule=None, start_date=START, catchup=False) as dag:

        @task
        def term() -> str:
            return "airflow"

        @task.monid(**TWEETS, deferrable=deferrable, poll_interval=0.2, max_cost=0.01, max_results_field="maxItems")
        def tweets(term: str, run_id=None) -> dict:  # an XComArg and a context key
            _note("tweets")
            return {"searchTerms": [term, f"nonce-{_nonce()}"], "maxItems": 5, "sort": "Latest", "run": run_id}

        tweets(term())
    globals()[dag.dag_id] = dag

    with DAG(f"monid_decorator_mapped_{mode}", schedule=None, start_date=START, catchup=False) as dag:

        @task
        def terms() -> list[str]:
            return ["dbt", "duckdb", "polars"]

        @task.monid(**TWEETS, deferrable=deferrable, poll_interval=0.2, validate_input=True, max_cost=0.01,
                    max_results=10)  # fmt: skip
        def search(term: str, limit: int) -> dict:
            _note("search")
            return {"searchTerms": [term], "maxItems": limit}

        @task
        def total(results: list) -> int:
            return sum(len(r) for r in results)

        total(search.partial(limit=2).expand(term=terms()))
    globals()[dag.dag_id] = dag

    # The first try's deadline (2 s) passes on a run Monid will not stop: a retryable failure that leaves
    # the run going. The retry must send the recorded input (the nonce) and reuse that run.
    with DAG(f"monid_decorator_retry_{mode}", schedule=None, start_date=START, catchup=False) as dag:

        @task.monid(**TWEETS, deferrable=deferrable, poll_interval=0.2, timeout=2, retries=1,
                    retry_delay=timedelta(0))  # fmt: skip
        def once() -> dict:
            _note("once")
            return {"searchTerms": [f"nonce-{_nonce()}"]}

        once()
    globals()[dag.dag_id] = dag


with DAG("monid_decorator_guards", schedule=None, start_date=START, catchup=False) as dag:
    # pdl /company/enrich is PER_CALL 0.01 USD; apify tweets PER_RESULT 0.0004 USD (the emulator's catalog).

    @task.monid(**COMPANY, max_cost=0.02)
    def company_within_budget() -> dict:
        return {"website": f"{_nonce()}.example"}

    @task.monid(**COMPANY, max_cost=0.005)
    def company_above_budget() -> dict:
        return {"website": f"{_nonce()}.example"}

    @task.monid(**COMPANY, max_cost=1, max_cost_currency="EUR")
    def company_other_currency() -> dict:
        return {"website": f"{_nonce()}.example"}

    @task.monid(**TWEETS, max_cost=1)
    def tweets_unbounded() -> dict:
        return {"searchTerms": [_nonce()]}

    @task.monid(**TWEETS, max_cost=0.01, max_results_field="maxItems")
    def tweets_cap_above_budget() -> dict:
        return {"searchTerms": [_nonce()], "maxItems": 100}  # 100 x 0.0004 = 0.04

    @task.monid(**TWEETS, validate_input=True)
    def tweets_bad_input() -> dict:
        return {"searchTerms": "not a list", "maxItems": "ten"}

    @task.monid(**TWEETS, validate_input="warn")
    def tweets_bad_input_warn() -> dict:
        return {"searchTerms": [_nonce()], "maxItems": 0}

    for make in (
        company_within_budget,
        company_above_budget,
        company_other_currency,
        tweets_unbounded,
        tweets_cap_above_budget,
        tweets_bad_input,
        tweets_bad_input_warn,
    ):
        make()
globals()[dag.dag_id] = dag

del dag

# Issue 19: a mapped enrichment with a no-match in the middle. The downstream task pairs each input with
# its result; a no-match must hold its own place (Airflow stores no XCom for None, which would shift the
# collected list). Both the decorator and MonidRunOperator.partial().expand().
PEOPLE = ["ana@example.com", "nobody@nomatch.example", "bo@example.com"]
PERSON = {"provider": "pdl", "endpoint": "/person/enrich"}

with DAG("monid_mapped_no_match", schedule=None, start_date=START, catchup=False) as monid_mapped_no_match:
    from airflow_monid.operators.monid import MonidRunOperator

    @task
    def people() -> list[str]:
        return PEOPLE

    @task.monid(**PERSON, allowed_provider_statuses=[404], max_cost=0.01)
    def enrich(email: str) -> dict:
        return {"email": email}

    @task
    def pair(emails: list[str], records: list) -> list[list]:
        records = list(records)
        assert len(records) == len(emails), f"{len(records)} results for {len(emails)} inputs"
        return [[email, (record or {}).get("work_email")] for email, record in zip(emails, records, strict=True)]

    operator_results = MonidRunOperator.partial(
        task_id="enrich_operator", **PERSON, allowed_provider_statuses=[404], max_cost=0.01
    ).expand(input=[{"email": e} for e in PEOPLE])
    pair.override(task_id="pair_decorator")(people(), enrich.expand(email=people()))
    pair.override(task_id="pair_operator")(people(), operator_results.output)

# Issue 19: max_cost from a DAG param, rendered and checked before paying.
with DAG(
    "monid_templated_budget", schedule=None, start_date=START, catchup=False, params={"budget": 0.01}
) as monid_templated_budget:
    from airflow_monid.operators.monid import MonidRunOperator

    MonidRunOperator(task_id="enrich", **PERSON, input={"email": "ana@example.com"}, max_cost="{{ params.budget }}")
