"""The run ledger's reuse rules (Airflow 3.3 task_state_store), through MonidRunOperator.execute()."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_monid._exactly_once import LEDGER_KEY, request_digest
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator

PDL = ("pdl", "/person/enrich")
INPUT = {"email": "jane.doe@example.com"}


class FakeStore:
    """In-memory stand-in for context["task_state_store"] (same get/set contract)."""

    def __init__(self, value: Any = None) -> None:
        self.values: dict[str, Any] = {} if value is None else {LEDGER_KEY: value}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class FakeTI:
    task_id, map_index = "t", -1

    def __init__(self, try_number: int) -> None:
        self.try_number = try_number
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _execute(store: FakeStore, try_number: int = 2, **kwargs: Any) -> tuple[Any, FakeTI]:
    ti = FakeTI(try_number)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, **kwargs)
    return op.execute({"ti": ti, "task_state_store": store}), ti


def _stored(emu: Emulator, status: str, **run: Any) -> FakeStore:
    run_id = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status=status, **run)["runId"]
    return FakeStore({"run_id": run_id, "hash": request_digest(*PDL, INPUT), "delivered": False})


def test_first_try_remembers_the_run_and_marks_it_delivered(connections: Emulator) -> None:
    store = FakeStore()
    output, ti = _execute(store, try_number=1)
    assert output["full_name"]
    entry = store.values[LEDGER_KEY]
    assert entry == {"run_id": ti.pushed["run_id"], "hash": request_digest(*PDL, INPUT), "delivered": True}
    assert connections.count("POST", "/v1/run") == 1


def test_completed_undelivered_run_is_reused_without_paying(connections: Emulator) -> None:
    store = _stored(connections, "COMPLETED", output={"reused": True})
    output, ti = _execute(store)
    assert output == {"reused": True}
    assert ti.pushed["run_id"] == store.values[LEDGER_KEY]["run_id"]
    assert connections.count("POST", "/v1/run") == 0
    assert store.values[LEDGER_KEY]["delivered"] is True


@pytest.mark.parametrize(
    ("status", "run"),
    [
        ("FAILED", {}),
        ("TIMED_OUT", {}),
        ("STOPPED", {}),
        ("STOPPING", {}),
        ("COMPLETED", {"provider_status": 503, "output": None}),
        ("COMPLETED", {"provider_status": 429, "output": None}),
    ],
)
def test_stored_run_that_cannot_deliver_is_replaced(connections: Emulator, status: str, run: dict) -> None:
    store = _stored(connections, status, **run)
    old = store.values[LEDGER_KEY]["run_id"]
    output, ti = _execute(store)
    assert output["full_name"]
    assert connections.count("POST", "/v1/run") == 1
    assert ti.pushed["run_id"] != old == connections.requests("GET")[0].path.rsplit("/", 1)[1]


def test_delivered_run_is_not_reused_after_a_clear(connections: Emulator) -> None:
    store = _stored(connections, "COMPLETED", output={"stale": True})
    store.values[LEDGER_KEY]["delivered"] = True
    output, _ = _execute(store)
    assert output != {"stale": True}
    assert connections.count("POST", "/v1/run") == 1


def test_changed_input_is_not_reused(connections: Emulator) -> None:
    store = _stored(connections, "COMPLETED", output={"stale": True})
    store.values[LEDGER_KEY]["hash"] = "0" * 64
    output, _ = _execute(store)
    assert output != {"stale": True}
    assert connections.count("POST", "/v1/run") == 1


def test_durable_false_always_pays(connections: Emulator) -> None:
    store = _stored(connections, "COMPLETED", output={"stale": True})
    output, _ = _execute(store, durable=False)
    assert output != {"stale": True}
    assert connections.count("POST", "/v1/run") == 1


def test_retry_with_empty_ledger_adopts_the_single_matching_run(connections: Emulator) -> None:
    """3.3, try 2, nothing stored: the worker died between POST and writing the ledger."""
    run_id = connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED")["runId"]
    connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input={"email": "other@example.com"})
    _, ti = _execute(FakeStore(), try_number=2)
    assert ti.pushed["run_id"] == run_id
    assert connections.count("POST", "/v1/run") == 0


def test_two_matching_runs_fail_naming_both(connections: Emulator) -> None:
    ids = [connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT)["runId"] for _ in range(2)]
    with pytest.raises(Exception, match="Found 2 Monid runs") as info:
        _execute(FakeStore(), try_number=2)
    assert all(run_id in str(info.value) for run_id in ids)
    assert connections.count("POST", "/v1/run") == 0


def test_adopt_existing_run_false_pays_on_retry(connections: Emulator) -> None:
    connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED")
    _execute(FakeStore(), try_number=2, adopt_existing_run=False)
    assert connections.count("POST", "/v1/run") == 1
