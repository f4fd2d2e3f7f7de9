"""The spend report: Airflow's records aggregated in SQL, reconciled with Monid's own bill.

Shape of ``GET /monid/api/v1/spend`` (README "Spend: what every DAG costs"). Amounts are in currency
units. Several currencies are never added up: the top level holds the currency with the highest
total (USD on a tie or when nothing was spent) and ``other_currencies`` one block of the same shape
per other currency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from airflow_monid._spend.query import (
    API_VERSION,
    SpendFilter,
    claimed,
    conn_ids_in_range,
    grouped,
    saved,
    top_runs,
)
from airflow_monid._spend.reconcile import CACHE_SECONDS, MonidBill, MonidRunCost, MonidView

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DEFAULT_CONN_ID = "monid_default"
_TOLERANCE = 1e-6  # a recorded cost that differs from Monid's by more than this is listed
MAX_MISMATCHES = 50


def _empty_block() -> dict[str, Any]:
    return {"total": 0.0, "runs": 0, "estimated": 0.0, "undelivered_cost": 0.0, "uncosted_runs": 0, "groups": []}


def _order(currencies: Iterable[str], blocks: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(set(currencies), key=lambda c: (-blocks.get(c, {}).get("total", 0.0), c != "USD", c))


def reconcile(
    session: Session,
    flt: SpendFilter,
    readable: set[str] | None,
    may_see_workspace: Callable[[str], bool],
    bill: MonidBill,
    conn_ids: list[str],
) -> dict[str, Any]:
    """Monid's side for the range: unattributed runs, recorded costs that differ, wallet and budgets."""
    views: list[MonidView] = [bill.read(c, flt.start) for c in conn_ids]
    runs: dict[str, MonidRunCost] = {}
    for view in views:
        for run in view.in_range(flt.start, flt.end):
            runs.setdefault(run.run_id, run)
    owners = claimed(session, list(runs))
    permitted = {v.conn_id for v in views if may_see_workspace(v.conn_id)}
    unattributed: dict[str, dict[str, Any]] = {}
    mismatches: list[dict[str, Any]] = []
    monid_of_recorded: dict[str, float] = {}
    seen_by: dict[str, set[str]] = {}
    for view in views:
        for run in view.in_range(flt.start, flt.end):
            seen_by.setdefault(run.run_id, set()).add(view.conn_id)
    for run_id, run in runs.items():
        owner = owners.get(run_id)
        if owner is None:
            if seen_by[run_id] & permitted:
                bucket = unattributed.setdefault(run.currency, {"runs": 0, "cost": 0.0})
                bucket["runs"] += 1
                bucket["cost"] += run.cost or 0.0
            continue
        visible = (readable is None or owner["dag_id"] in readable) and (
            flt.dag_id is None or owner["dag_id"] == flt.dag_id
        )
        if not visible or run.cost is None:
            continue
        monid_of_recorded[run.currency] = monid_of_recorded.get(run.currency, 0.0) + run.cost
        differs = owner["currency"] != run.currency or abs(owner["cost"] - run.cost) > _TOLERANCE
        if differs and len(mismatches) < MAX_MISMATCHES:
            mismatches.append(
                {
                    "monid_run_id": run_id,
                    "dag_id": owner["dag_id"],
                    "recorded": round(owner["cost"], 6),
                    "recorded_currency": owner["currency"],
                    "monid": round(run.cost, 6),
                    "monid_currency": run.currency,
                }
            )
    connections = []
    for view in views:
        entry: dict[str, Any] = {
            "conn_id": view.conn_id,
            "status": "unavailable" if view.error else ("partial" if not view.complete else "ok"),
            "runs_listed": len(view.in_range(flt.start, flt.end)),
        }
        if view.error:
            entry["error"] = view.error
        if view.conn_id in permitted:
            entry["wallet"] = view.wallet
            entry["budgets"] = view.budgets
            if view.wallet_error:
                entry["wallet_error"] = view.wallet_error
            if view.budgets_error:
                entry["budgets_error"] = view.budgets_error
        connections.append(entry)
    return {
        "views": views,
        "permitted": permitted,
        "unattributed": {c: {"runs": e["runs"], "cost": round(e["cost"], 6)} for c, e in unattributed.items()},
        "mismatches": mismatches,
        "monid_cost_of_recorded": {c: round(v, 6) for c, v in monid_of_recorded.items()},
        "connections": connections,
        "monid_costs": {rid: (r.cost, r.currency) for rid, r in runs.items()},
    }


def notices_for(recon: dict[str, Any] | None, conn_ids: list[str]) -> list[str]:
    if recon is None:
        return []
    out = []
    for view in recon["views"]:
        if view.error:
            out.append(
                f"Monid's own records could not be read for connection {view.conn_id!r} ({view.error}). "
                "The figures are Airflow's records only; reading them spends nothing. Check the "
                f"connection's API key and URL; the next read is tried after {CACHE_SECONDS:.0f} s."
            )
        elif not view.complete:
            out.append(
                f"Monid lists more runs for connection {view.conn_id!r} than one read pages through: "
                f"unattributed runs are counted from {view.covered_from} on."
            )
    hidden = [c for c in conn_ids if c not in recon["permitted"]]
    if hidden:
        out.append(
            "Unattributed spend, wallet and budgets need read access to the Monid connection "
            f"({', '.join(hidden)}); ask an administrator for it."
        )
    return out


def spend_report(
    session: Session,
    flt: SpendFilter,
    group_by: str,
    *,
    readable: set[str] | None,
    may_see_workspace: Callable[[str], bool],
    bill: MonidBill | None,
) -> dict[str, Any]:
    """The JSON answer of ``GET /monid/api/v1/spend``.

    :param readable: DAG ids the caller may read (``None``: every DAG).
    :param may_see_workspace: whether the caller may see a connection's workspace-wide figures
        (unattributed runs, wallet, budgets).
    :param bill: Monid's side (``None``: no reconciliation).
    """
    blocks = grouped(session, flt, group_by, readable)
    reused = saved(session, flt, readable)
    conn_ids = [flt.conn_id] if flt.conn_id else (conn_ids_in_range(session, flt) or [DEFAULT_CONN_ID])
    recon = reconcile(session, flt, readable, may_see_workspace, bill, conn_ids) if bill is not None else None
    unattributed = recon["unattributed"] if recon else {}
    any_permitted = bool(recon and recon["permitted"])
    currencies = _order([*blocks, *unattributed, *reused] or ["USD"], blocks)
    out_blocks = []
    for currency in currencies:
        block = {"currency": currency, **blocks.get(currency, _empty_block())}
        block["reused"] = reused.get(currency, {"runs": 0, "saved": 0.0})
        block["unattributed"] = unattributed.get(currency, {"runs": 0, "cost": 0.0}) if any_permitted else None
        if recon is not None:
            block["monid_cost_of_recorded"] = recon["monid_cost_of_recorded"].get(currency, 0.0)
        out_blocks.append(block)
    head = out_blocks[0]
    notices = notices_for(recon, conn_ids)
    if len(out_blocks) > 1:
        notices.append(
            "Runs were paid in several currencies (" + ", ".join(currencies) + "): each has its own figures "
            "(other_currencies); they are never added up."
        )
    if head["runs"] == 0 and len(out_blocks) == 1:
        notices.append(f"No Monid spend recorded from {flt.start} to {flt.end}.")
    return {
        "api_version": API_VERSION,
        "start": flt.start.isoformat(),
        "end": flt.end.isoformat(),
        "group_by": group_by,
        "dag_id": flt.dag_id,
        "conn_id": flt.conn_id,
        **head,
        "other_currencies": out_blocks[1:],
        "reconciliation": None
        if recon is None
        else {
            "cache_seconds": CACHE_SECONDS,
            "connections": recon["connections"],
            "mismatches": recon["mismatches"],
        },
        "notices": notices,
        "_recon": recon,
    }


def page_data(
    session: Session,
    flt: SpendFilter,
    *,
    readable: set[str] | None,
    may_see_workspace: Callable[[str], bool],
    bill: MonidBill | None,
) -> dict[str, Any]:
    """Everything the HTML page shows: the report by day, DAG, task and endpoint, the top runs."""
    report = spend_report(session, flt, "day", readable=readable, may_see_workspace=may_see_workspace, bill=bill)
    by: dict[str, dict[str, dict[str, Any]]] = {"day": {b["currency"]: b for b in _blocks(report)}}
    for name in ("dag", "task", "endpoint"):
        by[name] = grouped(session, flt, name, readable)
    top = top_runs(session, flt, readable)
    monid_costs = report["_recon"]["monid_costs"] if report["_recon"] else {}
    for run in top:
        cost = monid_costs.get(run.get("monid_run_id"))
        run["monid_cost"] = cost[0] if cost else None
    return {"report": report, "by": by, "top": top}


def _blocks(report: dict[str, Any]) -> list[dict[str, Any]]:
    head = {k: v for k, v in report.items() if k not in ("other_currencies",)}
    return [head, *report["other_currencies"]]


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its internal parts (what the JSON API answers)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}
