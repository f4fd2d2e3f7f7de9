"""``max_dag_run_cost``: a budget for everything the Monid tasks of one DAG run pay for.

Workers reach the metadata database only through the Execution API, which has no compare-and-set.
The budget is therefore a **reservation ledger in XCom**: every Monid task instance of a DAG run that
has a budget keeps one XCom row, key :data:`BUDGET_KEY`, with what it has paid (its recorded runs,
cost as its spend records count it) and what it is about to pay (the price bound of the run it is
about to submit). Before paying, a task:

1. **writes** its row with the reservation (its bound), then
2. **reads back** every such row of the DAG run (one ``XCom.get_all`` per Monid task id: every map
   index at once), its own included, and
3. pays only when the sum (paid + reserved, in the budget's currency) is within the budget; otherwise
   it withdraws its reservation and fails before any POST.

Why that bounds the total (README "Budget per DAG run"): an XCom write is committed before the task
reads, so of two racing tasks at least the later reader sees the other's reservation. Take the tasks
that paid; the one among them that read last saw every other one's row (each wrote before its own read,
which came before that last read), and it paid only because that sum, which includes all of them, was
within the budget. So the runs paid under the budget cost at most ``max_dag_run_cost`` together, as
long as each costs at most its price bound. A reservation is replaced by the run's cost once its spend
record is written (:func:`settle`), and kept when the POST's answer was lost (money may be spent).

The price of strictness: racing tasks may refuse each other when both fit alone. A task refused only
because of reservations of others in flight withdraws, waits a random moment and checks again
(:data:`CONTENTION_TRIES` times) before it fails.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_monid._monid.cost_guard import PER_CALL_TYPES, PER_RESULT_TYPES, Price, results_cap
from airflow_monid.exceptions import CostLimitError

log = logging.getLogger("airflow_monid.budget")

BUDGET_KEY = "monid_budget"  # XCom key of a task instance's row; also its task_state_store key (3.3+)
ROW_VERSION = 1
CONTENTION_TRIES = 4
_EPSILON = 1e-9


class BudgetExceededError(CostLimitError):
    """``max_dag_run_cost``: paying for this run could take the DAG run over its budget; nothing was paid."""


# --- rows ---------------------------------------------------------------------------------------------


@dataclass
class BudgetRow:
    """What one task instance has paid and is about to pay, as stored in its XCom row.

    :param runs: ``{monid run id: [cost, currency]}`` of its recorded runs.
    :param reserved: ``[amount, currency]`` of the run it is about to pay for (or whose answer was lost).
    """

    runs: dict[str, list[Any]] = field(default_factory=dict)
    reserved: list[Any] | None = None

    @classmethod
    def from_stored(cls, value: Any) -> BudgetRow:
        """Tolerant read: anything unreadable counts as nothing (never an error)."""
        if not isinstance(value, Mapping):
            return cls()
        runs: dict[str, list[Any]] = {}
        raw = value.get("runs")
        if isinstance(raw, Mapping):
            for run_id, pair in raw.items():
                if _pair(pair) is not None:
                    runs[str(run_id)] = list(pair)
        reserved = value.get("reserved")
        pair = _pair(reserved)
        return cls(runs=runs, reserved=[pair[0], pair[1]] if pair is not None else None)

    def to_stored(self) -> dict[str, Any]:
        return {"v": ROW_VERSION, "runs": self.runs, "reserved": self.reserved}

    def spent(self, currency: str) -> float:
        return sum(float(c) for c, cur in self.runs.values() if cur == currency)

    def in_flight(self, currency: str) -> float:
        return float(self.reserved[0]) if self.reserved and self.reserved[1] == currency else 0.0


def _pair(value: Any) -> tuple[float, str] | None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    amount, currency = value
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        return None
    return (float(amount), currency) if isinstance(currency, str) else None


class Rows(Protocol):
    """Where the rows live: XCom through the Execution API (:class:`XComRows`); tests may drive others."""

    def write(self, row: dict[str, Any]) -> None: ...

    def read_all(self) -> list[Any]: ...


class XComRows:
    """The task instance's own row, and every Monid task's rows of the DAG run, through the Execution API.

    Written and read with Airflow's own XCom class (past any custom backend, like the spend records):
    one ``SetXCom`` and one ``GetXComSequenceSlice`` per Monid task id of the DAG.
    """

    def __init__(self, context: Any, task_ids: Iterable[str]) -> None:
        ti = context["ti"]
        self.dag_id, self.run_id, self.task_id = ti.dag_id, ti.run_id, ti.task_id
        map_index = getattr(ti, "map_index", -1)
        self.map_index = map_index if isinstance(map_index, int) else -1
        self.task_ids = sorted(set(task_ids) | {self.task_id})

    def write(self, row: dict[str, Any]) -> None:
        from airflow.sdk.bases.xcom import BaseXCom

        BaseXCom.set(
            key=BUDGET_KEY,
            value=row,
            dag_id=self.dag_id,
            task_id=self.task_id,
            run_id=self.run_id,
            map_index=self.map_index,
        )

    def read_all(self) -> list[Any]:
        from airflow.sdk.bases.xcom import BaseXCom

        out: list[Any] = []
        for task_id in self.task_ids:
            values = BaseXCom.get_all(key=BUDGET_KEY, dag_id=self.dag_id, task_id=task_id, run_id=self.run_id)
            out.extend(values or [])
        return out


# --- which DAGs keep rows ----------------------------------------------------------------------------


def _operator_class(task: Any) -> type | None:
    cls = getattr(task, "operator_class", None)  # a MappedOperator (Task SDK: the class itself)
    if isinstance(cls, type):
        return cls
    return type(task)


def monid_tasks(dag: Any) -> list[Any]:
    """The DAG's Monid run tasks (operator and ``@task.monid``, mapped or not)."""
    from airflow_monid.operators.monid import MonidRunOperator

    tasks = getattr(dag, "task_dict", None) or {}
    out = []
    for task in tasks.values():
        cls = _operator_class(task)
        if cls is not None and issubclass(cls, MonidRunOperator):
            out.append(task)
    return out


def _set_on(task: Any, dag: Any, name: str) -> bool:
    partial = getattr(task, "partial_kwargs", None)
    if isinstance(partial, Mapping):  # a mapped task: explicit arguments, else the DAG's default_args
        value = partial.get(name)
        if value is None:
            value = (getattr(dag, "default_args", None) or {}).get(name)
        return value is not None
    return getattr(task, name, None) is not None


def tracked_task_ids(context: Any) -> list[str] | None:
    """The Monid task ids whose rows count, when any Monid task of the DAG has ``max_dag_run_cost`` or a
    ``spend_alert``; ``None`` when the DAG has neither (then no row is written: nothing to count for)."""
    ti = context.get("ti") if isinstance(context, Mapping) else None
    dag = context.get("dag") if isinstance(context, Mapping) else None
    if dag is None:
        dag = getattr(getattr(ti, "task", None), "dag", None)
    if dag is None or ti is None:
        return None
    tasks = monid_tasks(dag)
    if not any(_set_on(t, dag, "max_dag_run_cost") or _set_on(t, dag, "spend_alert") for t in tasks):
        return None
    return [t.task_id for t in tasks]


# --- the task instance's own row -------------------------------------------------------------------


_own: dict[tuple[Any, ...], BudgetRow] = {}  # this try's row, per task instance (one process, one try)


def _ident(context: Any) -> tuple[Any, ...]:
    ti = context["ti"]
    names = ("dag_id", "run_id", "task_id", "map_index", "try_number")
    return (
        (id(ti), *(getattr(ti, n, None) for n in names))
        if getattr(ti, "run_id", None) is None
        else tuple(getattr(ti, n, None) for n in names)
    )


def own_row(context: Any) -> BudgetRow:
    """This task instance's row: kept in memory for the try; on Airflow 3.3 the copy in its
    ``task_state_store`` restores what earlier tries paid or reserved (a new try clears its XComs)."""
    key = _ident(context)
    row = _own.get(key)
    if row is None:
        store = context.get("task_state_store")
        stored = None
        if store is not None:
            try:
                stored = store.get(BUDGET_KEY)
            except Exception as exc:  # the row is only as good as what can be read; never fail a task for it
                log.warning("Could not read this task's budget row from task_state_store: %s", exc)
        row = BudgetRow.from_stored(stored)
        _own[key] = row
    return row


def _save(context: Any, rows: Rows, row: BudgetRow) -> None:
    _own[_ident(context)] = row
    rows.write(row.to_stored())
    store = context.get("task_state_store")
    if store is not None:
        store.set(BUDGET_KEY, row.to_stored())


def restore(context: Any) -> None:
    """At the start of a try (3.3+): write back what earlier tries of this task instance paid or reserved,
    which Airflow's new try cleared from XCom, before anything else happens."""
    task_ids = tracked_task_ids(context)
    if task_ids is None or context.get("task_state_store") is None:
        return
    row = own_row(context)
    if row.runs or row.reserved:
        _save(context, XComRows(context, task_ids), row)


def settle(context: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """The runs' spend records are written: their costs replace this task's reservation in its row.

    Called by the spend records (every Monid task of a DAG with a budget or a spend alert); a failure
    is a warning, the records are what the spend page counts.
    """
    task_ids = tracked_task_ids(context)
    if task_ids is None:
        return
    row = own_row(context)
    runs = dict(row.runs)
    for record in records:
        run_id = record.get("monid_run_id")
        if run_id:
            runs[str(run_id)] = [float(record.get("cost") or 0.0), str(record.get("currency") or "USD")]
    rows = XComRows(context, task_ids)
    try:
        _save(context, rows, BudgetRow(runs=runs, reserved=None))
    except Exception as exc:
        log.warning("Could not update this task's row of the DAG run's Monid budget: %s", exc)
    task = getattr(context["ti"], "task", None)
    alert = getattr(task, "spend_alert", None)
    if alert is None:
        return
    from airflow_monid._runtime.alerts import evaluate

    budget = getattr(task, "max_dag_run_cost", None)
    currency = str(getattr(task, "max_cost_currency", "USD") or "USD")
    try:
        run_total = totals(rows.read_all(), currency, own_row(context)).spent if budget is not None else None
        evaluate(
            context,
            alert,
            budget=budget if isinstance(budget, int | float) else None,
            currency=currency,
            run_total=run_total,
            records=records,
        )
    except Exception as exc:  # an alert never fails a task, nor blocks the payment decision
        log.warning("spend_alert could not be evaluated: %s: %s", type(exc).__name__, exc)


# --- the check ---------------------------------------------------------------------------------------


def run_bound(
    price: Price, payload: Mapping[str, Any], max_results: int | None, field_name: str | None
) -> float | None:
    """The most one run can cost under ``price`` (``None``: it cannot be bounded before the run)."""
    if price.amount is None:
        return None
    if price.type in PER_CALL_TYPES:
        return price.amount
    if price.type in PER_RESULT_TYPES:
        cap = results_cap(payload, max_results, field_name)
        return None if cap is None else price.amount * cap
    return None


@dataclass(frozen=True)
class Totals:
    """What the rows say, in the budget's currency."""

    spent: float
    in_flight: float
    others_in_flight: float


def totals(values: Iterable[Any], currency: str, own: BudgetRow) -> Totals:
    spent = in_flight = 0.0
    for value in values:
        row = BudgetRow.from_stored(value)
        spent += row.spent(currency)
        in_flight += row.in_flight(currency)
    own_flight = own.in_flight(currency)
    return Totals(spent, in_flight, max(0.0, in_flight - own_flight))


@dataclass
class Reservation:
    """A granted reservation; :meth:`release` withdraws it when the POST certainly paid nothing."""

    context: Any
    rows: Rows
    amount: float

    def release(self) -> None:
        row = own_row(self.context)
        try:
            _save(self.context, self.rows, BudgetRow(runs=row.runs, reserved=None))
        except Exception as exc:
            log.warning("Could not withdraw this task's budget reservation: %s", exc)


def reserve(
    context: Any,
    *,
    budget: float,
    bound: float,
    currency: str,
    where: str,
    log: Any,
    rows: Rows | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> Reservation:
    """Reserve ``bound`` of ``budget`` for the run about to be paid, or fail (nothing paid).

    :raises BudgetExceededError: the DAG run's paid and reserved amounts plus ``bound`` exceed ``budget``.
    """
    if rows is None:
        rows = XComRows(context, tracked_task_ids(context) or [])
    seen = Totals(0.0, 0.0, 0.0)
    for attempt in range(1, CONTENTION_TRIES + 1):
        row = own_row(context)
        mine = BudgetRow(runs=row.runs, reserved=[bound, currency])
        _save(context, rows, mine)  # 1. write
        seen = totals(rows.read_all(), currency, mine)  # 2. read back, own row included
        if seen.spent + seen.in_flight <= budget + _EPSILON:
            log.info(
                "%s: DAG run budget max_dag_run_cost=%g %s: %g spent, %g in flight (this run's %g bound included).",
                where,
                budget,
                currency,
                seen.spent,
                seen.in_flight,
                bound,
            )
            return Reservation(context, rows, bound)
        _save(context, rows, BudgetRow(runs=row.runs, reserved=None))  # 3. withdraw
        fits_alone = seen.spent + bound <= budget + _EPSILON
        if not fits_alone or seen.others_in_flight <= 0 or attempt == CONTENTION_TRIES:
            break
        wait = random.uniform(0.1, 0.5) * attempt
        log.info(
            "%s: other tasks of this DAG run hold %g %s of the budget in flight; checking again in %.1f s.",
            where,
            seen.others_in_flight,
            currency,
            wait,
        )
        pause(wait)
    committed = seen.spent + seen.others_in_flight
    raise BudgetExceededError(
        f"{where}: DAG run budget max_dag_run_cost={budget:g} {currency} would be exceeded: this DAG run has spent "
        f"{seen.spent:g} {currency} and has {seen.others_in_flight:g} {currency} in flight in other tasks "
        f"({committed:g} {currency} committed), and this run may cost up to {bound:g} {currency} "
        f"({committed + bound:g} > {budget:g}). Nothing was paid by this task and it is not retried. Raise "
        "max_dag_run_cost, or clear the task once the runs in flight have finished below their bounds."
    )


def require_budget_price(
    price: Price,
    payload: Mapping[str, Any],
    *,
    currency: str,
    max_results: int | None,
    field_name: str | None,
    where: str,
) -> float:
    """The run's price bound for the budget; fails (nothing paid) when the price cannot be bounded."""
    head = f"{where}: price {price.describe()}"
    if price.currency != currency:
        raise BudgetExceededError(
            f"{head} is not in {currency}, the currency of max_dag_run_cost; nothing was paid. Set "
            "max_cost_currency to the price's currency."
        )
    if (
        price.type in PER_RESULT_TYPES
        and price.amount is not None
        and results_cap(payload, max_results, field_name) is None
    ):
        raise BudgetExceededError(
            f"{head} is charged per result and nothing caps the results, so max_dag_run_cost cannot be kept; "
            "nothing was paid. Set max_results=N or max_results_field='<the input field that caps results>'."
        )
    bound = run_bound(price, payload, max_results, field_name)
    if bound is None:
        raise BudgetExceededError(
            f"{head}: this price cannot be bounded before the run, so max_dag_run_cost cannot be kept; nothing was "
            "paid. Remove max_dag_run_cost for this task and rely on Monid's workspace budgets."
        )
    return bound
