"""``max_dag_run_cost``: a budget per DAG run (README "Budget per DAG run", decision-table row M27).

Real Airflow (``dag.test()``) against the emulator over HTTP for the task's behaviour; the race bound is
proven by 50 threads that reserve at the same moment through the real reservation code, against the
database calls the Execution API's XCom routes make (``XComModel.set``, ``XComModel.get_many``) on the
test's SQLite metadata database.
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import pytest

from airflow_monid._monid import budget
from airflow_monid._monid.budget import BUDGET_KEY, BudgetExceededError
from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator
from airflow_monid.version_compat import AIRFLOW_V_3_4_PLUS
from tests._support import TEST_DAGS, load_dag, task_states, xcoms

DAGS = TEST_DAGS / "monid_budget_dags.py"
PDL = {"provider": "pdl", "endpoint": "/person/enrich"}
PRICE = 0.003


def _run(dag_id: str, **kwargs: Any):
    return load_dag(DAGS, dag_id).test(**kwargs)


def _charged(emu: Emulator) -> float:
    return round(sum(c["value"] for c in emu.monid.charges()), 9)


def test_m27_a_fan_out_of_50_pays_for_the_20_the_budget_fits(dag_env: Emulator) -> None:
    emu = dag_env
    dr = _run("monid_budget_fanout")
    states = task_states("monid_budget_fanout", dr.run_id)
    assert sorted(states.values()).count("success") == 20
    assert sorted(states.values()).count("failed") == 30
    assert emu.count("POST", "/v1/run") == 20
    assert _charged(emu) <= 20 * PRICE + 1e-9
    values = xcoms("monid_budget_fanout", dr.run_id)
    rows = [v for (_, key, _), v in values.items() if key == BUDGET_KEY]
    assert sum(cost for row in rows for cost, _ in row["runs"].values()) == pytest.approx(20 * PRICE)
    assert all(row["reserved"] is None for row in rows)  # refused tasks withdrew, paid ones settled
    # Refused without retry (retries=2 in default_args): try_number stays 1 for every failed instance.
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = {
            ti.map_index: ti.try_number
            for ti in session.query(TaskInstance).filter_by(dag_id="monid_budget_fanout", run_id=dr.run_id)
        }
    assert set(tries.values()) == {1}


def test_m27_a_templated_budget_counts_tasks_without_one_and_refuses_the_third(dag_env: Emulator) -> None:
    emu = dag_env
    dr = _run("monid_budget_templated")  # params.budget = 0.006: unbudgeted (0.003) + budgeted (0.003)
    states = task_states("monid_budget_templated", dr.run_id)
    assert states[("unbudgeted", -1)] == "success"
    assert states[("budgeted", -1)] == "success"
    assert states[("over", -1)] == "failed"
    assert emu.count("POST", "/v1/run") == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, True, "lots", ""])
def test_m24_a_budget_that_is_no_amount_fails_when_the_dag_is_built(bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_dag_run_cost"):
        MonidRunOperator(task_id="t", input={"email": "a@example.com"}, max_dag_run_cost=bad, **PDL)


@pytest.mark.parametrize("rendered", ["nan", "inf", "-0.5", "True", "a lot"])
def test_m24_a_budget_rendered_to_no_amount_fails_before_paying(connections: Emulator, rendered: str) -> None:
    from tests.test_decision_table import TI, Store

    op = MonidRunOperator(task_id="t", input={"email": "a@example.com"}, max_dag_run_cost="{{ x }}", **PDL)
    op.max_dag_run_cost = rendered  # what Jinja rendered
    with pytest.raises(ConfigError, match="max_dag_run_cost"):
        op.execute({"ti": TI(1, 0), "task_state_store": Store()})
    assert connections.count("POST") == 0


# --- the reservation protocol, driven directly -----------------------------------------------------


class MemoryRows:
    """A linearizable row store (a lock around a dict): the contract the Execution API gives."""

    def __init__(self, data: dict[Any, Any], lock: threading.Lock, who: Any) -> None:
        self.data, self.lock, self.who = data, lock, who

    def write(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.data[self.who] = json.loads(json.dumps(row))

    def read_all(self) -> list[Any]:
        with self.lock:
            return list(self.data.values())


class FakeTI:
    def __init__(self, map_index: int, run_id: str = "r") -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = "d", run_id, "t", map_index, 1


def test_the_refusal_names_the_budget_the_spent_amount_and_the_bound() -> None:
    data: dict[Any, Any] = {"other": {"runs": {"run_a": [0.05, "USD"]}, "reserved": [0.004, "USD"]}}
    rows = MemoryRows(data, threading.Lock(), "me")
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(
            {"ti": FakeTI(0, "refusal")},
            budget=0.06,
            bound=0.01,
            currency="USD",
            where="Monid pdl /person/enrich",
            log=_Log(),
            rows=rows,
            pause=lambda s: None,
        )
    text = str(info.value)
    for part in (
        "max_dag_run_cost=0.06 USD",
        "spent 0.05 USD",
        "0.004 USD in flight",
        "up to 0.01 USD",
        "Nothing was paid",
    ):
        assert part in text
    assert data["me"]["reserved"] is None  # withdrawn


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info


class DbRows:
    """Rows in the metadata database through what the Execution API routes run: ``XComModel.set`` (``POST
    /xcoms/...``) and ``XComModel.get_many`` (``GET /xcoms/.../slice``), one committed session per request.

    SQLite takes one writer at a time, so each request holds ``_ONE_REQUEST``; the tasks' requests still
    interleave in any order between one another, which is where the race is.
    """

    def __init__(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = dag_id, run_id, task_id, map_index

    def write(self, row: dict[str, Any]) -> None:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with _ONE_REQUEST, create_session() as session:
            XComModel.set(
                key=BUDGET_KEY,
                value=row,
                dag_id=self.dag_id,
                run_id=self.run_id,
                task_id=self.task_id,
                map_index=self.map_index,
                session=session,
            )

    def read_all(self) -> list[Any]:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with _ONE_REQUEST, create_session() as session:
            args = {"run_id": self.run_id, "key": BUDGET_KEY, "task_ids": self.task_id, "dag_ids": self.dag_id}
            query = XComModel.get_many(**args)
            if hasattr(query, "with_only_columns"):  # Airflow 3.1+: a select
                values = [row.value for row in session.execute(query.with_only_columns(XComModel.value)).all()]
            else:  # Airflow 3.0: a Query bound to its own session
                values = [row.value for row in XComModel.get_many(**args, session=session)]
        return [json.loads(v) if isinstance(v, str) else v for v in values]


_ONE_REQUEST = threading.Lock()


def _clear_rows(dag_id: str, run_id: str) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, key=BUDGET_KEY).delete()


def _race(dag_id: str, run_id: str, name: str, amounts: list[float], limit: float) -> dict[int, float]:
    """Every map index reserves its amount at the same moment; returns the granted ones."""
    barrier = threading.Barrier(len(amounts))
    granted: dict[int, float] = {}
    refused: list[int] = []
    errors: list[BaseException] = []

    def task(i: int) -> None:
        rows = DbRows(dag_id, run_id, "enrich", i)
        context = {"ti": FakeTI(i, run_id + name)}  # its own row cache key per scenario
        barrier.wait()
        try:
            budget.reserve(
                context,
                budget=limit,
                bound=amounts[i],
                currency="USD",
                where="race",
                log=_Log(),
                rows=rows,
                pause=lambda s: None,
            )
        except BudgetExceededError:
            refused.append(i)
            return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        granted[i] = amounts[i]

    threads = [threading.Thread(target=task, args=(i,)) for i in range(len(amounts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(granted) + len(refused) == len(amounts)
    return granted


@pytest.mark.skipif(
    AIRFLOW_V_3_4_PLUS,
    reason="drives the XCom routes' database calls of Airflow 3.0-3.3; 3.4 stores XComs per task attempt",
)
def test_concurrent_reservations_never_commit_more_than_the_budget(dag_env: Emulator) -> None:
    """50 tasks (the 50 map indexes of a real DAG run) reserve at the same moment, a barrier apart, through
    the Execution API's database calls: the runs granted sum to at most the budget (the README's bound:
    strict, when each run costs at most its bound), with equal and with mixed bounds."""
    dag_id = "monid_budget_fanout"
    dr = _run(dag_id)  # 50 task instances for the rows to belong to
    rng = random.Random(7)
    scenarios = {
        "equal": [PRICE] * 50,
        "mixed": [rng.choice([0.001, 0.002, 0.003, 0.005, 0.008]) for _ in range(50)],
    }
    limit = 20 * PRICE
    for name, amounts in scenarios.items():
        _clear_rows(dag_id, dr.run_id)
        granted = _race(dag_id, dr.run_id, name, amounts, limit)
        assert sum(granted.values()) <= limit + 1e-9, (name, sum(granted.values()), limit)
        assert granted, "the budget fits some runs: a protocol that refuses everything is no budget"
        # The rows hold exactly the granted reservations (refused tasks withdrew theirs).
        stored = DbRows(dag_id, dr.run_id, "enrich", 0).read_all()
        assert sum(budget.BudgetRow.from_stored(r).in_flight("USD") for r in stored) == pytest.approx(
            sum(granted.values())
        )


def test_a_refused_post_withdraws_the_reservation(connections: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 402 on POST /v1/run paid nothing: the reservation is withdrawn, so the next task may use it."""
    from tests.test_decision_table import TI, Store

    emu = connections
    data: dict[Any, Any] = {}
    lock = threading.Lock()
    monkeypatch.setattr(budget, "tracked_task_ids", lambda context: ["t"])
    monkeypatch.setattr(budget, "XComRows", lambda context, ids: MemoryRows(data, lock, context["ti"].try_number))
    emu.add_fault("POST", r"/v1/run$", status=402, body={"message": "wallet empty"}, times=1)
    op = MonidRunOperator(task_id="t", input={"email": "a@example.com"}, max_dag_run_cost=PRICE, **PDL)
    with pytest.raises(Exception, match="402"):
        op.execute({"ti": TI(1, 0), "task_state_store": Store()})
    assert data[1]["reserved"] is None
    op = MonidRunOperator(task_id="t", input={"email": "a@example.com"}, max_dag_run_cost=PRICE, **PDL)
    assert op.execute({"ti": TI(2, 0), "task_state_store": Store()})["work_email"] == "a@example.com"
    assert emu.count("POST", "/v1/run") == 2
