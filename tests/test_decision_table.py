"""Crash points and the README's decision table, row by row.

Each scenario drives a task instance through tries that die at one step (a ``Crash`` stands for a
SIGKILL: it is a ``BaseException``, so no ``except Exception`` in the provider can swallow it), with the
run ledger (``task_state_store``) surviving between tries as Airflow 3.3 keeps it, or absent as on
3.0-3.2. The emulator answers over real HTTP and counts what was paid for. Invariants checked on every
scenario: at most one paid request per task instance until a try delivered; the successful try returns
the output of a terminal, good run; the ledger names the run that was delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_monid._monid import preflight as _preflight
from airflow_monid._monid.exactly_once import LEDGER_KEY
from airflow_monid.exceptions import CostLimitError, InputSchemaError, PermanentError, TransientAPIError
from airflow_monid.hooks.exa import ExaHook
from airflow_monid.hooks.monid import MonidHook
from airflow_monid.operators.exa import LEDGER_KEY as EXA_LEDGER_KEY
from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.testing import Emulator

PDL = ("pdl", "/person/enrich")
INPUT = {"email": "jane.doe@example.com"}
MON = "mon_x"


class Crash(BaseException):
    """The worker died here."""


class Store:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class TI:
    """The parts of a RuntimeTaskInstance the provider reads; XCom is per try, as in Airflow."""

    task_id, map_index = "t", -1

    def __init__(self, try_number: int, max_tries: int) -> None:
        self.try_number = try_number
        self.max_tries = max_tries
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        return self.pushed.get(key)


def run_tries(make_op: Callable[[], Any], store: Store | None, crash_on_try: Callable[[int], None], retries: int = 3):
    """Run tries until one returns, as Airflow would after each crash; returns (result, tries)."""
    for try_number in range(1, retries + 2):
        ti = TI(try_number, max_tries=retries)
        context: dict[str, Any] = {"ti": ti}
        if store is not None:
            context["task_state_store"] = store
        crash_on_try(try_number)
        try:
            return make_op().execute(context), try_number
        except Crash:
            continue
    raise AssertionError("every try crashed")


def crash_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, before: bool = True, when: Any = None):
    """Make ``owner.name`` crash the worker once (before or after doing its work)."""
    original = getattr(owner, name)
    state = {"armed": True}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = state["armed"] and (when is None or when(*args, **kwargs))
        if hit and before:
            state["armed"] = False
            raise Crash
        result = original(*args, **kwargs)
        if hit:
            state["armed"] = False
            raise Crash
        return result

    monkeypatch.setattr(owner, name, wrapper)


def _no_more_crashes(_: int) -> None:
    return None


# ----- Monid: every crash point, with and without a ledger ---------------------------------------

MONID_CRASH_POINTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    # before the paid request: nothing was paid, the retry pays once
    "before_submit": lambda mp: crash_once(mp, MonidHook, "submit_run", before=True),
    # after POST, before the ledger write: the retry must find the run by reconciliation (M8)
    "after_submit_before_record": lambda mp: crash_once(mp, MonidHook, "submit_run", before=False),
    # after the ledger write, before waiting: the retry reuses the stored run (M2)
    "after_record_before_wait": lambda mp: crash_once(
        mp, TI, "xcom_push", when=lambda self, key, value: key == "run_url"
    ),
    # while waiting: the retry reuses the run (M2)
    "while_waiting": lambda mp: crash_once(mp, MonidHook, "get_run", before=True),
    # after execute() had delivered, before Airflow recorded success: same cycle, reuse (M3)
    "after_delivery": lambda mp: crash_once(
        mp, TI, "xcom_push", before=False, when=lambda self, key, value: key == "run"
    ),
}


@pytest.mark.parametrize("ledger", ["task_state_store", "none"])
@pytest.mark.parametrize("point", list(MONID_CRASH_POINTS))
def test_monid_crash_points_pay_once(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, point: str, ledger: str
) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="async", polls_to_finish=1, output={"full_name": "Jane"})
    MONID_CRASH_POINTS[point](monkeypatch)
    store = Store() if ledger == "task_state_store" else None

    def make() -> MonidRunOperator:
        return MonidRunOperator(
            task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, poll_interval=0.05, retries=3
        )

    result, tries = run_tries(make, store, _no_more_crashes)
    assert result == {"full_name": "Jane"}
    assert tries == 2
    if point == "before_submit":
        assert emu.count("POST", "/v1/run") == 1
    else:
        assert emu.count("POST", "/v1/run") == 1, "a retry paid for a second run"
    assert emu.count("POST") == emu.count("POST", "/v1/run") + emu.count("POST", "/v1/inspect")  # nothing was stopped
    if store is not None:
        (run,) = emu.monid.runs()
        assert store.values[LEDGER_KEY]["run_id"] == run["runId"] and store.values[LEDGER_KEY]["delivered"]


def test_m4_a_clear_after_success_pays_for_fresh_data(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="sync")
    store = Store()
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, retries=3)
    op.execute({"ti": TI(1, 3), "task_state_store": store})
    cleared = TI(2, max_tries=1 + 3)  # clear after try 1: max_tries = try_number + retries
    op.execute({"ti": cleared, "task_state_store": store})
    assert emu.count("POST", "/v1/run") == 2
    assert store.values[LEDGER_KEY]["cycle"] == 2


def test_m17_wait_for_completion_false_returns_the_id_and_a_clear_pays_again(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="sync")  # a sync provider: the run is finished in the answer
    store = Store()
    op = MonidRunOperator(
        task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, wait_for_completion=False, retries=3
    )
    first = op.execute({"ti": TI(1, 3), "task_state_store": store})
    assert first == emu.monid.runs()[0]["runId"]  # the id, not the output
    assert op.execute({"ti": TI(2, 3), "task_state_store": store}) == first  # a retry: same run, no payment
    second = op.execute({"ti": TI(3, 2 + 3), "task_state_store": store})  # a clear after try 2
    assert second != first and emu.count("POST", "/v1/run") == 2


def test_m13_a_revoked_key_while_waiting_fails_without_retry(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="async", polls_to_finish=None)
    emu.add_fault("GET", r"/v1/runs/.*", status=401, body={"message": "key revoked"})
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, poll_interval=0.05)
    with pytest.raises(PermanentError, match="401"):
        op.execute({"ti": TI(1, 3), "task_state_store": Store()})
    assert emu.count("GET") == 1 and emu.count("POST", "/v1/run") == 1


def test_m15_a_run_that_finished_at_the_deadline_is_judged_not_stopped(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="async", polls_to_finish=None)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, deferrable=True)
    ti = TI(1, 3)
    store = Store()
    with pytest.raises(BaseException) as deferred:
        op.execute({"ti": ti, "task_state_store": store})
    assert type(deferred.value).__name__ == "TaskDeferred"
    run_id = ti.pushed["run_id"]
    emu.monid.complete_run(run_id)
    result = op.execute_complete({"ti": ti, "task_state_store": store}, {"status": "timeout", "run_id": run_id})
    assert result is not None
    assert emu.count("POST", f"/v1/runs/{run_id}/stop") == 0


def test_m16_a_status_that_flips_back_defers_again_with_the_same_deadline(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="async", polls_to_finish=None)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, deferrable=True, timeout=600)
    ti = TI(1, 3)
    context = {"ti": ti, "task_state_store": Store()}
    with pytest.raises(BaseException) as first:
        op.execute(context)
    end_time = first.value.trigger.end_time  # type: ignore[attr-defined]
    run_id = ti.pushed["run_id"]
    # The trigger saw COMPLETED (say, in a list), but the run itself still reads RUNNING.
    event = {"status": "terminal", "run_id": run_id, "run_status": "COMPLETED"}
    with pytest.raises(BaseException) as again:
        op.execute_complete(context, event)
    assert type(again.value).__name__ == "TaskDeferred"
    assert again.value.trigger.end_time == end_time  # type: ignore[attr-defined]
    assert emu.count("POST", "/v1/run") == 1


# ----- Exa: the trigger intent ---------------------------------------------------------------------

EXA_CRASH_POINTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    # the answer never reached the ledger: only about_to_trigger is there (E4)
    "after_trigger_before_record": lambda mp: crash_once(mp, ExaHook, "trigger_monitor", before=False),
    # triggered recorded, the run not yet seen (E3): the first list after the trigger crashes
    "after_record_before_run": lambda mp: crash_once(mp, ExaTriggerMonitorOperator, "_new_runs", before=True),
    "while_waiting": lambda mp: crash_once(mp, ExaHook, "follow_replacement", before=True),
}


@pytest.mark.parametrize("point", list(EXA_CRASH_POINTS))
def test_exa_crash_points_trigger_once(connections: Emulator, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.trigger_polls_to_finish = 1
    EXA_CRASH_POINTS[point](monkeypatch)
    store = Store()

    def make() -> ExaTriggerMonitorOperator:
        return ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, unclear_grace=1, retries=3)

    result, tries = run_tries(make, store, _no_more_crashes)
    (run,) = emu.exa.runs(MON)
    assert result["id"] == run["id"] and result["status"] == "completed"
    assert tries == 2
    assert emu.count("POST") == 1, "a retry triggered (and paid for) a second run"
    assert store.values[EXA_LEDGER_KEY]["run_id"] == run["id"]


@pytest.mark.parametrize("retrigger", [False, True])
def test_e4_death_between_intent_and_trigger_never_pays_blindly(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, retrigger: bool
) -> None:
    """Died after writing about_to_trigger but before the POST: indistinguishable from a lost answer."""
    emu = connections
    emu.exa.add_monitor(MON)
    crash_once(monkeypatch, ExaHook, "trigger_monitor", before=True)
    store = Store()

    def make() -> ExaTriggerMonitorOperator:
        return ExaTriggerMonitorOperator(
            task_id="t",
            monitor_id=MON,
            poll_interval=0.05,
            unclear_grace=0.2,
            retrigger_on_unclear=retrigger,
            retries=3,
        )

    if retrigger:
        result, _ = run_tries(make, store, _no_more_crashes)
        assert result["status"] == "completed" and emu.count("POST") == 1
    else:
        with pytest.raises(PermanentError, match="unclear_grace"):
            run_tries(make, store, _no_more_crashes)
        assert emu.count("POST") == 0


def test_e4_lost_answer_and_no_new_run_fails_without_retry(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    store = Store()
    store.set(EXA_LEDGER_KEY, {"phase": "about_to_trigger", "snapshot": [], "hash": _exa_hash(), "cycle": 1})
    op = ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, unclear_grace=0.2, retries=3)
    with pytest.raises(PermanentError, match="unclear_grace"):
        op.execute({"ti": TI(2, 3), "task_state_store": store})
    assert emu.count("POST") == 0


def test_e4_retrigger_on_unclear_pays_again(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    store = Store()
    store.set(EXA_LEDGER_KEY, {"phase": "about_to_trigger", "snapshot": [], "hash": _exa_hash(), "cycle": 1})
    op = ExaTriggerMonitorOperator(
        task_id="t", monitor_id=MON, poll_interval=0.05, unclear_grace=0.2, retrigger_on_unclear=True, retries=3
    )
    assert op.execute({"ti": TI(2, 3), "task_state_store": store})["status"] == "completed"
    assert emu.count("POST") == 1


def _exa_hash() -> str:
    import hashlib

    return hashlib.sha256(f"exa-search-monitor:{MON}".encode()).hexdigest()


# ----- tests that would fail if a safeguard did nothing ----------------------------------------------


def test_exa_errors_never_echo_the_key(connections: Emulator) -> None:
    """An API that echoes the key in its error body: the exception shows *** instead (scrub())."""
    from tests._support import EXA_KEY

    emu = connections
    emu.exa.add_monitor(MON)
    emu.add_fault("GET", rf"/monitors/{MON}$", status=403, body={"error": f"bad key {EXA_KEY}", "tag": "X"})
    with pytest.raises(PermanentError) as info:
        ExaHook().get_monitor(MON)
    assert EXA_KEY not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("http", [200, 204, 299, 404, 408, 409, 422, 429, 500, 503, None])
@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "TIMED_OUT", "STOPPED", "BLOCKED", "RUNNING", "NEW"])
def test_outcome_verdicts_follow_the_readme_table(status: str, http: int | None) -> None:
    """The decision, written out independently of the code: success, no data, retry, fail, or wait."""
    from airflow_monid._monid.outcome import Verdict, is_reusable, judge
    from airflow_monid.models.monid import MonidRun

    body: dict[str, Any] = {"runId": "r", "status": status, "output": {"x": 1}}
    if http is not None:
        body["providerResponse"] = {"httpStatus": http}
    run = MonidRun.from_api(body)
    allowed = (404,)
    if status in ("RUNNING", "NEW"):
        expected = Verdict.IN_PROGRESS
    elif status == "COMPLETED":
        code = 200 if http is None else http
        if 200 <= code < 300:
            expected = Verdict.SUCCESS
        elif code in allowed:
            expected = Verdict.NO_DATA
        elif code in (408, 429) or code >= 500:
            expected = Verdict.RETRY
        else:
            expected = Verdict.FAIL
    elif status == "BLOCKED":
        expected = Verdict.FAIL
    else:
        expected = Verdict.RETRY
    outcome = judge(run, allowed)
    assert outcome.verdict is expected
    # Reuse and success are one rule: a missing httpStatus that counts as 200 is also reusable.
    assert is_reusable(run, allowed) == (expected in (Verdict.IN_PROGRESS, Verdict.SUCCESS, Verdict.NO_DATA))
    if expected is Verdict.FAIL:
        assert isinstance(outcome.error, PermanentError)
    elif expected is Verdict.RETRY:
        assert outcome.error is not None and not isinstance(outcome.error, PermanentError)


# ----- sensors and resumes -------------------------------------------------------------------------


def _deferred_context(try_number: int = 1) -> dict[str, Any]:
    ti = TI(try_number, 3)
    ti.pushed["deferral"] = {"try": try_number, "end_time": 1e12, "bound": "timeout", "seconds": 60}
    return {"ti": ti, "task_state_store": Store()}


def test_s1_monid_sensor_pokes_through_a_5xx_burst(connections: Emulator) -> None:
    """A burst longer than the hook's own retries: the sensor keeps waiting, in poke mode too (issue 8 #9)."""
    from airflow_monid.sensors.monid import MonidRunSensor

    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    emu.add_fault("GET", rf"/v1/runs/{run_id}", status=503, times=4)
    sensor = MonidRunSensor(task_id="s", run_id=run_id)
    context = _deferred_context()
    assert sensor.poke(context) is False  # four 503s: transient, keep waiting
    emu.monid.complete_run(run_id, output={"ok": True})
    assert sensor.poke(context).xcom_value == {"ok": True}  # type: ignore[union-attr]


def test_s2_monid_sensor_fails_at_once_on_a_refused_key(connections: Emulator) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_monid.sensors.monid import MonidRunSensor

    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    emu.add_fault("GET", rf"/v1/runs/{run_id}", status=403)
    with pytest.raises(AirflowFailException, match="403"):
        MonidRunSensor(task_id="s", run_id=run_id).poke(_deferred_context())
    assert emu.count("GET") == 1


def test_s3_exa_sensor_keeps_a_completed_run_whose_monitor_died(connections: Emulator) -> None:
    """Resumed on a terminal event after the monitor was disabled: the run completed, so the task succeeds."""
    from airflow_monid.sensors.exa import ExaMonitorRunSensor

    emu = connections
    emu.exa.add_monitor(MON, status="disabled")
    run = emu.exa.add_run(MON, status="completed")
    sensor = ExaMonitorRunSensor(task_id="s", monitor_id=MON, run_id=run["id"], deferrable=True)
    event = {"status": "terminal", "run_id": run["id"], "run_status": "completed"}
    assert sensor.execute_complete(_deferred_context(), event)["id"] == run["id"]


def test_m13_a_trigger_error_event_fails_without_retry(connections: Emulator) -> None:
    """The trigger ended on a 401: the resume fails the task without using a retry, naming the run."""
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, deferrable=True, retries=3)
    event = {"status": "error", "run_id": "r1", "run_status": "RUNNING", "message": "HTTP 401: key revoked"}
    with pytest.raises(PermanentError, match=r"Monid run r1 .*RUNNING.*401"):
        op.execute_complete(_deferred_context(), event)
    assert connections.requests() == []


def test_e6_runs_list_failing_after_the_trigger_never_pays_twice(connections: Emulator) -> None:
    """Issue 8 #1: the runs list fails after the trigger until the deadline. With the ledger the try
    fails with a retry (E6), and the retry adopts the run instead of triggering again (E3)."""
    from airflow_monid.exceptions import ExaRunError

    emu = connections
    emu.exa.add_monitor(MON)
    store = Store()

    def op() -> ExaTriggerMonitorOperator:
        return ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, timeout=0.5, retries=3)

    emu.on_request(
        lambda r: (
            emu.add_fault("GET", rf"/monitors/{MON}/runs(\?.*)?", status=500, times=None)
            if r.method == "POST"
            else None
        )
    )
    with pytest.raises(ExaRunError) as first:
        op().execute({"ti": TI(1, 3), "task_state_store": store})
    assert not isinstance(first.value, PermanentError)
    assert store.values[EXA_LEDGER_KEY]["phase"] == "triggered"
    emu.clear_faults()  # the list works again; the retry makes no POST, so the callback adds no fault
    result = op().execute({"ti": TI(2, 3), "task_state_store": store})
    (run,) = emu.exa.runs(MON)
    assert result["id"] == run["id"] and emu.count("POST") == 1


def test_e6_without_a_store_no_run_appearing_fails_without_retry(connections: Emulator) -> None:
    """Airflow < 3.3: a retry could not recognise the run, so the try fails without one (E6)."""
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.trigger_creates = False
    op = ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, timeout=0.3, retries=3)
    with pytest.raises(PermanentError, match="no new run appeared"):
        op.execute({"ti": TI(1, 3)})
    assert emu.count("POST") == 1


# ----- gaps found in review --------------------------------------------------------------------------


def test_e_refused_trigger_started_nothing_so_the_retry_triggers(connections: Emulator) -> None:
    """A 429 storm outlasting the request core's retries: nothing started, so the retry may pay (once)."""
    from airflow_monid.exceptions import TransientAPIError

    emu = connections
    emu.exa.add_monitor(MON)
    emu.add_fault("POST", rf"/monitors/{MON}/trigger", status=429, times=4)
    store = Store()

    def op() -> ExaTriggerMonitorOperator:
        return ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, retries=3)

    with pytest.raises(TransientAPIError):
        op().execute({"ti": TI(1, 3), "task_state_store": store})
    assert store.values[EXA_LEDGER_KEY]["phase"] == "refused" and emu.exa.runs(MON) == []
    assert op().execute({"ti": TI(2, 3), "task_state_store": store})["status"] == "completed"
    assert len(emu.exa.runs(MON)) == 1


def test_e_an_earlier_cycles_intent_is_not_this_cycles(connections: Emulator) -> None:
    """Cleared after an unclear trigger: the new cycle triggers anew, never adopting a scheduled run."""
    emu = connections
    emu.exa.add_monitor(MON)
    scheduled = emu.exa.add_run(MON, status="completed")  # appeared after cycle 1's snapshot
    store = Store()
    store.set(EXA_LEDGER_KEY, {"phase": "about_to_trigger", "snapshot": [], "hash": _exa_hash(), "cycle": 1})
    op = ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, poll_interval=0.05, unclear_grace=0.2, retries=3)
    result = op.execute({"ti": TI(3, 2 + 3), "task_state_store": store})  # cleared after try 2: cycle 3
    assert result["id"] != scheduled["id"] and emu.count("POST") == 1


def test_m8_a_lost_record_after_a_failed_run_is_still_found(connections: Emulator) -> None:
    """Try 1's r1 FAILED (stored); try 2 paid r2 and died before recording it: try 3 adopts r2."""
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="async", polls_to_finish=1, output={"full_name": "Jane"})
    r1 = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="FAILED")["runId"]
    r2 = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED")["runId"]
    store = Store()
    store.set(LEDGER_KEY, {"run_id": r1, "hash": _monid_hash(), "delivered": False, "cycle": 1})
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, retries=3)
    ti = TI(3, 3)
    op.execute({"ti": ti, "task_state_store": store})
    assert ti.pushed["run_id"] == r2 and emu.count("POST", "/v1/run") == 0


def test_m8_a_run_delivered_in_an_earlier_cycle_is_never_adopted(connections: Emulator) -> None:
    """Cycle 1 delivered r0; cycle 2 paid r1, which FAILED; its retry must pay, not adopt stale r0."""
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="sync")
    r0 = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="COMPLETED")["runId"]
    r1 = emu.monid.add_run(provider=PDL[0], endpoint=PDL[1], input=INPUT, status="FAILED")["runId"]
    store = Store()
    entry = {"run_id": r1, "hash": _monid_hash(), "delivered": False, "cycle": 2, "delivered_runs": [r0]}
    store.set(LEDGER_KEY, entry)
    ti = TI(3, max_tries=1 + 3)  # cleared after try 1: cycle 2 = tries 2..5
    MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, retries=3).execute(
        {"ti": ti, "task_state_store": store}
    )
    assert ti.pushed["run_id"] not in (r0, r1) and emu.count("POST", "/v1/run") == 1
    assert r0 in store.values[LEDGER_KEY]["delivered_runs"]


@pytest.mark.parametrize(
    ("state", "stops"), [("failed", True), ("success", True), ("restarting", False), (None, False)]
)
def test_m18_m19_worker_on_kill_stops_only_for_a_final_state(
    connections: Emulator, monkeypatch: pytest.MonkeyPatch, state: str | None, stops: bool
) -> None:
    """SIGTERM on the worker: marked failed → stop; cleared (restarting) or unreadable → the next try reuses."""
    emu = connections
    run_id = emu.monid.add_run(status="RUNNING")["runId"]
    monkeypatch.setattr("airflow_monid.operators.monid.task_state_on_worker", lambda ti: state)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT)
    op.run_id = run_id
    op.on_kill()
    assert emu.count("POST", f"/v1/runs/{run_id}/stop") == (1 if stops else 0)


def test_m14_a_5xx_burst_on_resume_defers_again_instead_of_using_a_retry(connections: Emulator) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    emu = connections
    run_id = emu.monid.add_run(status="COMPLETED")["runId"]
    emu.add_fault("GET", rf"/v1/runs/{run_id}", status=503, times=4)
    op = MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], input=INPUT, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute_complete(_deferred_context(), {"status": "terminal", "run_id": run_id, "run_status": "COMPLETED"})
    assert emu.count("POST") == 0


def test_s3_exa_sensor_keeps_a_completed_run_whose_monitor_was_deleted(connections: Emulator) -> None:
    from airflow_monid.sensors.exa import ExaMonitorRunSensor

    connections.exa.add_monitor("mon_other")  # mon_x does not exist (any more): its runs read 404
    sensor = ExaMonitorRunSensor(task_id="s", monitor_id=MON, run_id="r9", deferrable=True)
    context = _deferred_context()
    result = sensor.execute_complete(context, {"status": "terminal", "run_id": "r9", "run_status": "completed"})
    assert result == {"id": "r9", "monitorId": MON, "status": "completed"}
    assert context["ti"].pushed["run_id"] == "r9"


def _monid_hash() -> str:
    import hashlib
    import json

    text = json.dumps([*PDL, INPUT], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ----- Before paying: the cost guard and the input check (M20-M22) ----------------------------------


def _guarded(**kwargs: Any) -> MonidRunOperator:
    _preflight.clear_inspect_cache()
    kwargs.setdefault("input", INPUT)
    return MonidRunOperator(task_id="t", provider=PDL[0], endpoint=PDL[1], retries=3, share_inspect=False, **kwargs)


def test_m20_a_price_above_max_cost_fails_without_retry_and_pays_nothing(connections: Emulator) -> None:
    connections.monid.set_endpoint(*PDL, mode="sync")
    with pytest.raises(CostLimitError) as info:
        _guarded(max_cost=0.001).execute({"ti": TI(1, 3), "task_state_store": Store()})
    assert isinstance(info.value, PermanentError)  # AirflowFailException: no retry is used
    assert "max_cost=0.001" in str(info.value)
    assert connections.count("POST", "/v1/run") == 0


def test_m21_input_off_the_schema_fails_without_retry_and_pays_nothing(connections: Emulator) -> None:
    connections.monid.set_endpoint(*PDL, mode="sync")
    with pytest.raises(InputSchemaError) as info:
        _guarded(input={"email": 5}, validate_input=True).execute({"ti": TI(1, 3), "task_state_store": Store()})
    assert isinstance(info.value, PermanentError)
    assert "email" in str(info.value) and "Nothing was paid" in str(info.value)
    assert connections.count("POST", "/v1/run") == 0


def test_m22_an_unreadable_price_fails_with_retry_and_the_retry_pays_once(connections: Emulator) -> None:
    emu = connections
    emu.monid.set_endpoint(*PDL, mode="sync", output={"full_name": "Jane"})
    emu.add_fault("POST", r"/v1/inspect", status=503, times=None)
    store = Store()
    with pytest.raises(TransientAPIError) as info:
        _guarded(max_cost=0.01).execute({"ti": TI(1, 3), "task_state_store": store})
    assert not isinstance(info.value, PermanentError)  # Airflow retries the task
    assert emu.count("POST", "/v1/inspect") >= 1 and emu.count("POST", "/v1/run") == 0
    emu.clear_faults()
    assert _guarded(max_cost=0.01).execute({"ti": TI(2, 3), "task_state_store": store}) == {"full_name": "Jane"}
    assert emu.count("POST", "/v1/run") == 1
