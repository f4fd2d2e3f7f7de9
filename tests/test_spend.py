"""Spend records and their SQL aggregation (README "Spend: what every DAG costs").

The aggregation runs real SQL on an SQLite ``xcom`` table created from Airflow's own model; the
reconciliation reads the emulator over real HTTP.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from airflow_monid._spend.query import SpendFilter, SpendQueryError, count_records, grouped, parse_group_by, top_runs
from airflow_monid._spend.reconcile import MonidBill, parse_budgets, parse_wallet
from airflow_monid._spend.records import build_record, spend_key
from airflow_monid._spend.report import public, spend_report
from airflow_monid.version_compat import AIRFLOW_V_3_4_PLUS

DAY = "2026-11-20T10:00:00Z"


def monid_run(run_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "runId": run_id,
        "provider": "pdl",
        "endpoint": "/person/enrich",
        "status": "COMPLETED",
        "providerResponse": {"httpStatus": 200},
        "price": {"type": "PER_CALL", "amount": {"value": 0.25, "currency": "USD"}},
        "createdAt": DAY,
        **extra,
    }


# ----- records ---------------------------------------------------------------------------------------


def test_actual_cost_from_billing_wins_over_cost_and_price():
    billing = {"reportedCost": {"value": 1_230_000, "unit": "MICRO_DOLLAR", "currency": "USD"}}
    rec = build_record(monid_run("R1", billing=billing, cost={"value": 9.0}), conn_id="c", output={"a": 1})
    assert (rec["cost"], rec["currency"], rec["cost_source"], rec["estimated"]) == (
        1.23,
        "USD",
        "billing.reportedCost",
        False,
    )
    assert rec["delivered"] is True and rec["undelivered_cost"] == 0.0 and rec["day"] == "2026-11-20"


def test_no_cost_reported_is_the_price_marked_as_estimate():
    rec = build_record(monid_run("R2"), conn_id="c", output={"a": 1})
    assert (rec["cost"], rec["estimated"], rec["estimated_cost"], rec["cost_source"]) == (0.25, True, 0.25, "price")
    per_result = {"type": "PER_RESULT", "amount": 0.01, "currency": "USD"}
    rec = build_record(monid_run("R3", price=per_result, resultCount=7), conn_id="c", output=[1])
    assert rec["cost"] == pytest.approx(0.07) and rec["estimated"]


@pytest.mark.parametrize(
    ("extra", "output"),
    [
        ({"status": "FAILED"}, None),
        ({"status": "TIMED_OUT"}, None),
        ({"providerResponse": {"httpStatus": 404}}, None),
    ],
)
def test_runs_monid_never_bills_cost_nothing_and_count_as_undelivered(extra, output):
    rec = build_record(monid_run("R4", **extra), conn_id="c", output=output)
    assert rec["cost"] == 0.0 and not rec["estimated"] and rec["delivered"] is False


def test_a_completed_run_with_an_empty_output_delivered_nothing():
    rec = build_record(monid_run("R5", cost={"value": 0.5, "currency": "USD"}), conn_id="c", output=[])
    assert rec["delivered"] is False and rec["undelivered_cost"] == 0.5


def test_keys_are_one_per_run_and_url_safe():
    assert spend_key("01JGZK8Q2M4V6X8Z0B2D4F6H8K") == "monid_spend.01JGZK8Q2M4V6X8Z0B2D4F6H8K"
    odd = spend_key("a/b?c")
    assert odd.startswith("monid_spend.h") and "/" not in odd and odd == spend_key("a/b?c")


# ----- SQL aggregation -------------------------------------------------------------------------------


@pytest.fixture
def db():
    if AIRFLOW_V_3_4_PLUS:
        pytest.skip(
            "these tests write the xcom table directly; on Airflow 3.4 XCom is a read projection over per-attempt "
            "tables, so the aggregation is checked there on real dag.test() runs (tests/test_spend_records.py)"
        )
    import airflow.models.taskinstance  # noqa: F401 - the table xcom's foreign key names
    from airflow.models.xcom import XComModel

    engine = create_engine("sqlite://")
    XComModel.__table__.create(engine)  # SQLite does not enforce the foreign key here
    with Session(engine) as session:
        yield session


def put(session: Session, dag_id: str, task_id: str, record: dict[str, Any], map_index: int = -1, dag_run=1) -> None:
    """What an XCom push stores: one row per (dag run, task, map index, key); a second push replaces it."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import delete

    key = spend_key(record["monid_run_id"])
    t = XComModel.__table__
    session.execute(
        delete(t).where(t.c.dag_run_id == dag_run, t.c.task_id == task_id, t.c.map_index == map_index, t.c.key == key)
    )
    session.execute(
        insert(t).values(
            dag_run_id=dag_run,
            task_id=task_id,
            map_index=map_index,
            key=key,
            dag_id=dag_id,
            run_id=f"manual__{dag_run}",
            value=record,
            timestamp=datetime(2026, 11, 20, tzinfo=UTC),
        )
    )


def rec(run_id: str, cost: float | None, *, day: str = DAY, currency="USD", endpoint="/person/enrich", **kw):
    run = monid_run(run_id, createdAt=day, endpoint=endpoint, **kw)
    if cost is not None:
        run["cost"] = {"value": cost, "currency": currency}
    return build_record(run, conn_id="monid_default", output=kw.pop("output", {"ok": 1}))


NOV = SpendFilter(date(2026, 11, 1), date(2026, 11, 30))


def test_grouped_sums_in_sql_per_dag_task_endpoint_and_day(db):
    put(db, "a", "t1", rec("R1", 1.00))
    put(db, "a", "t1", rec("R2", 0.50, day="2026-11-21T23:59:59Z"))
    put(db, "a", "t2", rec("R3", 0.25, endpoint="/company/enrich"))
    put(db, "b", "t1", rec("R4", 2.00, status="FAILED"), dag_run=2)
    put(db, "b", "t1", rec("R5", 9.99, day="2026-10-31T23:59:59Z"), dag_run=2)  # out of range
    by_dag = grouped(db, NOV, "dag", None)["USD"]
    assert by_dag["runs"] == 4 and by_dag["total"] == 3.75
    assert [(g["key"], g["runs"], g["cost"], g["undelivered_cost"]) for g in by_dag["groups"]] == [
        ("b", 1, 2.0, 2.0),
        ("a", 3, 1.75, 0.0),
    ]
    tasks = {g["key"]: g["cost"] for g in grouped(db, NOV, "task", None)["USD"]["groups"]}
    assert tasks == {"a.t1": 1.5, "a.t2": 0.25, "b.t1": 2.0}
    endpoints = {g["key"]: g["runs"] for g in grouped(db, NOV, "endpoint", None)["USD"]["groups"]}
    assert endpoints == {"pdl /person/enrich": 3, "pdl /company/enrich": 1}
    days = {g["key"]: g["cost"] for g in grouped(db, NOV, "day", None)["USD"]["groups"]}
    assert days == {"2026-11-20": 3.25, "2026-11-21": 0.5}
    assert count_records(db, NOV) == 4


def test_a_retry_that_reused_its_run_is_counted_once(db):
    put(db, "a", "t1", rec("R1", 1.00))
    put(db, "a", "t1", {**rec("R1", 1.00), "try": 2})  # try 2 wrote the same run's record again
    block = grouped(db, NOV, "task", None)["USD"]
    assert block["runs"] == 1 and block["total"] == 1.0


def test_estimates_are_summed_apart_and_currencies_never_added(db):
    put(db, "a", "t1", rec("R1", None))  # no cost reported: PER_CALL price 0.25, estimated
    put(db, "a", "t1", rec("R2", 3.0, currency="EUR"))
    blocks = grouped(db, NOV, "dag", None)
    assert blocks["USD"]["estimated"] == 0.25 and blocks["USD"]["total"] == 0.25
    assert blocks["EUR"]["total"] == 3.0 and blocks["EUR"]["estimated"] == 0.0
    report = public(spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: True, bill=None))
    assert report["currency"] == "EUR" and report["total"] == 3.0
    assert [(o["currency"], o["total"]) for o in report["other_currencies"]] == [("USD", 0.25)]
    assert any("never added up" in n for n in report["notices"])


def test_only_readable_dags_and_filters(db):
    put(db, "a", "t1", rec("R1", 1.0))
    put(db, "secret", "t1", rec("R2", 5.0), dag_run=2)
    assert [g["key"] for g in grouped(db, NOV, "dag", {"a"})["USD"]["groups"]] == ["a"]
    assert grouped(db, NOV, "dag", set()) == {}
    only = SpendFilter(NOV.start, NOV.end, dag_id="secret")
    assert grouped(db, only, "dag", None)["USD"]["total"] == 5.0
    assert [r["monid_run_id"] for r in top_runs(db, NOV, None)] == ["R2", "R1"]
    assert [r["monid_run_id"] for r in top_runs(db, NOV, {"a"})] == ["R1"]


def test_empty_range_says_so_and_keeps_a_currency(db):
    report = public(spend_report(db, NOV, "day", readable=None, may_see_workspace=lambda c: True, bill=None))
    assert (report["currency"], report["total"], report["runs"], report["groups"]) == ("USD", 0.0, 0, [])
    assert report["notices"] == ["No Monid spend recorded from 2026-11-01 to 2026-11-30."]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        (("2026-13-01", None), "start"),
        (("yesterday", None), "start"),
        ((None, "2026-02-30"), "end"),
        (("2026-11-02", "2026-11-01"), "start"),
        (("2024-01-01", "2026-01-01"), "start"),
    ],
)
def test_bad_dates_name_the_parameter(params, name):
    with pytest.raises(SpendQueryError) as err:
        SpendFilter.parse(*params)
    assert err.value.parameter == name and str(err.value).startswith(f"{name}: ")


def test_group_by_is_checked():
    assert parse_group_by("task") == "task"
    with pytest.raises(SpendQueryError, match="group_by: expected one of dag, task, endpoint, day"):
        parse_group_by("week")


def test_default_range_is_the_last_30_utc_days():
    flt = SpendFilter.parse(None, None, today=date(2026, 12, 7))
    assert (flt.start, flt.end) == (date(2026, 11, 8), date(2026, 12, 7))


# ----- reconciliation (emulator over HTTP) -----------------------------------------------------------


def test_parse_wallet_and_budgets_defensively():
    assert parse_wallet({"balance": {"value": 2.85, "currency": "USD"}}) == {
        "balance": 2.85,
        "held": None,
        "currency": "USD",
    }
    budgets = parse_budgets(
        {
            "items": [
                {
                    "name": "m",
                    "limit": {"value": 100, "currency": "USD"},
                    "spent": {"value": 2_500_000, "unit": "MICRO_DOLLAR"},
                }
            ]
        }
    )
    assert budgets[0]["limit"] == 100 and budgets[0]["used"] == 2.5 and budgets[0]["used_fraction"] == 0.025
    assert parse_budgets({"unexpected": True}) == []


def test_reconciliation_finds_unattributed_runs_and_cost_differences(db, monid_emulator):
    from airflow_monid.testing._common import iso

    emu = monid_emulator
    emu.monid.set_endpoint("spend", "/alpha", mode="sync", price={"type": "PER_CALL", "amount": 0.4, "currency": "USD"})
    when = iso(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
    ours = emu.monid.add_run(provider="spend", endpoint="/alpha", created_at=when)
    theirs = emu.monid.add_run(provider="spend", endpoint="/alpha", created_at=when)
    off = emu.monid.add_run(provider="spend", endpoint="/alpha", created_at=when)
    put(db, "a", "t1", build_record({**ours, "createdAt": when}, conn_id="monid_default", output={"x": 1}))
    wrong = build_record({**off, "cost": {"value": 0.1, "currency": "USD"}}, conn_id="monid_default", output={"x": 1})
    put(db, "a", "t2", wrong)
    report = public(
        spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: True, bill=MonidBill(ttl=60))
    )
    assert report["unattributed"] == {"runs": 1, "cost": 0.4}, theirs["runId"]
    assert [(m["monid_run_id"], m["recorded"], m["monid"]) for m in report["reconciliation"]["mismatches"]] == [
        (off["runId"], 0.1, 0.4)
    ]
    conn = report["reconciliation"]["connections"][0]
    assert conn["status"] == "ok" and conn["wallet"]["currency"] == "USD"
    assert conn["budgets"][0]["used"] == pytest.approx(1.2)
    hidden = public(
        spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: False, bill=MonidBill(ttl=60))
    )
    assert hidden["unattributed"] is None and "wallet" not in hidden["reconciliation"]["connections"][0]
    assert any("read access to the Monid connection" in n for n in hidden["notices"])


def test_a_monid_outage_or_401_degrades_to_airflows_records(db, monid_emulator):
    from tests._support import MONID_KEY

    put(db, "a", "t1", rec("R1", 1.0))
    monid_emulator.add_fault(
        "GET", r"/v1/runs", status=401, times=None, body={"code": 401, "message": "Invalid API key"}
    )
    report = public(
        spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: True, bill=MonidBill(ttl=60))
    )
    assert report["total"] == 1.0 and report["unattributed"] == {"runs": 0, "cost": 0.0}
    conn = report["reconciliation"]["connections"][0]
    assert conn["status"] == "unavailable" and "401" in conn["error"]
    notice = next(n for n in report["notices"] if "could not be read" in n)
    assert "Airflow's records only" in notice and "spends nothing" in notice
    assert MONID_KEY not in repr(report)


def test_monid_is_read_once_per_cache_period(db, monid_emulator):
    put(db, "a", "t1", rec("R1", 1.0))
    bill = MonidBill(ttl=3600)
    for _ in range(3):
        spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: True, bill=bill)
    assert len(monid_emulator.requests("GET", "/v1/runs")) == 1
    bill.clear()
    spend_report(db, NOV, "dag", readable=None, may_see_workspace=lambda c: True, bill=bill)
    assert len(monid_emulator.requests("GET", "/v1/runs")) == 2
