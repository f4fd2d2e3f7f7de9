"""ExaTriggerMonitorOperator: trigger, find the run by id snapshot, wait, pay once per task instance.

dag.test() scenarios against the emulator over HTTP, in deferrable and worker-polling modes.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.exa import ExaTriggerMonitorOperator
from airflow_monid.testing import Emulator
from airflow_monid.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_3_PLUS
from tests._support import TEST_DAGS, load_dag, task_states, task_tries, xcoms

MODES = ["deferrable", "poll"]
MON = "mon_x"
TRIGGER = f"/monitors/{MON}/trigger"
LISTING = f"/monitors/{MON}/runs"


def _operator_dag(mode: str, suffix: str = "", **conf: Any) -> tuple[str, Any]:
    dag = load_dag(TEST_DAGS / "exa_scenarios.py", f"exa_trigger_{mode}{suffix}")
    return dag.dag_id, dag.test(run_conf={"monitor_id": MON, **conf})


def _outcome(dag_id: str, dr: Any) -> tuple[str | None, int, dict[tuple[str, str, int], Any]]:
    return (
        task_states(dag_id, dr.run_id)[("trigger", -1)],
        task_tries(dag_id, dr.run_id, "trigger"),
        xcoms(dag_id, dr.run_id),
    )


def _new_run_ids(emu: Emulator, before: set[str]) -> list[str]:
    return [r["id"] for r in emu.exa.runs(MON) if r["id"] not in before]


# ----- the happy path ------------------------------------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_triggers_once_finds_the_new_run_by_id_and_returns_it(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_polls_to_finish = 3
    # A run dated an hour ahead (Exa's clock is not ours) is newer than the triggered run: picking
    # by time would take it; the id snapshot must not.
    skewed = emu.exa.add_run(MON, created_at=time.time() + 3600, polls_to_finish=None)
    emu.exa.add_run(MON, status="completed", created_at=time.time() - 86400)
    before = {r["id"] for r in emu.exa.runs(MON)}
    dag_id, dr = _operator_dag(mode)
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("success", 1)
    (new_id,) = _new_run_ids(emu, before)
    assert new_id != skewed["id"]
    assert values[("trigger", "run_id", -1)] == new_id
    result = values[("trigger", "return_value", -1)]
    assert result["id"] == new_id and result["status"] == "completed" and result["output"]["results"]
    calls = [(r.method, r.path) for r in emu.requests()]
    assert calls[:4] == [("GET", f"/monitors/{MON}"), ("GET", LISTING), ("POST", TRIGGER), ("GET", LISTING)]
    assert emu.count("POST") == 1
    assert emu.count("GET", f"{LISTING}/{new_id}") >= 3  # waited until the emulator finished it


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_polls_until_the_triggered_run_appears(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_creates = False
    listings_after_post: list[int] = []
    appeared: dict[str, Any] = {}

    def on_request(record: Any) -> None:
        if record.method == "POST":
            listings_after_post.append(0)
        elif record.path == LISTING and listings_after_post:
            listings_after_post[0] += 1
            if listings_after_post[0] == 2 and not appeared:  # after two empty answers
                appeared.update(emu.exa.add_run(MON, polls_to_finish=1))

    emu.on_request(on_request)
    dag_id, dr = _operator_dag(mode)
    state, _, values = _outcome(dag_id, dr)
    assert state == "success" and values[("trigger", "run_id", -1)] == appeared["id"]
    assert emu.count("GET", LISTING) == 4  # snapshot + 3 after the trigger
    assert emu.count("POST") == 1


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_follows_a_newer_run_that_cancelled_the_triggered_one(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_final_status = "cancelled"
    replacement: dict[str, Any] = {}

    def on_request(record: Any) -> None:
        # The first look at the triggered run finds it cancelled; a scheduled run has replaced it.
        if record.path.startswith(LISTING + "/") and not replacement:
            replacement.update(emu.exa.add_run(MON, created_at=time.time() + 60, polls_to_finish=1))

    emu.on_request(on_request)
    dag_id, dr = _operator_dag(mode)
    state, _, values = _outcome(dag_id, dr)
    assert state == "success"
    assert values[("trigger", "return_value", -1)]["id"] == replacement["id"]
    assert values[("trigger", "run_id", -1)] == replacement["id"]  # republished once followed
    assert emu.count("POST") == 1


# ----- failures before and after paying ------------------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_triggered_false_fails_at_once(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_response = {"triggered": False}
    dag_id, dr = _operator_dag(mode, "_retry")
    state, tries, _ = _outcome(dag_id, dr)
    assert (state, tries) == ("failed", 1)
    assert emu.count("POST") == 1
    assert emu.count("GET", LISTING) == 1  # the snapshot only: no looking for a run that is not coming


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("problem", ["disabled", "missing"])
def test_dead_monitor_fails_before_paying(dag_env: Emulator, mode: str, problem: str) -> None:
    emu = dag_env
    if problem == "disabled":
        emu.exa.add_monitor(MON, status="disabled")
    dag_id, dr = _operator_dag(mode, "_retry")
    assert _outcome(dag_id, dr)[:2] == ("failed", 1)
    assert emu.count("POST") == 0


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("reason", "posts", "tries"), [("insufficient_credits", 1, 1), ("rate_limited", 2, 2)])
def test_failed_run_is_retried_only_when_a_new_run_may_help(
    dag_env: Emulator, mode: str, reason: str, posts: int, tries: int
) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_final_status = "failed"
    original = emu.exa._create_run  # every triggered run fails with this reason

    def failing(monitor: Any, *args: Any) -> Any:
        run = original(monitor, *args)
        run.fail_reason = reason
        return run

    emu.exa._create_run = failing  # type: ignore[method-assign]
    try:
        dag_id, dr = _operator_dag(mode, "_retry")
    finally:
        emu.exa._create_run = original  # type: ignore[method-assign]
    assert _outcome(dag_id, dr)[:2] == ("failed", tries)
    assert emu.count("POST") == posts


# ----- exactly once ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_a_5xx_burst_after_the_trigger_is_waited_out(dag_env: Emulator, mode: str) -> None:
    """Longer than the hook's own retries (4 attempts): transient, so no retry is used and nothing is
    paid twice, deferred or not (issue 8 #9; the retry rows are in tests/test_decision_table.py)."""
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.add_fault("GET", rf"{LISTING}/[^/]+", status=500, times=4)
    dag_id, dr = _operator_dag(mode, "_retry")
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("success", 1)
    runs = emu.exa.runs(MON)
    assert emu.count("POST") == 1 and len(runs) == 1
    assert values[("trigger", "return_value", -1)]["id"] == runs[0]["id"]


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_lost_trigger_answer_adopts_the_one_new_run(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.add_run(MON, status="completed", created_at=time.time() - 3600)
    emu.add_fault("POST", TRIGGER, action="reset", after_handling=True)
    dag_id, dr = _operator_dag(mode, "_retry")
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("success", 1)
    assert emu.count("POST") == 1
    assert values[("trigger", "run_id", -1)] == emu.exa.runs(MON)[0]["id"]


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("new_runs", [0, 2])
def test_lost_trigger_answer_without_one_clear_run_fails_without_paying_again(
    dag_env: Emulator, mode: str, new_runs: int
) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.add_fault("POST", TRIGGER, action="reset", after_handling=new_runs > 0)
    if new_runs == 2:  # a scheduled run started at the same moment: which one is ours?
        emu.on_request(
            lambda r: emu.exa.add_run(MON, status="running", polls_to_finish=None) if r.method == "POST" else None
        )
    dag_id, dr = _operator_dag(mode, "_retry")
    assert _outcome(dag_id, dr)[:2] == ("failed", 1)  # permanent: a retry would risk a second payment
    assert emu.count("POST") == 1
    assert len(emu.exa.runs(MON)) == new_runs


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_no_run_appearing_after_the_trigger_fails_without_retry(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_creates = False
    dag_id, dr = _operator_dag(mode, "_retry_short")
    # The ledger says "triggered": the retry keeps looking for the run instead of paying again.
    expected_tries = 2 if AIRFLOW_V_3_3_PLUS else 1
    assert _outcome(dag_id, dr)[:2] == ("failed", expected_tries)
    assert emu.count("POST") == 1


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_timeout_while_waiting_fails_and_the_retry_waits_for_the_same_run(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    emu.exa.add_monitor(MON)
    emu.exa.trigger_polls_to_finish = None  # the run never finishes
    dag_id, dr = _operator_dag(mode, "_retry_short")
    assert _outcome(dag_id, dr)[:2] == ("failed", 2)
    # Without task_state_store (Airflow < 3.3) a retry triggers anew (README), except a deferred wait on
    # Airflow 3.0, which resumes the retry in execute_complete with the event naming its run; 3.1 and 3.2
    # start the retry in execute().
    resumed = mode == "deferrable" and not AIRFLOW_V_3_1_PLUS
    assert emu.count("POST") == (1 if AIRFLOW_V_3_3_PLUS or resumed else 2)
    assert len(emu.exa.runs(MON)) == emu.count("POST")


# ----- validation and fire-and-forget (direct execute) ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"monitor_id": ""}, "monitor_id must be a non-empty string"),
        ({"monitor_id": "   "}, "monitor_id must be a non-empty string"),
        ({"monitor_type": "websets"}, "Websets monitors have no manual trigger"),
        ({"monitor_type": "agent"}, "monitor_type must be 'search' or 'websets'"),
        ({"poll_interval": 0}, "poll_interval must be a positive number"),
        ({"poll_interval": float("nan")}, "poll_interval must be a positive number"),
        ({"timeout": -5}, "timeout must be a positive number"),
        ({"timeout": True}, "timeout must be a positive number"),
    ],
)
def test_bad_arguments_are_one_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExaTriggerMonitorOperator(task_id="t", **{"monitor_id": MON, **kwargs})


class _TI:
    task_id = "t"
    map_index = -1

    def __init__(self, try_number: int = 1, deferred_try: int | None = None) -> None:
        self.try_number = try_number
        self.pushed: dict[str, Any] = {"deferral": {"try": deferred_try, "end_time": time.time() + 3600}}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        return self.pushed.get(key)


def test_templated_monitor_id_rendering_empty_fails_before_any_call(connections: Emulator) -> None:
    op = ExaTriggerMonitorOperator(task_id="t", monitor_id="{{ params.m }}")
    op.monitor_id = ""  # what rendering an empty param produces
    with pytest.raises(ConfigError, match="monitor_id"):
        op.execute({"ti": _TI()})
    assert connections.count() == 0


def test_fire_and_forget_returns_the_run_once_it_is_found(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor(MON)
    emu.exa.trigger_polls_to_finish = None
    context: dict[str, Any] = {"ti": _TI(), "dag_run": SimpleNamespace(run_after=None)}
    result = ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, wait_for_completion=False).execute(context)
    (run,) = emu.exa.runs(MON)
    assert result["id"] == run["id"] == context["ti"].pushed["run_id"] and result["status"] == "pending"
    assert emu.count("GET", f"{LISTING}/{run['id']}") == 0  # not waited for


@pytest.mark.parametrize(("status", "deferred"), [("running", True), ("completed", False)])
def test_a_retry_resumed_with_a_stale_event_waits_for_that_run(
    connections: Emulator, status: str, deferred: bool
) -> None:
    """Airflow 3.0 resumes a retry in execute_complete with the previous try's event."""
    emu = connections
    emu.exa.add_monitor(MON)
    run = emu.exa.add_run(MON, status=status, polls_to_finish=None)
    context: dict[str, Any] = {"ti": _TI(try_number=2, deferred_try=1)}
    op = ExaTriggerMonitorOperator(task_id="t", monitor_id=MON, deferrable=True)
    stale = {"status": "timeout", "run_id": run["id"], "message": "deadline of try 1"}
    if deferred:
        with pytest.raises(TaskDeferred) as deferral:
            op.execute_complete(context, stale)
        assert deferral.value.trigger.run_id == run["id"]
        assert context["ti"].pushed["deferral"]["try"] == 2
    else:
        assert op.execute_complete(context, stale)["id"] == run["id"]
    assert context["ti"].pushed["run_id"] == run["id"]
    assert emu.count("POST") == 0
