"""Spend records: one XCom row per paid run, written by the task that paid for it (worker side).

Where and why (README "Spend: what every DAG costs"): an XCom row is written through the Execution
API (workers have no database access), lives in the metadata database (it survives the loss of a
worker or a triggerer), is readable by the API server with SQL on SQLite, PostgreSQL and MySQL, needs
no migration and no service, and exists on Airflow 3.0 to 3.3. One key per run,
``monid_spend.<run id>``, so a retry that reuses its run rewrites the same row (never a second
record), and the API server finds every record through the ``xcom.key`` index.

Airflow deletes a task instance's XComs when a new try starts. On Airflow 3.3 the task's
``task_state_store`` (which survives retries and clears) keeps the records of earlier tries, and
every new record writes them again; on 3.0 to 3.2 a run paid by an earlier try loses its record
once the task is retried or cleared, and reconciliation shows it as unattributed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from airflow_monid._monid.cost_guard import PER_CALL_TYPES, PER_RESULT_TYPES, Price, actual_cost

log = logging.getLogger("airflow_monid.spend")

SPEND_KEY_PREFIX = "monid_spend."
#: ``key >= SPEND_KEY_PREFIX AND key < SPEND_KEY_END`` selects every record with the key index ('/' follows '.').
SPEND_KEY_END = "monid_spend/"
#: Runs a task did not pay for because ``reuse_results`` returned an earlier run's output: "saved".
SAVED_KEY_PREFIX = "monid_saved."
SAVED_KEY_END = "monid_saved/"
HISTORY_KEY = "monid_spend"  # task_state_store key (Airflow 3.3+): records of earlier tries
HISTORY_LIMIT = 50
RECORD_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
#: Statuses Monid documents as never billed (API reference 1.13); their cost is 0 when the run says nothing.
ZERO_BILLED = frozenset({"FAILED", "TIMED_OUT", "TIME_OUT", "BLOCKED"})


def spend_key(run_id: str) -> str:
    """The XCom key of one run's record: the run id when it is URL-safe (it travels in an Execution
    API path), else a digest of it (the record still carries the id)."""
    if _SAFE_ID.match(run_id):
        return SPEND_KEY_PREFIX + run_id
    import hashlib

    return SPEND_KEY_PREFIX + "h" + hashlib.sha256(run_id.encode()).hexdigest()[:40]


def _day_and_time(created: Any) -> tuple[str, str]:
    from airflow_monid.models._base import parse_time

    when = parse_time(created) or datetime.now(UTC)
    when = when.astimezone(UTC)
    return when.date().isoformat(), when.isoformat().replace("+00:00", "Z")


def _delivered(run: Mapping[str, Any], output: Any) -> tuple[bool, int | None]:
    response = run.get("providerResponse")
    status = response.get("httpStatus", 200) if isinstance(response, Mapping) else 200
    provider_status = status if isinstance(status, int) and not isinstance(status, bool) else None
    completed = str(run.get("status") or "").upper() == "COMPLETED"
    ok = completed and provider_status is not None and 200 <= provider_status < 300
    return ok and output not in (None, [], {}, ""), provider_status


def _estimate(run: Mapping[str, Any], bound: float | None) -> tuple[float, str]:
    """The price bound when the run reports no cost: a per-call price, a per-result price times the
    results the run reports, else ``bound`` (the cost guard's bound), else 0."""
    price = Price.parse(run.get("price"))
    if price.amount is not None and price.type in PER_CALL_TYPES:
        return price.amount, price.currency
    count = run.get("resultCount")
    if price.amount is not None and price.type in PER_RESULT_TYPES and isinstance(count, int):
        return price.amount * count, price.currency
    return (bound if bound is not None else 0.0), price.currency


def build_record(
    run: Mapping[str, Any],
    *,
    conn_id: str,
    output: Any = None,
    try_number: int | None = None,
    bound: float | None = None,
    api: str = "monid",
) -> dict[str, Any]:
    """The record of one Monid run (``run``: its JSON as received, ``output`` included or passed apart).

    ``cost`` is the actual cost when the run reports one (``billing.reportedCost``, else ``cost``),
    0 for a status Monid never bills, else the price bound, marked ``estimated``. The numeric
    ``estimated_cost`` and ``undelivered_cost`` let the API server sum them in SQL.
    """
    run_id = str(run.get("runId") or run.get("id") or "")
    status = str(run.get("status") or "UNKNOWN").upper()
    delivered, provider_status = _delivered(run, output if output is not None else run.get("output"))
    cost = actual_cost(run)
    if cost is not None:
        value, currency, source, estimated = float(cost["value"]), str(cost["currency"]), str(cost["source"]), False
    elif status in ZERO_BILLED or (status == "COMPLETED" and provider_status is not None and provider_status >= 300):
        value, currency, source, estimated = 0.0, Price.parse(run.get("price")).currency, "not billed", False
    else:
        value, currency = _estimate(run, bound)
        source, estimated = "price", True
    day, created = _day_and_time(run.get("createdAt"))
    value = round(value, 9)
    return {
        "v": RECORD_VERSION,
        "api": api,
        "monid_run_id": run_id,
        "conn_id": conn_id,
        "provider": str(run.get("provider") or ""),
        "endpoint": str(run.get("endpoint") or ""),
        "created_at": created,
        "day": day,
        "status": status,
        "provider_status": provider_status,
        "delivered": delivered,
        "cost": value,
        "currency": currency.upper(),
        "cost_source": source,
        "estimated": estimated,
        "estimated_cost": value if estimated else 0.0,
        "undelivered_cost": 0.0 if delivered else value,
        "try": try_number,
    }


def _push(context: Any, record: dict[str, Any]) -> None:
    """Write one record through the Execution API, past any custom XCom backend (whose offloading
    would leave a reference the API server cannot sum). With Airflow's own backend that is simply
    the task's ``xcom_push``."""
    from airflow.providers.common.compat.sdk import conf
    from airflow.sdk.bases.xcom import BaseXCom

    ti = context["ti"]
    if conf.get("core", "xcom_backend", fallback="BaseXCom").rsplit(".", 1)[-1] == "BaseXCom":
        ti.xcom_push(key=spend_key(record["monid_run_id"]), value=record)
        return
    BaseXCom.set(
        key=spend_key(record["monid_run_id"]),
        value=record,
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=ti.map_index if ti.map_index is not None else -1,
    )


def record_saved(
    context: Any, *, run_id: str, conn_id: str, provider: str, endpoint: str, cost: float | None, currency: str
) -> dict[str, Any] | None:
    """Record a result reused instead of paid for (``reuse_results``): key ``monid_saved.<original run id>``,
    outside the spend records' key range, so the spend page counts it as saved and never as spent (nor as
    a second record of the original run, which reconciliation would count twice). A failure is a warning.

    :param run_id: the run that paid for the reused output (in another task or DAG run).
    :param cost: what that run cost (the amount saved), when known.
    """
    day, created = _day_and_time(None)
    record = {
        "v": RECORD_VERSION,
        "api": "monid",
        "reused_run_id": run_id,
        "conn_id": conn_id,
        "provider": provider,
        "endpoint": endpoint,
        "created_at": created,
        "day": day,
        "saved": round(float(cost or 0.0), 9),
        "currency": currency.upper(),
        "cost_known": cost is not None,
        "try": _try_number(context),
    }
    key = SAVED_KEY_PREFIX + spend_key(run_id)[len(SPEND_KEY_PREFIX) :]
    try:
        ti = context["ti"]
        ti.xcom_push(key=key, value=record)
    except Exception as exc:
        log.warning("Could not record the reuse of Monid run %s on the spend page: %s", run_id, exc)
        return None
    return record


def _write(context: Any, record: dict[str, Any]) -> None:
    _push(context, record)
    store = context.get("task_state_store")
    written = [record]
    if store is not None:  # Airflow 3.3+: the records of earlier tries outlive the next try's XCom clearing
        history = store.get(HISTORY_KEY)
        earlier = [r for r in (history or {}).get("runs", []) if isinstance(r, dict) and r.get("monid_run_id")]
        earlier = [r for r in earlier if r["monid_run_id"] != record["monid_run_id"]]
        for old in earlier:  # a new try cleared them: written again, to the same key
            _push(context, old)
        store.set(HISTORY_KEY, {"runs": [*earlier, record][-HISTORY_LIMIT:]})
        written = [*earlier, record]
    _settle(context, written)


def _settle(context: Any, records: list[dict[str, Any]]) -> None:
    """The DAG run's budget rows and spend alerts (``max_dag_run_cost``, ``spend_alert``): never fails the task."""
    try:
        from airflow_monid._monid.budget import settle

        settle(context, [r for r in records if r.get("api", "monid") == "monid"])
    except Exception as exc:
        log.warning("Could not update the DAG run's Monid budget or spend alerts: %s", exc)


def _try_number(context: Any) -> int | None:
    value = getattr(context.get("ti"), "try_number", None)
    return value if isinstance(value, int) else None


def record_spend(context: Any, run: Any, *, conn_id: str, bound: float | None = None) -> dict[str, Any] | None:
    """Record what a terminal (or stopped) Monid run cost, attributed to this task instance.

    Called by ``MonidRunOperator`` (and ``@task.monid``) where the ``run`` XCom is pushed, before the
    task can succeed. A record that cannot be *built* (an odd run) is logged and skipped; a record
    that cannot be *written* raises, like any XCom push, so no task succeeds without its record.

    :param context: the task's context.
    :param run: a :class:`~airflow_monid.models.monid.MonidRun` or the run's JSON.
    :param conn_id: the connection the run was paid with.
    :param bound: the price bound from ``inspect`` (the cost guard's), used when the run reports no cost.
    """
    raw = getattr(run, "raw", run)
    output = getattr(run, "output", None)
    try:
        record = build_record(raw, conn_id=conn_id, output=output, try_number=_try_number(context), bound=bound)
    except Exception as exc:  # never hide the run's own outcome behind a bookkeeping error
        log.warning("Could not build the spend record of Monid run %s: %s", getattr(run, "run_id", "?"), exc)
        return None
    if not record["monid_run_id"]:
        return None
    _write(context, record)
    return record


def record_exa_spend(context: Any, run: Any, *, monitor_id: str, conn_id: str) -> dict[str, Any] | None:
    """Record a run that ``ExaTriggerMonitorOperator`` triggered. Exa reports no cost: the record
    counts the run (cost 0, ``cost_source`` ``"none"``, not an estimate).

    :param context: the task's context.
    :param run: an :class:`~airflow_monid.models.exa.ExaMonitorRun` or its JSON.
    :param monitor_id: the monitor the run belongs to.
    :param conn_id: the Exa connection.
    """
    raw = getattr(run, "raw", run)
    try:
        run_id = str(raw.get("id") or "")
        day, created = _day_and_time(raw.get("createdAt"))
        status = str(raw.get("status") or "UNKNOWN").upper()
        record = {
            "v": RECORD_VERSION,
            "api": "exa",
            "monid_run_id": run_id,
            "conn_id": conn_id,
            "provider": "exa",
            "endpoint": f"/monitors/{monitor_id}",
            "created_at": created,
            "day": day,
            "status": status,
            "provider_status": None,
            "delivered": status == "COMPLETED",
            "cost": 0.0,
            "currency": "USD",
            "cost_source": "none",
            "estimated": False,
            "estimated_cost": 0.0,
            "undelivered_cost": 0.0,
            "try": _try_number(context),
        }
    except Exception as exc:
        log.warning("Could not build the spend record of Exa run %s: %s", getattr(run, "id", "?"), exc)
        return None
    if not run_id:
        return None
    _write(context, record)
    return record


def record_stopped(context: Any, hook: Any, run_id: str, *, conn_id: str) -> dict[str, Any] | None:
    """Record a run the task stopped at its deadline (``MonidRunOperator._expire``): read once more
    (free), so the record has its provider, endpoint, price and status; a failed read leaves the
    record to reconciliation (the run then shows as unattributed) and never hides the timeout."""
    try:
        run = hook.get_run(run_id)
    except Exception as exc:
        log.warning("Could not read stopped Monid run %s for its spend record: %s", run_id, exc)
        return None
    return record_spend(context, run, conn_id=conn_id)
