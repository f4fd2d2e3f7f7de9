"""Spend records written by real tasks (dag.test() against the emulator over real HTTP), summed by
the SQL aggregation on the metadata database, equal to the emulator's own ledger of charges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_monid._spend.query import SpendFilter
from airflow_monid._spend.report import public, spend_report
from airflow_monid.testing import Emulator
from airflow_monid.version_compat import AIRFLOW_V_3_3_PLUS, AIRFLOW_V_3_4_PLUS
from tests._support import EXAMPLE_DAGS, TEST_DAGS, load_dag, task_states, xcoms

pytestmark = [
    pytest.mark.usefixtures("dag_env"),
]
TWEETS = "/apidojo/tweet-scraper"


def _delta(after: dict, before: dict) -> dict:
    """What one DAG run added to a report: the session's database keeps other tests' runs of the DAG."""
    old = {g["key"]: g for g in before["groups"]}
    groups = []
    for g in after["groups"]:
        o = old.get(g["key"], {"runs": 0, "cost": 0.0})
        if g["runs"] != o["runs"]:
            groups.append({"key": g["key"], "runs": g["runs"] - o["runs"], "cost": round(g["cost"] - o["cost"], 9)})
    return {
        "runs": after["runs"] - before["runs"],
        "total": round(after["total"] - before["total"], 9),
        "groups": groups,
    }


def _records(dag_id: str, run_id: str) -> dict[str, dict]:
    return {k[1]: v for k, v in xcoms(dag_id, run_id).items() if k[1].startswith("monid_spend.")}


def _report(dag_id: str, group_by: str) -> dict:
    from airflow.utils.session import create_session

    today = datetime.now(UTC).date()
    with create_session() as session:
        flt = SpendFilter(today, today, dag_id=dag_id)
        return public(spend_report(session, flt, group_by, readable=None, may_see_workspace=lambda c: True, bill=None))


def _stored_records(dag_id: str, run_id: str) -> int:
    """Spend records of a DAG run in every attempt, archived ones included (Airflow 3.4)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    stmt = (
        select(func.count())
        .select_from(XComModel)
        .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key.startswith("monid_spend."))
        .execution_options(include_all_attempts=True)
    )
    with create_session() as session:
        return int(session.scalar(stmt) or 0)


def _charged(emu: Emulator, run_ids) -> float:
    return round(sum(c["value"] for c in emu.monid.charges() if c["runId"] in set(run_ids)), 6)


def test_every_paid_run_of_a_dag_has_one_record_and_the_sums_match_the_ledger(dag_env: Emulator) -> None:
    dag_env.monid.set_endpoint(
        "apify",
        TWEETS,
        mode="async",
        polls_to_finish=1,
        price={"type": "PER_RESULT", "amount": 0.125, "currency": "USD"},
    )
    dag = load_dag(EXAMPLE_DAGS / "monid_dynamic_mapping.py")
    before = _report(dag.dag_id, "task")
    dr = dag.test()
    assert dr.state == "success"
    records = _records(dag.dag_id, dr.run_id)
    posted = dag_env.monid.runs()
    assert sorted(r["monid_run_id"] for r in records.values()) == sorted(r["runId"] for r in posted)
    indexes = sorted(k[2] for k in xcoms(dag.dag_id, dr.run_id) if k[1].startswith("monid_spend."))
    assert indexes == [0, 1, 2]  # one record per mapped task instance
    for record in records.values():
        assert record["cost"] == 0.375 and not record["estimated"] and record["delivered"]  # 3 results x 0.125
        assert record["conn_id"] == "monid_default" and record["try"] == 1
    report = _delta(_report(dag.dag_id, "task"), before)
    assert report["runs"] == 3 and report["total"] == _charged(dag_env, [r["runId"] for r in posted]) == 1.125
    assert [(g["key"], g["runs"], g["cost"]) for g in report["groups"]] == [(f"{dag.dag_id}.scrape", 3, 1.125)]


def test_a_run_that_delivered_nothing_is_recorded_with_its_cost_as_undelivered(dag_env: Emulator) -> None:
    dag = load_dag(EXAMPLE_DAGS / "monid_sync_enrichment.py")
    before = _report(dag.dag_id, "endpoint")
    dr = dag.test()
    assert dr.state == "success"
    records = _records(dag.dag_id, dr.run_id)
    assert len(records) == 2 == dag_env.count("POST", "/v1/run")
    by_status = sorted((r["provider_status"], r["delivered"], r["cost"]) for r in records.values())
    assert by_status == [(200, True, 0.003), (404, False, 0.0)]
    report = _delta(_report(dag.dag_id, "endpoint"), before)
    assert report["total"] == _charged(dag_env, [r["monid_run_id"] for r in records.values()])


@pytest.mark.parametrize("mode", ["deferrable", "poll"])
def test_both_tries_runs_are_recorded_when_a_retry_pays_again(dag_env: Emulator, mode: str) -> None:
    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=1, final_status="FAILED")
    dag = load_dag(TEST_DAGS / "monid_scenarios.py", f"monid_scenario_{mode}_retry")
    before = _report(dag.dag_id, "task")
    dr = dag.test()
    assert dr.state == "failed" and dag_env.count("POST", "/v1/run") == 2
    records = _records(dag.dag_id, dr.run_id)
    latest = dag_env.monid.runs()[0]["runId"]
    if AIRFLOW_V_3_3_PLUS:  # try 2 wrote try 1's record again from task_state_store
        assert sorted(r["try"] for r in records.values()) == [1, 2]
        assert {r["monid_run_id"] for r in records.values()} == {r["runId"] for r in dag_env.monid.runs()}
        # the report counts each paid run once: on 3.4 try 1's attempt keeps its own copy of the first
        # record (XComs per attempt), which must not be counted again
        assert _delta(_report(dag.dag_id, "task"), before)["runs"] == 2
        if AIRFLOW_V_3_4_PLUS:
            assert _stored_records(dag.dag_id, dr.run_id) == 3  # try 1's record, then both in try 2
    else:  # a cluster's try 2 deletes try 1's XComs (dag.test() on 3.0 may not): reconciliation sees that run
        ids = {r["monid_run_id"] for r in records.values()}
        assert latest in ids and ids <= {r["runId"] for r in dag_env.monid.runs()}
    assert all(r["status"] == "FAILED" and r["cost"] == 0.0 for r in records.values())


def test_a_run_stopped_at_the_deadline_is_recorded_with_its_price_as_estimate(dag_env: Emulator) -> None:
    dag_env.monid.set_endpoint(
        "apify",
        TWEETS,
        mode="async",
        polls_to_finish=None,
        price={"type": "PER_CALL", "amount": 0.5, "currency": "USD"},
    )
    dag = load_dag(TEST_DAGS / "monid_scenarios.py", "monid_scenario_poll_short")
    dr = dag.test()
    assert task_states(dag.dag_id, dr.run_id)[("run", -1)] == "failed"
    (record,) = _records(dag.dag_id, dr.run_id).values()
    assert record["status"] in ("STOPPING", "STOPPED")
    if record["status"] == "STOPPING":  # Monid has not said what it cost yet: the price, marked
        assert (record["cost"], record["estimated"]) == (0.5, True)


def test_the_spend_api_and_page_answer_over_this_airflows_database(
    dag_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's app (what the API server mounts at ``/monid``) over the ``dag.test()`` database, on
    every Airflow of the matrix, 3.4 included: a retried task's two runs count as two, in the JSON API and
    on the page. Who may read what is the cluster test's subject (tests/integration/test_spend_page.py):
    here the auth manager lets the one user read everything."""
    from fastapi.testclient import TestClient

    from airflow_monid.plugins import _auth
    from airflow_monid.plugins.spend import create_app

    dag_env.monid.set_endpoint("apify", TWEETS, mode="async", polls_to_finish=1, final_status="FAILED")
    dag = load_dag(TEST_DAGS / "monid_scenarios.py", "monid_scenario_poll_retry")

    class Manager:
        def get_authorized_dag_ids(self, user: Any, method: str) -> set[str]:
            return {dag.dag_id}

        def is_authorized_connection(self, **kwargs: Any) -> bool:
            return True

    async def user_of(token: str) -> Any:
        assert token == "t0ken"
        return "tester"

    monkeypatch.setattr(_auth, "_auth_manager", Manager)
    monkeypatch.setattr(_auth, "_from_token", user_of)
    client = TestClient(create_app())
    headers = {"Authorization": "Bearer t0ken"}
    params = {"group_by": "task", "dag_id": dag.dag_id, "reconcile": "false"}

    assert client.get("/api/v1/spend", params=params).status_code == 401
    before = client.get("/api/v1/spend", params=params, headers=headers)
    assert before.status_code == 200, before.text
    dr = dag.test()
    assert dr.state == "failed" and dag_env.count("POST", "/v1/run") == 2
    after = client.get("/api/v1/spend", params=params, headers=headers).json()
    counted = _delta(after, before.json())["runs"]
    # 3.0-3.2: a try may clear the record of the try before (records.py), never count a run twice
    assert counted == 2 if AIRFLOW_V_3_3_PLUS else counted in (1, 2)
    page = client.get("/spend", params={"dag_id": dag.dag_id}, headers=headers)
    assert page.status_code == 200 and dag.dag_id in page.text, page.text[:500]
