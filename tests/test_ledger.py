"""The run ledger's reuse rules (Airflow 3.3 task_state_store), through MonidRunOperator.execute()."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from airflow_monid._monid.exactly_once import LEDGER_KEY
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator

PDL = ("pdl", "/person/enrich")
INPUT = {"email": "jane.doe@example.com"}
OTHER_INPUT = {"email": "someone.else@example.com"}


def digest(provider: str, endpoint: str, input: dict[str, Any]) -> str:
    """Written out here, not imported: a digest that ignored the input would then fail these tests."""
    text = json.dumps([provider, endpoint, input], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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

    def __init__(self, try_number: int, max_tries: int | None = None) -> None:
        self.try_number = try_number
        # retries=3 and no clear: max_tries = retries; after a clear at try n, max_tries = n + retries.
        self.max_tries = 3 if max_tries is None else max_tries
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _execute(
    store: FakeStore, try_number: int = 2, max_tries: int | None = None, input: Any = None, **kwargs: Any
) -> tuple[Any, FakeTI]:
    ti = FakeTI(try_number, max_tries)
    payload = INPUT if input is None else input
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=payload, retries=3, **kwargs)
    return op.execute({"ti": ti, "task_state_store": store}), ti


def _stored(emu: Emulator, status: str, input: Any = None, cycle: int = 1, **run: Any) -> FakeStore:
    payload = INPUT if input is None else input
    run_id = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=payload, status=status, **run)["runId"]
    return FakeStore({"run_id": run_id, "hash": digest(*PDL, payload), "delivered": False, "cycle": cycle})


def test_first_try_remembers_the_run_and_marks_it_delivered(connections: Emulator) -> None:
    store = FakeStore()
    output, ti = _execute(store, try_number=1)
    assert output["full_name"]
    entry = store.values[LEDGER_KEY]
    run_id = ti.pushed["run_id"]
    expected = {
        "run_id": run_id,
        "hash": digest(*PDL, INPUT),
        "delivered": True,
        "cycle": 1,
        "delivered_runs": [run_id],
    }
    assert entry == expected
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
    """Cycle 1 delivered; the user cleared after try 2 (max_tries = 2 + 3): try 3 starts cycle 3."""
    store = _stored(connections, "COMPLETED", output={"stale": True})
    store.values[LEDGER_KEY]["delivered"] = True
    output, ti = _execute(store, try_number=3, max_tries=5)
    assert output != {"stale": True}
    assert connections.count("POST", "/v1/run") == 1
    assert store.values[LEDGER_KEY]["cycle"] == 3 and store.values[LEDGER_KEY]["run_id"] == ti.pushed["run_id"]


def test_delivered_run_is_reused_by_a_retry_of_the_same_cycle(connections: Emulator) -> None:
    """The worker died after marking the run delivered but before Airflow recorded success."""
    store = _stored(connections, "COMPLETED", output={"same": True})
    store.values[LEDGER_KEY]["delivered"] = True
    output, _ = _execute(store, try_number=2)
    assert output == {"same": True}
    assert connections.count("POST", "/v1/run") == 0


def test_undelivered_run_is_reused_by_a_new_cycle(connections: Emulator) -> None:
    """Cleared while the run was still being waited for: the next try reuses it (README: Killing a task)."""
    store = _stored(connections, "RUNNING", polls_to_finish=1)
    _, ti = _execute(store, try_number=3, max_tries=5)
    assert ti.pushed["run_id"] == store.values[LEDGER_KEY]["run_id"]
    assert connections.count("POST", "/v1/run") == 0


def test_changed_input_is_not_reused(connections: Emulator) -> None:
    """The stored run was paid for another input (a templated input that changed between tries)."""
    store = _stored(connections, "COMPLETED", input=OTHER_INPUT, output={"stale": True})
    output, ti = _execute(store)
    assert output != {"stale": True}
    assert connections.count("POST", "/v1/run") == 1
    assert connections.monid.get_run(ti.pushed["run_id"])["input"] == INPUT


def test_reconciliation_ignores_the_same_input_on_another_endpoint(connections: Emulator) -> None:
    """Try 2 with an empty ledger: a decoy with the same input on another endpoint is not adopted."""
    connections.monid.add_run(provider=PDL[0], endpoint="/company/enrich", input=INPUT, status="COMPLETED")
    connections.monid.add_run(provider="apify", endpoint=PDL[1], input=INPUT, status="COMPLETED")
    _, ti = _execute(FakeStore(), try_number=2)
    assert connections.count("POST", "/v1/run") == 1
    assert connections.monid.get_run(ti.pushed["run_id"])["endpoint"] == PDL[1]


def test_two_failed_runs_do_not_block_a_third_try(connections: Emulator) -> None:
    """Airflow < 3.3: tries 1 and 2 each ended with a FAILED run; try 3 simply pays for a new one."""
    for _ in range(2):
        connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="FAILED")
    output, _ = _execute_without_store(3)
    assert output["full_name"]
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
    with pytest.raises(Exception, match="Found 2 reusable Monid runs") as info:
        _execute(FakeStore(), try_number=2)
    assert all(run_id in str(info.value) for run_id in ids)
    assert connections.count("POST", "/v1/run") == 0


def test_adopt_existing_run_false_pays_on_retry(connections: Emulator) -> None:
    connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED")
    _execute(FakeStore(), try_number=2, adopt_existing_run=False)
    assert connections.count("POST", "/v1/run") == 1


def _execute_without_store(try_number: int) -> tuple[Any, FakeTI]:
    """Airflow < 3.3: the context has no task_state_store."""
    ti = FakeTI(try_number)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, retries=3)
    return op.execute({"ti": ti}), ti


def test_first_try_of_a_cycle_without_a_store_pays_for_fresh_data(connections: Emulator) -> None:
    """Airflow < 3.3, cleared after success: the delivered run of cycle 1 is not adopted by try 3."""
    connections.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED", output={"old": 1})
    ti = FakeTI(3, max_tries=5)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, retries=3)
    output = op.execute({"ti": ti})
    assert output != {"old": 1}
    assert connections.count("POST", "/v1/run") == 1
