"""ExaMonitorRunSensor and ExaMonitorRunTrigger: dag.test() scenarios against the emulator over HTTP
(both families, both search paths, deferrable/poke/reschedule), plus direct checks of the pieces."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_monid.exceptions import ConfigError, ProviderError
from airflow_monid.sensors.exa import ExaMonitorRunSensor, default_window, to_utc
from airflow_monid.testing import Emulator
from airflow_monid.triggers.exa import ExaMonitorRunTrigger
from tests._support import TEST_DAGS, load_dag, task_states, task_tries, xcoms

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = {"search": ("search", "/monitors"), "legacy": ("search", "/search-monitors"), "websets": ("websets", None)}
PREFIX = {"search": "/monitors", "legacy": "/search-monitors", "websets": "/websets/v0/monitors"}
MODES = ["deferrable", "poke"]


def _monitor(emu: Emulator, kind: str, monitor_id: str = "mon_x", **kwargs: Any) -> str:
    emu.exa.add_monitor(monitor_id, family="websets" if kind == "websets" else "search", **kwargs)
    return monitor_id


def _sensor(mode: str, kind: str, variant: str = "", **conf: Any) -> tuple[str, Any]:
    dag = load_dag(TEST_DAGS / "exa_scenarios.py", f"exa_sensor_{mode}_{kind}{variant}")
    conf = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in conf.items()}
    return dag.dag_id, dag.test(run_conf=conf)


def _outcome(dag_id: str, dr: Any) -> tuple[str | None, int, dict[tuple[str, str, int], Any]]:
    return task_states(dag_id, dr.run_id)[("wait", -1)], task_tries(dag_id, dr.run_id, "wait"), xcoms(dag_id, dr.run_id)


def _without_output(run: dict[str, Any]) -> dict[str, Any]:
    # The emulator dates its sample results at render time, so the output is compared by shape.
    return {k: v for k, v in run.items() if k != "output"}


# ----- selection and success -----------------------------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_waits_for_the_oldest_run_in_the_window(dag_env: Emulator, mode: str, kind: str) -> None:
    emu = dag_env
    mon = _monitor(emu, kind)
    emu.exa.add_run(mon, status="completed", created_at=T0 - timedelta(hours=2))  # before the window
    chosen = emu.exa.add_run(mon, created_at=T0 + timedelta(hours=1), polls_to_finish=3)
    emu.exa.add_run(mon, status="completed", created_at=T0 + timedelta(hours=2))  # newer, same window
    emu.exa.add_run(mon, status="completed", created_at=T0 + timedelta(hours=5))  # after the window
    dag_id, dr = _sensor(mode, kind, monitor_id=mon, created_after=T0, created_before=T0 + timedelta(hours=3))
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("success", 1)
    result = values[("wait", "return_value", -1)]
    expected = emu.exa.get_run(mon, chosen["id"]) | ({"object": "search_monitor_run"} if kind == "legacy" else {})
    assert _without_output(result) == _without_output(expected)  # as the API sent it, nothing renamed
    assert values[("wait", "run_id", -1)] == chosen["id"]
    if kind == "websets":
        assert result["status"] == "completed" and "output" not in result and result["type"] == "search"
    else:
        assert result["status"] == "completed" and set(result["output"]) == {"results", "content", "grounding"}
    assert {r.path.rsplit(f"/{mon}", 1)[0] for r in emu.requests()} == {PREFIX[kind]}
    assert {r.method for r in emu.requests()} == {"GET"}
    # Polled until terminal: the emulator finishes the run on its third GET.
    assert emu.count("GET", f"{PREFIX[kind]}/{mon}/runs/{chosen['id']}") >= 3


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_explicit_run_id_is_waited_for(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    mon = _monitor(emu, "search")
    target = emu.exa.add_run(mon, created_at=T0, polls_to_finish=2)
    emu.exa.add_run(mon, status="completed", created_at=T0 - timedelta(days=1))
    dag_id, dr = _sensor(mode, "search", monitor_id=mon, run_id=target["id"])
    state, _, values = _outcome(dag_id, dr)
    assert state == "success" and values[("wait", "return_value", -1)]["id"] == target["id"]
    assert emu.count("GET", f"/monitors/{mon}/runs") == 0  # no selection needed


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["search", "websets"])
def test_a_run_that_appears_late_is_picked_up(dag_env: Emulator, mode: str, kind: str) -> None:
    emu = dag_env
    mon = _monitor(emu, kind)
    emu.exa.add_run(mon, status="completed", created_at=T0 - timedelta(days=1))
    listing = f"{PREFIX[kind]}/{mon}/runs"
    late: dict[str, Any] = {}

    def on_request(record: Any) -> None:
        # Runs after the first listing has been answered without it: the run appears later.
        if record.path == listing and not late:
            late.update(emu.exa.add_run(mon, polls_to_finish=2))

    emu.on_request(on_request)
    dag_id, dr = _sensor(mode, kind, monitor_id=mon, created_after=T0)
    state, _, values = _outcome(dag_id, dr)
    assert state == "success"
    assert values[("wait", "return_value", -1)]["id"] == late["id"]
    assert emu.count("GET", listing) >= 2


@pytest.mark.usefixtures("dag_env")
def test_reschedule_mode_waits_across_pokes(dag_env: Emulator) -> None:
    emu = dag_env
    mon = _monitor(emu, "search")
    run = emu.exa.add_run(mon, created_at=T0, polls_to_finish=3)
    dag_id, dr = _sensor("reschedule", "search", monitor_id=mon, created_after=T0 - timedelta(minutes=1))
    state, _, values = _outcome(dag_id, dr)
    assert state == "success" and values[("wait", "return_value", -1)]["id"] == run["id"]
    assert emu.count("GET", f"/monitors/{mon}/runs/{run['id']}") >= 3


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_selection_pages_back_and_stops_at_the_lower_bound(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    mon = _monitor(emu, "search")
    ids = {i: emu.exa.add_run(mon, status="completed", created_at=T0 - timedelta(minutes=i))["id"] for i in range(230)}
    dag_id, dr = _sensor(
        mode,
        "search",
        monitor_id=mon,
        created_after=T0 - timedelta(minutes=160),
        created_before=T0 - timedelta(minutes=150),
    )
    state, _, values = _outcome(dag_id, dr)
    assert state == "success" and values[("wait", "return_value", -1)]["id"] == ids[160]
    listings = emu.requests("GET", f"/monitors/{mon}/runs")
    assert len(listings) == 2 and listings[1].query.get("cursor")  # runs 200-229 never listed


# ----- replaced, failed and cancelled runs ---------------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["search", "websets"])
def test_a_run_cancelled_by_a_newer_run_is_followed(dag_env: Emulator, mode: str, kind: str) -> None:
    emu = dag_env
    mon = _monitor(emu, kind)
    old = emu.exa.add_run(mon, created_at=T0, polls_to_finish=1, final_status="cancelled")
    newer = emu.exa.add_run(mon, created_at=T0 + timedelta(hours=6), polls_to_finish=2)
    dag_id, dr = _sensor(mode, kind, monitor_id=mon, created_after=T0, created_before=T0 + timedelta(hours=1))
    state, _, values = _outcome(dag_id, dr)
    assert state == "success"
    assert values[("wait", "return_value", -1)]["id"] == newer["id"]
    assert values[("wait", "run_id", -1)] == newer["id"]
    assert emu.exa.get_run(mon, old["id"])["status"] == ("canceled" if kind == "websets" else "cancelled")


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "final", "reason"),
    [
        ("search", "failed", "insufficient_credits"),
        ("search", "cancelled", None),
        ("legacy", "failed", "search_failed"),
        ("websets", "failed", "Webset was deleted"),
        ("websets", "canceled", None),
    ],
)
def test_failed_or_cancelled_runs_fail_without_retry(
    dag_env: Emulator, mode: str, kind: str, final: str, reason: str | None
) -> None:
    emu = dag_env
    mon = _monitor(emu, kind)
    run = emu.exa.add_run(mon, created_at=T0, polls_to_finish=2, final_status=final, fail_reason=reason)
    dag_id, dr = _sensor(mode, kind, monitor_id=mon, created_after=T0 - timedelta(minutes=1))
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("failed", 1)  # AirflowFailException: the retry is not used
    assert ("wait", "return_value", -1) not in values
    assert values[("wait", "run_id", -1)] == run["id"]


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_soft_fail_skips_a_failed_run(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    mon = _monitor(emu, "search")
    emu.exa.add_run(mon, created_at=T0, polls_to_finish=1, final_status="failed", fail_reason="invalid_params")
    dag_id, dr = _sensor(mode, "search", "_soft", monitor_id=mon, created_after=T0 - timedelta(minutes=1))
    assert _outcome(dag_id, dr)[:2] == ("skipped", 1)


# ----- dead monitors, transient errors, timeouts ---------------------------------------------------


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("problem", "variant", "expected"),
    [("disabled", "", "failed"), ("missing", "", "failed"), ("disabled", "_soft", "skipped")],
)
def test_dead_monitor_fails_fast(dag_env: Emulator, mode: str, problem: str, variant: str, expected: str) -> None:
    emu = dag_env
    if problem == "disabled":
        _monitor(emu, "search", status="disabled")
    dag_id, dr = _sensor(mode, "search", variant, monitor_id="mon_x")
    assert _outcome(dag_id, dr)[:2] == (expected, 1)
    assert [r.path for r in emu.requests()] == ["/monitors/mon_x"]  # no waiting, no run listing


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
def test_paused_monitor_still_waits(dag_env: Emulator, mode: str) -> None:
    emu = dag_env
    mon = _monitor(emu, "search", status="paused")
    run = emu.exa.add_run(mon, created_at=T0, polls_to_finish=1)
    dag_id, dr = _sensor(mode, "search", monitor_id=mon, run_id=run["id"])
    assert _outcome(dag_id, dr)[0] == "success"


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["search", "websets"])
def test_transient_errors_while_waiting_are_tolerated(dag_env: Emulator, mode: str, kind: str) -> None:
    emu = dag_env
    mon = _monitor(emu, kind)
    run = emu.exa.add_run(mon, created_at=T0, polls_to_finish=2)
    run_path = f"{PREFIX[kind]}/{mon}/runs/{run['id']}"
    # More failures in a row than the hook's 4 attempts: the wait itself must ride them out.
    emu.add_fault("GET", run_path, status=503, times=5)
    emu.add_fault("GET", run_path, status=429, headers={"Retry-After": "0"}, times=5)
    emu.add_fault("GET", f"{PREFIX[kind]}/{mon}/runs", action="html", status=502, times=1)
    dag_id, dr = _sensor(mode, kind, monitor_id=mon, created_after=T0 - timedelta(minutes=1))
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == ("success", 1)
    assert values[("wait", "return_value", -1)]["id"] == run["id"]
    assert [r.status for r in emu.requests("GET", run_path)].count(503) == 5
    assert [r.status for r in emu.requests("GET", run_path)].count(429) == 5


@pytest.mark.usefixtures("dag_env")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("variant", "expected"), [("_short", "failed"), ("_short_soft", "skipped")])
@pytest.mark.parametrize("has_run", [True, False], ids=["run-never-ends", "no-run-appears"])
def test_timeout_is_a_sensor_timeout(dag_env: Emulator, mode: str, variant: str, expected: str, has_run: bool) -> None:
    emu = dag_env
    mon = _monitor(emu, "search")
    if has_run:
        emu.exa.add_run(mon, created_at=T0, polls_to_finish=None)
    dag_id, dr = _sensor(mode, "search", variant, monitor_id=mon, created_after=T0 - timedelta(minutes=1))
    state, tries, values = _outcome(dag_id, dr)
    assert (state, tries) == (expected, 1)  # AirflowSensorTimeout is never retried
    assert ("wait", "return_value", -1) not in values


# ----- pieces: window, parsing, events, trigger ----------------------------------------------------


def test_to_utc_accepts_datetimes_and_iso_strings() -> None:
    assert to_utc(datetime(2026, 3, 1, 12), "x") == T0  # naive is UTC
    assert to_utc("2026-03-01T12:00:00Z", "x") == T0
    assert to_utc("2026-03-01T13:00:00+01:00", "x") == T0
    assert to_utc("None", "x") is None and to_utc("", "x") is None and to_utc(None, "x") is None
    with pytest.raises(ConfigError, match="created_after must be a datetime"):
        to_utc("yesterday", "created_after")


def test_default_window_from_the_dag_run() -> None:
    start, end = T0, T0 + timedelta(days=1)
    assert default_window({"data_interval_start": start, "data_interval_end": end}) == (start, end)
    assert default_window({"data_interval_start": start, "data_interval_end": start}) == (start, None)
    dag_run = SimpleNamespace(run_after=end, data_interval_start=None, data_interval_end=None)
    assert default_window({"dag_run": dag_run}) == (end, None)


class _TI:
    task_id = "s"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        # as if this try had deferred, with a deadline an hour away
        self.pushed: dict[str, Any] = {"deferral": {"try": 1, "end_time": time.time() + 3600, "bound": "timeout"}}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        return self.pushed.get(key)


def _context() -> dict[str, Any]:
    return {"ti": _TI(), "dag_run": SimpleNamespace(run_after=T0, data_interval_start=T0, data_interval_end=T0)}


def _bare_sensor(**kwargs: Any) -> ExaMonitorRunSensor:
    return ExaMonitorRunSensor(task_id=f"s{time.monotonic_ns()}", monitor_id="mon_x", **kwargs)


@pytest.mark.parametrize("soft_fail", [False, True])
def test_timeout_event_raises_sensor_timeout(soft_fail: bool) -> None:
    sensor = _bare_sensor(soft_fail=soft_fail, timeout=30)
    event = {"status": "timeout", "run_id": "", "message": "x"}
    expected = AirflowSkipException if soft_fail else AirflowSensorTimeout
    with pytest.raises(expected, match="no run was created in the window"):
        sensor.execute_complete(_context(), event)


@pytest.mark.parametrize("event", [None, {"status": "done", "run_id": "r"}, "terminal"])
def test_unexpected_event_never_counts_as_success(event: Any) -> None:
    with pytest.raises(ProviderError, match="trigger event"):
        _bare_sensor().execute_complete(_context(), event)


def test_failure_message_names_run_status_and_reason(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_x")
    run = emu.exa.add_run("mon_x", status="failed", fail_reason="insufficient_credits", created_at=T0)
    context = _context()
    with pytest.raises(AirflowFailException) as err:
        _bare_sensor(run_id=run["id"]).poke(context)
    assert str(err.value) == f"Exa search monitor mon_x run {run['id']} ended failed: insufficient_credits"
    assert context["ti"].pushed["run_id"] == run["id"]


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="monitor_type"):
        _bare_sensor(monitor_type="agent")
    with pytest.raises(ConfigError, match=r"created_after .* must be earlier"):
        _bare_sensor(created_after=T0, created_before=T0)._window(_context())


def _trigger(emu_url: str, **kwargs: Any) -> ExaMonitorRunTrigger:
    defaults: dict[str, Any] = {
        "monitor_id": "mon_x",
        "exa_conn_id": "exa_default",
        "poll_interval": 0.05,
        "end_time": time.time() + 30,
    }
    return ExaMonitorRunTrigger(**{**defaults, **kwargs})


def _events(trigger: ExaMonitorRunTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_trigger_serialises_plain_values_and_rebuilds() -> None:
    trigger = _trigger("", run_id=None, created_after="2026-03-01T12:00:00+00:00", search_monitors_path="/monitors")
    path, kwargs = trigger.serialize()
    assert path == "airflow_monid.triggers.exa.ExaMonitorRunTrigger"
    assert all(isinstance(v, str | float | type(None)) for v in kwargs.values())
    assert ExaMonitorRunTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_follows_a_replacement_and_names_it(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_x")
    old = emu.exa.add_run("mon_x", created_at=T0, polls_to_finish=1, final_status="cancelled")
    new = emu.exa.add_run("mon_x", created_at=T0 + timedelta(hours=1), polls_to_finish=2)
    (event,) = _events(
        _trigger(emu.url, created_after=T0.isoformat(), created_before=(T0 + timedelta(minutes=5)).isoformat())
    )
    assert event == {"status": "terminal", "run_id": new["id"], "run_status": "completed", "message": ""}
    assert old["id"] != new["id"]
    assert {r.method for r in emu.requests()} == {"GET"}


def test_trigger_emits_timeout_at_the_absolute_deadline(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_x")
    (event,) = _events(_trigger(emu.url, created_after=T0.isoformat(), end_time=time.time() - 1))
    assert event["status"] == "timeout" and event["run_id"] == ""
    assert emu.count("GET", "/monitors/mon_x") == 1  # the monitor is looked at while no run exists


def test_trigger_ends_with_an_error_when_the_monitor_dies(connections: Emulator) -> None:
    emu = connections
    emu.exa.add_monitor("mon_x", status="disabled")
    (event,) = _events(_trigger(emu.url, created_after=T0.isoformat()))
    assert event["status"] == "error" and "disabled" in event["message"]
    (event,) = _events(_trigger(emu.url, monitor_id="gone", run_id="r1"))
    assert event["status"] == "error" and "HTTP 404" in event["message"]
