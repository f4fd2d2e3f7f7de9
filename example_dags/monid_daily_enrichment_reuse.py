"""A daily enrichment that pays only for new inputs, within a budget per DAG run, with spend alerts.

* ``reuse_results``: each e-mail's enrichment is stored (here under ``$AIRFLOW_HOME/monid-cache``; in
  production ``s3://aws_default@bucket/monid-cache``) and reused for a day, so yesterday's unchanged
  e-mails cost nothing today; only the new ones are paid for.
* ``max_dag_run_cost``: the whole DAG run may spend at most 0.05 USD, whatever the upstream list holds
  (a doubled list fails the extra tasks before paying, instead of doubling the bill).
* ``spend_alert``: a notifier is called once when the run has spent 50 % and 80 % of that budget (a
  callable here; ``SlackNotifier``/``SmtpNotifier`` the same way).

`tests/test_reuse.py` runs it twice against the emulator: the second run pays nothing.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from airflow_monid import ReusePolicy, SpendAlert

CACHE = "file://" + os.path.join(os.environ.get("AIRFLOW_HOME", "/tmp"), "monid-cache")


def log_alert(context) -> None:
    """A spend alert as a log line; use any Airflow notifier instead."""
    logging.getLogger("monid_daily_enrichment_reuse").warning("%s", context["monid_spend_alert"]["message"])


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={
        "max_dag_run_cost": 0.05,
        "spend_alert": SpendAlert(log_alert, fractions=(0.5, 0.8)),
    },
    tags=["monid", "example"],
)
def monid_daily_enrichment_reuse():
    @task
    def new_signups() -> list[str]:
        # Today's list: yesterday's e-mails plus new ones. Only e-mails never enriched (or enriched more
        # than a day ago) are paid for.
        return ["jane.doe@example.com", "john.roe@example.com", "ada@example.com"]

    @task.monid(
        provider="pdl",
        endpoint="/person/enrich",
        max_cost=0.01,
        reuse_results=ReusePolicy(CACHE, ttl=timedelta(days=1)),
    )
    def enrich(email: str) -> dict:
        return {"email": email.strip().lower()}

    @task
    def load(people: list) -> int:
        print(f"loaded {len(people)} people")
        return len(people)

    load(enrich.expand(email=new_signups()))


dag_object = monid_daily_enrichment_reuse()

if __name__ == "__main__":
    dag_object.test()
