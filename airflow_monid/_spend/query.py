"""Spend aggregation in SQL over the spend records (API server side).

Every figure is computed by the database (``GROUP BY`` over the records' JSON fields, with
SQLAlchemy's portable JSON accessors: SQLite, PostgreSQL, MySQL); Python only receives one row per
group. Records are found through the ``xcom.key`` index (a key range), never by loading them all.

Airflow 3.4 keeps XComs per task attempt (``xcom_v2``; ``XComModel`` is a read projection over it and
``xcom_v1``), so a retried task's first record exists once per attempt. Each still counts once: Airflow's
ORM hides archived attempts from every query that does not ask for them (``include_all_attempts``), and
the current attempt holds all the task's records, as on 3.3 (``records.py`` writes earlier tries' records
again). Measured by ``tests/test_spend_records.py`` on 3.4.0b2: three rows stored, two runs counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, select

from airflow_monid._spend.records import SAVED_KEY_END, SAVED_KEY_PREFIX, SPEND_KEY_END, SPEND_KEY_PREFIX, spend_key

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql import ColumnElement

GROUP_BY = ("dag", "task", "endpoint", "day")
DEFAULT_DAYS = 30
MAX_DAYS = 366
API_VERSION = "v1"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DECIMALS = 6


class SpendQueryError(ValueError):
    """A bad parameter: the message names it (the API answers 400 with it)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class SpendFilter:
    """A date range (UTC days of the runs' ``createdAt``, both ends included) and optional filters."""

    start: date
    end: date
    dag_id: str | None = None
    conn_id: str | None = None

    @classmethod
    def parse(
        cls,
        start: str | None,
        end: str | None,
        dag_id: str | None = None,
        conn_id: str | None = None,
        today: date | None = None,
    ) -> SpendFilter:
        """From query parameters; default: the last 30 days up to today (UTC)."""
        today = today or datetime.now(UTC).date()
        end_day = _parse_day("end", end) if end else today
        start_day = _parse_day("start", start) if start else end_day - timedelta(days=DEFAULT_DAYS - 1)
        if start_day > end_day:
            raise SpendQueryError("start", f"{start_day} is after end {end_day}; give start <= end.")
        if (end_day - start_day).days >= MAX_DAYS:
            raise SpendQueryError("start", f"the range {start_day}..{end_day} is longer than {MAX_DAYS} days.")
        for name, value in (("dag_id", dag_id), ("conn_id", conn_id)):
            if value is not None and (not value.strip() or len(value) > 250):
                raise SpendQueryError(name, f"must be a non-empty id of at most 250 characters, got {value!r}.")
        return cls(start_day, end_day, dag_id or None, conn_id or None)


def _parse_day(name: str, value: str) -> date:
    if not _DATE.match(value):
        raise SpendQueryError(name, f"expected a date as YYYY-MM-DD, got {value!r}.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SpendQueryError(name, f"{value!r} is not a calendar date.") from None


def parse_group_by(value: str | None) -> str:
    if value not in GROUP_BY:
        raise SpendQueryError("group_by", f"expected one of {', '.join(GROUP_BY)}, got {value!r}.")
    return value


def _xcom() -> Any:
    from airflow.models.xcom import XComModel

    return XComModel


class _Fields:
    """The records' JSON fields as SQL expressions."""

    def __init__(self) -> None:
        x = _xcom()
        v = x.value
        self.x = x
        self.cost = v["cost"].as_float()
        self.undelivered = v["undelivered_cost"].as_float()
        self.estimated = v["estimated_cost"].as_float()
        self.currency = v["currency"].as_string()
        self.day = v["day"].as_string()
        self.conn_id = v["conn_id"].as_string()
        self.provider = v["provider"].as_string()
        self.endpoint = v["endpoint"].as_string()
        self.source = v["cost_source"].as_string()
        self.run_id = v["monid_run_id"].as_string()
        self.status = v["status"].as_string()

    def where(self, flt: SpendFilter, dag_ids: Iterable[str] | None) -> list[ColumnElement[bool]]:
        x = self.x
        clauses: list[ColumnElement[bool]] = [
            x.key >= SPEND_KEY_PREFIX,
            x.key < SPEND_KEY_END,
            self.day >= flt.start.isoformat(),
            self.day <= flt.end.isoformat(),
        ]
        if dag_ids is not None:
            clauses.append(x.dag_id.in_(sorted(set(dag_ids))))
        if flt.dag_id:
            clauses.append(x.dag_id == flt.dag_id)
        if flt.conn_id:
            clauses.append(self.conn_id == flt.conn_id)
        return clauses

    def keys(self, group_by: str) -> list[Any]:
        x = self.x
        return {
            "dag": [x.dag_id],
            "task": [x.dag_id, x.task_id],
            "endpoint": [self.provider, self.endpoint],
            "day": [self.day],
        }[group_by]


def _amount(value: Any) -> float:
    return round(float(value or 0.0), _DECIMALS)


def _group_key(group_by: str, values: Sequence[Any]) -> str:
    if group_by == "task":
        return f"{values[0]}.{values[1]}"
    if group_by == "endpoint":
        return f"{values[0]} {values[1]}".strip()
    return str(values[0])


def grouped(
    session: Session, flt: SpendFilter, group_by: str, dag_ids: Iterable[str] | None
) -> dict[str, dict[str, Any]]:
    """``{currency: {runs, total, estimated, undelivered_cost, uncosted_runs, groups: [...]}}``, one
    ``GROUP BY`` query; groups sorted by cost (highest first), then key.

    :param dag_ids: the DAGs the caller may read (``None``: every DAG).
    """
    f = _Fields()
    keys = f.keys(group_by)
    n = len(keys)
    stmt = (
        select(
            *keys,
            f.currency,
            func.count(),
            func.sum(f.cost),
            func.sum(f.undelivered),
            func.sum(f.estimated),
            func.sum(case((f.source == "none", 1), else_=0)),
        )
        .where(and_(*f.where(flt, dag_ids)))
        .group_by(*keys, f.currency)
    )
    blocks: dict[str, dict[str, Any]] = {}
    for row in session.execute(stmt):
        key_values, (currency, runs, cost, undelivered, estimated, uncosted) = row[:n], row[n:]
        block = blocks.setdefault(
            currency or "USD",
            {"runs": 0, "total": 0.0, "estimated": 0.0, "undelivered_cost": 0.0, "uncosted_runs": 0, "groups": []},
        )
        block["runs"] += int(runs)
        block["total"] += float(cost or 0.0)
        block["estimated"] += float(estimated or 0.0)
        block["undelivered_cost"] += float(undelivered or 0.0)
        block["uncosted_runs"] += int(uncosted or 0)
        block["groups"].append(
            {
                "key": _group_key(group_by, key_values),
                "runs": int(runs),
                "cost": _amount(cost),
                "undelivered_cost": _amount(undelivered),
                "estimated": _amount(estimated),
            }
        )
    for block in blocks.values():
        for name in ("total", "estimated", "undelivered_cost"):
            block[name] = _amount(block[name])
        block["groups"].sort(key=lambda g: (-g["cost"], g["key"]))
    return blocks


def top_runs(
    session: Session, flt: SpendFilter, dag_ids: Iterable[str] | None, limit: int = 10
) -> list[dict[str, Any]]:
    """The costliest runs of the range (ties: newest first)."""
    f = _Fields()
    x = f.x
    stmt = (
        select(x.dag_id, x.run_id, x.task_id, x.map_index, x.value)
        .where(and_(*f.where(flt, dag_ids)))
        .order_by(f.cost.desc(), x.key)
        .limit(limit)
    )
    out = []
    for dag_id, dag_run_id, task_id, map_index, value in session.execute(stmt):
        record = value if isinstance(value, dict) else {}
        out.append(
            {
                "dag_id": dag_id,
                "dag_run_id": dag_run_id,
                "task_id": task_id,
                "map_index": map_index,
                **{
                    k: record.get(k)
                    for k in (
                        "monid_run_id",
                        "api",
                        "conn_id",
                        "provider",
                        "endpoint",
                        "created_at",
                        "status",
                        "cost",
                        "currency",
                        "estimated",
                        "delivered",
                        "try",
                    )
                },
            }
        )
    return out


def conn_ids_in_range(session: Session, flt: SpendFilter) -> list[str]:
    """Monid connections that paid for runs in the range (every DAG: for reconciliation)."""
    f = _Fields()
    api = f.x.value["api"].as_string()
    stmt = select(f.conn_id).where(and_(*f.where(flt, None), api == "monid")).group_by(f.conn_id)
    return sorted(c for (c,) in session.execute(stmt) if c)


def claimed(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The records of these Monid runs, whatever DAG holds them: ``{run id: {dag_id, cost, currency}}``.

    Looked up by key (indexed), 500 at a time.
    """
    f = _Fields()
    x = f.x
    found: dict[str, dict[str, Any]] = {}
    by_key = {spend_key(r): r for r in run_ids}
    wanted = set(run_ids)
    keys = list(by_key)
    for i in range(0, len(keys), 500):
        stmt = select(x.key, x.dag_id, f.run_id, f.cost, f.currency).where(x.key.in_(keys[i : i + 500]))
        for key, dag_id, run_id, cost, currency in session.execute(stmt):
            rid = run_id or by_key.get(key)
            if rid in wanted:
                found[rid] = {"dag_id": dag_id, "cost": float(cost or 0.0), "currency": currency or "USD"}
    return found


def count_records(session: Session, flt: SpendFilter) -> int:
    """A bare ``SELECT count(*)`` over the records of the range (the benchmark's baseline)."""
    f = _Fields()
    return int(session.scalar(select(func.count()).select_from(f.x).where(and_(*f.where(flt, None)))) or 0)


def saved(session: Session, flt: SpendFilter, dag_ids: Iterable[str] | None) -> dict[str, dict[str, Any]]:
    """Results reused instead of paid for (``reuse_results``): ``{currency: {runs, saved}}``, one ``GROUP BY``
    over the ``monid_saved.*`` rows (never counted as spent, nor claimed by reconciliation)."""
    x = _xcom()
    v = x.value
    day, currency, amount = v["day"].as_string(), v["currency"].as_string(), v["saved"].as_float()
    clauses = [
        x.key >= SAVED_KEY_PREFIX,
        x.key < SAVED_KEY_END,
        day >= flt.start.isoformat(),
        day <= flt.end.isoformat(),
    ]
    if dag_ids is not None:
        clauses.append(x.dag_id.in_(sorted(set(dag_ids))))
    if flt.dag_id:
        clauses.append(x.dag_id == flt.dag_id)
    if flt.conn_id:
        clauses.append(v["conn_id"].as_string() == flt.conn_id)
    stmt = select(currency, func.count(), func.sum(amount)).where(and_(*clauses)).group_by(currency)
    return {(c or "USD"): {"runs": int(n), "saved": _amount(total)} for c, n, total in session.execute(stmt)}
