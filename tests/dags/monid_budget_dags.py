"""DAGs for tests/test_budget.py, tests/test_alerts.py and tests/test_reuse.py.

``pdl /person/enrich`` on the emulator: sync, PER_CALL 0.003 USD. Inputs come from ``params`` (run_conf
in the tests). Notifier calls are appended, one JSON line each, to the file named by ``MONID_ALERTS_FILE``.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, BaseNotifier, task

from airflow_monid import ReusePolicy, SpendAlert
from airflow_monid.operators.monid import MonidRunOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
PDL = {"provider": "pdl", "endpoint": "/person/enrich"}
PRICE = 0.003


def emails(n: int, prefix: str = "p") -> list[dict]:
    return [{"email": f"{prefix}{i}@example.com"} for i in range(n)]


class FileNotifier(BaseNotifier):
    """Appends the rendered message and the alert to ``MONID_ALERTS_FILE`` (a stand-in for Slack/SMTP)."""

    template_fields = ("message",)

    def __init__(self, message: str = "{{ monid_spend_alert.message }}", fail: bool = False) -> None:
        super().__init__()
        self.message = message
        self.fail = fail

    def notify(self, context) -> None:
        with open(os.environ["MONID_ALERTS_FILE"], "a") as f:
            f.write(json.dumps({"message": self.message, "alert": context["monid_spend_alert"], "fail": self.fail}))
            f.write("\n")
        if self.fail:
            raise RuntimeError("the chat service is down")


def _cache() -> str:
    return "file://" + os.environ.get("MONID_REUSE_DIR", "/tmp/monid-reuse-unset")


# 50 mapped enrichments against a budget that fits 20 (20 x 0.003 = 0.06); retries=2 proves nothing is retried.
with DAG(
    "monid_budget_fanout",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"max_dag_run_cost": 20 * PRICE, "retries": 2, "retry_delay": timedelta(0)},
) as fanout:
    MonidRunOperator.partial(task_id="enrich", **PDL).expand(input=emails(50))

# The budget rendered from a template, and a task without max_dag_run_cost of its own counting against it.
with DAG(
    "monid_budget_templated",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"budget": 2 * PRICE},
) as templated:
    first = MonidRunOperator(task_id="unbudgeted", input={"email": "u@example.com"}, **PDL)
    second = MonidRunOperator(
        task_id="budgeted", input={"email": "b@example.com"}, max_dag_run_cost="{{ params.budget }}", **PDL
    )
    third = MonidRunOperator(
        task_id="over", input={"email": "o@example.com"}, max_dag_run_cost="{{ params.budget }}", **PDL
    )
    first >> second >> third

# 10 enrichments, budget 0.03: 50 % after 5 runs, 80 % after 8, 100 % after 10.
with DAG(
    "monid_alerts_fractions",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={
        "max_dag_run_cost": 10 * PRICE,
        "spend_alert": SpendAlert(FileNotifier(), fractions=(0.5, 0.8, 1.0)),
    },
) as alerts_fractions:
    MonidRunOperator.partial(task_id="enrich", **PDL).expand(input=emails(10))

# An absolute amount per DAG and UTC day: 0.01 USD is crossed by the 4th run, whichever DAG run pays it.
with DAG(
    "monid_alerts_daily",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"prefix": "d"},
) as alerts_daily:

    @task.monid(**PDL, spend_alert=SpendAlert(FileNotifier(), fractions=(), daily=[0.01]))
    def enrich(i: int, params=None) -> dict:
        return {"email": f"{params['prefix']}{i}@example.com"}

    enrich.expand(i=[0, 1, 2])

# A notifier that fails: logged, the task succeeds.
with DAG(
    "monid_alerts_failing_notifier",
    schedule=None,
    start_date=START,
    catchup=False,
) as alerts_failing:
    MonidRunOperator(
        task_id="enrich",
        input={"email": "f@example.com"},
        max_dag_run_cost=PRICE,
        spend_alert=SpendAlert(FileNotifier(fail=True), fractions=(0.5,)),
        **PDL,
    )

# reuse_results: inputs from params; the cache directory from MONID_REUSE_DIR (read when the file is parsed).
for mode in ("sync", "deferrable"):
    with DAG(
        f"monid_reuse_{mode}",
        schedule=None,
        start_date=START,
        catchup=False,
        params={"inputs": [{"email": "a@example.com"}]},
    ) as reuse_dag:

        @task
        def inputs(params=None) -> list[dict]:
            return params["inputs"]

        MonidRunOperator.partial(
            task_id="enrich",
            **(PDL if mode == "sync" else {"provider": "apify", "endpoint": "/apidojo/tweet-scraper"}),
            deferrable=mode == "deferrable",
            poll_interval=0.2,
            validate_input=mode == "sync",
            reuse_results=ReusePolicy(_cache(), ttl=timedelta(hours=1)),
        ).expand(input=inputs())
    globals()[f"reuse_{mode}"] = reuse_dag

with DAG("monid_reuse_refresh", schedule=None, start_date=START, catchup=False) as reuse_refresh:
    MonidRunOperator(
        task_id="enrich",
        input={"email": "a@example.com"},
        reuse_results=ReusePolicy(_cache(), ttl=timedelta(hours=1), refresh=True),
        **PDL,
    )

del reuse_dag
